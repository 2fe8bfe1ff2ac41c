"""Initial laws for positions and momenta (seeded, reproducible).

Positions: ``LAWS[name](section, d, n, rng) -> (n, d) array``.
Momenta:   ``MOMENTA[name](section, x, rng) -> (n, d) array``.

Later issues add elliptical laws and sphere laws by registering them here.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import ParameterError
from .models._params import as_matrix, as_vector


def _psd_factor(cov: np.ndarray, key: str) -> np.ndarray:
    """Return F with F F^T = cov for a symmetric positive semidefinite cov; ``(d, d)``."""
    if np.abs(cov - cov.T).max() > 1e-12 * max(1.0, np.abs(cov).max()):
        raise ParameterError(key, "a symmetric positive semidefinite matrix", "a non-symmetric matrix")
    w, V = np.linalg.eigh(cov)
    if w.min() < -1e-12 * max(1.0, abs(w).max()):
        raise ParameterError(
            key, "a positive semidefinite matrix", f"smallest eigenvalue {w.min():.3g}"
        )
    return V * np.sqrt(np.clip(w, 0.0, None))


def _n_of(section) -> int:
    n = section.get("n", 1000)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ParameterError("initial.n", "a positive integer", n)
    return n


def gaussian(section: dict, d: int, rng) -> np.ndarray:
    """x_i ~ N(mean, cov) i.i.d.; returns ``(n, d)``."""
    n = _n_of(section)
    mean = as_vector(section.get("mean", 0.0), d, "initial.mean")
    F = _psd_factor(as_matrix(section.get("cov", "identity"), d, "initial.cov"), "initial.cov")
    return mean + rng.standard_normal((n, d)) @ F.T


def load_array(path: str, key: str, d: int, n: int | None, base_dir: str | None = None) -> np.ndarray:
    """Load an ``(n, d)`` state from ``.npy`` or from a meanfield HDF5 file (its last saved state).

    For HDF5, ``key`` ending in ``momentum_path`` reads ``y``, otherwise ``x``.
    """
    if not isinstance(path, str) or not path:
        raise ParameterError(key, "a file path", path)
    full = path if os.path.isabs(path) or base_dir is None else os.path.join(base_dir, path)
    if not os.path.exists(full):
        raise ParameterError(key, "an existing .npy or .h5 file", path)
    which = "y" if key.endswith("momentum_path") else "x"
    try:
        if full.endswith(".npy"):
            arr = np.load(full, allow_pickle=False)
        else:
            from .io.hdf5 import last_state

            arr = last_state(full, which)
    except ParameterError:
        raise
    except Exception as exc:  # unreadable file: say so in one line
        raise ParameterError(key, "a readable .npy or meanfield .h5 file", f"{path} ({exc})") from None
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != d or (n is not None and arr.shape[0] != n):
        want = f"({n if n is not None else 'n'}, {d})"
        raise ParameterError(key, f"an array of shape {want}", f"shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(key, "finite values", "non-finite entries")
    return arr


def from_file(section: dict, d: int, rng) -> np.ndarray:
    """Positions from ``path`` (.npy of shape (n, d), or a meanfield HDF5 file)."""
    n = section.get("n")
    return load_array(section.get("path"), "initial.path", d, n, section.get("_base_dir"))


#: Position laws by name.
LAWS = {"gaussian": gaussian, "file": from_file}
#: Extra keys each law reads from ``[initial]``.
LAW_KEYS = {"gaussian": ("mean", "cov"), "file": ("path",)}


def momentum_zero(section, x, rng):
    return np.zeros_like(x)


def momentum_affine(section, x, rng):
    """y_i = S x_i + b (momentum = gradient of a quadratic); ``(n, d)``."""
    d = x.shape[1]
    S = as_matrix(section.get("S", "zero"), d, "initial.S")
    b = as_vector(section.get("b", 0.0), d, "initial.b")
    return x @ S.T + b


def momentum_gaussian(section, x, rng):
    """y_i ~ N(0, momentum_scale^2 I) i.i.d.; ``(n, d)``."""
    s = section.get("momentum_scale", 1.0)
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not np.isfinite(s) or s < 0:
        raise ParameterError("initial.momentum_scale", "a finite number >= 0", s)
    return float(s) * rng.standard_normal(x.shape)


def momentum_file(section, x, rng):
    return load_array(
        section.get("momentum_path"), "initial.momentum_path", x.shape[1], x.shape[0],
        section.get("_base_dir"),
    )


MOMENTA = {
    "zero": momentum_zero,
    "affine": momentum_affine,
    "gaussian": momentum_gaussian,
    "file": momentum_file,
}
MOMENTUM_KEYS = {"zero": (), "affine": ("S", "b"), "gaussian": ("momentum_scale",), "file": ("momentum_path",)}
COMMON_KEYS = ("law", "n", "seed", "momentum")


def initial_state(section: dict, d: int, accelerated: bool):
    """Sample ``(x, y)`` from the ``[initial]`` section; ``y`` is None for first-order runs.

    Returns
    -------
    x : (n, d) float64
    y : (n, d) float64 or None
    """
    law = section.get("law", "gaussian")
    if law not in LAWS:
        raise ParameterError("initial.law", f"one of {sorted(LAWS)}", law)
    mom = section.get("momentum", "zero")
    if mom not in MOMENTA:
        raise ParameterError("initial.momentum", f"one of {sorted(MOMENTA)}", mom)
    allowed = set(COMMON_KEYS) | set(LAW_KEYS[law]) | set(MOMENTUM_KEYS[mom])
    for key in section:
        if key not in allowed and not key.startswith("_"):
            raise ParameterError(
                f"initial.{key}",
                f"a key for law {law!r} with momentum {mom!r} (valid: {', '.join(sorted(allowed))})",
                key,
            )
    seed = section.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ParameterError("initial.seed", "an integer >= 0", seed)
    rng = np.random.default_rng(seed)
    x = LAWS[law](section, d, rng)
    y = MOMENTA[mom](section, x, rng) if accelerated else None
    return np.ascontiguousarray(x), (None if y is None else np.ascontiguousarray(y))
