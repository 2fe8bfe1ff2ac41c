"""Dense analytic Jacobians of the first-order attention fields (softmax and sphere models).

The stiff integrators need ``J = dF/dz`` of ``z' = F(z)``, ``z = x.ravel()``:
``J[i d + a, j d + b] = d f_{i,a} / d x_{j,b}``, shape ``(N d, N d)``. Forward
differences cost ``N d`` field evaluations; here one pass over pairs, row by
row, writes the matrix in ``O(N^2 d^2)``.

The attention output of target i at points ``x`` (the directions theta of the
sphere model, the states of the softmax model), with ``q_i = A^T x_i`` (logits
``l_ij = q_i . x_j``), weights ``w_ij = exp(l_ij) / sum_k exp(l_ik)`` (SA) or
``exp(l_ij) / n_i`` (USA), ``xbar_i = sum_j w_ij x_j``, ``S_i = sum_j w_ij x_j x_j^T``,
a confining term ``g_i = B Q x_i - B q`` with mobility ``mob_i = 1 / z_i`` (SA) or
1 (USA), is ``u_i = V xbar_i - mob_i g_i``, and

    du_i/dx_j = w_ij [V + (V x_j - c_i) q_i^T]                  (second index, j in the mask)
              + delta_ij [(V S_i - c_i xbar_i^T) A^T - mob_i B Q]   (first index, the query)

with ``c_i = u_i`` for SA (the normalization's and the mobility's derivatives)
and ``c_i = 0`` for USA. The scheme then maps u to the field,
``f_i = P_{theta_i} u_i`` (post_ln), ``u_i`` (pre_ln, and the softmax model) or
``u_i / |u_i|`` (peri_ln), whose derivative is ``L_i du_i`` with ``L_i = P_{theta_i}``,
``I`` or ``P_{u_i} / |u_i|``; post_ln adds ``-[(theta_i . u_i) I + theta_i u_i^T] dtheta_i``.
When the points are directions (``project``), ``dtheta_j/dx_j = P_{theta_j} / |x_j|``
multiplies every block on the right, so the Jacobian is that of the field the
model evaluates also off the sphere (stage values of a step leave it).

Per pair this is ``s_j [L V - (L V x_j) x_j^T + (L V x_j - L c_i) rho_j^T]`` with
``s_j = w_ij / |x_j|`` and ``rho_j = P_{theta_j} q_i`` (``w_ij [L V + (L V x_j - L c_i) q_i^T]``
without ``project``): O(d^2) per pair. A row block is built from arrays over the
sources with unit stride (logits, weights, ``L V x_j``, ``s_j rho_j``), so the
loops over sources vectorize; the matrix writes bound the time (9 doubles per
pair at d = 3). Rows are independent (each row of J is written by one
thread), so the result does not depend on the thread count.
"""

import math

import numpy as np
from numba import njit, prange

from ._config import NJIT, NJIT_PARALLEL, inline_into_callers
from .fastexp import fexp
from .lanes import lane_dot, lane_dot3, lane_sum
from .sphere import PERI_LN, POST_LN, PRE_LN  # noqa: F401 (PRE_LN: the softmax model's scheme)

# No re-association here: the parallel region's body exists twice, as its own library (what runs
# in the process that compiled it) and linked into the kernel (what runs in a process that loads
# the kernel from numba's cache), and LLVM optimizes the second copy once more. Under
# re-association that reordered the moments' sums (other Jacobian bits in a cache-loading
# process); they vectorize in fixed-order lanes instead (lanes.py).

#: Rows of J per parallel task (the per-row work arrays are allocated once per task).
ROWS = 16

_BIG = 1.7976931348623157e308


