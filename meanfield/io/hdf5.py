"""HDF5 run files (layout described in docs/file-format.md, after Dedalus).

::

    attrs: config (JSON), meanfield_version, numpy/numba/h5py versions, created, status
    /scales/{sim_time, iteration, oracle_calls, wall_time}   (T,)
    /tasks/<name>                                            (T, ...)
    /grid/<axis>                                             (M,)  cell centres (grid runs)
    /checkpoint/<state>  attrs t, iteration, oracle_calls
                         the named state arrays of the system: x, y (particles),
                         density (grid runs), flow_x, flow_y (bilinear flow map)

Crash safety
------------
Datasets are resizable along the save axis and the file is flushed after
every save, so a killed run leaves a readable file with the saves flushed
before the kill. The file keeps HDF5's default (oldest) format on purpose:
with ``libver="latest"`` or SWMR, HDF5 marks the file "open for write" in
its superblock and a SIGKILL leaves a file that plain readers refuse to
open until ``h5clear -s`` is run.

Overwriting ``/checkpoint`` in place is not crash safe: a kill between the
write of ``x`` and that of the attributes leaves a state that does not match
its ``iteration`` (seen in 4 of 40 kills of a writer). While a run is going,
checkpoints therefore go to a *sidecar* file ``OUT.h5.ckpt`` (same group
layout), written to ``OUT.h5.ckpt.tmp``, fsync'ed and renamed over the old
one, so it always holds one complete, consistent state. When the writer is
closed the last checkpoint is copied into ``/checkpoint`` of the main file
and the sidecar is removed. Whenever a sidecar exists it is the newest valid
checkpoint, and :func:`read_checkpoint` (used by :func:`load`,
:func:`last_state` and ``--resume``) prefers it.

Sidecar writes are rate-limited (at most one per ``checkpoint_interval``
seconds, default 1 s or ``$MEANFIELD_CHECKPOINT_INTERVAL``, and at most ~10 %
of the wall time), so a SIGKILL loses at most about that much work.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sys
import tempfile
import time

import h5py
import numpy as np

from ..errors import ParameterError
from .live import LiveStatus

SCALES = ("sim_time", "iteration", "oracle_calls", "wall_time")
_SCALE_DTYPES = {"sim_time": np.float64, "iteration": np.int64, "oracle_calls": np.int64,
                 "wall_time": np.float64, "mlp_calls": np.int64}

#: Suffix of the sidecar checkpoint file of a running run (``OUT.h5`` -> ``OUT.h5.ckpt``).
CHECKPOINT_SUFFIX = ".ckpt"
#: Default seconds between sidecar checkpoints (``$MEANFIELD_CHECKPOINT_INTERVAL`` overrides).
CHECKPOINT_INTERVAL = 1.0
#: Sidecar writes are spaced so that they take at most about this share of the wall time.
_CHECKPOINT_SHARE = 0.1


def checkpoint_path(path) -> str:
    """Path of the sidecar checkpoint of run file ``path`` (``OUT.h5`` -> ``OUT.h5.ckpt``)."""
    return os.fspath(path) + CHECKPOINT_SUFFIX


def check_output_path(path, key: str = "output.path", overwrite: bool = False,
                      overwrite_hint: str = "--overwrite") -> None:
    """Raise ParameterError unless ``path`` can be written as a new (or, with ``overwrite``, a replaced) file.

    Writability is tested by creating (and removing) a temporary file in the
    target directory, so nothing existing is touched.

    Parameters
    ----------
    path : str or os.PathLike
    key : str
        Parameter or option named in the error (``output.path``, ``-o``, ...).
    overwrite : bool
        Whether an existing file at ``path`` may be replaced.
    overwrite_hint : str
        How the caller allows replacing, named in the error (``--overwrite``; the
        Python API's ``overwrite=True``).
    """
    path = os.fspath(path)
    if not path or os.path.isdir(path):
        raise ParameterError(key, "a file name (not a directory)", path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ParameterError(key, "a file in an existing directory", path)
    if os.path.exists(path) and not overwrite:
        raise ParameterError(key, f"a file that does not exist yet (or {overwrite_hint})", path)
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".meanfield-probe-")
    except OSError as exc:
        raise ParameterError(key, "a file in a writable directory",
                             f"{path} ({exc.strerror or exc})") from None
    os.close(fd)
    os.remove(probe)


def _interval_from_env() -> float:
    text = os.environ.get("MEANFIELD_CHECKPOINT_INTERVAL")
    if text is None:
        return CHECKPOINT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 0 and math.isfinite(value)):
        raise ParameterError("MEANFIELD_CHECKPOINT_INTERVAL", "a number of seconds >= 0", text)
    return value


def _versions() -> dict:
    import numba

    from .. import __version__

    return {
        "meanfield_version": __version__,
        "numpy_version": np.__version__,
        "numba_version": numba.__version__,
        "h5py_version": h5py.__version__,
    }


def temp_file_beside(path: str, prefix: str, suffix: str) -> str:
    """An empty temporary file in ``path``'s directory, to be moved over ``path`` when complete.

    It gets the permissions a new file would (``0o666`` less the umask), not
    ``mkstemp``'s ``0o600``: the file it becomes is a result the user shares.
    """
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=prefix, suffix=suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


class HDF5Writer:
    """Observer that appends every save to an HDF5 file and keeps a checkpoint.

    Parameters
    ----------
    path : str
        Output file.
    config : dict
        Fully resolved parameters (stored as JSON in ``attrs["config"]``).
    mode : {"w", "a"}
        ``"w"`` creates (the caller decides about overwriting; a stale sidecar
        checkpoint of an earlier run at ``path`` is removed), ``"a"`` appends
        to an existing run (resume).
    replace : bool
        With ``mode="w"`` and an existing file at ``path``: write to a
        temporary file in the same directory and move it over ``path``
        (``os.replace``, atomic) right after the first save, so the old file
        is untouched until the new run holds a save, and a run killed after
        that leaves its own readable file at ``path``. A run that ends before
        its first save removes the temporary file and leaves the old one.
    checkpoint_interval : float or None
        Minimum seconds between sidecar checkpoints (0: at every save); None
        reads ``$MEANFIELD_CHECKPOINT_INTERVAL`` (default 1 s).

    Notes
    -----
    :meth:`checkpoint` keeps references to the arrays it is given; when the
    writer is closed normally (no exception propagating) they must still hold
    that state, which is the case for the time loop: its last call is the
    final save.
    """

    def __init__(self, path: str, config: dict | None = None, mode: str = "w",
                 checkpoint_interval: float | None = None, replace: bool = False):
        self.path = os.fspath(path)
        self.ckpt_path = checkpoint_path(self.path)
        self._final = None          # path to move the temporary file to at the first save
        self.interval = (_interval_from_env() if checkpoint_interval is None
                         else float(checkpoint_interval))
        self._pending = None        # arguments of the last checkpoint() call
        self._status = None         # final status, written by close() after /checkpoint
        self._last_write = -math.inf
        self._write_cost = 0.0
        if mode == "w" and replace and os.path.exists(self.path):
            tmp = temp_file_beside(self.path, f".{os.path.basename(self.path)}.", ".partial")
            self._final, self.path = self.path, tmp
        elif mode == "w":
            _remove_sidecars(self.ckpt_path)
        self.f = h5py.File(self.path, mode)
        if mode == "w":
            self.f.attrs["config"] = json.dumps(config or {})
            for k, v in _versions().items():
                self.f.attrs[k] = v
            self.f.attrs["created"] = _dt.datetime.now().isoformat(timespec="seconds")
            self.f.require_group("scales")
            self.f.require_group("tasks")
        self.n_saves = self.f["scales/sim_time"].shape[0] if "scales/sim_time" in self.f else 0
        self.set_status("running")
        # OUT.h5.status: what `meanfield info` shows while HDF5's lock keeps readers out
        self.live = LiveStatus(self._final or self.path, _config_of(self.f))
        self.live.state["saves"] = self.n_saves
        self.live.write()

    def save(self, record: dict) -> None:
        """Append one save record (``{"scales": ..., "tasks": ..., "attrs": ...}``) and flush.

        ``attrs`` (optional): file attributes to keep current, e.g. ``compile_time``.
        """
        f = self.f
        for group, values in (("scales", record["scales"]), ("tasks", record["tasks"])):
            g = f[group]
            for name, value in values.items():
                arr = np.asarray(value)
                if name not in g:
                    dtype = _SCALE_DTYPES.get(name, arr.dtype) if group == "scales" else arr.dtype
                    chunk = (1,) + arr.shape if arr.ndim else (1024,)
                    ds = g.create_dataset(name, shape=(0,) + arr.shape,
                                          maxshape=(None,) + arr.shape, dtype=dtype, chunks=chunk)
                    _attach_time_scale(f, ds, name if group == "scales" else None)
                ds = g[name]
                n = ds.shape[0]
                ds.resize(n + 1, axis=0)
                ds[n] = arr
        for name, value in record.get("attrs", {}).items():  # e.g. compile_time, kept current
            f.attrs[name] = value
        f.flush()
        self.n_saves += 1
        if self._final is not None:
            self._commit()
        self.live.save(record, self.n_saves)

    def _commit(self) -> None:
        """Move the temporary file (holding its first save) over the file it replaces."""
        final, self._final = self._final, None
        _remove_sidecars(self.ckpt_path)  # the old run's checkpoint must not outlive it
        os.replace(self.path, final)
        self.path = final
        _fsync(os.path.dirname(os.path.abspath(final)), directory=True)

    def checkpoint(self, state, t, iteration, oracle_calls, integrator_state=None,
                   loop_state=None) -> None:
        """Record the current state and counters as the checkpoint to resume from.

        Parameters
        ----------
        state : dict of arrays
            The system's named state (``x`` (N, d) and ``y`` (N, d) for
            particles, ``density`` for a grid, ...): one dataset each.
        t : float
        iteration, oracle_calls : int
        integrator_state : dict or None
            Multistep history, doubled copies, ...; stored under ``integrator/``.
        loop_state : dict or None
            A checkpoint between two saves (the run stopped there): what the loop
            needs to go on exactly (stored as JSON in the attribute ``loop_state``).

        Writes the sidecar ``OUT.h5.ckpt`` atomically unless one was written
        less than ``checkpoint_interval`` seconds ago; :meth:`close` puts the
        last state into ``/checkpoint`` of the main file.
        """
        attrs = {"t": float(t), "iteration": int(iteration), "oracle_calls": int(oracle_calls),
                 "n_saves": int(self.n_saves)}
        if loop_state is not None:
            attrs["loop_state"] = json.dumps(loop_state)
        self._pending = (state, attrs, integrator_state)
        now = time.monotonic()
        wait = self.interval
        if wait > 0:
            wait = max(wait, self._write_cost / _CHECKPOINT_SHARE)
        if now - self._last_write >= wait:
            write_checkpoint_file(self.ckpt_path, state, attrs, integrator_state)
            self._last_write = time.monotonic()
            self._write_cost = self._last_write - now

    def set_status(self, status: str) -> None:
        """Set ``attrs["status"]``; once a checkpoint is pending, :meth:`close` writes it last.

        A run killed while closing then still says "running" and is resumed
        from its sidecar, rather than saying "finished" next to a half-written
        ``/checkpoint``.
        """
        self._status = status
        if self._pending is None:
            self.f.attrs["status"] = status
            self.f.flush()

    def set_grid(self, grid: dict) -> None:
        """Store the cell centres of a grid run as ``/grid/<axis>`` (each ``(M,)``)."""
        g = self.f.require_group("grid")
        for name, centres in grid.items():
            _put(g, name, np.asarray(centres, dtype=np.float64))
        self.f.flush()

    def set_attr(self, name: str, value) -> None:
        """Set a file attribute ``attrs[name] = value`` and flush."""
        self.f.attrs[name] = value
        self.f.flush()

    def close(self) -> None:
        """Put the last checkpoint into ``/checkpoint``, close the file, remove the sidecar.

        With no exception propagating (normal end) the state of the last
        :meth:`checkpoint` call is final. While an exception propagates the
        arrays may have moved on since (a NaN found steps later, a second
        Ctrl-C inside a step), so only the clean interrupt of the time loop,
        raised right after its checkpoint of step ``k`` with the message
        "interrupted at step k ...", uses them; otherwise the last sidecar,
        which always holds a consistent state, is copied.
        """
        if not self.f.id.valid:
            return
        keep_sidecar = False
        try:
            if self._pending is not None:
                state, attrs, integ = self._pending
                if _pending_is_final(attrs["iteration"]):
                    _write_checkpoint_group(self.f.require_group("checkpoint"), state, attrs, integ)
                elif os.path.exists(self.ckpt_path):
                    try:
                        ck = _read_sidecar(self.ckpt_path)
                    except ParameterError:
                        # keep it for --resume to report; do not hide the exception propagating
                        keep_sidecar = True
                    else:
                        state = ck.pop("state")
                        for name in state:
                            ck.pop(name)
                        _write_checkpoint_group(self.f.require_group("checkpoint"), state, ck,
                                                ck.pop("integrator", None))
                self.f.flush()
            if self._status is not None:
                self.f.attrs["status"] = self._status
            self.f.flush()
        finally:
            self.f.close()
            self.live.remove()
            self._pending = None
            if self._final is not None:
                # ended before its first save: keep the old file, drop the temporary one
                os.remove(self.path)
                self.path, self._final = self._final, None
                return
        if keep_sidecar:
            return
        # the main file now holds the newest checkpoint: the sidecar is redundant
        _remove_sidecars(self.ckpt_path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _config_of(f) -> dict | None:
    """The parameters stored in an open run file (None if missing or not JSON)."""
    try:
        return json.loads(f.attrs["config"])
    except (KeyError, TypeError, ValueError):
        return None


def _attach_time_scale(f, ds, scale_name=None) -> None:
    """HDF5 dimension scales: ``/scales/sim_time`` labels the save axis of every other dataset.

    h5py (``ds.dims[0][0]``), HDFView and netCDF readers then show the save
    times along the first axis. Files written before this existed are left as they are.
    """
    if scale_name == "sim_time":
        ds.make_scale("sim_time")
        return
    st = f.get("scales/sim_time")
    if st is not None and h5py.h5ds.is_scale(st.id):
        ds.dims[0].attach_scale(st)
        ds.dims[0].label = "sim_time"


def _remove_sidecars(ckpt_path: str) -> None:
    for stale in (ckpt_path, ckpt_path + ".tmp"):
        if os.path.exists(stale):
            os.remove(stale)


def _pending_is_final(iteration: int) -> bool:
    """Whether the exception propagating now (if any) left the last checkpoint's arrays alone."""
    exc = sys.exc_info()[1]
    if exc is None:
        return True
    return (isinstance(exc, KeyboardInterrupt)
            and str(exc).startswith(f"interrupted at step {iteration} "))


