"""Equiangular tokens on the sphere: the exact one-variable reduction of docs/models.md §4.

If n tokens have <theta_i, theta_j> = rho for all i != j (and, for the
residual-stream schemes, equal radii r), the symmetry is preserved by the
first-order flows with Q = K = V = I (no causal mask) and the state reduces
to (rho, r). With p = exp(beta), q = exp(beta rho) and Z = p + (n - 1) q
(SA) or Z = n (USA), the attention vector a_i satisfies

    <theta_i, a_i> = (p + (n - 1) q rho) / Z,
    |a_i|^2 = (p^2 + 2 (n - 1) p q rho + (n - 1) q^2 (1 + (n - 2) rho)) / Z^2,

and the post-LN rate is the formula of docs/models.md §4

    R(rho) = 2 q (1 - rho) (1 + (n - 1) rho) / Z.

Then post_ln: rho' = R;  pre_ln: rho' = R / r, r' = <theta, a>;
peri_ln: rho' = R / (r |a|), r' = <theta, a> / |a|.

The one-layer map of the long-context analysis (Chen, Lin, Polyanskiy &
Rigollet) is also exact: after one SA layer (outputs a_i, then normalized)
equiangular tokens stay equiangular with inner product
``(l1 - l0) / (l1 + (n - 1) l0)``, ``l1 = (p + (n-1) q)^2 (1 + (n-1) rho)``,
``l0 = (p - q)^2 (1 - rho)`` (eigenvalues of the output Gram matrix on the
all-ones vector and its complement).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp

from .._logspace import LOG_MAX, exp_clipped
from ..errors import ParameterError

SCHEMES = ("post_ln", "pre_ln", "peri_ln")


def _terms(rho: float, beta: float, n: int, normalized: bool):
    """``(R, <theta, a>, |a|, log_scale)`` of equiangular tokens, each of the first three
    divided by ``exp(log_scale)`` so that nothing overflows at any beta.

    p, q and Z are divided by p = e^beta, so only e^{beta (rho - 1)} <= 1
    appears; for SA the factor cancels (log_scale = 0), for USA (Z = n) it
    multiplies R, <theta, a> and |a| (log_scale = beta).
    """
    p, q = 1.0, math.exp(beta * (rho - 1.0))
    if normalized:
        Z, log_scale = 1.0 + (n - 1) * q, 0.0
    else:
        Z, log_scale = float(n), beta
    R = 2.0 * q * (1.0 - rho) * (1.0 + (n - 1) * rho) / Z
    ta = (p + (n - 1) * q * rho) / Z
    aa = (p * p + 2.0 * (n - 1) * p * q * rho + (n - 1) * q * q * (1.0 + (n - 2) * rho)) / (Z * Z)
    return R, ta, math.sqrt(max(aa, 0.0)), log_scale


def equiangular_rhs(t, state, beta: float, n: int, normalized: bool = True,
                    normalization: str = "post_ln") -> np.ndarray:
    """Right-hand side of the reduced ODE.

    Parameters
    ----------
    t : float (unused: autonomous)
    state : (1,) ``[rho]`` for post_ln, (2,) ``[rho, r]`` for pre_ln / peri_ln
    beta, n, normalized, normalization : model parameters (Q = K = V = I, no mask)

    Returns
    -------
    (1,) or (2,) array
    """
    rho = float(state[0])
    R, ta, na, log_scale = _terms(rho, beta, n, normalized)
    scale = exp_clipped(log_scale)  # peri_ln divides it out
    if normalization == "post_ln":
        return np.array([R * scale])
    r = float(state[1])
    if normalization == "pre_ln":
        return np.array([R * scale / r, ta * scale])
    if normalization == "peri_ln":
        return np.array([R / (r * na), ta / na])
    raise ParameterError("model.normalization", f"one of {list(SCHEMES)}", normalization)


def solve_equiangular(rho0: float, t, beta: float, n: int, normalized: bool = True,
                      normalization: str = "post_ln", r0: float = 1.0, rtol: float = 1e-13,
                      atol: float = 1e-15) -> dict:
    """Solve the reduced ODE from time t[0] and return rho (and r) at the times ``t``.

    Parameters
    ----------
    rho0 : float, initial inner product in [-1/(n-1), 1]
    t : (T,) increasing times, t[0] the initial time
    beta, n, normalized, normalization : see :func:`equiangular_rhs`
    r0 : float, initial common radius (pre_ln / peri_ln)

    Returns
    -------
    dict with ``t (T,)``, ``rho (T,)`` and, for pre_ln / peri_ln, ``r (T,)``.
    """
    if not normalized and normalization != "peri_ln" and beta > LOG_MAX:
        raise ParameterError("model.beta", f"beta <= {LOG_MAX:.1f} for the unnormalized (USA) reduction "
                             "with post_ln / pre_ln (its rates grow like e^beta)", beta)
    t = np.asarray(t, float)
    y0 = [rho0] if normalization == "post_ln" else [rho0, r0]
    sol = solve_ivp(equiangular_rhs, (t[0], t[-1]), y0, t_eval=t, method="DOP853", rtol=rtol,
                    atol=atol, args=(beta, n, normalized, normalization))
    if not sol.success:  # pragma: no cover - smooth right-hand side
        raise RuntimeError(sol.message)
    out = {"t": t, "rho": sol.y[0]}
    if normalization != "post_ln":
        out["r"] = sol.y[1]
    return out


def one_layer_inner(rho: float, beta: float, n: int) -> float:
    """Inner product of equiangular tokens after one SA layer and normalization (exact, any n)."""
    # work with p = 1, q = e^{beta (rho - 1)} (the common factor cancels)
    q = math.exp(beta * (rho - 1.0))
    l1 = (1.0 + (n - 1) * q) ** 2 * (1.0 + (n - 1) * rho)
    l0 = (1.0 - q) ** 2 * (1.0 - rho)
    return (l1 - l0) / (l1 + (n - 1) * l0)


def long_context_limit(rho: float, gamma: float) -> float:
    """N -> infinity limit of :func:`one_layer_inner` with beta = gamma log N (docs/models.md §4).

    1 if gamma < 1/(1 - rho), 4 rho / (1 + 3 rho) at gamma = 1/(1 - rho), rho above.
    """
    crit = 1.0 / (1.0 - rho)
    if math.isclose(gamma, crit, rel_tol=1e-12):
        return 4.0 * rho / (1.0 + 3.0 * rho)
    return 1.0 if gamma < crit else rho


def clustering_rate(beta: float, normalized: bool = True) -> float:
    """Linearized rate lambda of eps = 1 - rho near full clustering, eps' ~ -lambda eps (post_ln).

    2 for SA, 2 e^beta for USA (docs/models.md §4; inf beyond the float64 range).
    """
    return 2.0 if normalized else exp_clipped(beta + math.log(2.0))
