"""Model "bilinear": linear attention as a Stein flow with kernel k(x, x') = x'^T A x (docs/models.md §2).

First-order flow (classical linear attention)::

    dx_i/dt = -C A x_i,      C = (1/N) sum_j grad W(x_j) x_j^T = Q M - q mu^T

Accelerated flow (damped Hamiltonian in the Stein metric, As = sym(A))::

    dx_i/dt = Mxy^T As x_i = L x_i,                      Mxy = (1/N) sum_j x_j y_j^T
    dy_i/dt = -alpha y_i - As Mxy y_i - Q (x_i - m) = -alpha y_i - L^T y_i - Q x_i + q

Both fields need d x d moment matrices only, so one oracle call costs
O(N d^2): a moment pass and one particle-wise affine pass, both numba kernels.
Under a causal mask (docs/models.md §6) the moments become prefix means, e.g.
Mxy(i) = (1/i) sum_{j<=i} x_j y_j^T: chunk sums, an exclusive prefix over
chunks, then one ordered scan per chunk -- still O(N d^2) and parallel. The
energies reported for a masked run use the unmasked formulas (the masked
system is not Hamiltonian; they are not expected to be monotone).
The Hamiltonian sees A only through As = sym(A); a non-symmetric A is
therefore accepted for accelerated runs and its antisymmetric part has no
effect there (it does act in the first-order flow, which uses A itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._kernels import moments as K
from .._kernels._config import chunk_bounds
from ..errors import ParameterError
from ._params import MODEL, as_matrix, as_vector, require_symmetric, sym
from .base import Model


def linear_map_infimum(m, Q, mu, M) -> float | None:
    """inf over linear maps U of E[W(U x)] = 1/2 m^T Q m (1 - mu^T M^{-1} mu) (docs/models.md §2).

    The bound of every flow that moves positions by one common linear map
    ``x(t) = U(t) x(0)``; the minimiser ``U = m mu^T M^{-1}`` has rank one (approached,
    never reached).

    Parameters
    ----------
    m : (d,) minimiser of W
    Q : (d, d) symmetric Hessian of W
    mu : (d,) mean of the initial positions
    M : (d, d) second moment E[x x^T] of the initial positions

    Returns
    -------
    float or None
        None unless Q is positive definite and M well conditioned (cond <= 1e12).
    """
    if not (np.all(np.isfinite(M)) and np.all(np.isfinite(mu))):
        return None  # moments overflowed (|x| ~ 1e200): LAPACK would print to stdout, then fail
    if np.linalg.eigvalsh(Q).min() <= 0 or np.linalg.cond(M) > 1e12:
        return None
    return float(0.5 * (m @ Q @ m) * (1.0 - mu @ np.linalg.solve(M, mu)))


@dataclass(frozen=True)
class BilinearParams:
    """Validated parameters of the bilinear model.

    Attributes
    ----------
    d : int
    A : (d, d) kernel matrix of k(x, x') = x'^T A x
    Q : (d, d) symmetric Hessian of W(x) = 1/2 (x - m)^T Q (x - m)
    m : (d,) minimiser of W
    """

    d: int
    A: np.ndarray
    Q: np.ndarray
    m: np.ndarray

    @classmethod
    def from_dict(cls, p: dict) -> BilinearParams:
        """Validated parameters from a ``[model]`` section (a ParameterError names a bad key)."""
        s = MODEL.read(p, "bilinear")
        d = s.d
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise ParameterError("model.d", "a positive integer", d)
        A = as_matrix(s.A, d, "model.A")
        Q = as_matrix(s.Q, d, "model.Q")
        require_symmetric(Q, "model.Q")
        m = as_vector(s.m, d, "model.m")
        return cls(d=d, A=A, Q=Q, m=m)


class Bilinear(Model):
    """Linear attention / Stein flow with bilinear kernel; O(N d^2) per oracle call.

    Parameters
    ----------
    params : BilinearParams
    dynamics : {"first_order", "accelerated"}
    dtype : float64 (default) or float32
    """

    name = "bilinear"
    cheap_kinetic = True
    serial_below = 4096  # an O(N d^2) pass over fewer particles takes microseconds
    keys = MODEL.accept("bilinear", "name", "dynamics", "d", "A", "Q", "m", "causal")

    def __init__(self, params: BilinearParams, dynamics="accelerated", dtype=np.float64, causal=False):
        super().__init__(params.d, dynamics, dtype)
        self.causal = bool(causal)
        self.params = params
        self.A = params.A
        self.As = sym(params.A)
        self.Q = params.Q
        self.m = params.m
        self.q = params.Q @ params.m
        self._work_n = -1

    @classmethod
    def from_dict(cls, p: dict, dtype=np.float64):
        """The model of a ``[model]`` section, computing in ``dtype``."""
        s = MODEL.read(p, "bilinear")
        return cls(BilinearParams.from_dict(p), s.dynamics, dtype, causal=s.causal)

    # ---------------------------------------------------------------- scratch
    def _scratch(self, n: int):
        if n != self._work_n:
            self._bounds = chunk_bounds(n)
            nc = self._bounds.shape[0] - 1
            self._partial = np.empty((nc, self.d, self.d), self.dtype)
            self._partial1 = np.empty((nc, self.d), self.dtype)
            self._partial_e = np.empty(nc, np.float64)
            self._work_n = n
        return self._bounds

    def _cast(self, M):
        return np.ascontiguousarray(M, dtype=self.dtype)

    # ---------------------------------------------------------------- moments
    def mxy(self, x, y) -> np.ndarray:
        """Mxy = (1/N) sum_j x_j y_j^T, shape ``(d, d)``."""
        bounds = self._scratch(x.shape[0])
        out = np.empty((self.d, self.d), self.dtype)
        K.cross_moment(x, y, bounds, self._partial, out)
        return out.astype(np.float64)

    def mean(self, x) -> np.ndarray:
        """Particle mean, shape ``(d,)``."""
        bounds = self._scratch(x.shape[0])
        out = np.empty(self.d, self.dtype)
        K.column_mean(x, bounds, self._partial1, out)
        return out.astype(np.float64)

    def C_matrix(self, x) -> np.ndarray:
        """C = (1/N) sum_j grad W(x_j) x_j^T = Q M - q mu^T, shape ``(d, d)``."""
        M = self.mxy(x, x)
        mu = self.mean(x)
        return self.Q @ M - np.outer(self.q, mu)

    # ----------------------------------------------------------------- fields
    def _offsets(self, chunk_sums):
        """Exclusive prefix over chunks: S at the start of each chunk, ``(nchunks, d, d)`` float64."""
        out = np.zeros_like(chunk_sums, dtype=np.float64)
        np.cumsum(chunk_sums[:-1], axis=0, out=out[1:])
        return out

    def _combine_first_order(self, x, t, a, b, out):
        if self.causal:
            bounds = self._scratch(x.shape[0])
            K.cross_moment(x, x, bounds, self._partial, np.empty((self.d, self.d), self.dtype))
            K.column_mean(x, bounds, self._partial1, np.empty(self.d, self.dtype))
            sums = self.Q @ self._partial.astype(np.float64) - (
                self.q[None, :, None] * self._partial1.astype(np.float64)[:, None, :])
            K.causal_first_order(x, self.A.T.copy(), self.Q.T.copy(), self.q, self._offsets(sums), bounds,
                                 a, b, out)
            return
        L1 = -self.C_matrix(x) @ self.A  # dx_i/dt = L1 x_i
        PT = a * np.eye(self.d) + b * L1.T
        K.affine_map(x, self._cast(PT), np.zeros(self.d, self.dtype), self._bounds, out)

    def _combine_hamiltonian(self, x, y, t, ax, bx, ay, by, out_x, out_y):
        if self.causal:
            bounds = self._scratch(x.shape[0])
            K.cross_moment(x, y, bounds, self._partial, np.empty((self.d, self.d), self.dtype))
            offsets = self._offsets(self._partial.astype(np.float64))
            K.causal_hamiltonian(x, y, self.As.T.copy(), self.Q.T.copy(), self.q, offsets, bounds,
                                 ax, bx, ay, by, out_x, out_y)
            return
        L = self.mxy(x, y).T @ self.As  # dx_i/dt = L x_i, dy_i/dt = -L^T y_i - Q x_i + q
        eye = np.eye(self.d)
        PxxT = ax * eye + bx * L.T
        PyxT = -by * self.Q.T
        PyyT = ay * eye - by * L
        cy = by * self.q
        K.affine_pair_map(
            x, y, self._cast(PxxT), self._cast(PyxT), self._cast(PyyT), self._cast(cy),
            self._bounds, out_x, out_y,
        )

    # ----------------------------------------------------------- diagnostics
    def potential(self, x) -> float:
        """(1/N) sum_i W(x_i), evaluated directly (no moment cancellation)."""
        bounds = self._scratch(x.shape[0])
        return float(K.quadratic_mean(x, self._cast(self.Q), self._cast(self.m), bounds, self._partial_e))

    def kinetic(self, x, y) -> float:
        """K = 1/2 tr(As Mxy Mxy^T)."""
        Mxy = self.mxy(x, y)
        return 0.5 * float(np.sum((self.As @ Mxy) * Mxy))

    def energies(self, x, y) -> dict:
        U = self.potential(x)
        if not self.accelerated:
            return {"energy": U, "potential": U}
        Kin = self.kinetic(x, y)
        return {"energy": Kin + U, "kinetic": Kin, "potential": U, "first_order_energy": U}

    def diagnostics(self, x, y) -> dict:
        mu = self.mean(x)
        xc = x - mu.astype(self.dtype)
        cov = self.mxy(xc, xc)
        out = {"mean": mu, "cov": cov}
        if self.accelerated:
            out["Mxy"] = self.mxy(x, y)
        return out

    def energy_infimum(self, x0) -> float | None:
        """inf over linear maps U of (1/N) sum W(U x_i): both flows move particles linearly.

        None unless Q is positive definite and the second moment of ``x0`` invertible.
        """
        if self.causal:  # particles no longer move by one common linear map
            return None
        x0 = np.asarray(x0, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # overflowed moments: no infimum (None)
            mu, M = x0.mean(axis=0), x0.T @ x0 / x0.shape[0]
        return linear_map_infimum(self.m, self.Q, mu, M)

    def describe(self) -> dict:
        return {
            "name": self.name, "dynamics": self.dynamics, "d": self.d,
            "A": self.A.tolist(), "Q": self.Q.tolist(), "m": self.m.tolist(), "causal": self.causal,
        }
