"""Reading run files: :func:`load` a :class:`Trajectory`, saved tasks, the last state (docs/file-format.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping

import h5py
import numpy as np

from .. import schema
from ..errors import ParameterError
from .checkpoint import _file_checkpoint, _sidecar_checkpoint, read_checkpoint
from .runfile import SCALES, is_being_written, unreadable_reason


def saved_rows(path: str) -> dict:
    """Rows (saves) of every dataset under ``/scales`` and ``/tasks``: ``{"tasks/x": T, ...}``.

    Raises
    ------
    ParameterError
        A dataset of the run was deleted (``/scales/sim_time`` is the dimension
        scale of every other one, and still refers to it).
    """
    with h5py.File(path, "r") as f:
        rows = {f"{g}/{k}": f[g][k].shape[0] for g in ("scales", "tasks")
                if isinstance(f.get(g), h5py.Group) for k in f[g]
                if isinstance(f[g][k], h5py.Dataset) and f[g][k].ndim}
        st = f.get("scales/sim_time")
        refs = st.attrs.get("REFERENCE_LIST", ()) if isinstance(st, h5py.Dataset) else ()
        for ref, _dim in refs:
            try:
                gone = f[ref].name is None
            except (KeyError, ValueError, RuntimeError):
                gone = True
            if gone:
                raise ParameterError("(file)", "a run file with every dataset it saved (one of the "
                                     "datasets along /scales/sim_time was deleted)", path)
    return rows


def _common_length(scales: dict, tasks: dict, path: str) -> int:
    """The number of saves every dataset holds; ParameterError when one is shorter by more than one.

    A run killed in the middle of a save leaves some datasets one row longer (the
    half-written save, dropped by readers and by ``--resume``); anything more is damage.
    """
    lengths = {f"/{group}/{k}": len(v) for group, arrays in (("scales", scales), ("tasks", tasks))
               for k, v in arrays.items()}
    if not lengths:
        return 0
    n, top = min(lengths.values()), max(lengths.values())
    if top - n > 1:
        short = min(lengths, key=lengths.get)
        raise ParameterError("(file)", f"a run file whose datasets hold the same number of saves "
                             f"({short} has {n}, others up to {top})", path)
    return n

def grid_axes(grid) -> tuple:
    """The axes of a grid run's density in its order: the position axis, then ``"momentum"`` if any.

    Parameters
    ----------
    grid : dict
        ``{axis: (M,) cell centres}`` of a run's ``/grid`` (``theta`` or ``x``,
        and ``momentum`` for a kinetic run), in any order.

    Returns
    -------
    tuple of str
        ``(position,)`` for a density ``(T, M)``, ``(position, "momentum")`` for ``(T, M, K)``;
        empty for a run without a grid.
    """
    position = tuple(k for k in grid if k != "momentum")[:1]
    return position + (("momentum",) if "momentum" in grid else ())


def saved_array(tasks: dict, scales: dict, name: str) -> np.ndarray:
    """``tasks[name]``, else ``scales[name]``; a KeyError naming what the run saved otherwise.

    Parameters
    ----------
    tasks, scales : dict of str to array
        Saved tasks ``(T, ...)`` and scales ``(T,)`` of a run.
    name : str

    Returns
    -------
    value : (T, ...) array, the task or scale ``name``
    """
    if name in tasks:
        return tasks[name]
    if name in scales:
        return scales[name]
    hint = f' (add "{name}" to [output] save)' if name in ("x", "y", "v", "x_mid") else ""
    raise KeyError(f"{name!r} was not saved by this run{hint}; it has tasks {sorted(tasks)} and scales "
                   f"{sorted(scales)}")


class SavedTasks(MutableMapping):
    """The saved tasks of a run result: small ones held in memory, large ones read from the file.

    A run writing a file streams its large saves (states ``(T, N, d)``,
    densities) there instead of keeping them; they are read (and then kept)
    the first time they are used.

    Parameters
    ----------
    held : dict of (T, ...) arrays
        Tasks kept in memory.
    path : str or None
        The run file holding the other tasks.
    names : sequence of str
        Tasks to read from ``/tasks`` of ``path``.
    start : int
        Index of this result's first save in the file (a resume appends to earlier saves).
    """

    def __init__(self, held: dict, path=None, names=(), start: int = 0):
        self._held = dict(held)
        self._path = path
        self._names = [n for n in names if n not in self._held]
        self._start = int(start)

    def __getitem__(self, name):
        if name not in self._held and name in self._names:
            with h5py.File(self._path, "r") as f:
                self._held[name] = f["tasks"][name][self._start:]
        return self._held[name]

    def __setitem__(self, name, value):
        self._held[name] = value

    def __delitem__(self, name):
        if name not in self:
            raise KeyError(name)
        self._held.pop(name, None)
        self._names = [n for n in self._names if n != name]

    def __iter__(self):
        yield from self._held
        yield from (n for n in self._names if n not in self._held)

    def __len__(self):
        return len(self._held) + sum(n not in self._held for n in self._names)

    def __repr__(self):
        lazy = [n for n in self._names if n not in self._held]
        return (f"SavedTasks({sorted(self._held)}" + (f", read from {self._path} when used: {lazy}"
                                                       if lazy else "") + ")")


class Trajectory:
    """A run file read back into memory.

    Attributes
    ----------
    config : dict
        Resolved parameters of the run.
    attrs : dict
        All file attributes (status, versions, ...).
    scales : dict of (T,) arrays
        ``sim_time``, ``iteration``, ``oracle_calls``, ``wall_time``.
    tasks : dict of (T, ...) arrays
    grid : dict of (M,) arrays
        Cell centres of a grid run (``theta`` or ``x``), empty otherwise.
    checkpoint : dict or None
        The newest checkpoint (see :func:`read_checkpoint`).
    path : str or None
        The file read.
    events : dict of (E, 2) arrays
        ``/events/<name>``: rows ``[t, value]``, e.g. the times the cluster count changed.
    """

    events: dict = {}

    def __init__(self, config, attrs, scales, tasks, checkpoint=None, grid=None, path=None):
        self.config = config
        self.attrs = attrs
        self.scales = scales
        self.tasks = tasks
        self.checkpoint = checkpoint
        self.grid = grid or {}
        self.path = path

    @property
    def t(self) -> np.ndarray:
        """Save times, shape ``(T,)`` (empty for a run without saves)."""
        return self.scales.get("sim_time", np.zeros(0))

    @property
    def params(self) -> schema.Config:
        """:attr:`config` typed by the parameter schema (:class:`meanfield.schema.Config`)."""
        return schema.typed(self.config or {})

    def _final(self, which: str):
        ck = self.checkpoint
        iters = self.scales.get("iteration", np.zeros(0, np.int64))
        saved = which in self.tasks and len(self.tasks[which]) > 0
        if ck is not None and which in ck:
            n = min(len(self.tasks[which]), len(iters)) if saved else 0
            if n == 0 or int(ck["iteration"]) >= int(iters[n - 1]):
                return ck[which]
        return self.tasks[which][-1] if saved else None

    @property
    def x(self) -> np.ndarray | None:
        """Last state of the positions, ``(N, d)``: the newest of checkpoint and last save."""
        return self._final("x")

    @property
    def y(self) -> np.ndarray | None:
        """Last state of the momenta, ``(N, d)`` (None for first-order runs)."""
        return self._final("y")

    def __getitem__(self, name):
        return saved_array(self.tasks, self.scales, name)

    def __contains__(self, name):
        return name in self.tasks or name in self.scales

    def __repr__(self):
        return (f"Trajectory({len(self.t)} saves, t = {self.t[0]:.4g}..{self.t[-1]:.4g}, "
                f"tasks = {sorted(self.tasks)})") if len(self.t) else "Trajectory(no saves)"

    def to_xarray(self):
        """The saves as an ``xarray.Dataset`` (needs the optional dependency xarray).

        Returns
        -------
        xarray.Dataset
            Every task a variable whose first dimension ``sim_time`` is the
            save index, with coordinates ``sim_time`` (the dimension's index),
            ``iteration``, ``oracle_calls`` and ``wall_time``; further
            dimensions are named ``particle`` and ``component`` for states
            ``(T, N, d)``, ``component`` for vectors ``(T, d)`` and
            ``component``, ``component2`` for matrices ``(T, d, d)``. The
            config and file attributes are in ``attrs``.
        """
        from .xr import to_dataset

        return to_dataset(self)


def load(path, tasks=None) -> Trajectory:
    """Read a run file; ``tasks`` limits which ``/tasks`` datasets are loaded (all by default).

    Raises
    ------
    ParameterError
        In one line: no such file (or a directory), a file that is not HDF5 (a TOML
        file, a truncated file), one a run is still writing, or an HDF5 file that is
        not a meanfield run file, or a damaged one (a dataset
        with fewer saves than the others; a half-written last save, what a kill in
        the middle of a save leaves, is dropped instead; h5py's errors inside).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ParameterError("(file)", "an existing meanfield HDF5 file", path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        if is_being_written(path):  # HDF5's file lock: a run is writing it (reading now is unsafe)
            raise ParameterError("(file)", "a run file no process is writing", "a run still "
                                 "writing it (wait for it, or stop it with Ctrl-C)", file=path) from None
        raise ParameterError("(file)", "a readable meanfield HDF5 file", unreadable_reason(path, exc),
                             file=path) from None
    with f:
        try:
            if "config" not in f.attrs:
                raise ParameterError("(file)", "a meanfield run file (attribute config)", path)
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            try:
                config = json.loads(attrs["config"])
            except (TypeError, ValueError):
                config = None
            if not isinstance(config, dict):
                raise ParameterError("(file)", "a meanfield run file (config as a JSON object)",
                                     path)
            sg = f.get("scales")
            tg = f.get("tasks")
            gg = f.get("grid")
            scales = {k: sg[k][...] for k in sg} if isinstance(sg, h5py.Group) else {}
            have = list(tg) if isinstance(tg, h5py.Group) else []
            names = have if tasks is None else [t for t in tasks if t in have]
            data = {k: tg[k][...] for k in names}
            grid = {k: gg[k][...] for k in gg} if isinstance(gg, h5py.Group) else {}
            eg = f.get("events")
            events = {k: eg[k][...] for k in eg} if isinstance(eg, h5py.Group) else {}
            missing = [k for k in SCALES if k not in scales]
            if (scales or data) and missing:
                raise ParameterError("(file)", f"a meanfield run file (/scales/{missing[0]} missing)",
                                     path)
            if (any(np.ndim(v) != 1 for v in scales.values())
                    or any(np.ndim(v) < 1 for v in data.values())):
                raise ParameterError("(file)", "a meanfield run file (datasets with a save axis)",
                                     path)
            # the newest checkpoint as read_checkpoint finds it, without opening the file again
            ck = _sidecar_checkpoint(path)
            if ck is None:
                ck = _file_checkpoint(f)
        except OSError as exc:  # e.g. a save whose checksum (fletcher32) does not match
            raise ParameterError("(file)", "a readable meanfield HDF5 file", unreadable_reason(path, exc),
                                 file=path) from None
        except (KeyError, RuntimeError) as exc:  # h5py's errors for a file damaged inside
            raise ParameterError("(file)", "an undamaged meanfield HDF5 file",
                                 " ".join(str(exc).split()), file=path) from None
    n = _common_length(scales, data, path)
    scales = {k: v[:n] for k, v in scales.items()}
    data = {k: v[:n] for k, v in data.items()}
    tr = Trajectory(config, attrs, scales, data, ck, grid=grid, path=path)
    tr.events = events
    return tr


def last_state(path: str, which: str = "x") -> np.ndarray:
    """The last state of ``which`` ("x" or "y") in a run file: newest checkpoint, else last save."""
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    ck = read_checkpoint(path)
    if ck is not None and which in ck:
        return ck[which]
    with h5py.File(path, "r") as f:
        if "tasks" in f and which in f["tasks"] and f["tasks"][which].shape[0]:
            return f["tasks"][which][-1]
    raise ValueError(f"no saved {which!r} in {path}")


__all__ = ['SavedTasks', 'Trajectory', 'grid_axes', 'last_state', 'load', 'saved_array', 'saved_rows']
