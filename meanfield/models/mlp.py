"""Token-wise MLP fields and per-layer weight files (docs/mlp-block.md).

A transformer block is attention followed by a token-wise MLP,

    MLP(x) = W2 act(W1 x + b1) + b2,    W1 (h, d), b1 (h,), W2 (d, h), b2 (d,),

applied to every token independently (no interaction: it costs no oracle
call). :class:`TokenMLP` evaluates it for all N tokens at once as two BLAS
products ``(N, d) @ (d, h)`` and ``(N, h) @ (h, d)``; its weights may carry a
leading layer axis ``(L, ...)`` (one MLP per layer of a trained network).
:func:`load_layered_matrix` reads the attention matrices ``A``, ``V`` of the
softmax model from ``.npy`` / ``.npz`` files with shape ``(d, d)`` or
``(L, d, d)``. Every bad input is a :class:`~meanfield.errors.ParameterError`
naming the key, the file and the array.
"""

from __future__ import annotations

import math
import os
import zipfile

import numpy as np
from scipy.special import erf

from .._kernels._config import TOKENWISE_SERIAL_BELOW, serial_if_small
from .._kernels.activations import bias_gelu_tanh
from ..errors import ParameterError, check_real
from ..schema import Derived, Key, Kind, PerOwner
from ._params import MODEL, config_path

#: Where the first-order MLP sub-step sits: after attention (lie) or half before, half after (strang).
SPLITTINGS = ("lie", "strang")
_NUMBER = Kind("a finite number")
#: ``[model]`` keys of the MLP sub-block (handled by :func:`meanfield.models.make_model`).
MLP_KEYS = MODEL.declare(
    Key("mlp", Kind("an .npz weight file"), Derived("none: attention only"),
        "token-wise MLP weights (W1, b1, W2, b2; leading layer axis L optional)"),
    Key("mlp_activation", Kind("an activation name"), PerOwner({"softmax": "gelu", "sphere": "gelu",
                                                                "network": "gelu_tanh"}),
        "gelu | gelu_tanh | relu | tanh"),
    # the Nesterov parameters of the accelerated MLP sub-step (defaults of the SympFormer code)
    Key("mlp_mu", _NUMBER, 0.9, "Nesterov MLP sub-step: mu"),
    Key("mlp_beta", _NUMBER, 0.9, "Nesterov MLP sub-step: beta"),
    Key("mlp_gamma", _NUMBER, 1.0, "Nesterov MLP sub-step: gamma"),
    Key("mlp_splitting", Kind(f"one of {list(SPLITTINGS)}"), "lie",
        "first-order blocks: MLP after attention (lie) or around it (strang)"),
    owners=("softmax", "sphere"))
#: Nesterov parameters of the accelerated MLP sub-step (their defaults are the schema's).
NESTEROV_DEFAULTS = {k: MODEL.default(k) for k in ("mlp_mu", "mlp_beta", "mlp_gamma")}
MODEL.accept("network", "mlp_activation", *NESTEROV_DEFAULTS)

_SQRT_HALF = 1.0 / math.sqrt(2.0)


def _gelu(u: np.ndarray) -> np.ndarray:
    """GELU, exact erf form: u Phi(u) = u (1 + erf(u / sqrt 2)) / 2 (in place)."""
    g = erf(u * _SQRT_HALF)
    g += 1.0
    g *= 0.5
    u *= g
    return u


def _relu(u: np.ndarray) -> np.ndarray:
    return np.maximum(u, 0.0, out=u)


def _tanh(u: np.ndarray) -> np.ndarray:
    return np.tanh(u, out=u)


def _gelu_tanh(u: np.ndarray) -> np.ndarray:
    """GPT-2's gelu_new, ``0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3)))`` (in place)."""
    c = u.dtype.type(math.sqrt(2.0 / math.pi))
    t = u * u
    t *= u.dtype.type(0.044715)
    t += 1.0
    t *= u
    t *= c
    np.tanh(t, out=t)
    t += 1.0
    t *= 0.5
    u *= t
    return u


#: Activation names -> in-place functions of the hidden pre-activations ``(N, h)``.
ACTIVATIONS = {"gelu": _gelu, "gelu_tanh": _gelu_tanh, "relu": _relu, "tanh": _tanh}
#: Activations with a kernel adding the bias and applying them in one pass, ``kernel(U (N, h), b (h,))``.
FUSED_BIAS = {"gelu_tanh": bias_gelu_tanh}


