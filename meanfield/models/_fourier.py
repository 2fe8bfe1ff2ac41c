"""Fourier summation backend of the softmax and sphere models (docs/models.md §8), with FINUFFT.

Keys (``[model]`` of softmax and sphere): ``summation = "exact" | "fourier"``
(default exact) and ``summation_tol`` (default 1e-10).

The factorization
-----------------
For a symmetric positive semidefinite ``A = L^T L`` (``L`` of shape
``(r, d)``, ``r = rank A``) and ``u = L x``::

    E_ij = exp(x_i^T A x_j) = exp(mu_i + M) w_j G(u_i - u_j),
    mu_i = |u_i|^2 / 2,  M = max_j mu_j,  w_j = exp(mu_j - M) in (0, 1],
    G(v) = exp(-|v|^2 / 2),

so every interaction sum of the model, ``sum_j E_ij f_j`` with
``f_j = 1, x_j, s_j x_j``, is ``exp(mu_i + M)`` times a sum of the *unit*
Gaussian ``G`` with source strengths ``w_j f_j``. On the sphere (``A = beta
I``, ``|x| = 1``) this is ``exp(beta x.x') = e^beta exp(-beta |x - x'|^2 / 2)``
(all ``w_j = 1``). The backend returns the same pass sums as the exact
kernels (``m_i = mu_i + M``, ``l_i = sum_j w_j G_ij``, ``acc_i``), so the
model's finishers (SA, USA, z_i, accelerated force) are shared.

The algorithm
-------------
Per axis k the points span ``[lo_k, hi_k]`` (width ``D_k``). ``G`` is
periodized with period ``P_k = D_k + delta`` and expanded in its Fourier
series, ``g_P(v) = sum_n ghat_n exp(2 pi i n v / P)`` with
``ghat_n = sqrt(2 pi) / P exp(-(2 pi n / P)^2 / 2)``, truncated to
``|n| <= n_max``: ``K_k = 2 n_max + 1`` modes per axis. Then a type-1 NUFFT
gathers the strengths onto the modes, the modes are multiplied by the
product of the ``ghat``, and a type-2 NUFFT evaluates the result at the
targets: ``O(N w^r + K^r log K)`` per weight vector (``w`` the NUFFT's
spreading width, ~ log10(1/eps) + 1) instead of ``O(N^2)``. Two real weight
vectors ride in one complex transform (``ghat`` is real and even), and all
vectors of a pass go in one batched transform (FINUFFT ``n_trans``).

A-priori error bound
--------------------
For every target, with ``e = e_alias + e_trunc`` the 1-D kernel error and
``eps_nufft`` the NUFFT tolerance::

    |computed - exact sum_j w_j G_ij f_j|
        <= [ r e (1 + e)^(r-1) + 2 C eps_nufft (1 + e)^r ] sum_j w_j |f_j|

* ``e_alias <= 2 exp(-delta^2 / 2)``: the nearest periodic image of a source is
  at least ``delta`` away (``delta = sqrt(2 log(2 / e_alias))``);
* ``e_trunc = 2 sum_{n > n_max} ghat_n``, summed numerically when ``n_max`` is
  chosen;
* ``C eps_nufft``: the NUFFT's error per output entry relative to the sum of
  the absolute input strengths (type 1) or mode amplitudes (type 2). FINUFFT's
  tolerance is a target for the relative l2 error, not a proven per-entry
  bound; we take ``C = 1`` (``C_NUFFT``), and the tests check the whole bound
  against the exact kernels (the errors measured there are 10-1000 times
  below it).

The field only needs the sums relative to their own size. We ask, for every
sum ``S_i = sum_j E_ij f_j``::

    |S_i computed - S_i| <= summation_tol * max_j |f_j| * sum_j E_ij

i.e. ``z_i`` and the normalized attention ``sum_j E_ij f_j / sum_j E_ij`` to
relative accuracy ``summation_tol`` (in units of the value scale). Since
``sum_j w_j |f_j| <= max |f| W`` with ``W = sum_j w_j``, this holds when the
bracket above times ``kappa = W / min_i l_i`` is at most ``summation_tol``.
``kappa`` -- how far the smallest sum lies below the total -- is bounded
a priori from the state (:meth:`FourierSums._kappa_bound`): the weights are
added into cells of a quarter kernel width (coarser when the tokens spread
far), and every ``l_i`` is bounded below by moving each cell's weight to its
farthest point, ``l_i >= sum_b W_b G(Dmax(a, b))``. That bound is a function of
the state only (so a resumed run repeats the same transforms) and never
below the true kappa (a uniform state at beta = 4 on S^2: true 8, bound
~15). The budget ``summation_tol / kappa`` sets the modes and the NUFFT
tolerance (rounded to quarter decades so nearby states share plans); after
the pass the bound is checked again with the computed ``l_i`` (lowered by
their own error bound), and the pass is redone once, tighter, if the check
fails (only possible if the NUFFT errs beyond its error model). When
that would need a NUFFT tolerance below FINUFFT's floor (``EPS_FLOOR``), or
more than ``MAX_MODES`` modes (points spread far beyond the kernel width),
the pass raises :class:`~meanfield.errors.SimulationError` saying why and by
how much: the field is never returned silently outside the bound. Typical
causes: an isolated token far from every other (on the sphere kappa is at
most N, reached by a token with no neighbour), or softmax tokens whose
``|L x|`` vary so much that the source weights span many orders of magnitude.

Angle-space paths for the sphere model (tokens are unit vectors, A = beta I)
----------------------------------------------------------------------------
* d = 2, the circle: ``exp(beta cos(t - t')) = e^beta sum_k ihat_k e^{ik(t - t')}``
  with ``ihat_k = I_k(beta) e^{-beta}`` (:func:`circle_coefficients`): a 1-D
  NUFFT in the angle, ~beta + C sqrt(beta log(1/e)) modes, no box and no
  aliasing; the kernel error is the tail ``2 sum_{k > n} ihat_k`` (bounded by
  a geometric series), the bound above with r = 1.
* d = 3: ``exp(beta (x.x' - 1)) = sum_l (2 l + 1) ihat_l P_l(x.x')``
  (:func:`sphere_coefficients`) and the addition theorem turn every sum into
  an analysis ``C_lm = sum_j f_lm(x_j) s_j`` and a synthesis
  ``sum_lm ihat_l C_lm f_lm(x_i)`` over the (L + 1)^2 real spherical
  harmonics (numba, recurrences vectorized over blocks of tokens, chunks
  summed in a fixed order). No NUFFT: the error is the Legendre tail plus a
  round-off allowance (:func:`sh_rounding`). L = 18 at beta = 4 and
  summation_tol = 1e-10 (361 harmonics) against a 29^3-mode NUFFT with
  spreading width 13; it is used while (L + 1)^2 <= ``SH_MAX_FEATURES``
  (beta up to ~25 at 1e-10), the 3-D NUFFT beyond.

Precision, threads, reproducibility
-----------------------------------
The harmonic sums are double precision. Transforms are double precision
(``complex128``); for float32 states, a pass
whose NUFFT tolerance is at least FINUFFT's single-precision floor (2e-6,
e.g. ``summation_tol = 1e-3``) runs in single precision. FINUFFT uses
numba's thread count (``numba.get_num_threads()``) from ``SERIAL_BELOW``
tokens up, one thread below. The particle-wise kernels of this backend are
serial (O(N d), a few percent of a call): two OpenMP runtimes (numba's and
the one bundled with FINUFFT) spinning on the same cores slowed 2-thread
calls several-fold on a loaded 2-core machine (see :func:`finufft_module`). With more than one
thread, FINUFFT's type-1 spreading of a *single* vector adds the threads'
sub-grids in a timing-dependent order (not bit-reproducible); we therefore
run it with ``spread_thread = 2`` (each vector spread by one thread, threads
over vectors) and pad each batch to a multiple of the thread count, which
makes every call bit-reproducible for a fixed thread count
(tests/test_fourier.py checks this) at no cost in wall time. Results differ
in the last bits between thread counts.
"""