@njit(**NJIT)
def _weights(i, X, XT, A, normalized, causal, q, lg, w):
    """Query ``q = A^T x_i``, logits ``lg_j = q . x_j`` and weights ``w_j`` of row i; returns ``(z_i, n_i)``.

    SA: ``w_j = exp(lg_j) / sum_k exp(lg_k)``; USA: ``w_j = exp(lg_j) / n_i`` (over the mask ``j < n_i``).
    """
    inline_into_callers()
    N, d = X.shape
    jend = i + 1 if causal else N
    for b in range(d):
        v = 0.0
        for a in range(d):
            v += A[a, b] * X[i, a]
        q[b] = v
    for j in range(jend):
        lg[j] = 0.0
    for b in range(d):
        qb = q[b]
        xb = XT[b]
        for j in range(jend):
            lg[j] += qb * xb[j]
    m = -np.inf
    for j in range(jend):
        m = max(m, lg[j])
    tot = 0.0
    for j in range(jend):
        ej = fexp(lg[j] - m)
        w[j] = ej
        tot += ej
    z = math.exp(m) * (tot / jend)
    scale = 1.0 / tot if normalized else math.exp(m) / jend
    for j in range(jend):
        w[j] *= scale
    return z, jend


@njit(**NJIT)
def _mm(A, B, out):
    """``out = A @ B`` for small square matrices (no BLAS call, no allocation)."""
    inline_into_callers()
    d = A.shape[0]
    for a in range(d):
        for b in range(d):
            v = 0.0
            for k in range(d):
                v += A[a, k] * B[k, b]
            out[a, b] = v


@njit(**NJIT)
def _row(i, X, XT, rinv, A, V, BQ, Bq, scheme, project, normalized, causal, J, F, lg, w, LX, W, G, vec, mat):
    """Row block i of J (rows ``i d .. i d + d - 1``) and the field ``F[i]``; False when not finite.

    lg, w : (N,) work; LX, W, G : (d, N) work; vec : (5, d) and mat : (5, d, d) work.
    """
    inline_into_callers()
    N, d = X.shape
    q, xbar, u, c, Lc = vec[0], vec[1], vec[2], vec[3], vec[4]
    S, L, LV, M, T = mat[0], mat[1], mat[2], mat[3], mat[4]
    z, jend = _weights(i, X, XT, A, normalized, causal, q, lg, w)
    mob = 1.0 / z if normalized else 1.0
    for a in range(d):
        xa = XT[a]
        xbar[a] = lane_dot(w, xa, jend)
        for b in range(a + 1):
            S[a, b] = S[b, a] = lane_dot3(w, xa, XT[b], jend)
    # u_i = V xbar - mob g_i, c_i = u_i (SA) or 0 (USA)
    for a in range(d):
        v = 0.0
        g = -Bq[a]
        for b in range(d):
            v += V[a, b] * xbar[b]
            g += BQ[a, b] * X[i, b]
        u[a] = v - mob * g
        c[a] = u[a] if normalized else 0.0
    # L_i and the field f_i
    tu = 0.0
    uu = 0.0
    for a in range(d):
        tu += X[i, a] * u[a]
        uu += u[a] * u[a]
    nu = math.sqrt(uu)
    ok = True
    for a in range(d):
        for b in range(d):
            L[a, b] = 1.0 if a == b else 0.0
            if scheme == POST_LN:
                L[a, b] -= X[i, a] * X[i, b]
            elif scheme == PERI_LN:
                L[a, b] = (L[a, b] - u[a] * u[b] / uu) / nu
        if scheme == POST_LN:
            F[i, a] = u[a] - tu * X[i, a]
        elif scheme == PERI_LN:
            F[i, a] = u[a] / nu
        else:
            F[i, a] = u[a]
        ok &= abs(F[i, a]) <= _BIG
    _mm(L, V, LV)
    for a in range(d):
        v = 0.0
        for b in range(d):
            v += L[a, b] * c[b]
        Lc[a] = v
    # per source: s_j (into w), LX[a, j] = (L V x_j)_a, G[b, j] = s_j rho_j[b], W = G - [project] s_j x_j
    for j in range(jend):
        w[j] *= rinv[j] if project else 1.0
    for a in range(d):
        la = LX[a]
        for j in range(jend):
            la[j] = 0.0
        for k in range(d):
            lv = LV[a, k]
            xk = XT[k]
            for j in range(jend):
                la[j] += lv * xk[j]
    for b in range(d):
        qb = q[b]
        xb = XT[b]
        gb = G[b]
        wb = W[b]
        for j in range(jend):
            if project:
                gb[j] = w[j] * (qb - lg[j] * xb[j])
                wb[j] = gb[j] - w[j] * xb[j]
            else:
                gb[j] = w[j] * qb
                wb[j] = gb[j]
    for a in range(d):
        row = J[i * d + a]
        la = LX[a]
        lc = Lc[a]
        for b in range(d):
            lv = LV[a, b]
            gb = G[b]
            wb = W[b]
            for j in range(jend):
                row[j * d + b] = la[j] * wb[j] + lv * w[j] - lc * gb[j]
        for col in range(jend * d, N * d):
            row[col] = 0.0
    # the query's (first index) block: L [(V S - c xbar^T) A^T - mob B Q], then dtheta_i/dx_i
    _mm(V, S, M)
    for a in range(d):
        for b in range(d):
            v = -mob * BQ[a, b]
            for k in range(d):
                v += (M[a, k] - c[a] * xbar[k]) * A[b, k]
            T[a, b] = v
    _mm(L, T, M)
    if scheme == POST_LN:
        for a in range(d):
            M[a, a] -= tu
            for b in range(d):
                M[a, b] -= X[i, a] * u[b]
    ri = rinv[i] if project else 1.0
    for a in range(d):
        mx = 0.0
        if project:
            for k in range(d):
                mx += M[a, k] * X[i, k]
        for b in range(d):
            v = J[i * d + a, i * d + b] + (M[a, b] - mx * X[i, b]) * ri
            J[i * d + a, i * d + b] = v
            ok &= abs(v) <= _BIG
    return ok and abs(lane_sum(w, jend)) <= _BIG