def resolve_path(path, base_dir: str | None, key: str) -> str:
    """``path`` relative to the parameter file's folder; ParameterError unless it is a readable file."""
    if not isinstance(path, str) or not path:
        raise ParameterError(key, "a file name (.npz, or .npy for a single matrix)", path)
    full = config_path(path, base_dir)
    if not os.path.isfile(full):
        raise ParameterError(key, "an existing file", full)
    return full


def _read_arrays(full: str, key: str, single: str) -> dict:
    """``{name: array}`` of an .npz file, or ``{single: array}`` of an .npy file."""
    try:
        with open(full, "rb") as fh:
            magic = fh.read(6)
        if magic[:2] == b"PK":
            with np.load(full, allow_pickle=False) as z:
                return {name: np.asarray(z[name]) for name in z.files}
        if magic == b"\x93NUMPY":
            return {single: np.load(full, allow_pickle=False)}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ParameterError(key, "a readable .npz / .npy file", f"{full} ({exc})") from None
    raise ParameterError(key, "a NumPy .npz or .npy file", full)


def _named(key: str, full: str, name: str) -> str:
    """The key of an error about array ``name`` of file ``full``: names the key, the file and the array."""
    return f"{key} = {full!r}, array {name}"


def _numeric(arr, key: str, full: str, name: str) -> np.ndarray:
    if arr.dtype.kind not in "iuf":
        raise ParameterError(_named(key, full, name), "real numbers", f"dtype {arr.dtype}")
    out = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise ParameterError(_named(key, full, name), "finite numbers", "NaN or inf")
    return out


def load_layered_matrix(value, d: int, key: str, base_dir: str | None):
    """A ``(d, d)`` or ``(L, d, d)`` matrix from an .npy file (or an .npz holding one array).

    Returns
    -------
    ((L, d, d) float64 array, absolute path), or None when ``value`` is not a
    file name (``"identity"``, a number, a nested list: parsed by the model).
    """
    if not (isinstance(value, str) and value.lower().endswith((".npy", ".npz"))):
        return None
    full = resolve_path(value, base_dir, key)
    name = key.split(".")[-1]
    arrays = _read_arrays(full, key, name)
    if name in arrays:
        arr = arrays[name]
    elif len(arrays) == 1:
        arr = next(iter(arrays.values()))
    else:
        raise ParameterError(_named(key, full, name), f"an array named {name} (or a single array)",
                             f"arrays {sorted(arrays)}")
    arr = _numeric(arr, key, full, name)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (d, d) or arr.shape[0] < 1:
        raise ParameterError(_named(key, full, name), f"shape ({d}, {d}) or (L, {d}, {d})",
                             f"shape {arr.shape}")
    return arr, full


