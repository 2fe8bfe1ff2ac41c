"""The writer of run files: saves, sidecar checkpoints, status (docs/file-format.md).

Crash safety
------------
Datasets are resizable along the save axis and the file is flushed after
every save, so a killed run leaves a readable file with the saves flushed
before the kill. The file keeps HDF5's default (oldest) format on purpose:
with ``libver="latest"`` or SWMR, HDF5 marks the file "open for write" in
its superblock and a SIGKILL leaves a file that plain readers refuse to
open until ``h5clear -s`` is run. Checkpoints go to a sidecar while the run
goes (:mod:`meanfield.io.checkpoint`).

Every save dataset carries HDF5's fletcher32 checksum. Before each save and
sidecar write the free space is checked (:data:`SPACE_MARGIN` to spare): a
full disk stops the run with :class:`~meanfield.errors.NoSpaceError` before
HDF5 could be left with a write it cannot finish. Writers never truncate or
replace a file another process writes (HDF5's ``flock``).

Sidecar writes are rate-limited (at most one per ``checkpoint_interval``
seconds, default 1 s or ``$MEANFIELD_CHECKPOINT_INTERVAL``, and at most ~10 %
of the wall time), so a SIGKILL loses at most about that much work.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import math
import os
import sys
import tempfile
import time

import h5py
import numpy as np

from ..errors import NoSpaceError, ParameterError
from . import checkpoint as _checkpoint
from .checkpoint import (
    _fsync,
    _put,
    _read_sidecar,
    _remove_sidecars,
    _state_bytes,
    _write_checkpoint_group,
    write_checkpoint_file,
)
from .live import LiveStatus
from .runfile import _config_of, checkpoint_path, is_being_written

#: dtypes of the scales (others take their value's).
_SCALE_DTYPES = {"sim_time": np.float64, "iteration": np.int64, "oracle_calls": np.int64,
                 "wall_time": np.float64, "mlp_calls": np.int64}

#: Default seconds between sidecar checkpoints (``$MEANFIELD_CHECKPOINT_INTERVAL`` overrides).
CHECKPOINT_INTERVAL = 1.0
#: Sidecar writes are spaced so that they take at most about this share of the wall time.
_CHECKPOINT_SHARE = 0.1

#: Bytes left free beyond what a write needs: HDF5's own metadata (chunk index, object headers)
#: grows with the data, and a write HDF5 cannot complete leaves it unable to close the file
#: (a crash, or a half-made ``/checkpoint`` group).
SPACE_MARGIN = 256 * 1024

def free_bytes(path) -> int:
    """Bytes an unprivileged writer may still use on the file system of ``path``'s directory."""
    st = os.statvfs(os.path.dirname(os.path.abspath(os.fspath(path))))
    return st.f_bavail * st.f_frsize


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` is a full disk (errno ENOSPC, also inside HDF5's error text)."""
    text = str(exc)
    return (getattr(exc, "errno", None) == errno.ENOSPC or "errno = 28," in text
            or "No space left on device" in text)

def _silence_no_space_repeats() -> None:
    """Drop the "Exception ignored" reports of h5py objects freed after a full disk (said once)."""
    previous = sys.unraisablehook
    if getattr(previous, "meanfield_no_space", False):
        return

    def hook(unraisable):
        if unraisable.exc_value is None or not is_no_space(unraisable.exc_value):
            previous(unraisable)

    hook.meanfield_no_space = True
    sys.unraisablehook = hook


# installed with the writer's module: h5py may free the objects of a failed write (and report
# each as "Exception ignored") before the writer has seen the error and could install it
_silence_no_space_repeats()

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
        self._broken = False        # HDF5 failed a write (full disk): write nothing more
        self._where = "before the first save"
        self._hold = None           # descriptor locking the file this run replaces
        if mode == "w" and replace and os.path.exists(self.path):
            # lock the old file until it is replaced: no other run starts writing it (or its
            # sidecar) meanwhile, and one writing it now makes this run stop here
            self._hold = _lock_exclusively(self.path)
            try:
                tmp = temp_file_beside(self.path, f".{os.path.basename(self.path)}.", ".partial")
            except BaseException:
                self._release()
                raise
            self._final, self.path = self.path, tmp
        try:
            self._require_space(0)
            self.f = _open_for_writing(self.path, mode, replace=self._final is not None)
        except BaseException:  # nothing written: leave no lock and no temporary file behind
            self._release()
            if self._final is not None:
                os.remove(self.path)
                self.path, self._final = self._final, None
            raise
        if mode == "w":
            final = self._final or self.path
            _remove_stale_partials(final, keep=self.path)
            if self._final is None:  # HDF5 holds this file's lock now: the sidecars are ours
                _remove_sidecars(self.ckpt_path)
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

        Raises
        ------
        NoSpaceError
            The disk cannot hold the save (checked before writing, so the file
            keeps every earlier save and stays writable for its status).
        """
        f = self.f
        sc = record["scales"]
        t = float(sc.get("sim_time", math.nan))
        self._where = f"at step {sc.get('iteration')} (t = {t:.6g})"
        self._require_space(self._save_bytes(record))
        try:
            for group, values in (("scales", record["scales"]), ("tasks", record["tasks"])):
                g = f[group]
                for name, value in values.items():
                    arr = np.asarray(value)
                    if name not in g:
                        dtype = (_SCALE_DTYPES.get(name, arr.dtype) if group == "scales"
                                 else arr.dtype)
                        chunk = (1,) + arr.shape if arr.ndim else (1024,)
                        # fletcher32: HDF5 checks every chunk it reads against its checksum
                        ds = g.create_dataset(name, shape=(0,) + arr.shape,
                                              maxshape=(None,) + arr.shape, dtype=dtype,
                                              chunks=chunk, fletcher32=_checkpoint.CHECKSUMS)
                        _attach_time_scale(f, ds, name if group == "scales" else None)
                    ds = g[name]
                    n = ds.shape[0]
                    ds.resize(n + 1, axis=0)
                    ds[n] = arr
            for name, value in record.get("attrs", {}).items():  # e.g. compile_time, kept current
                f.attrs[name] = value
            f.flush()
        except Exception as exc:
            if is_no_space(exc):  # the disk filled up meanwhile (another process)
                raise self._hdf5_no_space(self._save_bytes(record)) from None
            raise
        self.n_saves += 1
        if self._final is not None:
            self._commit()
        self.live.save(record, self.n_saves)

    def _save_bytes(self, record: dict) -> int:
        """Bytes a save adds: its arrays, and new 1024-entry chunks of scalars."""
        need = 0
        for group in ("scales", "tasks"):
            for value in record[group].values():
                arr = np.asarray(value)
                need += arr.nbytes if arr.ndim else (1024 * 8 if self.n_saves % 1024 == 0 else 0)
        return need

    def _require_space(self, need: int) -> None:
        """NoSpaceError unless ``need`` bytes and :data:`SPACE_MARGIN` are free beside the file."""
        if free_bytes(self.path) < need + SPACE_MARGIN:
            raise self._no_space(need)

    def _hdf5_no_space(self, need: int) -> NoSpaceError:
        """The error for a write HDF5 itself failed on a full disk (filled up after the check).

        The main file is then left alone (no status, no ``/checkpoint``: a write cut short
        there would make it unreadable); HDF5 keeps the failed file open and crashes when it
        tries the writes again at exit, so the error asks a command to leave at once
        (``hdf5_unclosed``); HDF5's repeats of the failure during clean-up are not printed
        (:func:`_silence_no_space_repeats`, installed with this module).
        """
        self._broken = True
        err = self._no_space(need)
        err.hdf5_unclosed = True
        return err

    def _no_space(self, need: int) -> NoSpaceError:
        path = self._final or self.path
        return NoSpaceError(
            f"no space left on device for {path} {self._where} ({free_bytes(path) // 1024} KiB "
            f"free, {(need + SPACE_MARGIN) // 1024} KiB needed): the file keeps every save before "
            f"and its checkpoint; free space, then meanfield run --resume {path}")

    def _commit(self) -> None:
        """Move the temporary file (holding its first save) over the file it replaces."""
        final, self._final = self._final, None
        _remove_sidecars(self.ckpt_path)  # the old run's checkpoint must not outlive it
        os.replace(self.path, final)
        self.path = final
        _fsync(os.path.dirname(os.path.abspath(final)), directory=True)
        self._release()  # the file at the final path is this run's now, locked by HDF5

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
            # the new sidecar is complete before the old one goes: room for both
            self._require_space(_state_bytes(state, integrator_state))
            try:
                write_checkpoint_file(self.ckpt_path, state, attrs, integrator_state)
            except Exception as exc:
                if is_no_space(exc):
                    raise self._hdf5_no_space(_state_bytes(state, integrator_state)) from None
                raise
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

    def event(self, name: str, t: float, value) -> None:
        """Append the row ``[t, value]`` to ``/events/<name>`` (written out with the next save)."""
        g = self.f.require_group("events")
        if name not in g:
            g.create_dataset(name, shape=(0, 2), maxshape=(None, 2), dtype=np.float64, chunks=(256, 2))
        ds = g[name]
        n = ds.shape[0]
        ds.resize(n + 1, axis=0)
        ds[n] = (float(t), float(value))

    def set_attr(self, name: str, value) -> None:
        """Set a file attribute ``attrs[name] = value`` and flush."""
        self.f.attrs[name] = value
        self.f.flush()

    def close(self, final: bool | None = None) -> None:
        """Put the last checkpoint into ``/checkpoint``, close the file, remove the sidecar.

        ``final=True`` says that the run ended normally: the state of the last
        :meth:`checkpoint` call is final. With ``final=None`` the exception being
        handled decides (a caller inside an ``except`` block must say ``final=True``).
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
        if self._broken:
            self._abandon()
            return
        keep_sidecar = False
        try:
            if self._pending is not None:
                state, attrs, integ = self._pending
                if free_bytes(self.path) < _state_bytes(state, integ) + SPACE_MARGIN:
                    # a /checkpoint group cut short by a full disk would make the file unreadable
                    # for HDF5: the sidecar keeps the newest checkpoint that was written
                    keep_sidecar = True
                elif final or (final is None and _pending_is_final(attrs["iteration"])):
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
            self._release()
            if self._final is not None:
                # ended before its first save: keep the old file, drop the temporary one
                os.remove(self.path)
                self.path, self._final = self._final, None
                return
        if keep_sidecar:
            return
        # the main file now holds the newest checkpoint: the sidecar is redundant
        _remove_sidecars(self.ckpt_path)

    def _release(self) -> None:
        if self._hold is not None:
            os.close(self._hold)  # closing the descriptor drops its flock
            self._hold = None

    def _abandon(self) -> None:
        """Close a file HDF5 failed to write (full disk), keeping the sidecar checkpoint.

        HDF5 tries once more to write what it holds; that fails again and is
        dropped (the saves flushed before, and the sidecar, are intact).
        """
        try:
            self.f.close()
        except Exception:
            pass
        self._pending = None
        self._release()
        if self._final is not None and os.path.exists(self.path):
            os.remove(self.path)
            self.path, self._final = self._final, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

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

def _lock_exclusively(path: str, wait: float = 2.0) -> int | None:
    """A descriptor of ``path`` holding an exclusive ``flock`` (HDF5's lock), to close when done.

    A reader's shared lock (``meanfield info``) is waited for up to ``wait``
    seconds; a file another process writes raises ParameterError at once.
    None where files cannot be locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    fd = os.open(path, os.O_RDONLY)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if is_being_written(path) or time.monotonic() > deadline:
                os.close(fd)
                raise ParameterError("output.path", "a file no other process is writing or reading "
                                     "(a run is writing it: wait for it, or stop it with Ctrl-C)",
                                     path) from None
            time.sleep(0.05)
        except OSError:  # a file system without flock
            os.close(fd)
            return None


def _open_for_writing(path: str, mode: str, replace: bool):
    """``h5py.File`` for a writer; never truncates a file another run writes.

    HDF5's ``"w"`` truncates an existing file *before* it finds the file locked
    by its writer, so a new file is created exclusively (``"x"``) and an
    existing one is opened with ``"w"`` only when no process writes it.
    """
    if mode == "w" and not replace:
        if os.path.exists(path):
            if is_being_written(path):
                raise ParameterError("output.path", "a file no other process is writing", path)
        else:
            mode = "x"
    try:
        return h5py.File(path, mode)
    except FileExistsError:
        raise ParameterError("output.path", "a file no other run creates at the same time", path) \
            from None
    except BlockingIOError:  # HDF5 could not lock it: a writer, or a reader (`meanfield info`)
        what = "writing" if is_being_written(path) else "reading"
        raise ParameterError("output.path", f"a file no other process is {what} (wait for it, "
                             "then try again)", path) from None


def _remove_stale_partials(final: str, keep: str) -> None:
    """Remove ``.OUT.h5.<random>.partial`` files of killed ``--overwrite`` runs beside ``final``.

    A temporary file a live run still writes is locked by HDF5 and kept, and so is ``keep``.
    """
    directory = os.path.dirname(os.path.abspath(final))
    prefix = f".{os.path.basename(final)}."
    for name in os.listdir(directory):
        stale = os.path.join(directory, name)
        if (name.startswith(prefix) and name.endswith(".partial") and stale != os.path.abspath(keep)
                and not is_being_written(stale)):
            try:
                os.remove(stale)
            except FileNotFoundError:  # another run cleaned it up first
                pass

def _pending_is_final(iteration: int) -> bool:
    """Whether the exception propagating now (if any) left the last checkpoint's arrays alone."""
    exc = sys.exc_info()[1]
    if exc is None:
        return True
    return getattr(exc, "step", None) == iteration  # the loop's Interrupted, after this checkpoint

def truncate_to(path: str, n_saves: int, t: float | None = None) -> None:
    """Drop saves beyond the first ``n_saves``, and events after time ``t`` (resuming from a checkpoint)."""
    with h5py.File(path, "a") as f:
        for group in ("scales", "tasks"):
            for ds in f[group].values():
                if ds.shape[0] > n_saves:
                    ds.resize(n_saves, axis=0)
        events = f.get("events")
        if t is not None and isinstance(events, h5py.Group):
            for ds in events.values():
                keep = int(np.searchsorted(ds[:, 0], t, side="right"))
                if ds.shape[0] > keep:
                    ds.resize(keep, axis=0)


__all__ = ['CHECKPOINT_INTERVAL', 'HDF5Writer', 'SPACE_MARGIN', 'free_bytes', 'is_no_space', 'temp_file_beside', 'truncate_to']
