"""Initial laws for positions and momenta (seeded, reproducible).

Positions: ``LAWS[name](s, d, rng, where) -> (n, d) array``.
Momenta:   ``MOMENTA[name](s, x, rng, where) -> (n, d) array``.

``s`` is the ``[initial]`` section as the schema types it (defaults filled in: a law reads
attributes, never a key by string); ``where`` (:class:`Where`) holds the parameter file's
folder and a network's token embedding.

Later issues add elliptical laws and sphere laws by registering them here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import schema
from .errors import ParameterError, check_real, is_real
from .models._params import as_matrix, as_vector, config_path, require_symmetric
from .schema import MISSING, Derived, Key, Kind, PerOwner


def _psd_factor(cov: np.ndarray, key: str) -> np.ndarray:
    """Return F with F F^T = cov for a symmetric positive semidefinite cov; ``(d, d)``."""
    require_symmetric(cov, key, expected="a symmetric positive semidefinite matrix")
    w, V = np.linalg.eigh(cov)
    if w.min() < -1e-12 * max(1.0, abs(w).max()):
        raise ParameterError(
            key, "a positive semidefinite matrix", f"smallest eigenvalue {w.min():.3g}"
        )
    return V * np.sqrt(np.clip(w, 0.0, None))


#: Largest state a run may allocate, as a fraction of the machine's memory.
_MEMORY_FRACTION = 0.5


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 40


def memory_budget() -> float:
    """Bytes a run may hold: :data:`_MEMORY_FRACTION` of the machine's memory."""
    return _MEMORY_FRACTION * _memory_bytes()


def check_size(n: int, d: int, key: str = "initial.n") -> None:
    """Refuse states that cannot fit: x, y and a few work arrays of shape (n, d) in float64."""
    need = 6 * 8 * n * d
    if need > memory_budget():
        raise ParameterError(
            key, f"a size that fits in memory (6 x n x d x 8 bytes <= {_MEMORY_FRACTION:.0%} of "
            f"{_memory_bytes() / 2**30:.0f} GiB)", f"n = {n}, d = {d} ({need / 2**30:.3g} GiB)")


@dataclass(frozen=True)
class Where:
    """What a law reads besides its keys: the folder of relative file names, a network's ``embed``."""

    base_dir: str | None = None
    embed: object = None


def _n_of(s) -> int:
    n = s.n
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ParameterError("initial.n", "a positive integer", n)
    return n


def gaussian(s, d: int, rng, where: Where | None = None) -> np.ndarray:
    """x_i ~ N(mean, cov) i.i.d.; returns ``(n, d)``."""
    n = _n_of(s)
    mean, F = _mean_and_factor(s, d)
    return mean + rng.standard_normal((n, d)) @ F.T


def _mean_and_factor(s, d):
    mean = as_vector(s.mean, d, "initial.mean")
    F = _psd_factor(as_matrix(s.cov, d, "initial.cov"), "initial.cov")
    return mean, F