class TokenMLP:
    """The token-wise MLP ``W2 act(W1 x + b1) + b2`` of every layer, evaluated by BLAS.

    Parameters
    ----------
    W1 : (L, h, d) array
    b1 : (L, h) array
    W2 : (L, d, h) array
    b2 : (L, d) array
    activation : {"gelu", "relu", "tanh"}
    layered : bool
        Whether the file gave a leading layer axis (``n_layers`` may still be 1).
    path : str
        The weight file (for descriptions and errors).
    """

    def __init__(self, W1, b1, W2, b2, activation="gelu", layered=False, path=""):
        self.activation = activation
        self._act = ACTIVATIONS[activation]
        self.layered = bool(layered)
        self.path = path
        # transposed once so that each layer's products are x @ W1t and u @ W2t (BLAS gemm, row-major)
        self.W1t = np.ascontiguousarray(np.swapaxes(W1, 1, 2))
        self.W2t = np.ascontiguousarray(np.swapaxes(W2, 1, 2))
        self.b1 = np.ascontiguousarray(b1)
        self.b2 = np.ascontiguousarray(b2)
        self.n_layers, self.d, self.h = W1.shape[0], W1.shape[2], W1.shape[1]
        self._cache = {}
        self._typed = {}

    @classmethod
    def from_file(cls, value, d: int, activation, base_dir: str | None = None) -> TokenMLP:
        """Read ``W1, b1, W2, b2`` (each optionally with a leading layer axis L) from an .npz file.

        Raises
        ------
        ParameterError
            A missing file or array, a wrong shape, non-finite or non-real
            entries (naming the file and the array), an unknown activation.
        """
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ParameterError("model.mlp_activation", f"one of {list(ACTIVATIONS)}", activation)
        key = "model.mlp"
        full = resolve_path(value, base_dir, key)
        arrays = _read_arrays(full, key, "W1")
        names = ("W1", "b1", "W2", "b2")
        missing = [n for n in names if n not in arrays]
        if missing:
            raise ParameterError(_named(key, full, missing[0]), "arrays W1 (h, d), b1 (h,), W2 (d, h), "
                                 "b2 (d,) in an .npz file", f"no array {missing[0]} (has {sorted(arrays)})")
        W1, b1, W2, b2 = (_numeric(arrays[n], key, full, n) for n in names)
        layered = W1.ndim == 3
        if not layered:
            W1, b1, W2, b2 = W1[None], b1[None], W2[None], b2[None]
        L = W1.shape[0]
        h = W1.shape[1] if W1.ndim == 3 else -1
        lead = f"{L}, " if layered else ""
        shapes = {"W1": (L, h, d), "b1": (L, h), "W2": (L, d, h), "b2": (L, d)}
        for n, arr in zip(names, (W1, b1, W2, b2)):
            if arr.shape != shapes[n] or h < 1 or L < 1:
                want = {"W1": f"({lead}h, {d})", "b1": f"({lead}h)" if lead else "(h,)",
                        "W2": f"({lead}{d}, h)", "b2": f"({lead}{d})" if lead else f"({d},)"}[n]
                raise ParameterError(_named(key, full, n), f"shape {want} (d = {d}"
                                     + (f", h = {h}" if h >= 1 and n != "W1" else "") + ")",
                                     f"shape {arrays[n].shape}")
        return cls(W1, b1, W2, b2, activation, layered, full)

    def _work(self, n: int, dtype) -> np.ndarray:
        u = self._cache.get((n, dtype))
        if u is None:
            u = self._cache[(n, dtype)] = np.empty((n, self.h), dtype)
        return u

    def _weights(self, dtype) -> tuple:
        """The weights in the state's dtype (converted once: float32 runs multiply in float32)."""
        w = self._typed.get(dtype)
        if w is None:
            w = self._typed[dtype] = tuple(np.ascontiguousarray(a, dtype=dtype)
                                           for a in (self.W1t, self.b1, self.W2t, self.b2))
        return w

    def __call__(self, x: np.ndarray, layer: int, out: np.ndarray) -> np.ndarray:
        """``out = MLP_layer(x)`` for every row of ``x (N, d)``; ``out (N, d)`` must not alias ``x``."""
        W1t, b1, W2t, b2 = self._weights(x.dtype)
        u = self._work(x.shape[0], x.dtype)
        np.matmul(x, W1t[layer], out=u)
        fused = FUSED_BIAS.get(self.activation)
        if fused is None:
            u += b1[layer]
            self._act(u)
        else:
            with serial_if_small(u.size, TOKENWISE_SERIAL_BELOW):
                fused(u, b1[layer])
        np.matmul(u, W2t[layer], out=out)
        out += b2[layer]
        return out


def nesterov_params(p: dict):
    """``mlp_mu, mlp_beta, mlp_gamma`` of ``[model]`` (schema defaults 0.9, 0.9, 1.0), checked finite.

    Returns the section as the schema types it (read ``.mlp_mu``, ``.mlp_beta``, ``.mlp_gamma``).
    """
    s = MODEL.read(p, "network")  # the keys every owner of the Nesterov sub-step shares
    for k in NESTEROV_DEFAULTS:
        check_real(f"model.{k}", getattr(s, k), "a finite number")
    return s


def splitting_of(p: dict, accelerated: bool) -> str:
    """``mlp_splitting`` ("lie" default); "strang" is for first-order dynamics only."""
    s = MODEL.read(p, "softmax").mlp_splitting
    if not isinstance(s, str) or s not in SPLITTINGS:
        raise ParameterError("model.mlp_splitting", f"one of {list(SPLITTINGS)}", s)
    if accelerated and s != "lie":
        raise ParameterError("model.mlp_splitting", '"lie" for accelerated dynamics (the Nesterov MLP '
                             "sub-step follows the attention step)", s)
    return s
