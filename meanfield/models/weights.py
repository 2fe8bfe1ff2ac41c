"""Weight files of GPT-2-style networks (docs/models.md, "Transformer networks from weights").

One schema, read from ``.npz`` or ``.safetensors`` (the format checkpoints
are published in; :mod:`safetensors.numpy` reads it without torch). Per-layer
arrays carry a leading layer axis L; ``H`` heads of size ``d_h`` split ``d``:

======================  ===================  ===========================================
array                   shape                meaning
======================  ===================  ===========================================
ln1_g, ln1_b            (L, d)               gain and bias of the LayerNorm before attention
W_q, W_k, W_v           (L, H, d_h, d)       per-head query, key, value projections
b_q, b_k, b_v           (L, H, d_h)          their biases
W_o                     (L, d, H, d_h)       output projection, one (d, d_h) block per head
b_o                     (L, d)               its bias
ln2_g, ln2_b            (L, d)               the LayerNorm before the MLP
W1, b1                  (L, h, d), (L, h)    MLP input layer
W2, b2                  (L, d, h), (L, d)    MLP output layer
ln_f_g, ln_f_b          (d,)                 final LayerNorm (optional)
wte, wpe                (V, d), (P, d)       token and position embeddings (optional)
======================  ===================  ===========================================

Every bad file (unreadable, a truncated safetensors header, a missing array,
a wrong shape, heads not dividing d, NaN/inf, a dtype other than
float32/float64) is a one-line :class:`~meanfield.errors.ParameterError`
naming the key, the file and the array.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError

#: Per-layer arrays of the schema, in file order.
LAYER_ARRAYS = ("ln1_g", "ln1_b", "W_q", "W_k", "W_v", "b_q", "b_k", "b_v", "W_o", "b_o",
                "ln2_g", "ln2_b", "W1", "b1", "W2", "b2")
#: Optional arrays (final LayerNorm, embeddings).
OPTIONAL_ARRAYS = ("ln_f_g", "ln_f_b", "wte", "wpe")
#: File name endings read, and how.
FORMATS = (".npz", ".safetensors")


def _shapes(L: int, H: int, dh: int, d: int, h: int) -> dict:
    """Expected shape of every array of the schema (``None`` = any size on that axis)."""
    return {
        "ln1_g": (L, d), "ln1_b": (L, d), "ln2_g": (L, d), "ln2_b": (L, d),
        "W_q": (L, H, dh, d), "W_k": (L, H, dh, d), "W_v": (L, H, dh, d),
        "b_q": (L, H, dh), "b_k": (L, H, dh), "b_v": (L, H, dh),
        "W_o": (L, d, H, dh), "b_o": (L, d),
        "W1": (L, h, d), "b1": (L, h), "W2": (L, d, h), "b2": (L, d),
        "ln_f_g": (d,), "ln_f_b": (d,), "wte": (None, d), "wpe": (None, d),
    }


def _fmt(shape) -> str:
    return "(" + ", ".join("V" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _raw_arrays(full: str, key: str) -> dict:
    """``{name: array}`` of an .npz or .safetensors file, as stored (no conversion)."""
    try:
        if full.lower().endswith(".safetensors"):
            from safetensors import SafetensorError
            from safetensors.numpy import load_file

            try:
                return dict(load_file(full))
            except SafetensorError as exc:
                raise ValueError(str(exc).splitlines()[0]) from None
        with np.load(full, allow_pickle=False) as z:
            return {name: np.asarray(z[name]) for name in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        kind = "safetensors" if full.lower().endswith(".safetensors") else ".npz"
        raise ParameterError(f"{key} = {full!r}", f"a readable {kind} file", str(exc)) from None


@dataclass(frozen=True)
class NetworkWeights:
    """The arrays of a GPT-2-style network, float64, checked against the schema.

    Attributes
    ----------
    arrays : dict
        ``{name: array}`` with the shapes of the module table.
    L, H, d_h, d, h : int
        Layers, heads, head size, token dimension, MLP width.
    path : str
        The file read.
    """

    arrays: dict
    L: int
    H: int
    d_h: int
    d: int
    h: int
    path: str

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def get(self, name: str, default=None):
        """The array ``name``, or ``default`` when the file has none (optional arrays)."""
        return self.arrays.get(name, default)


def load_weights(path: str, key: str = "model.weights", d: int | None = None,
                 heads: int | None = None) -> NetworkWeights:
    """Read and validate a network weight file (.npz or .safetensors).

    Parameters
    ----------
    path : str
        The file (already resolved against the parameter file's folder).
    key : str
        The parameter key errors name.
    d, heads : int, optional
        When given, the file's token dimension and head count must equal them.

    Returns
    -------
    NetworkWeights

    Raises
    ------
    ParameterError
        One line naming ``key``, the file and the offending array.
    """
    full = os.path.abspath(path)
    if not full.lower().endswith(FORMATS):
        raise ParameterError(key, f"a weight file ending in {' or '.join(FORMATS)}", path)
    if not os.path.isfile(full):
        raise ParameterError(f"{key} = {full!r}", "an existing weight file", "no such file")
    raw = _raw_arrays(full, key)

    def where(name):
        return f"{key} = {full!r}, array {name}"

    for name in LAYER_ARRAYS:
        if name not in raw:
            raise ParameterError(where(name), "every array of the schema (docs/models.md)",
                                 f"no array {name}")
    for name, arr in raw.items():
        if name not in LAYER_ARRAYS + OPTIONAL_ARRAYS:
            continue  # extra arrays (a checkpoint's buffers) are ignored
        if arr.dtype not in (np.float32, np.float64):
            raise ParameterError(where(name), "dtype float32 or float64", f"dtype {arr.dtype}")
    Wq = raw["W_q"]
    if Wq.ndim != 4 or min(Wq.shape) < 1:
        raise ParameterError(where("W_q"), "shape (L, H, d_h, d)", f"shape {Wq.shape}")
    L, H, dh, dd = Wq.shape
    if d is not None and dd != d:
        raise ParameterError(where("W_q"), f"token dimension d = {d} (model.d) on the last axis",
                             f"shape {Wq.shape}")
    if heads is not None and H != heads:
        raise ParameterError(where("W_q"), f"{heads} heads (model.heads) on axis 1", f"shape {Wq.shape}")
    if H * dh != dd:
        raise ParameterError(where("W_q"), f"H heads of size d_h with H d_h = d (H = {H} does not divide "
                             f"d = {dd} into heads of {dh})", f"shape {Wq.shape}")
    W1 = raw["W1"]
    h = W1.shape[1] if W1.ndim == 3 else -1
    want = _shapes(L, H, dh, dd, h)
    out = {}
    for name in LAYER_ARRAYS + OPTIONAL_ARRAYS:
        if name not in raw:
            continue
        arr, shape = raw[name], want[name]
        ok = arr.ndim == len(shape) and all(s is None or a == s for a, s in zip(arr.shape, shape))
        if not ok or h < 1 or (shape[0] is None and arr.shape[0] < 1):
            raise ParameterError(where(name), f"shape {_fmt(shape)} (L = {L}, H = {H}, d_h = {dh}, "
                                 f"d = {dd}" + (f", h = {h}" if h >= 1 else "") + ")", f"shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ParameterError(where(name), "finite numbers", "NaN or inf")
        out[name] = np.ascontiguousarray(arr, dtype=np.float64)
    if ("ln_f_g" in out) != ("ln_f_b" in out):
        missing = "ln_f_b" if "ln_f_g" in out else "ln_f_g"
        raise ParameterError(where(missing), "both ln_f_g and ln_f_b (or neither)", f"no array {missing}")
    return NetworkWeights(out, L, H, dh, dd, h, full)


def save_weights(path: str, arrays: dict) -> None:
    """Write ``{name: array}`` as .npz or .safetensors (by the file name's ending)."""
    if path.lower().endswith(".safetensors"):
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, path)
    else:
        np.savez(path, **arrays)


__all__ = ["LAYER_ARRAYS", "NetworkWeights", "OPTIONAL_ARRAYS", "load_weights", "save_weights"]