def _put(group, name, arr):
    if arr is None:
        if name in group:
            del group[name]
        return
    arr = np.asarray(arr)
    if name in group and group[name].shape == arr.shape and group[name].dtype == arr.dtype:
        group[name][...] = arr
    else:
        if name in group:
            del group[name]
        group.create_dataset(name, data=arr)


def _write_checkpoint_group(g, state: dict, attrs: dict, integrator_state=None) -> None:
    """Fill an HDF5 group with a checkpoint: one dataset per state array, integrator/*, ``attrs``."""
    for name in [k for k in g if isinstance(g[k], h5py.Dataset) and k not in state]:
        del g[name]  # e.g. a stale y
    for name, arr in state.items():
        _put(g, name, arr)
    if "integrator" in g:
        del g["integrator"]
    if integrator_state:
        gi = g.create_group("integrator")
        for name, value in integrator_state.items():
            if value is not None:
                gi.create_dataset(name, data=np.asarray(value))
    for k in [k for k in g.attrs if k not in attrs]:
        del g.attrs[k]  # e.g. the loop_state of an earlier checkpoint between saves
    for k, v in attrs.items():
        g.attrs[k] = v


def _read_checkpoint_group(g) -> dict:
    ckpt = {k: g[k][...] for k in g if isinstance(g[k], h5py.Dataset)}
    ckpt["state"] = dict(ckpt)
    if "integrator" in g:
        gi = g["integrator"]
        ckpt["integrator"] = {k: (gi[k][()] if gi[k].ndim == 0 else gi[k][...]) for k in gi}
    ckpt.update({k: g.attrs[k] for k in g.attrs})
    return ckpt


