"""The closed moment ODE of the bilinear model (SPEC §2, elliptical preservation).

If y_i = S x_i + b with S symmetric, this stays true, and with mu the mean,
M the second moment, q = Q m, Mxy = M S + mu b^T, L = Mxy^T As::

    mu' = L mu
    M'  = L M + M L^T
    S'  = -alpha S - Q - (As Mxy S) - (As Mxy S)^T
    b'  = -alpha b - As Mxy b + q

First-order flow: mu' = -C A mu, M' = -(C A M + M A^T C^T), C = Q M - q mu^T.
These hold exactly for the empirical measure at any N, so particle runs
must match them to integrator accuracy.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from ..errors import ParameterError


def _unpack(z, d, accelerated):
    mu = z[:d]
    M = z[d:d + d * d].reshape(d, d)
    if not accelerated:
        return mu, M, None, None
    S = z[d + d * d:d + 2 * d * d].reshape(d, d)
    b = z[d + 2 * d * d:]
    return mu, M, S, b


def bilinear_moment_ode(model, schedule, mu0, M0, t_eval, S0=None, b0=None,
                        rtol=1e-12, atol=1e-14, method="DOP853") -> dict:
    """Solve the bilinear moment ODE and return the moments at ``t_eval``.

    Parameters
    ----------
    model : Bilinear
        Supplies A, As = sym(A), Q, m and the dynamics (first-order or accelerated).
    schedule : Schedule
        Damping alpha(t) (accelerated only).
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
    d = model.d
    acc = model.accelerated
    A, As, Q, q = model.A, model.As, model.Q, model.q
    mu0 = np.asarray(mu0, float)
    M0 = np.asarray(M0, float)
    if acc:
        if S0 is None or b0 is None:
            raise ParameterError("initial.momentum", "affine momentum (S, b) for the moment ODE", None)
        S0 = np.asarray(S0, float)
        if np.abs(S0 - S0.T).max() > 1e-12 * max(1.0, np.abs(S0).max()):
            raise ParameterError("initial.S", "a symmetric S (moment closure needs it)", "non-symmetric S")
        z0 = np.concatenate([mu0, M0.ravel(), S0.ravel(), np.asarray(b0, float)])
    else:
        z0 = np.concatenate([mu0, M0.ravel()])

    def rhs(t, z):
        mu, M, S, b = _unpack(z, d, acc)
        if acc:
            Mxy = M @ S + np.outer(mu, b)
            L = Mxy.T @ As
            alpha = schedule.alpha(t)
            T = As @ Mxy @ S
            dS = -alpha * S - Q - T - T.T
            db = -alpha * b - As @ Mxy @ b + q
        else:
            C = Q @ M - np.outer(q, mu)
            L = -C @ A
        dmu = L @ mu
        dM = L @ M + M @ L.T
        parts = [dmu, dM.ravel()]
        if acc:
            parts += [dS.ravel(), db]
        return np.concatenate(parts)

    t_eval = np.asarray(t_eval, float)
    sol = solve_ivp(rhs, (t_eval[0], t_eval[-1]), z0, method=method, t_eval=t_eval,
                    rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"moment ODE failed: {sol.message}")
    Z = sol.y.T
    mean = Z[:, :d]
    M = Z[:, d:d + d * d].reshape(-1, d, d)
    out = {"t": sol.t, "mean": mean, "M": M, "cov": M - mean[:, :, None] * mean[:, None, :]}
    if acc:
        S = Z[:, d + d * d:d + 2 * d * d].reshape(-1, d, d)
        b = Z[:, d + 2 * d * d:]
        out.update(S=S, b=b, Mxy=M @ S + mean[:, :, None] * b[:, None, :])
    return out
