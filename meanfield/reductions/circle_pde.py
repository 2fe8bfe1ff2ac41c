"""The mean-field PDE of the sphere model on the circle (d = 2), spectral in space.

Tokens x = (cos theta, sin theta) with Q = K = V = I move by the Kuramoto-type
velocity of docs/models.md §4; their law, with density f(theta, t) (int f dtheta = 1),
solves the continuity equation

    d_t f + d_theta (f v[f]) = 0,
    v[f](theta) = int K1(theta' - theta) f(theta') dtheta'                                  (USA)
    v[f](theta) = int K1(theta' - theta) f(theta') dtheta' / int K0(theta' - theta) f(theta') dtheta'   (SA)

with K1(phi) = exp(beta cos phi) sin phi and K0(phi) = exp(beta cos phi).

Discretization: M equispaced nodes theta_k = 2 pi k / M; the interaction
integrals are the trapezoid rule, i.e. circular correlations computed by FFT
(``ifft(fft(f) * conj(fft(K)))``), which is spectrally accurate for smooth
periodic f; the flux derivative is spectral (the Nyquist mode of an odd
derivative is set to zero). Time stepping is scipy's DOP853 with tight
tolerances. Every stage derivative has a zero mean mode, so the mass
int f = (2 pi / M) sum_k f_k is conserved to round-off.

Role: a smooth-data reference. While the density is resolved the spectral
solution converges exponentially in M, which is what the second-order
finite-volume solver (:class:`meanfield.pde.finite_volume.CircleFV`) is
checked against; once clusters get narrower than the grid it loses positivity
(Gibbs oscillations) and soon stops, while the finite-volume solver runs
through cluster formation and merging.

Particle comparison: :func:`w1_circle` computes the Wasserstein-1 distance on
the circle between an empirical measure and the trigonometric interpolant of
f, exactly up to the interpolation of its antiderivative on a fine grid.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from .._logspace import LOG_MAX
from ..errors import ParameterError

TWO_PI = 2.0 * np.pi


class CirclePDE:
    """Mean-field continuity equation of the d = 2 sphere model on a periodic grid.

    Parameters
    ----------
    M : int
        Number of grid points (even).
    beta : float
        Inverse temperature.
    normalized : bool
        SA (True) or USA (False).
    """

    def __init__(self, M: int, beta: float, normalized: bool = True):
        if M < 8 or M % 2:
            raise ValueError(f"M must be an even integer >= 8, got {M}")
        self.M = int(M)
        self.beta = float(beta)
        self.normalized = bool(normalized)
        self.theta = TWO_PI * np.arange(M) / M
        phi = self.theta
        if not self.normalized and self.beta > LOG_MAX:
            raise ParameterError("model.beta", f"beta <= {LOG_MAX:.1f} for the unnormalized (USA) PDE "
                                 "(its velocity grows like e^beta)", self.beta)
        # SA divides K1 by K0: both are scaled by e^-beta (no overflow at any beta); USA is not
        K0 = np.exp(self.beta * (np.cos(phi) - 1.0)) if self.normalized else np.exp(self.beta * np.cos(phi))
        self._K0c = np.conj(np.fft.fft(K0))
        self._K1c = np.conj(np.fft.fft(K0 * np.sin(phi)))
        k = np.fft.fftfreq(M, 1.0 / M)
        k[M // 2] = 0.0  # odd derivative: drop the Nyquist mode
        self._ik = 1j * k
        self.dtheta = TWO_PI / M

    # ------------------------------------------------------------ operators
    def velocity(self, f: np.ndarray) -> np.ndarray:
        """v[f] at the nodes, shape ``(M,)``."""
        fh = np.fft.fft(f)
        c1 = np.fft.ifft(fh * self._K1c).real
        if self.normalized:
            c0 = np.fft.ifft(fh * self._K0c).real
            return c1 / c0
        return self.dtheta * c1

    def rhs(self, t, f: np.ndarray) -> np.ndarray:
        """-d_theta (f v[f]), shape ``(M,)``."""
        flux = f * self.velocity(f)
        return -np.fft.ifft(self._ik * np.fft.fft(flux)).real

    def mass(self, f: np.ndarray) -> float:
        """int f dtheta (trapezoid = exact for the trigonometric interpolant)."""
        return float(self.dtheta * np.sum(f))

    # ------------------------------------------------------------ solving
    def solve(self, f0: np.ndarray, t, rtol: float = 1e-10, atol: float = 1e-12) -> np.ndarray:
        """Densities at the times ``t`` (t[0] the initial time), shape ``(T, M)``."""
        t = np.asarray(t, float)
        f0 = np.asarray(f0, float)
        if f0.shape != (self.M,):
            raise ValueError(f"f0 must have shape ({self.M},), got {f0.shape}")
        if len(t) == 1:
            return f0[None].copy()
        sol = solve_ivp(self.rhs, (t[0], t[-1]), f0, t_eval=t, method="DOP853", rtol=rtol, atol=atol)
        if not sol.success:  # pragma: no cover
            raise RuntimeError(sol.message)
        return sol.y.T.copy()

    # ------------------------------------------------------------ helpers
    def cdf(self, f: np.ndarray, L: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
        """Antiderivative F(theta) = int_0^theta f of the trigonometric interpolant on L points.

        Returns ``(theta (L + 1,), F (L + 1,))`` with theta from 0 to 2 pi inclusive.
        """
        M = self.M
        c = np.fft.fft(f) / M  # f(theta) = sum_q c_q e^{i q theta}, |q| < M/2 (+ Nyquist)
        q = np.fft.fftfreq(M, 1.0 / M)
        # periodic part of the antiderivative, sum_{0 < |q| < M/2} c_q / (i q) e^{i q theta},
        # on the fine grid; the Nyquist mode (round-off for a resolved f) is dropped
        G = np.zeros(L, complex)
        h = M // 2
        G[1:h] = c[1:h] / (1j * q[1:h])
        G[L - (h - 1):] = c[h + 1:] / (1j * q[h + 1:])
        per = np.fft.ifft(G).real * L
        th = TWO_PI * np.arange(L + 1) / L
        F = c[0].real * th + np.append(per, per[0]) - per[0]
        return th, F

    def sample(self, f: np.ndarray, n: int, rng) -> np.ndarray:
        """n i.i.d. angles from the interpolant of f (inverse CDF on a fine grid), shape ``(n,)``."""
        th, F = self.cdf(f)
        u = rng.random(n) * F[-1]
        return np.interp(u, F, th)


def trig_density(a=(), b=(), theta=None, M: int = 256):
    """Density (1 + sum_m a_m cos(m theta) + b_m sin(m theta)) / (2 pi) on the grid, ``(M,)``."""
    if theta is None:
        theta = TWO_PI * np.arange(M) / M
    f = np.ones_like(theta)
    for m, am in enumerate(a, start=1):
        f += am * np.cos(m * theta)
    for m, bm in enumerate(b, start=1):
        f += bm * np.sin(m * theta)
    if f.min() < 0:
        raise ValueError("the coefficients give a negative density")
    return f / TWO_PI


def sample_trig_density(a, b, n: int, rng) -> np.ndarray:
    """Exact i.i.d. samples of :func:`trig_density` by rejection from the uniform law, ``(n,)``."""
    bound = 1.0 + np.sum(np.abs(a)) + np.sum(np.abs(b))
    out = np.empty(0)
    while out.size < n:
        th = rng.random(2 * n) * TWO_PI
        f = trig_density(a, b, th) * TWO_PI
        keep = rng.random(2 * n) * bound < f
        out = np.concatenate([out, th[keep]])
    return out[:n]


def w1_circle(angles: np.ndarray, pde: CirclePDE, f: np.ndarray, L: int = 1 << 16) -> float:
    """Wasserstein-1 distance on the circle between the empirical law of ``angles`` and density f.

    Parameters
    ----------
    angles : (N,) particle angles (any real numbers; taken mod 2 pi)
    pde : CirclePDE (for the interpolant of f)
    f : (M,) density on the PDE grid, int f = 1
    """
    th, F = pde.cdf(f, L)
    return w1_circle_cdf(angles, th, F)


def w1_circle_cdf(angles: np.ndarray, th: np.ndarray, F: np.ndarray) -> float:
    """Wasserstein-1 distance on the circle between the empirical law of ``angles`` and a law given by its CDF.

    W1 = min_c int_0^{2 pi} |F_emp(theta) - F(theta) - c| dtheta (the circle's
    formula, Rabin et al.), integrated exactly on the union of the particle
    positions and the points ``th`` between which F is linear.

    Parameters
    ----------
    angles : (N,) particle angles (any real numbers; taken mod 2 pi)
    th : (L + 1,) increasing points from 0 to 2 pi
    F : (L + 1,) the CDF int_0^th rho at those points (normalized by F[-1])
    """
    s = np.sort(np.mod(np.asarray(angles, float), TWO_PI))
    n = s.size
    F = np.asarray(F, float) / F[-1]
    pts = np.union1d(th, s)
    Fp = np.interp(pts, th, F)
    Fe = np.searchsorted(s, pts[:-1], side="right") / n  # F_emp on [pts_k, pts_{k+1})
    a = Fe - Fp[:-1]
    b = Fe - Fp[1:]
    h = np.diff(pts)
    # c: median of D = F_emp - F under Lebesgue measure (weighted median of the piece midpoints)
    mid = 0.5 * (a + b)
    order = np.argsort(mid)
    cw = np.cumsum(h[order])
    c = mid[order][np.searchsorted(cw, 0.5 * cw[-1])]
    a, b = a - c, b - c
    same = a * b >= 0
    val = np.where(same, 0.5 * np.abs(a + b), (a * a + b * b) / (2.0 * np.maximum(np.abs(a) + np.abs(b), 1e-300)))
    return float(np.sum(h * val))
