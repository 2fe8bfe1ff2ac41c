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

Every save dataset carries HDF5's fletcher32 checksum and every checkpoint a
CRC-32 (``attrs["checksum"]``), so data damaged on disk is refused rather than
read. Before each save and sidecar write the free space is checked
(:data:`SPACE_MARGIN` to spare): a full disk stops the run with
:class:`~meanfield.errors.NoSpaceError` before HDF5 could be left with a write
it cannot finish. Writers never truncate or replace a file another process
writes (HDF5's ``flock``, see :func:`is_being_written`).

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
import zlib
from collections.abc import MutableMapping

import h5py
import numpy as np

from ..errors import NoSpaceError, ParameterError
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


def _state_bytes(state: dict, integrator_state=None) -> int:
    arrays = [*state.values(), *(integrator_state or {}).values()]
    return sum(np.asarray(a).nbytes for a in arrays if a is not None)


def checkpoint_path(path) -> str:
    """Path of the sidecar checkpoint of run file ``path`` (``OUT.h5`` -> ``OUT.h5.ckpt``)."""
    return os.fspath(path) + CHECKPOINT_SUFFIX


#: The first bytes of every HDF5 file.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: An unreadable file smaller than this cannot have held a save (the first one allocates
#: chunks of 8 KiB for each scalar): it is what a run killed as it created its file leaves.
_STUB_BYTES = 16 * 1024


def _lock_refused(path, exclusive: bool) -> bool:
    """Whether another process's HDF5 lock (``flock``) on ``path`` refuses a shared or an exclusive one.

    False where there are no such locks (``HDF5_USE_FILE_LOCKING=FALSE``, file
    systems without ``flock``) or no such file.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: HDF5 does not lock there either
        return False
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def is_being_written(path) -> bool:
    """Whether a process holds ``path`` open for writing (HDF5's exclusive lock on it).

    HDF5 locks a file with ``flock``: exclusive for a writer, shared for a
    reader. A shared lock that cannot be had means a writer (a reader's error
    text is no guide: HDF5's "truncated file ... sblock" message contains "lock"
    too).
    """
    return _lock_refused(path, exclusive=False)


def is_open_elsewhere(path) -> bool:
    """Whether another process holds ``path`` open at all, reading or writing (HDF5 would refuse
    this process a writer's lock)."""
    return _lock_refused(path, exclusive=True)


def unreadable_reason(path, exc: BaseException) -> str:
    """Why ``path`` cannot be opened, in a few words: empty, truncated, not HDF5, HDF5's message."""
    path = os.fspath(path)
    size = os.path.getsize(path) if os.path.exists(path) else 0
    if size == 0:
        return "an empty file (0 bytes)"
    with open(path, "rb") as fh:
        head = fh.read(len(HDF5_SIGNATURE))
    text = " ".join(str(exc).split())
    if head != HDF5_SIGNATURE and "signature" in text:
        return f"not an HDF5 file ({size} bytes)"
    if "filter returned failure" in text or "Fletcher32" in text or "checksum" in text:
        return ("a damaged HDF5 file (a checksum does not match: its data changed after it was "
                "written)")
    if "truncated file" in text:
        return f"a truncated HDF5 file ({size} bytes; damaged, or a run killed while creating it)"
    return f"a damaged HDF5 file ({text[:160]})"


def is_unstarted(path) -> bool:
    """Whether ``path`` is what a run killed before its first save leaves, safe to replace.

    That is a file no process is writing, without a sidecar checkpoint, which
    is empty, or a short unreadable HDF5 file (killed within a millisecond of
    its creation), or a run file with no save and no checkpoint whose status is
    "running" or unset. A plain re-run replaces it without ``--overwrite`` and
    ``--resume`` starts it again.
    """
    path = os.fspath(path)
    if not os.path.isfile(path) or os.path.exists(checkpoint_path(path)) or is_being_written(path):
        return False
    size = os.path.getsize(path)
    if size == 0:
        return True
    try:
        f = h5py.File(path, "r")
    except OSError:
        with open(path, "rb") as fh:
            return size < _STUB_BYTES and fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    with f:
        status = f.attrs.get("status", "running")
        status = status.decode() if isinstance(status, bytes) else str(status)
        saves = f.get("scales/sim_time")
        return (status == "running" and (saves is None or saves.shape[0] == 0)
                and "checkpoint" not in f)


def check_output_path(path, key: str = "output.path", overwrite: bool = False,
                      overwrite_hint: str = "--overwrite") -> None:
    """Raise ParameterError unless ``path`` can be written as a new (or, with ``overwrite``, a replaced) file.

    Writability is tested by creating (and removing) a temporary file in the
    target directory, so nothing existing is touched. A file another process is
    writing is never replaced; a file a run killed before its first save left
    (:func:`is_unstarted`) is replaced without ``overwrite``.

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
    if os.path.exists(path) and is_being_written(path):
        raise ParameterError(key, "a file no other process is writing (a run is writing it: wait "
                             "for it, or stop it with Ctrl-C)", path)
    if os.path.exists(path) and not overwrite and not is_unstarted(path):
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
                                              chunks=chunk, fletcher32=CHECKSUMS)
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


#: Whether new files carry checksums: HDF5's fletcher32 filter on every save dataset, a CRC-32
#: of each checkpoint (``attrs["checksum"]``). Files without them (written before) read as before.
CHECKSUMS = True


def _checkpoint_checksum(state: dict, attrs: dict, integrator_state=None) -> str:
    """CRC-32 of a checkpoint's arrays (names, dtypes, shapes, bytes) and counters."""
    crc = 0
    for prefix, arrays in (("state", state), ("integrator", integrator_state or {})):
        for name in sorted(arrays):
            if arrays[name] is None:
                continue
            a = np.ascontiguousarray(arrays[name])
            crc = zlib.crc32(f"{prefix}/{name}:{a.dtype.str}:{a.shape};".encode(), crc)
            crc = zlib.crc32(a.reshape(-1).view(np.uint8) if a.size else b"", crc)
    meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in attrs.items()
            if k in ("t", "iteration", "oracle_calls", "n_saves")}
    crc = zlib.crc32(json.dumps(meta, sort_keys=True).encode(), crc)
    return f"crc32:{crc:08x}"


def _write_checkpoint_group(g, state: dict, attrs: dict, integrator_state=None) -> None:
    """Fill an HDF5 group with a checkpoint: one dataset per state array, integrator/*, ``attrs``.

    Its checksum (:func:`_checkpoint_checksum`) is written last, so a checkpoint
    cut short or changed on disk afterwards does not match it.
    """
    if "checksum" in g.attrs:
        del g.attrs["checksum"]
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
        if k != "checksum":
            g.attrs[k] = v
    if CHECKSUMS:
        g.attrs["checksum"] = _checkpoint_checksum(state, attrs, integrator_state)


def _read_checkpoint_group(g) -> dict:
    ckpt = {k: g[k][...] for k in g if isinstance(g[k], h5py.Dataset)}
    ckpt["state"] = dict(ckpt)
    if "integrator" in g:
        gi = g["integrator"]
        ckpt["integrator"] = {k: (gi[k][()] if gi[k].ndim == 0 else gi[k][...]) for k in gi}
    ckpt.update({k: g.attrs[k] for k in g.attrs})
    stored = ckpt.pop("checksum", None)  # checkpoints written before checksums have none
    if stored is not None:
        stored = stored.decode() if isinstance(stored, bytes) else str(stored)
        if stored != _checkpoint_checksum(ckpt["state"], ckpt, ckpt.get("integrator")):
            raise ParameterError("(checkpoint)", "an intact checkpoint (its checksum does not "
                                 "match: the file was damaged after it was written)",
                                 f"{g.file.filename}:{g.name}")
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
    try:
        with h5py.File(tmp, "w") as f:
            _write_checkpoint_group(f.create_group("checkpoint"), state, attrs, integrator_state)
            f.attrs["complete"] = True
        _fsync(tmp)
    except BaseException:  # a full disk, a second Ctrl-C: the previous sidecar stays the checkpoint
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
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