@njit(**NJIT_PARALLEL)
def attention_jacobian(X, rinv, A, V, BQ, Bq, scheme, project, normalized, causal, J, F):
    """Dense Jacobian of a first-order attention field and the field itself (float64).

    Parameters
    ----------
    X : (N, d) float64 points attention is evaluated at (unit directions when ``project``)
    rinv : (N,) float64, ``1 / |x_j|`` of the state (read when ``project``)
    A, V : (d, d) float64 query-key and value matrices (logits ``x_i^T A x_j``)
    BQ : (d, d) float64, ``B Q`` of a confining term (zeros: none)
    Bq : (d,) float64, ``B Q m``
    scheme : int, ``POST_LN``, ``PRE_LN`` (also the softmax model) or ``PERI_LN``
    project : bool, the state is ``x_j = X_j / rinv_j`` (chain rule through ``theta = x / |x|``)
    normalized, causal : bool, SA / USA and the mask ``j <= i``
    J : (N d, N d) float64 output, ``J[i d + a, j d + b] = d f_{i,a} / d x_{j,b}``
    F : (N, d) float64 output, the field ``f_i``

    Returns
    -------
    int
        Number of row blocks with a non-finite entry (USA overflow, ``u_i = 0`` under peri_ln).
    """
    N, d = X.shape
    XT = np.ascontiguousarray(X.T)
    nb = (N + ROWS - 1) // ROWS
    bad = 0
    for blk in prange(nb):
        lg = np.empty(N)
        w = np.empty(N)
        LX = np.empty((d, N))
        W = np.empty((d, N))
        G = np.empty((d, N))
        vec = np.empty((5, d))
        mat = np.empty((5, d, d))
        for i in range(blk * ROWS, min(N, blk * ROWS + ROWS)):
            if not _row(i, X, XT, rinv, A, V, BQ, Bq, scheme, project, normalized, causal, J, F,
                        lg, w, LX, W, G, vec, mat):
                bad += 1
    return bad
