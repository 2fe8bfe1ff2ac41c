"""The closed moment ODE of the bilinear model (docs/models.md §2, elliptical preservation).

If y_i = S x_i + b with S symmetric, this stays true, and with mu the mean,
M the second moment, q = Q m, Mxy = M S + mu b^T, L = Mxy^T As::

    mu' = L mu
    M'  = L M + M L^T
    S'  = -alpha S - Q - (As Mxy S) - (As Mxy S)^T
    b'  = -alpha b - As Mxy b + q

First-order flow: mu' = -C A mu, M' = -(C A M + M A^T C^T), C = Q M - q mu^T.
These hold exactly for the empirical measure at any N (and for the
mean-field limit), so particle runs must match them to integrator accuracy.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from ..errors import ParameterError
from ..models._params import require_symmetric

RTOL, ATOL = 1e-12, 1e-14


class BilinearMomentODE:
    """Right-hand side and incremental solver of the bilinear moment ODE.

    Parameters
    ----------
    model : Bilinear
        Supplies A, As = sym(A), Q, q = Q m and the dynamics.
    schedule : Schedule
        Damping alpha(t) (accelerated dynamics only).
    """

    def __init__(self, model, schedule, rtol=RTOL, atol=ATOL, method="DOP853"):
        self.model = model
        self.schedule = schedule
        self.d = model.d
        self.accelerated = model.accelerated
        self.rtol, self.atol, self.method = rtol, atol, method

    def pack(self, mu0, M0, S0=None, b0=None) -> np.ndarray:
        """State vector from mean ``(d,)``, second moment ``(d, d)`` and affine momentum ``S, b``."""
        parts = [np.asarray(mu0, float).ravel(), np.asarray(M0, float).ravel()]
        if self.accelerated:
            if S0 is None or b0 is None:
                raise ParameterError("initial.momentum", "affine momentum (S, b) for the moment ODE",
                                     None)
            S0 = np.asarray(S0, float)
            require_symmetric(S0, "initial.S", expected="a symmetric S (the moment closure needs it)",
                              found="a non-symmetric S")
            parts += [S0.ravel(), np.asarray(b0, float).ravel()]
        return np.concatenate(parts)

    def unpack(self, z) -> dict:
        """Moments from a state vector: mean, M, cov (and S, b, Mxy when accelerated)."""
        d = self.d
        mu = z[:d]
        M = z[d:d + d * d].reshape(d, d)
        out = {"mean": mu, "M": M, "cov": M - np.outer(mu, mu)}
        if self.accelerated:
            S = z[d + d * d:d + 2 * d * d].reshape(d, d)
            b = z[d + 2 * d * d:]
            out.update(S=S, b=b, Mxy=M @ S + np.outer(mu, b))
        return out

    def rhs(self, t, z) -> np.ndarray:
        """The moment ODE's right-hand side at ``t`` for the packed state vector (scipy's ``fun``)."""
        m = self.model
        u = self.unpack(z)
        mu, M = u["mean"], u["M"]
        if self.accelerated:
            S, b, Mxy = u["S"], u["b"], u["Mxy"]
            L = Mxy.T @ m.As
            alpha = self.schedule.alpha(t)
            T = m.As @ Mxy @ S
            dS = -alpha * S - m.Q - T - T.T
            db = -alpha * b - m.As @ Mxy @ b + m.q
        else:
            C = m.Q @ M - np.outer(m.q, mu)
            L = -C @ m.A
        parts = [L @ mu, (L @ M + M @ L.T).ravel()]
        if self.accelerated:
            parts += [dS.ravel(), db]
        return np.concatenate(parts)

    def solve(self, z0, t_eval) -> np.ndarray:
        """States at the increasing times ``t_eval`` (``t_eval[0]`` is the time of z0); ``(T, dim)``."""
        t_eval = np.asarray(t_eval, float)
        if len(t_eval) == 1:
            return np.asarray(z0, float)[None, :]
        sol = solve_ivp(self.rhs, (t_eval[0], t_eval[-1]), z0, method=self.method, t_eval=t_eval,
                        rtol=self.rtol, atol=self.atol)
        if not sol.success:
            raise RuntimeError(f"moment ODE failed: {sol.message}")
        return sol.y.T

    def advance(self, z, t0, t1) -> np.ndarray:
        """State at ``t1`` from state ``z`` at ``t0``."""
        return z.copy() if t1 == t0 else self.solve(z, [t0, t1])[-1]


def bilinear_moment_ode(model, schedule, mu0, M0, t_eval, S0=None, b0=None,
                        rtol=RTOL, atol=ATOL, method="DOP853") -> dict:
    """Solve the bilinear moment ODE and return the moments at ``t_eval``.

    Parameters
    ----------
    model : Bilinear
    schedule : Schedule
    mu0 : (d,) initial mean
    M0 : (d, d) initial second moment (1/N) sum x x^T (not the covariance)
    t_eval : (T,) increasing times, ``t_eval[0]`` is the initial time
    S0 : (d, d) symmetric, b0 : (d,)
        Initial affine momentum y = S x + b (accelerated only).

    Returns
    -------
    dict with ``t (T,)``, ``mean (T, d)``, ``M (T, d, d)``, ``cov (T, d, d)``,
    and for accelerated dynamics ``S (T, d, d)``, ``b (T, d)``, ``Mxy (T, d, d)``.
    """
    ode = BilinearMomentODE(model, schedule, rtol, atol, method)
    Z = ode.solve(ode.pack(mu0, M0, S0, b0), t_eval)
    rows = [ode.unpack(z) for z in Z]
    out = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    out["t"] = np.asarray(t_eval, float)
    return out