def _elliptical(s, d, rng, radii) -> np.ndarray:
    """x_i = mean + r_i F u_i with u_i uniform on S^{d-1}, F F^T = cov (the scatter matrix)."""
    mean, F = _mean_and_factor(s, d)
    n = radii.shape[0]
    u = rng.standard_normal((n, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return mean + (radii[:, None] * u) @ F.T


def student_t(s, d: int, rng, where: Where | None = None) -> np.ndarray:
    """Multivariate Student t with ``dof`` degrees of freedom, location mean, scatter cov.

    x = mean + F z / sqrt(w / dof), z ~ N(0, I), w ~ chi^2_dof. The covariance is
    dof / (dof - 2) cov (finite for dof > 2). Returns ``(n, d)``.
    """
    n = _n_of(s)
    dof = s.dof
    dof = check_real("initial.dof", dof, "a finite number > 0", lambda v: v > 0)
    mean, F = _mean_and_factor(s, d)
    z = rng.standard_normal((n, d))
    w = rng.chisquare(float(dof), size=n)
    return mean + (z / np.sqrt(w / dof)[:, None]) @ F.T


def uniform_ellipsoid(s, d: int, rng, where: Where | None = None) -> np.ndarray:
    """Uniform in the ellipsoid {(x - mean)^T cov^{-1} (x - mean) <= 1}; covariance cov / (d + 2)."""
    n = _n_of(s)
    radii = rng.random(n) ** (1.0 / d)
    return _elliptical(s, d, rng, radii)


def elliptical(s, d: int, rng, where: Where | None = None) -> np.ndarray:
    """General elliptical law: radius r ~ scipy.stats.<radial>(*radial_args), direction uniform.

    ``radial`` names a continuous distribution of scipy.stats with non-negative
    support: "chi" with radial_args = [d] is the Gaussian N(mean, cov), "uniform"
    with [0, 1] puts the radius uniformly in [0, 1], "gamma", "lognorm", ... give
    heavier or lighter tails. ``cov`` is the scatter matrix. Returns ``(n, d)``.
    """
    from scipy import stats

    n = _n_of(s)
    name = s.radial
    args = s.radial_args if s.radial_args is not None else ([d] if name == "chi" else [])
    dist = getattr(stats, name, None) if isinstance(name, str) else None
    if not isinstance(dist, stats.rv_continuous):
        raise ParameterError("initial.radial", "the name of a continuous scipy.stats distribution", name)
    if not isinstance(args, list) or not all(
        isinstance(a, (int, float)) and not isinstance(a, bool) and np.isfinite(a) for a in args
    ):
        raise ParameterError("initial.radial_args", "a list of finite numbers", args)
    try:
        radii = np.asarray(dist(*args).rvs(size=n, random_state=rng), dtype=float)
    except Exception as exc:  # scipy's own argument check
        raise ParameterError("initial.radial_args", f"valid arguments of scipy.stats.{name}",
                             f"{args} ({exc})") from None
    if not np.all(np.isfinite(radii)) or np.any(radii < 0):
        raise ParameterError("initial.radial", "a radial law with finite non-negative samples",
                             f"{name}{tuple(args)}")
    return _elliptical(s, d, rng, radii)


#: ``[initial]`` keys that name files (relative names are taken from the parameter file's folder).
FILE_KEYS = ("path", "momentum_path", "ids_path")
#: Laws whose number of tokens comes from a file.
FILE_LAWS = ("file", "tokens")


def load_array(path: str, key: str, d: int, n: int | None, base_dir: str | None = None) -> np.ndarray:
    """Load an ``(n, d)`` state from ``.npy`` or from a meanfield HDF5 file (its last saved state).

    For HDF5, ``key`` ending in ``momentum_path`` reads ``y``, otherwise ``x``.
    """
    if not isinstance(path, str) or not path:
        raise ParameterError(key, "a file path", path)
    full = config_path(path, base_dir)
    if not os.path.exists(full):
        raise ParameterError(key, "an existing .npy or .h5 file", path)
    which = "y" if key.endswith("momentum_path") else "x"
    try:
        if full.endswith(".npy"):
            arr = np.load(full, allow_pickle=False)
        else:
            from .io.reader import last_state

            arr = last_state(full, which)
    except ParameterError:
        raise
    except Exception as exc:  # unreadable file: say so in one line
        raise ParameterError(key, "a readable .npy or meanfield .h5 file", f"{path} ({exc})") from None
    if np.asarray(arr).dtype.kind not in "fiu":  # complex, bool, strings, records: not positions
        raise ParameterError(key, "an array of real numbers", f"{path} (dtype {np.asarray(arr).dtype})")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != d or (n is not None and arr.shape[0] != n):
        want = f"({n if n is not None else 'n'}, {d})"
        raise ParameterError(key, f"an array of shape {want}", f"shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(key, "finite values", "non-finite entries")
    return arr


def from_file(s, d: int, rng, where: Where | None = None) -> np.ndarray:
    """Positions from ``path`` (.npy of shape (n, d), or a meanfield HDF5 file)."""
    return load_array(s.path, "initial.path", d, s.n, (where or Where()).base_dir)


#: Position laws by name.
LAWS = {
    "gaussian": gaussian,
    "student_t": student_t,
    "uniform_ellipsoid": uniform_ellipsoid,
    "elliptical": elliptical,
    "file": from_file,
}
#: The ``[initial]`` section of the schema: every law and momentum declares the keys it reads.
INITIAL = schema.section("initial")
_MATRIX = Kind('"identity", "zero", a number, a length-d diagonal or a d x d list')
INITIAL.declare(Key("mean", Kind("a number or a list of d numbers"), 0.0, "location", "(d,)"),
                Key("cov", _MATRIX, "identity", "covariance (gaussian) or scatter matrix", "(d, d)"),
                owners=("law gaussian", "law student_t", "law uniform_ellipsoid", "law elliptical"))
INITIAL.declare(Key("dof", Kind("a finite number > 0"), 5.0, "degrees of freedom"), owners="law student_t")
INITIAL.declare(Key("radial", Kind("the name of a continuous scipy.stats distribution"), "chi",
                    "law of the radius (scipy.stats name)"),
                Key("radial_args", Kind("a list of finite numbers"), Derived("[d] for chi, else []"),
                    "arguments of the radial law"), owners="law elliptical")
INITIAL.declare(Key("path", Kind("a .npy file of shape (n, d) or a run .h5"), MISSING,
                    "positions from a file (a run file: its last state)"), owners="law file")


def _law_keys(law: str) -> tuple[str, ...]:
    return tuple(k for k in INITIAL.keys_of(f"law {law}") if INITIAL.owners[k])


#: Extra keys each law reads from ``[initial]`` (from the schema).
LAW_KEYS = {law: _law_keys(law) for law in LAWS}


def sphere_uniform(s, d: int, rng, where: Where | None = None) -> np.ndarray:
    """x_i uniform on the unit sphere S^{d-1} (normalized Gaussians), i.i.d.; returns ``(n, d)``."""
    n = _n_of(s)
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def equiangular(s, d: int, rng, where: Where | None = None) -> np.ndarray:
    """n unit vectors with <x_i, x_j> = rho for all i != j, randomly rotated; returns ``(n, d)``.

    The Gram matrix (1 - rho) I + rho 1 1^T is positive semidefinite for
    rho in [-1/(n - 1), 1] and has rank n inside that range, so the law needs
    n <= d. Rows are G^{1/2} padded to d columns times a Haar rotation (seeded).
    """
    n = _n_of(s)
    rho = s.rho
    lo = -1.0 / (n - 1) if n > 1 else -1.0
    rho = check_real("initial.rho", rho, f"a number in [-1/(n-1), 1] = [{lo:.6g}, 1]", lambda v: lo <= v <= 1)
    if n > d:
        raise ParameterError(
            "initial.n", f"n <= d = {d} (n equiangular unit vectors with inner product rho "
            f"= initial.rho span n dimensions)", n)
    G = (1.0 - rho) * np.eye(n) + rho * np.ones((n, n))
    w, V = np.linalg.eigh(G)
    X = np.zeros((n, d))
    X[:, :n] = (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T
    Z = rng.standard_normal((d, d))
    R, T = np.linalg.qr(Z)
    R = R * np.sign(np.diag(T))  # Haar-distributed rotation
    X = X @ R.T
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _finite_list(value, key: str, what: str) -> np.ndarray:
    """A number or a non-empty list of finite numbers as a ``(k,)`` float64 array."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if not (items and all(is_real(v) for v in items)):
        raise ParameterError(key, what, value)
    return np.asarray(items, dtype=np.float64)


def von_mises_params(s, d: int):
    """Validated mixture parameters of the ``von_mises`` law: ``(mu, kappa, weights)``, each ``(k,)``.

    ``mu``: a number or list of angles (radians); ``kappa``: a number (shared) or a
    list of concentrations >= 0, one per component; ``weights``: a list of numbers
    >= 0 summing to 1 (default: equal weights).
    """
    if d != 2:
        raise ParameterError("initial.law", "a law for model.d = 2 (von_mises is a law of angles on the circle)",
                             f"von_mises with d = {d}")
    s = as_typed(s) if isinstance(s, dict) else s
    mu = _finite_list(s.mu, "initial.mu", "an angle or a list of angles (radians)")
    k = mu.size
    kappa = _finite_list(s.kappa, "initial.kappa", "a number >= 0 or a list of them")
    if kappa.size == 1:
        kappa = np.full(k, kappa[0])
    if kappa.size != k or np.any(kappa < 0):
        raise ParameterError("initial.kappa", f"a number >= 0 or a list of {k} numbers >= 0 (one per mu)",
                             s.kappa)
    w = s.weights if s.weights is not None else [1.0 / k] * k
    weights = _finite_list(w, "initial.weights", f"a list of {k} numbers >= 0 summing to 1")
    if weights.size != k or np.any(weights < 0) or abs(weights.sum() - 1.0) > 1e-9:
        raise ParameterError("initial.weights", f"a list of {k} numbers >= 0 summing to 1 (one per mu)", w)
    return mu, kappa, weights


def von_mises(s, d: int, rng, where: Where | None = None) -> np.ndarray:
    """Mixture of von Mises laws on the circle, x_i = (cos theta_i, sin theta_i); returns ``(n, 2)``.

    theta has density sum_c w_c exp(kappa_c cos(theta - mu_c)) / (2 pi I_0(kappa_c));
    a component is drawn with probability w_c, then theta from numpy's von Mises sampler.
    """
    n = _n_of(s)
    mu, kappa, weights = von_mises_params(s, d)
    comp = rng.choice(mu.size, size=n, p=weights / weights.sum())
    theta = rng.vonmises(mu[comp], kappa[comp])
    return np.stack([np.cos(theta), np.sin(theta)], axis=1)


INITIAL.declare(Key("mu", Kind("an angle or a list of angles (radians)"), 0.0, "mixture centres", "rad"),
                Key("kappa", Kind("a number >= 0 or a list of them"), 1.0, "concentrations"),
                Key("weights", Kind("a list of numbers >= 0 summing to 1"), Derived("equal weights"),
                    "mixture weights"), owners="law von_mises")
INITIAL.declare(Key("rho", Kind("a number in [-1/(n-1), 1]"), 0.5, "<x_i, x_j> for i != j"),
                owners="law equiangular")
LAWS.update(sphere_uniform=sphere_uniform, von_mises=von_mises, equiangular=equiangular)
LAW_KEYS.update({law: _law_keys(law) for law in ("sphere_uniform", "von_mises", "equiangular")})


def tokens(s, d: int, rng, where: Where | None = None) -> np.ndarray:
    """x_i(0) = wte[ids[i]] + wpe[i] of a network's weight file; ``(n, d)`` with n = len(ids).

    The run passes the model's ``embed`` as ``where.embed`` (only networks from
    ``model.weights`` have one); ids come from ``ids`` (a list) or ``ids_path`` (an .npy).
    """
    where = where or Where()
    embed = where.embed
    if embed is None:
        raise ParameterError("initial.law", "a network from a weight file (model.weights with wte, wpe) "
                             "for tokens", "tokens")
    if (s.ids is None) == (s.ids_path is None):
        raise ParameterError("initial.ids", "ids or ids_path (one of them)",
                             "both" if s.ids is not None else "neither")
    if s.ids is not None:
        ids = s.ids
        if (not isinstance(ids, list) or not ids
                or any(isinstance(i, bool) or not isinstance(i, int) for i in ids)):
            raise ParameterError("initial.ids", "a non-empty list of integer token ids", ids)
        ids = np.asarray(ids, dtype=np.int64)
    else:
        path = s.ids_path
        if not isinstance(path, str) or not path:
            raise ParameterError("initial.ids_path", "an .npy file of integer token ids", path)
        full = config_path(path, where.base_dir)
        try:
            ids = np.load(full, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ParameterError("initial.ids_path", "a readable .npy file of integer token ids",
                                 f"{full} ({exc})") from None
    x = embed(ids)
    n = s.n
    if n is not None and n != x.shape[0]:
        raise ParameterError("initial.n", f"{x.shape[0]} (the number of token ids) or no n", n)
    return x


INITIAL.declare(Key("ids", Kind("a non-empty list of integer token ids"), MISSING, "token ids (or ids_path)"),
                Key("ids_path", Kind("an .npy file of integer token ids"), MISSING, "token ids from a file"),
                owners="law tokens")
LAWS["tokens"] = tokens
LAW_KEYS["tokens"] = _law_keys("tokens")


def momentum_zero(s, x, rng, where: Where | None = None):
    """y_i = 0 for every token: returns zeros of the shape of ``x``, ``(n, d)``."""
    return np.zeros_like(x)


def momentum_affine(s, x, rng, where: Where | None = None):
    """y_i = S x_i + b (momentum = gradient of a quadratic); ``(n, d)``."""
    d = x.shape[1]
    S = as_matrix(s.S, d, "initial.S")
    b = as_vector(s.b, d, "initial.b")
    return x @ S.T + b


def momentum_gaussian(s, x, rng, where: Where | None = None):
    """y_i ~ N(0, momentum_scale^2 I) i.i.d.; ``(n, d)``."""
    scale = check_real("initial.momentum_scale", s.momentum_scale, "a finite number >= 0", lambda v: v >= 0)
    return scale * rng.standard_normal(x.shape)


def momentum_file(s, x, rng, where: Where | None = None):
    """Momenta read from ``initial.momentum_path`` (``.npy`` or a run file's last ``y``); ``(n, d)``."""
    return load_array(
        s.momentum_path, "initial.momentum_path", x.shape[1], x.shape[0], (where or Where()).base_dir,
    )


MOMENTA = {
    "zero": momentum_zero,
    "affine": momentum_affine,
    "gaussian": momentum_gaussian,
    "file": momentum_file,
}
INITIAL.declare(Key("S", _MATRIX, "zero", "y = S x + b", "(d, d)"), Key("b", Kind("a number or d numbers"), 0.0,
                    "y = S x + b", "(d,)"), owners="momentum affine")
INITIAL.declare(Key("momentum_scale", Kind("a finite number >= 0"), 1.0, "standard deviation of y"),
                owners="momentum gaussian")
INITIAL.declare(Key("momentum_path", Kind("a .npy file of shape (n, d) or a run .h5"), MISSING,
                    "momenta from a file"), owners="momentum file")
#: Extra keys each momentum law reads (from the schema).
MOMENTUM_KEYS = {m: tuple(k for k in INITIAL.keys_of(f"momentum {m}") if INITIAL.owners[k]) for m in MOMENTA}
#: Keys of every ``[initial]`` section.
COMMON_KEYS = INITIAL.declare(
    Key("law", Kind("a registered law"), "gaussian", "law of the positions"),
    Key("n", Kind("a positive integer"), PerOwner({f"law {law}": 1000 for law in LAWS if law not in FILE_LAWS}),
        "number of tokens (file and tokens laws: from the file)"),
    Key("seed", Kind("an integer >= 0"), 0, "random seed"),
    Key("momentum", Kind("a registered momentum law"), "zero", "accelerated runs: law of the momenta"))


def with_defaults(section: dict, law: str, momentum: str) -> dict:
    """``section`` with the schema's defaults of ``law`` and ``momentum`` filled in (a new dict)."""
    for owner in (f"law {law}", f"momentum {momentum}"):
        section = {**INITIAL.defaults(owner), **section}
    return section


def as_typed(section: dict):
    """An ``[initial]`` table as the schema types it, with its law's and momentum's defaults."""
    return INITIAL.typed(with_defaults(section, *choices(section)))


def choices(section: dict) -> tuple:
    """``(law, momentum)`` of an ``[initial]`` table (the schema's defaults where not given)."""
    given = INITIAL.typed(section)
    law = given.law if given.law is not None else INITIAL.default("law")
    return law, given.momentum if given.momentum is not None else INITIAL.default("momentum")


def initial_state(section: dict, d: int, accelerated: bool, where: Where | None = None):
    """Sample ``(x, y)`` from the ``[initial]`` section; ``y`` is None for first-order runs.

    ``where``: the folder of relative file names and a network's ``embed`` (law = "tokens").

    Returns
    -------
    x : (n, d) float64
    y : (n, d) float64 or None
    """
    law, mom = choices(section)
    if not isinstance(law, str) or law not in LAWS:
        raise ParameterError("initial.law", f"one of {sorted(LAWS)}", law)
    if not isinstance(mom, str) or mom not in MOMENTA:
        raise ParameterError("initial.momentum", f"one of {sorted(MOMENTA)}", mom)
    allowed = set(COMMON_KEYS) | set(LAW_KEYS[law]) | set(MOMENTUM_KEYS[mom])
    for key in section:
        if key not in allowed:
            raise ParameterError(
                f"initial.{key}",
                f"a key for law {law!r} with momentum {mom!r} (valid: {', '.join(sorted(allowed))})",
                key,
            )
    s = as_typed(section)
    check_size(_n_of(s) if s.n is not None else 1, d)
    if not isinstance(s.seed, int) or isinstance(s.seed, bool) or s.seed < 0:
        raise ParameterError("initial.seed", "an integer >= 0", s.seed)
    rng = np.random.default_rng(s.seed)
    x = LAWS[law](s, d, rng, where)
    y = MOMENTA[mom](s, x, rng, where) if accelerated else None
    return np.ascontiguousarray(x), (None if y is None else np.ascontiguousarray(y))