from __future__ import annotations

import math

import numpy as np

from .._kernels import fourier as FK
from ..errors import ParameterError, SimulationError
from ..schema import Key, OneOf, Real
from ._params import MODEL, require_symmetric

SUMMATIONS = ("exact", "fourier")
#: ``[model]`` keys of the summation backend (softmax and sphere models).
SUMMATION_KEYS = MODEL.declare(
    Key("summation", OneOf(SUMMATIONS, f"one of {list(SUMMATIONS)}"), "exact",
        "exact pair sums, or Fourier summation (d <= 3, no mask)"),
    Key("summation_tol", Real("a number in [1e-14, 1) (relative accuracy of the interaction sums)",
                              lambda v: 1e-14 <= v < 1), 1e-10, "relative accuracy of the Fourier sums"),
    owners=("softmax", "sphere"))
DEFAULT_TOL = MODEL.key("summation_tol").default
#: Cell side (in units of the kernel width) of the a-priori kappa bound, and the most cells it
#: uses: more occupied cells than min(MAX_OCCUPIED, max(1024, 4 sqrt(N))) double the side (the bound
#: costs O(cells^2), at most O(N)).
CELL_SIDE = 0.25
MAX_CELLS = 2 ** 15
MAX_OCCUPIED = 3000
#: Smallest NUFFT tolerance used (double, single precision).
EPS_FLOOR = {np.dtype(np.complex128): 1e-14, np.dtype(np.complex64): 2e-6}
#: Largest total number of Fourier modes K_0 ... K_{r-1} of one transform.
MAX_MODES = 2 ** 22
#: Below this many tokens FINUFFT runs on one thread (its parallel regions cost more than
#: they save).
SERIAL_BELOW = 50_000
#: Most real spherical harmonics ((L + 1)^2, degree L) of the S^2 path; beyond, the 3-D NUFFT.
SH_MAX_FEATURES = 2000
#: Mode-wise NUFFT error taken per unit of absolute strength (FINUFFT's error model).
C_NUFFT = 1.0


