"""Run files as ``xarray.Dataset`` (optional dependency: ``pip install meanfield[xarray]``).

Used by :meth:`meanfield.io.hdf5.Trajectory.to_xarray`; imports xarray lazily.
"""

from __future__ import annotations

import json

import numpy as np

from .. import schema
from .reader import grid_axes
from .runfile import SCALES

#: Dimension names after the save axis, by task name; other tasks are named by their shape.
TASK_DIMS = {
    "x": ("particle", "component"),
    "y": ("particle", "component"),
    "mean": ("component",),
    "ode_mean": ("component",),
    "cov": ("component", "component2"),
    "ode_cov": ("component", "component2"),
    "Mxy": ("component", "component2"),
    "v": ("particle", "component"),
    "x_mid": ("particle", "component"),
    "readout": ("particle", "component"),
    "E_beta_heads": ("head",),
    "n_clusters_heads": ("head",),
    "cos_quantiles": ("quantile",),
    "cos_centred_quantiles": ("quantile",),
}


def _import_xarray():
    try:
        import xarray
    except ImportError:
        raise ImportError(
            "Trajectory.to_xarray() needs the optional dependency xarray: "
            'pip install "meanfield[xarray]" (or pip install xarray)') from None
    return xarray


def task_dims(name: str, shape: tuple, d: int | None, n: int | None) -> tuple:
    """Dimension names of task ``name`` with per-save ``shape`` (the save axis excluded).

    Known tasks use :data:`TASK_DIMS`; otherwise an axis of length ``n`` is
    ``particle`` and a trailing axis of length ``d`` is ``component``
    (``component2`` for a second one); anything else is ``<name>_dim<k>``.
    """
    if name in TASK_DIMS and len(TASK_DIMS[name]) == len(shape):
        return TASK_DIMS[name]
    if name in ("flow_map", "flow_shift") and d is not None and all(s == 2 * d for s in shape):
        return ("phase", "phase2")[:len(shape)]  # z = (x, y): acting on phase space
    dims = []
    for k, size in enumerate(shape):
        if size == d and "component" not in dims:
            dims.append("component")
        elif size == d and "component2" not in dims:
            dims.append("component2")
        elif size == n and k == 0 and len(shape) >= 1 and "particle" not in dims:
            dims.append("particle")
        else:
            dims.append(f"{name}_dim{k + 1}")
    return tuple(dims)


def to_dataset(tr):
    """Build the ``xarray.Dataset`` of a :class:`~meanfield.io.hdf5.Trajectory`.

    Parameters
    ----------
    tr : Trajectory or RunResult

    Returns
    -------
    xarray.Dataset
        Dimension ``sim_time`` (length T, the save index) with coordinates
        ``sim_time``, ``iteration``, ``oracle_calls``, ``wall_time``; one
        variable per task. Grid runs: ``density`` has the grid's axes as
        dimensions (``theta`` or ``x``, then ``momentum``) with the cell
        centres as coordinates; a bilinear flow map acts on ``phase``
        (z = (x, y), accelerated) or ``component`` (first order). Tasks with fewer saves than ``sim_time`` (a run
        killed between two writes) are cut to the common length.
    """
    xr = _import_xarray()
    scales = {k: np.asarray(v) for k, v in tr.scales.items()}
    tasks = {k: np.asarray(v) for k, v in tr.tasks.items()}
    lengths = [len(v) for v in (*scales.values(), *tasks.values())]
    T = min(lengths) if lengths else 0
    P = schema.typed(tr.config or {})
    d = P.model.d
    n = next((v.shape[1] for k, v in tasks.items() if k in ("x", "y") and v.ndim == 3), None)
    if n is None:
        n = P.initial.n
    coords = {"sim_time": ("sim_time", scales.get("sim_time", np.zeros(0))[:T])}
    for name in (*SCALES[1:], "mlp_calls"):
        if name in scales:
            coords[name] = ("sim_time", scales[name][:T])
    # grid runs: the density's axes are the grid's (position, then momentum), with cell centres
    grid = {k: np.asarray(v) for k, v in (getattr(tr, "grid", None) or {}).items()}
    axes = grid_axes(grid)
    for a in axes:
        coords[a] = (a, grid[a])
    data = {name: (("sim_time", *(axes if name == "density" and v.ndim == len(axes) + 1
                                  else task_dims(name, v.shape[1:], d, n))), v[:T])
            for name, v in tasks.items()}
    attrs = {k: v for k, v in getattr(tr, "attrs", {}).items()
             if isinstance(v, (str, int, float, np.integer, np.floating))}
    attrs["config"] = json.dumps(tr.config)
    return xr.Dataset(data, coords=coords, attrs=attrs)
