"""HDF5 run files (layout of shared/INTERFACE.md, after Dedalus).

::

    attrs: config (JSON), meanfield_version, numpy/numba/h5py versions, created, status
    /scales/{sim_time, iteration, oracle_calls, wall_time}   (T,)
    /tasks/<name>                                            (T, ...)
    /checkpoint/{x, y}   attrs t, iteration, oracle_calls

Datasets are resizable along the save axis and the file is flushed after
every save, so a killed run leaves a readable file.
"""

from __future__ import annotations

import datetime as _dt
import json
import os

import h5py
import numpy as np

SCALES = ("sim_time", "iteration", "oracle_calls", "wall_time")
_SCALE_DTYPES = {"sim_time": np.float64, "iteration": np.int64, "oracle_calls": np.int64,
                 "wall_time": np.float64}


def _versions() -> dict:
    import numba

    from .. import __version__

    return {
        "meanfield_version": __version__,
        "numpy_version": np.__version__,
        "numba_version": numba.__version__,
        "h5py_version": h5py.__version__,
    }


class HDF5Writer:
    """Observer that appends every save to an HDF5 file and keeps a checkpoint.

    Parameters
    ----------
    path : str
        Output file.
    config : dict
        Fully resolved parameters (stored as JSON in ``attrs["config"]``).
    mode : {"w", "a"}
        ``"w"`` creates (the caller decides about overwriting), ``"a"`` appends
        to an existing run (resume).
    """

    def __init__(self, path: str, config: dict | None = None, mode: str = "w"):
        self.path = str(path)
        self.f = h5py.File(self.path, mode)
        if mode == "w":
            self.f.attrs["config"] = json.dumps(config or {})
            for k, v in _versions().items():
                self.f.attrs[k] = v
            self.f.attrs["created"] = _dt.datetime.now().isoformat(timespec="seconds")
            self.f.require_group("scales")
            self.f.require_group("tasks")
        self.set_status("running")

    def save(self, record: dict) -> None:
        """Append one save record (``{"scales": {...}, "tasks": {...}}``) and flush."""
        f = self.f
        for group, values in (("scales", record["scales"]), ("tasks", record["tasks"])):
            g = f[group]
            for name, value in values.items():
                arr = np.asarray(value)
                if name not in g:
                    dtype = _SCALE_DTYPES.get(name, arr.dtype) if group == "scales" else arr.dtype
                    chunk = (1,) + arr.shape if arr.ndim else (1024,)
                    g.create_dataset(name, shape=(0,) + arr.shape, maxshape=(None,) + arr.shape,
                                     dtype=dtype, chunks=chunk)
                ds = g[name]
                n = ds.shape[0]
                ds.resize(n + 1, axis=0)
                ds[n] = arr
        f.flush()

    def checkpoint(self, x, y, t, iteration, oracle_calls, integrator_state=None) -> None:
        """Overwrite ``/checkpoint`` with the current state and counters, then flush.

        ``integrator_state`` (multistep history, doubled copies, ...) goes to
        ``/checkpoint/integrator``.
        """
        g = self.f.require_group("checkpoint")
        _put(g, "x", x)
        _put(g, "y", y)
        if "integrator" in g:
            del g["integrator"]
        if integrator_state:
            gi = g.create_group("integrator")
            for name, value in integrator_state.items():
                if value is not None:
                    gi.create_dataset(name, data=np.asarray(value))
        g.attrs["t"] = float(t)
        g.attrs["iteration"] = int(iteration)
        g.attrs["oracle_calls"] = int(oracle_calls)
        self.f.flush()

    def set_status(self, status: str) -> None:
        self.f.attrs["status"] = status
        self.f.flush()

    def set_attr(self, name: str, value) -> None:
        self.f.attrs[name] = value
        self.f.flush()

    def close(self) -> None:
        if self.f.id.valid:
            self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _put(group, name, arr):
    if arr is None:
        return
    if name in group and group[name].shape == arr.shape and group[name].dtype == arr.dtype:
        group[name][...] = arr
    else:
        if name in group:
            del group[name]
        group.create_dataset(name, data=arr)


def truncate_to(path: str, n_saves: int) -> None:
    """Drop saves beyond the first ``n_saves`` (used when resuming from a checkpoint)."""
    with h5py.File(path, "a") as f:
        for group in ("scales", "tasks"):
            for ds in f[group].values():
                if ds.shape[0] > n_saves:
                    ds.resize(n_saves, axis=0)


class Trajectory:
    """A run file read back into memory.

    Attributes
    ----------
    config : dict
        Resolved parameters of the run.
    attrs : dict
        All file attributes (status, versions, ...).
    scales : dict of (T,) arrays
    tasks : dict of (T, ...) arrays
    """

    def __init__(self, config, attrs, scales, tasks, checkpoint=None):
        self.config = config
        self.attrs = attrs
        self.scales = scales
        self.tasks = tasks
        self.checkpoint = checkpoint

    @property
    def t(self):
        return self.scales["sim_time"]

    def __getitem__(self, name):
        return self.tasks[name] if name in self.tasks else self.scales[name]

    def __contains__(self, name):
        return name in self.tasks or name in self.scales

    def __repr__(self):
        return (f"Trajectory({len(self.t)} saves, t = {self.t[0]:.4g}..{self.t[-1]:.4g}, "
                f"tasks = {sorted(self.tasks)})") if len(self.t) else "Trajectory(empty)"


def load(path: str, tasks=None) -> Trajectory:
    """Read a run file; ``tasks`` limits which ``/tasks`` datasets are loaded (all by default)."""
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        config = json.loads(attrs.get("config", "{}"))
        scales = {k: f["scales"][k][...] for k in f.get("scales", {})}
        names = list(f.get("tasks", {})) if tasks is None else [t for t in tasks if t in f["tasks"]]
        data = {k: f["tasks"][k][...] for k in names}
        ckpt = None
        if "checkpoint" in f:
            g = f["checkpoint"]
            ckpt = {k: g[k][...] for k in g if isinstance(g[k], h5py.Dataset)}
            if "integrator" in g:
                gi = g["integrator"]
                ckpt["integrator"] = {k: (gi[k][()] if gi[k].ndim == 0 else gi[k][...]) for k in gi}
            ckpt.update({k: g.attrs[k] for k in g.attrs})
    return Trajectory(config, attrs, scales, data, ckpt)


def last_state(path: str, which: str = "x") -> np.ndarray:
    """The last state of ``which`` ("x" or "y") in a run file: checkpoint, else last save."""
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    with h5py.File(path, "r") as f:
        if "checkpoint" in f and which in f["checkpoint"]:
            return f["checkpoint"][which][...]
        if "tasks" in f and which in f["tasks"] and f["tasks"][which].shape[0]:
            return f["tasks"][which][-1]
    raise ValueError(f"no saved {which!r} in {path}")