_FINUFFT = None


def finufft_module():
    """Import FINUFFT with its OpenMP runtime set to sleep, not spin, between parallel regions.

    The finufft wheel bundles its own libgomp, next to the OpenMP runtime of
    numba's threads. With both spinning after their parallel regions, each
    steals the cores the other needs: a 2-thread call at N = 10^4 took 0.8 s
    instead of 0.04 s on this project's 2-core machine. libgomp reads
    ``OMP_WAIT_POLICY`` once, when it is loaded; we set it to ``passive`` for
    that moment only (unless the user set it), so numba's runtime keeps its
    own policy.
    """
    global _FINUFFT
    if _FINUFFT is None:
        import os

        old = os.environ.get("OMP_WAIT_POLICY")
        if old is None:
            os.environ["OMP_WAIT_POLICY"] = "passive"
        try:
            import finufft
        finally:
            if old is None:
                del os.environ["OMP_WAIT_POLICY"]
        _FINUFFT = finufft
    return _FINUFFT


def psd_factor(A: np.ndarray, key: str = "model.A", why: str = "") -> np.ndarray:
    """``L`` of shape ``(r, d)`` with ``A = L^T L``, ``r = rank A`` (at least one row).

    Raises
    ------
    ParameterError
        When ``A`` is not symmetric positive semidefinite (the factorization
        ``exp(x^T A x') = exp(|u|^2/2) exp(|u'|^2/2) exp(-|u - u'|^2/2)`` needs it).
    """
    expected = f"a symmetric positive semidefinite matrix for summation = \"fourier\"{why} (exp(x^T A x') " \
               "is a Gaussian only then)"
    require_symmetric(A, key, expected=expected)
    lam, U = np.linalg.eigh(0.5 * (A + A.T))
    top = max(float(np.abs(lam).max()), 1e-300)
    if lam.min() < -1e-12 * top:
        raise ParameterError(key, expected, f"an indefinite matrix (eigenvalue {lam.min():.3g})")
    keep = lam > 1e-12 * top
    if not keep.any():
        return np.zeros((1, A.shape[0]))
    return np.ascontiguousarray(np.sqrt(lam[keep])[:, None] * U[:, keep].T)


def _tail(P: float, n_max: int) -> float:
    """``2 sum_{n > n_max} ghat_n`` for period P (the 1-D truncation error of the series)."""
    n = np.arange(n_max + 1, n_max + 400, dtype=np.float64)
    g = np.exp(-0.5 * (2.0 * math.pi * n / P) ** 2)
    return float(2.0 * math.sqrt(2.0 * math.pi) / P * g.sum())


