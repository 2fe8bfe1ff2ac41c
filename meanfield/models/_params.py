"""Parsing and validation of matrix/vector parameters shared by the models."""

from __future__ import annotations

import numbers
import os

import numpy as np

from .. import schema
from ..errors import ParameterError
from ..schema import Derived, Flag, Key, Kind, PerOwner

#: The ``[model]`` section of the schema: the keys every model shares are declared here, each
#: model module accepts them and declares its own.
MODEL = schema.section("model")
_MATRIX = Kind('"identity", "zero", a number (times the identity), a length-d diagonal or a d x d list')
MODEL.declare(
    Key("name", Kind("a registered model name"), "bilinear", "bilinear | softmax | sphere"),
    Key("dynamics", Kind("first_order or accelerated"),
        PerOwner({"bilinear": "accelerated", "softmax": "accelerated", "sphere": "accelerated",
                  "network": "first_order"}), "first_order | accelerated (networks: their forward pass)"),
    Key("d", Kind("a positive integer (each model checks its range)"), PerOwner({"network": Derived("from the weight file")}), "dimension of a token"),
    Key("causal", Flag(), PerOwner({"bilinear": False, "softmax": False, "sphere": False, "network": True}),
        "token i sees tokens j <= i only"),
    Key("normalized", Flag(), True, "SA (softmax normalized by z_i) or USA (false: first-order only)"),
    Key("A", _MATRIX, "identity", "kernel / logit matrix: x'^T A x", "(d, d)"),
    Key("B", _MATRIX, "identity", "value factor: V = B A", "(d, d)"),
    Key("V", _MATRIX, PerOwner({"softmax": Derived("B A"), "sphere": "identity"}),
        "value matrix (first-order runs)", "(d, d)"),
    Key("Q", _MATRIX, PerOwner({"bilinear": "identity", "softmax": "zero", "sphere": "identity"}),
        "bilinear/softmax: confining potential W(x) = 1/2 (x - m)^T Q (x - m); sphere: query matrix", "(d, d)"),
    Key("K", _MATRIX, "identity", "key matrix (A = beta Q^T K)", "(d, d)"),
    Key("m", Kind("a number or a list of d numbers"), 0.0, "centre of the potential W", "(d,)"),
)


def config_path(path: str, base_dir: str | None) -> str:
    """A file name as a parameter file means it: relative to the file's folder ``base_dir``.

    Absolute names, and any name when there is no parameter file (``base_dir`` None), stay as given.
    """
    return path if os.path.isabs(path) or base_dir is None else os.path.join(base_dir, path)


def _has_bool(value) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_bool(v) for v in value)
    return False


def _numbers(value, key: str, expected: str) -> np.ndarray:
    """``value`` (a nested list) as a float64 array; ParameterError(key, expected) for booleans or non-numbers."""
    if _has_bool(value):
        raise ParameterError(key, f"{expected} (not booleans)", value)
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(key, expected, value) from None


def as_matrix(value, d: int, key: str) -> np.ndarray:
    """Read a d x d matrix given as ``"identity"``, a number (times identity) or a nested list.

    Returns
    -------
    (d, d) float64 array
    """
    if isinstance(value, str):
        if value.strip().lower() in ("identity", "eye", "i"):
            return np.eye(d)
        if value.strip().lower() in ("zero", "zeros"):
            return np.zeros((d, d))
        raise ParameterError(key, f'"identity", "zero", a number or a {d}x{d} list', value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not np.isfinite(value):
            raise ParameterError(key, "a finite number", value)
        arr = float(value) * np.eye(d)
    else:
        arr = _numbers(value, key, f"a {d}x{d} list of numbers")
        if arr.ndim == 1 and arr.shape == (d,):
            arr = np.diag(arr)
        if arr.shape != (d, d):
            raise ParameterError(
                key, f"a {d}x{d} matrix (or 'identity', a number, a length-{d} diagonal)",
                f"shape {arr.shape}",
            )
    if not np.all(np.isfinite(arr)):
        raise ParameterError(key, "finite numbers", value)
    return arr


def as_vector(value, d: int, key: str) -> np.ndarray:
    """Read a length-d vector (a number broadcasts). Returns ``(d,)`` float64."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        arr = np.full(d, float(value))
    else:
        arr = _numbers(value, key, f"a list of {d} numbers")
    if arr.shape != (d,):
        raise ParameterError(key, f"a list of {d} numbers", f"shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(key, "finite numbers", value)
    return arr


def require_symmetric(M: np.ndarray, key: str, tol: float = 1e-12, expected: str = "a symmetric matrix",
                      found: str = "a non-symmetric matrix") -> None:
    """Raise ParameterError(key, expected, found) unless ``|M - M^T| <= tol max(1, |M|)`` entrywise."""
    scale = max(1.0, float(np.abs(M).max()))
    if np.abs(M - M.T).max() > tol * scale:
        raise ParameterError(key, expected, found)


def as_flag(p: dict, key: str, default: bool) -> bool:
    """``p[key]`` (or ``default``) as a bool; anything but true/false is a ParameterError on ``model.key``."""
    v = p.get(key, default)
    if not isinstance(v, bool):
        raise ParameterError(f"model.{key}", "true or false", v)
    return v


def sym(M: np.ndarray) -> np.ndarray:
    """Symmetric part (M + M^T) / 2."""
    return 0.5 * (M + M.T)
