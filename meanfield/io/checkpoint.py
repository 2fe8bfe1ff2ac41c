"""Checkpoints of a run file: the state a run resumes from (docs/file-format.md).

While a run goes, checkpoints are written to a sidecar ``OUT.h5.ckpt``
(written to ``.tmp``, fsync'ed, renamed over: always one complete state);
when the writer closes, the last one is copied into ``/checkpoint`` of the run
file. Every checkpoint carries a CRC-32 of its arrays and counters, so one
damaged on disk is refused rather than resumed from. :func:`read_checkpoint`
finds the newest.
"""

from __future__ import annotations

import json
import os
import zlib

import h5py
import numpy as np

from ..errors import ParameterError
from .runfile import checkpoint_path


def _state_bytes(state: dict, integrator_state=None) -> int:
    arrays = [*state.values(), *(integrator_state or {}).values()]
    return sum(np.asarray(a).nbytes for a in arrays if a is not None)

def _remove_sidecars(ckpt_path: str) -> None:
    for stale in (ckpt_path, ckpt_path + ".tmp"):
        if os.path.exists(stale):
            os.remove(stale)

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


__all__ = ['CHECKSUMS', 'read_checkpoint', 'write_checkpoint_file']