def kernel_grid(span: np.ndarray, e: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Periods and mode counts for 1-D kernel errors ``e_alias, e_trunc <= e / 2`` each.

    Parameters
    ----------
    span : (r,) widths ``D_k`` of the point cloud per axis (in u)
    e : float, 1-D kernel error budget

    Returns
    -------
    P : (r,) float64 periods
    K : (r,) int64 odd mode counts
    e_kernel : float, the achieved 1-D error
    """
    delta = math.sqrt(2.0 * math.log(4.0 / e))
    P = np.asarray(span, np.float64) + delta
    K = np.empty(len(P), np.int64)
    worst = 0.0
    for k, Pk in enumerate(P):
        n_max = max(1, int(math.ceil(Pk * delta / (2.0 * math.pi))) - 2)
        while _tail(Pk, n_max) > e / 2:
            n_max += 1
        K[k] = 2 * n_max + 1
        worst = max(worst, _tail(Pk, n_max))
    return P, K, 2.0 * math.exp(-0.5 * delta * delta) + worst


def ghat(P: float, K: int) -> np.ndarray:
    """Fourier coefficients ``(K,)`` of the period-P unit Gaussian, modes -(K-1)/2 .. (K-1)/2."""
    n = np.arange(K, dtype=np.float64) - (K - 1) // 2
    return math.sqrt(2.0 * math.pi) / P * np.exp(-0.5 * (2.0 * math.pi * n / P) ** 2)


def circle_coefficients(beta: float, e: float) -> tuple[np.ndarray, float]:
    """Fourier coefficients of ``exp(beta (cos t - 1))`` truncated for a sup error ``<= e``.

    ``exp(beta (cos t - 1)) = sum_k I_k(beta) e^{-beta} e^{i k t}`` (``I_k`` the
    modified Bessel function; ``scipy.special.ive``). The coefficients are
    positive, even in k and sum to 1; for k >= 0 they decrease and so do the
    ratios ``I_{k+1} / I_k``, so the tail beyond ``n`` is at most the geometric
    series ``I_{n+1} / (1 - I_{n+2} / I_{n+1})``. Keeping ``|k| <= n`` errs by
    at most twice that, everywhere on the circle.

    Returns
    -------
    g : (2 n + 1,) float64, modes -n .. n
    e_trunc : float, the bound of the truncation error (<= e)
    """
    from scipy.special import ive

    k = np.arange(0, int(beta + 40.0 * math.sqrt(beta + 1.0) + 60.0), dtype=np.float64)
    c = ive(k, beta)
    for n in range(1, len(c) - 2):
        ratio = c[n + 2] / c[n + 1] if c[n + 1] > 0 else 0.0  # < 1: I_k(beta) decreases in k
        tail = 2.0 * c[n + 1] / (1.0 - ratio)
        if tail <= e:
            return np.concatenate([c[n:0:-1], c[: n + 1]]), float(tail)
    raise ValueError(f"no truncation of exp(beta cos) below {e:g} at beta = {beta:g}")


def sphere_coefficients(beta: float, e: float) -> tuple[np.ndarray, int, float]:
    """Legendre coefficients of ``exp(beta (t - 1))`` on [-1, 1], truncated for a sup error ``<= e``.

    ``exp(beta t) = sum_l (2 l + 1) i_l(beta) P_l(t)`` with the modified
    spherical Bessel functions ``i_l(beta) = sqrt(pi / (2 beta)) I_{l+1/2}(beta)``;
    scaled by ``e^{-beta}`` the terms ``(2 l + 1) ihat_l`` are positive and sum
    to 1, and ``|P_l| <= 1``. Their ratios decrease in l (as those of
    ``I_{l+1/2}`` and of ``2 l + 1`` do), so the tail beyond L is at most the
    geometric series ``T_{L+1} / (1 - T_{L+2} / T_{L+1})``.

    Returns
    -------
    ihat : (L + 1,) float64, the coefficient of ``sum_m f_lm(x) f_lm(x') = (2 l + 1) P_l(x.x')``
    L : int, the degree
    e_trunc : float, the bound of the truncation error (<= e)
    """
    from scipy.special import ive

    l = np.arange(0, int(beta + 40.0 * math.sqrt(beta + 1.0) + 60.0), dtype=np.float64)
    ihat = math.sqrt(math.pi / (2.0 * beta)) * ive(l + 0.5, beta)
    T = (2.0 * l + 1.0) * ihat
    for L in range(1, len(T) - 2):
        ratio = T[L + 2] / T[L + 1] if T[L + 1] > 0 else 0.0
        if ratio >= 1.0:  # the terms still grow (L below ~sqrt(beta)): no geometric bound yet
            continue
        tail = T[L + 1] / (1.0 - ratio)
        if tail <= e:
            return ihat[: L + 1].copy(), L, float(tail)
    raise ValueError(f"no truncation of exp(beta t) below {e:g} at beta = {beta:g}")


def sh_rounding(n: int, L: int) -> float:
    """Round-off allowance of the harmonic sums, per unit strength (relative to ``sum_j |w_j f_j|``).

    Every product ``ihat_l f_lm(x) f_lm(x')`` summed over the features is at most
    ``(2 l + 1) ihat_l`` (Cauchy-Schwarz), and these sum to 1; the additions are
    nested at most ``n / (64 SH_BLOCK) + SH_BLOCK / SH_LANES + 64`` deep in the
    analysis (lanes, blocks, chunks) and ``(L + 1)^2`` deep in the synthesis, and
    the Legendre recurrence loses about one unit per degree. Twice the unit
    round-off per level, summed: a worst case, typically far above the error seen.
    """
    from .._kernels.fourier import SH_BLOCK, SH_LANES

    u = np.finfo(np.float64).eps / 2.0
    return 2.0 * u * (n / (64.0 * SH_BLOCK) + SH_BLOCK / SH_LANES + 64.0 + (L + 1) ** 2 + 4.0 * (L + 1))


def sh_feature_degrees(L: int) -> np.ndarray:
    """Degree l of each real spherical harmonic in the order of :func:`meanfield._kernels.fourier.sh_analysis`."""
    out = []
    for m in range(L + 1):
        for l in range(m, L + 1):
            out += [l] * (2 if m > 0 else 1)
    return np.asarray(out, np.int64)


class FourierSums:
    """The interaction sums of a softmax model with symmetric PSD ``A`` by NUFFT (docs/models.md §8).

    The model calls :meth:`set_points` once per state, then the passes
    (:meth:`softmax_pass`, :meth:`z_pass`, :meth:`force_pass`), which write
    the same ``m_i, l_i, acc_i`` as :func:`meanfield._kernels.pairwise.loop_pass`.

    Parameters
    ----------
    A : (d, d) float64 symmetric PSD matrix
    tol : float, ``summation_tol``
    dtype : state dtype (float32 states with tol >= 1e-5 use single-precision transforms)

    Attributes
    ----------
    last : dict
        Facts of the last pass: ``kappa``, ``bound`` (the a-priori relative
        error bound met), ``modes`` (K per axis), ``eps_nufft``, ``attempts``.
    """

    def __init__(self, A: np.ndarray, tol: float, dtype=np.float64):
        self.L = psd_factor(np.asarray(A, np.float64))
        self.r = self.L.shape[0]
        self.tol = float(tol)
        #: transform precisions allowed: single as well for float32 states (used when eps allows)
        self.single_ok = np.dtype(dtype) == np.float32
        self._plans: dict = {}
        self._n = -1
        self._version = 0
        self._sx_version = -1
        self.t = None
        self.last: dict = {}
        #: beta of the circle path (tokens on S^1, A = beta I), else None
        self.circle = None
        #: beta of the spherical-harmonic path (tokens on S^2, A = beta I), else None
        self.sphere = None

    def on_unit_sphere(self) -> None:
        """The tokens are unit vectors and ``A = beta I`` (the sphere model): angle-space paths.

        d = 2 (circle): ``exp(beta x.x') = e^beta exp(beta (cos(t - t') - 1))`` is a
        function of the angle only, and every sum is a 1-D transform in the angle
        ``t`` with the Bessel coefficients of :func:`circle_coefficients` (no box,
        no aliasing). d = 3: the kernel is a Legendre series in ``x.x'``
        (:func:`sphere_coefficients`), summed through real spherical harmonics
        up to the degree the budget needs, O(N (L + 1)^2), as long as that is at
        most ``SH_MAX_FEATURES`` harmonics; larger beta use the 3-D NUFFT.
        """
        d = self.L.shape[1]
        lam = np.linalg.eigvalsh(self.L.T @ self.L)
        if d not in (2, 3) or not np.allclose(lam, lam[0], rtol=1e-14, atol=0.0):
            raise ValueError("the unit-sphere paths need d = 2 or 3 and A = beta I")
        if d == 2:
            self.circle = float(lam[0])
            self.r = 1
        else:
            self.sphere = float(lam[0])
        self._n = -1

    # ------------------------------------------------------------ set-up
    def _scratch(self, n: int, d: int) -> None:
        if n == self._n:
            return
        self.U = np.empty((self.r, n), np.float64)
        self.mu = np.empty(n, np.float64)
        self.w = np.empty(n, np.float64)
        self.Sx = np.empty((n, d), np.float64)
        self._lc = np.empty(n, np.float64)
        self._mc = np.empty(n, np.float64)
        self._zl = np.empty(n, np.float64)  # the last z pass's l_i and m_i (same state: reused)
        self._zm = np.empty(n, np.float64)
        self._xprev = None
        self._zc_version = -1
        self._T = np.empty((self.r, n), np.float64)
        self._T32 = None
        self._C: dict = {}  # packed strengths / type-2 outputs, per batch size
        self._n = n

    def set_points(self, x, t=None) -> None:
        """Embed the state ``x`` (N, d): u = L x, the weights and the NUFFT coordinates.

        The same state again (bitwise; e.g. the energies and the diagnostics of
        one save) keeps the embedding, the transforms' points and the last z pass.
        """
        n, d = x.shape
        self._scratch(n, d)
        self.t = t
        prev = self._xprev
        if prev is not None and prev.dtype == x.dtype and np.array_equal(prev, x):
            self.x = x
            return
        self._xprev = x.copy()
        self._P = None  # NUFFT coordinates are computed per period (it depends on the error budget)
        self.x = x
        self._version += 1
        self._T32 = None
        self._kappa_max = None  # the a-priori bound of kappa (computed by the first pass)
        if self.circle is not None:
            FK.circle_angles(x, self._T)
            self.mu[:] = 0.5 * self.circle  # |x| = 1: mu_i = beta |x_i|^2 / 2 = M, w_j = 1
            self.M = 0.5 * self.circle
            self.w[:] = 1.0
            self.W = float(n)
            if not np.all(np.isfinite(self._T)):
                raise self._error("the state is not finite (NaN or inf)")
            return
        FK.embed(x, self.L, self.U, self.mu)
        self.M = float(self.mu.max())
        self.W = FK.weights(self.mu, self.M, self.w)
        lo = self.U.min(axis=1)
        hi = self.U.max(axis=1)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and math.isfinite(self.W)):
            raise self._error("the state is not finite (NaN or inf in L x)")
        self.lo = lo
        self.span = hi - lo
        if self.sphere is not None:  # unit tokens: mu_i = beta / 2 exactly, w_j = 1
            self.mu[:] = 0.5 * self.sphere
            self.M = 0.5 * self.sphere
            self.w[:] = 1.0
            self.W = float(n)

    def _error(self, why: str) -> SimulationError:
        where = "" if self.t is None else f" at t = {self.t:.6g}"
        return SimulationError(f"fourier summation{where}: {why}", t=self.t)

    # ------------------------------------------------------------ budget
    def _budget(self, target: float):
        """Kernel grid and NUFFT tolerance for an absolute error ``target`` per unit strength.

        Returns ``((P, K, eps, bound, cdtype, coef), None)`` or ``(None, why)`` when
        infeasible; ``cdtype`` is complex64 for float32 states when eps allows it,
        else complex128; ``coef`` the kernel's Fourier coefficients per axis.
        The target is first rounded down to a quarter decade (nearby budgets share
        modes, tolerance and plans); the kernel gets 1/20 of it (it costs only
        log(1/e) more modes), the two transforms the rest.
        """
        r = max(self.r, 1)
        target = 10.0 ** (math.floor(4.0 * math.log10(max(target, 1e-300))) / 4.0)
        if self.sphere is not None:
            ihat, L, e_ker = sphere_coefficients(self.sphere, 0.5 * target)
            e_round = sh_rounding(self._n, L)
            if (L + 1) ** 2 <= SH_MAX_FEATURES and e_round <= 0.5 * target:
                coef = ihat[sh_feature_degrees(L)]
                return (None, np.array([(L + 1) ** 2], np.int64), None, e_ker + e_round,
                        np.dtype(np.float64), [coef], "harmonics"), None
        e = target / (20.0 * r)
        if self.circle is not None:
            P = None
            g, e_ker = circle_coefficients(self.circle, e)
            K = np.array([len(g)], np.int64)
            coef = [g]
        else:
            P, K, e_ker = kernel_grid(self.span, e)
            coef = [ghat(P[k], int(K[k])) for k in range(r)]
        eps = target / (2.5 * C_NUFFT)
        single = self.single_ok and eps >= EPS_FLOOR[np.dtype(np.complex64)]
        cdtype = np.dtype(np.complex64 if single else np.complex128)
        if eps < EPS_FLOOR[cdtype]:
            return None, f"a NUFFT tolerance {eps:.2g} below the floor {EPS_FLOOR[cdtype]:.0e}"
        if float(np.prod(K.astype(np.float64))) > MAX_MODES:
            return None, (f"{' x '.join(map(str, K))} Fourier modes (more than {MAX_MODES}): the "
                          f"tokens span {np.round(self.span, 3).tolist()} in units of the "
                          "kernel width")
        bound = r * e_ker * (1 + e_ker) ** (r - 1) + 2 * C_NUFFT * eps * (1 + e_ker) ** r
        return (P, K, eps, bound, cdtype, coef, "circle" if self.circle is not None else "nufft"), None

    def _plan(self, kind: int, K, ntr: int, eps: float, nthreads: int, cdtype):
        finufft = finufft_module()
        key = (kind, tuple(int(k) for k in K), ntr, eps, nthreads, cdtype)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 16:
                self._plans.clear()
            plan = finufft.Plan(kind, tuple(int(k) for k in K), n_trans=ntr, eps=eps,
                                isign=-1 if kind == 1 else 1, dtype=cdtype, nthreads=nthreads,
                                spread_thread=2, maxbatchsize=nthreads, modeord=0)
            plan._mf_points = (-1, None)
            self._plans[key] = plan
        return plan

    def _transform(self, kinds, axes, s, setup):
        """Sum_j w_j G(u_i - u_j) f_j for the packed columns: the (ntr, N) complex output."""
        import numba

        P, K, eps, _, cdtype, coef, path = setup
        if path == "harmonics":
            return self._harmonics(kinds, axes, s, math.isqrt(int(K[0])) - 1, coef[0])
        nthreads = max(1, numba.get_num_threads()) if self._n >= SERIAL_BELOW else 1
        n = self._n
        ntr = -(-((len(kinds) + 1) // 2) // nthreads) * nthreads
        if P is not None and (self._P is None or not np.array_equal(self._P, P)):
            FK.to_angles(self.U, self.lo, P, self._T)
            self._P = P
            self._T32 = None
        T = self._T
        if cdtype == np.complex64:
            if self._T32 is None:
                self._T32 = self._T.astype(np.float32)
            T = self._T32
        C = self._C.get((ntr, cdtype))
        if C is None:
            C = self._C[(ntr, cdtype)] = np.empty((ntr, n), cdtype)
        FK.pack(self.w, self.x, s, np.asarray(kinds, np.int64), np.asarray(axes, np.int64), C)
        coords = [T[k] for k in range(self.r)]
        tag = (self._version, None if P is None else tuple(P))
        p1 = self._plan(1, K, ntr, eps, nthreads, cdtype)
        if p1._mf_points != tag:
            p1.setpts(*coords)
            p1._mf_points = tag
        F = p1.execute(C)
        F = F.reshape((ntr, *[int(k) for k in K], *([1] * (3 - self.r))))
        FK.multiply_modes(F, *coef, *([np.ones(1)] * (3 - self.r)))
        p2 = self._plan(2, K, ntr, eps, nthreads, cdtype)
        if p2._mf_points != tag:
            p2.setpts(*coords)
            p2._mf_points = tag
        return p2.execute(F.reshape((ntr, *[int(k) for k in K])), out=C)

    def _harmonics(self, kinds, axes, s, L: int, coef):
        """The packed sums through real spherical harmonics up to degree L (S^2 path)."""
        from .._kernels._config import chunk_bounds

        n = self._n
        ntr = (len(kinds) + 1) // 2
        C = self._C.get((ntr, "sh"))
        if C is None:
            C = self._C[(ntr, "sh")] = np.empty((ntr, n), np.complex128)
        FK.pack(self.w, self.x, s, np.asarray(kinds, np.int64), np.asarray(axes, np.int64), C)
        key = ("sh", L)
        tables = self._plans.get(key)
        if tables is None:
            tables = self._plans[key] = FK.sh_tables(L)
        bounds = chunk_bounds(n)
        part = np.empty((len(bounds) - 1, len(coef), len(kinds)))
        FK.sh_analysis(self.x, C, len(kinds), L, *tables, bounds, part)
        FK.sh_synthesis(self.x, part.sum(axis=0), coef, L, *tables, bounds, C)
        return C

    def _kappa_bound(self) -> float:
        """A-priori upper bound of ``kappa = W / min_i l_i`` from cell totals (a function of the state).

        The weights are added into cells (side ``CELL_SIDE`` kernel widths, fewer
        and larger cells when the tokens span many widths) and
        :func:`~meanfield._kernels.fourier.cell_lower_bound` bounds every
        ``l_i`` from below by placing each cell's weight at its farthest point.
        """
        if self._kappa_max is not None:
            return self._kappa_max
        if self.circle is not None:
            U, lo, beta = self._T, np.array([-math.pi]), self.circle
            nc = int(min(4096, max(256, math.ceil(2.0 * math.pi * math.sqrt(beta) / CELL_SIDE))))
            ncell = np.array([nc], np.int64)
            h = 2.0 * math.pi / nc
        else:
            U, lo, beta = self.U, self.lo, 0.0
            h = CELL_SIDE
            ncell = np.floor(self.span / h).astype(np.int64) + 1
            while float(np.prod(ncell.astype(np.float64))) > MAX_CELLS:
                h *= 1.25
                ncell = np.floor(self.span / h).astype(np.int64) + 1
        totals = np.empty(int(np.prod(ncell)), np.float64)
        max_occupied = int(min(MAX_OCCUPIED, max(1024.0, 4.0 * math.sqrt(self._n))))
        while FK.cell_totals(U, lo, h, ncell, self.w, totals) > max_occupied:
            if self.circle is not None:
                ncell[0] //= 2
                h = 2.0 * math.pi / ncell[0]
            else:
                h *= 2.0
                ncell = np.floor(self.span / h).astype(np.int64) + 1
            totals = totals[: int(np.prod(ncell))]
        low = FK.cell_lower_bound(totals, ncell, h, beta)
        self._kappa_max = self.W / low if low > 0 else math.inf
        return self._kappa_max

    def _run(self, kinds, axes, s, finish, kappa_of, kappa=None):
        """Transform at the accuracy the a-priori kappa bound needs; check with the computed sums.

        The check (kappa from the computed ``l_i``, lowered by their own error
        bound) cannot fail unless the NUFFT errs beyond its error model; then
        the pass is redone once, tighter, before it raises.
        """
        if kappa is None:
            kappa = self._kappa_bound()
        for attempt in (1, 2):
            setup, why = self._budget(self.tol / kappa)
            if setup is None:
                raise self._error(
                    f"the error bound summation_tol = {self.tol:g} cannot be met (kappa <= "
                    f"{kappa:.3g}: the smallest sum may lie that far below the total) with {why}. "
                    "Use a larger summation_tol, or summation = \"exact\"")
            V = self._transform(kinds, axes, s, setup)
            lmin = finish(V)
            bound = setup[3]
            measured = kappa_of(lmin, bound)
            if math.isfinite(measured) and 0.0 <= measured * bound <= self.tol:
                self.last = {"kappa": float(measured), "bound": float(measured * bound),
                             "modes": setup[1].tolist(), "eps_nufft": setup[2], "attempts": attempt,
                             "precision": setup[4].name, "kappa_assumed": kappa, "path": setup[6]}
                return
            kappa = max(measured, 2.0 * kappa)
        raise self._error(f"the error bound summation_tol = {self.tol:g} was not met after two "
                          f"attempts (kappa = {measured:.3g})")

    def _kappa(self, lmin: float, bound: float) -> float:
        low = lmin - bound * self.W
        return self.W / low if low > 0 else math.inf

    # ------------------------------------------------------------ passes
    def softmax_pass(self, acc, mrow, lrow) -> None:
        """MODE_SOFTMAX: ``m_i``, ``l_i = sum_j exp(l_ij - m_i)``, ``acc_i = sum_j exp(l_ij - m_i) x_j``.

        The same transforms as the z pass, whose cache then serves both (a save's
        z pass and the next step's softmax pass at the same state).
        """
        self.z_pass(mrow, lrow)
        acc[:] = self.Sx

    def z_pass(self, mrow, lrow) -> None:
        """MODE_Z: ``m_i``, ``l_i``; keeps ``sum_j w_j G_ij x_j`` for a following force pass."""
        if self._zc_version == self._version:
            lrow[:] = self._zl
            mrow[:] = self._zm
            return
        d = self.Sx.shape[1]
        kinds = [FK.COL_ONE] + [FK.COL_X] * d
        axes = [0] + list(range(d))
        self._run(kinds, axes, self.mu,
                  lambda V: FK.finish_sums(V, 0, 1, self.mu, self.M, lrow, mrow, self.Sx),
                  self._kappa)
        self._zl[:] = lrow
        self._zm[:] = mrow
        self._zc_version = self._version
        self._sx_version = self._version
        self._z_lmin = float(lrow.min())
        self._z_kappa = self.last["kappa_assumed"]

    def force_pass(self, s, cvec, mrow, acc) -> None:
        """MODE_FORCE: ``acc_i = sum_j exp(l_ij - m_i) (c_i + s_j) x_j``, ``m_i`` of the z pass."""
        if self._sx_version != self._version:
            raise RuntimeError("force_pass needs the z_pass of the same points first")
        d = acc.shape[1]
        kinds = [FK.COL_SX] * d
        axes = list(range(d))
        lmin = self._z_lmin

        def finish(V):
            FK.finish_force(V, 0, self.Sx, cvec, self.mu, self.M, mrow, acc)
            return lmin

        self._run(kinds, axes, s, finish, self._kappa, self._z_kappa)