def _fsync(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories; the rename still happened
        if not directory:
            raise
    finally:
        os.close(fd)


def write_checkpoint_file(path: str, state: dict, attrs: dict, integrator_state=None) -> None:
    """Atomically replace the checkpoint file ``path`` (write ``path.tmp``, fsync, rename).

    Parameters
    ----------
    path : str
        Sidecar file, e.g. ``OUT.h5.ckpt``; holds group ``/checkpoint`` as in a run file.
    state : dict of arrays (``x``, ``y`` of particles, ``density`` of a grid, ...)
    attrs : dict
        ``t``, ``iteration``, ``oracle_calls``, ``n_saves`` (saves in the main file).
    integrator_state : dict or None
    """
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        _write_checkpoint_group(f.create_group("checkpoint"), state, attrs, integrator_state)
        f.attrs["complete"] = True
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(os.path.dirname(os.path.abspath(path)), directory=True)


def _read_sidecar(path: str) -> dict:
    try:
        with h5py.File(path, "r") as f:
            if not f.attrs.get("complete", False) or "checkpoint" not in f:
                raise OSError("incomplete checkpoint")
            return _read_checkpoint_group(f["checkpoint"])
    except (OSError, KeyError, RuntimeError) as exc:  # damaged inside: h5py's KeyError, RuntimeError
        # cannot happen through the atomic rename; a copied or truncated file, say so
        raise ParameterError("(checkpoint)", "a readable sidecar checkpoint (or delete it)",
                             f"{path} ({exc})") from None


def read_checkpoint(path: str) -> dict | None:
    """The newest checkpoint of run file ``path``: its sidecar if present, else ``/checkpoint``.

    Returns
    -------
    dict or None
        ``state`` (dict: the named state arrays), each state array also under
        its own name (``x (N, d)``, ``y (N, d)``, ``density``, ...),
        ``integrator`` (dict, if any),
        ``t``, ``iteration``, ``oracle_calls``, ``n_saves`` (if known) and
        ``source`` ("sidecar" or "file"); None if the run has no checkpoint.
    """
    ck = _sidecar_checkpoint(path)
    if ck is not None:
        return ck
    with h5py.File(path, "r") as f:
        return _file_checkpoint(f)


def _sidecar_checkpoint(path: str) -> dict | None:
    """The checkpoint of run file ``path``'s sidecar (``source`` "sidecar"), None without a sidecar."""
    side = checkpoint_path(path)
    if not os.path.exists(side):
        return None
    ck = _read_sidecar(side)
    ck["source"] = "sidecar"
    return ck


def _file_checkpoint(f) -> dict | None:
    """The ``/checkpoint`` group of the open run file ``f`` (``source`` "file"), None if it holds no state."""
    if "checkpoint" not in f:
        return None
    ck = _read_checkpoint_group(f["checkpoint"])
    if not ck["state"]:
        return None
    ck["source"] = "file"
    return ck


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


def truncate_to(path: str, n_saves: int) -> None:
    """Drop saves beyond the first ``n_saves`` (used when resuming from a checkpoint)."""
    with h5py.File(path, "a") as f:
        for group in ("scales", "tasks"):
            for ds in f[group].values():
                if ds.shape[0] > n_saves:
                    ds.resize(n_saves, axis=0)


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
    hint = f' (add "{name}" to [output] save)' if name in ("x", "y", "v") else ""
    raise KeyError(f"{name!r} was not saved by this run{hint}; it has tasks {sorted(tasks)} and scales "
                   f"{sorted(scales)}")


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
    """

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
        if "lock" in str(exc):  # HDF5's file lock: a run is writing it (reading now is unsafe)
            raise ParameterError("(file)", "a run file no process is writing", "a run still "
                                 "writing it (wait for it, or stop it with Ctrl-C)", file=path) from None
        raise ParameterError("(file)", "a readable meanfield HDF5 file", " ".join(str(exc).split()),
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
        except (KeyError, RuntimeError) as exc:  # h5py's errors for a file damaged inside
            raise ParameterError("(file)", "an undamaged meanfield HDF5 file",
                                 " ".join(str(exc).split()), file=path) from None
    n = _common_length(scales, data, path)
    scales = {k: v[:n] for k, v in scales.items()}
    data = {k: v[:n] for k, v in data.items()}
    return Trajectory(config, attrs, scales, data, ck, grid=grid, path=path)


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
