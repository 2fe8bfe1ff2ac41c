"""What a run file is, and who holds it (docs/file-format.md).

The names of a run file's scales, where its sidecar checkpoint lives, the
HDF5 locks that say whether another process writes or reads it, and
:func:`run_file_status`: the one classification of a file at a run's output
path (missing, unstarted, busy, unreadable, or readable with its status) that
``--resume``, sweeps and ``meanfield run`` share.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

import h5py

from ..errors import ParameterError

#: The scales every save records (``/scales/<name>``, one row per save).
SCALES = ("sim_time", "iteration", "oracle_calls", "wall_time")

#: Suffix of the sidecar checkpoint file of a running run (``OUT.h5`` -> ``OUT.h5.ckpt``).
CHECKPOINT_SUFFIX = ".ckpt"

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

def _config_of(f) -> dict | None:
    """The parameters stored in an open run file (None if missing or not JSON)."""
    try:
        return json.loads(f.attrs["config"])
    except (KeyError, TypeError, ValueError):
        return None

@dataclass(frozen=True)
class RunFileStatus:
    """What is at a run's output path (:func:`run_file_status`).

    Attributes
    ----------
    kind : {"missing", "unstarted", "busy", "unreadable", "readable"}
        No file; what a run killed before its first save left (safe to replace);
        a file another process writes; a file that cannot be read; a run file.
    status : str
        The run's ``status`` attribute ("" unless readable).
    config : dict or None
        Its stored parameters (readable files).
    reason : str
        Why it cannot be read, in a few words ("" unless unreadable).
    """

    kind: str
    status: str = ""
    config: dict | None = None
    reason: str = ""


def run_file_status(path) -> RunFileStatus:
    """Classify the file at ``path`` without changing it (see :class:`RunFileStatus`)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        return RunFileStatus("missing")
    if is_unstarted(path):
        return RunFileStatus("unstarted")
    try:
        with h5py.File(path, "r") as f:
            status = f.attrs.get("status", "")
            status = status.decode() if isinstance(status, bytes) else str(status)
            return RunFileStatus("readable", status, _config_of(f))
    except (OSError, KeyError, RuntimeError) as exc:  # RuntimeError, KeyError: h5py, damaged inside
        # HDF5 locks a file while it is written; a killed writer's lock goes with it
        if is_being_written(path):
            return RunFileStatus("busy")
        return RunFileStatus("unreadable", reason=unreadable_reason(path, exc))


__all__ = ['CHECKPOINT_SUFFIX', 'HDF5_SIGNATURE', 'RunFileStatus', 'SCALES', 'check_output_path', 'checkpoint_path', 'is_being_written', 'is_open_elsewhere', 'is_unstarted', 'run_file_status', 'unreadable_reason']
