"""Kernels of the sphere model (docs/models.md §4) that the pairwise softmax module lacks.

The attention sums themselves are the tiled softmax passes of
:mod:`meanfield._kernels.pairwise` (logits ``beta <Q x_i, K x_j> = x_i^T A x_j``
with ``A = beta Q^T K``). What lives here is particle-wise work around them --
the tangent projection and the normalization-scheme speed factors, the
retraction onto the sphere, the constrained (tangent) Hamiltonian field -- and
one O(N^2) diagnostics pass over pairs (:func:`prim_pass`) that computes, from
the unit directions, in a single sweep:

* the interaction energy sum ``sum_{i<j} exp(beta (<theta_i, theta_j> - 1))``,
* the minimum pairwise inner product,
* a maximum spanning tree of the similarity graph ``<theta_i, theta_j>``
  (Prim's dense algorithm, O(N) memory): cutting its edges of weight
  ``<= 1 - tol`` leaves exactly the connected components of the graph
  ``<theta_i, theta_j> > 1 - tol`` (single linkage), for every ``tol`` at once.

Prim visits every unordered pair exactly once (when the first of the two
joins the tree), so the energy and the minimum come for free. The pass is
serial: each of its N iterations is O(N d) vectorized work, too little to
amortize a parallel region; at N = 16000, d = 3 it costs about as much as
one oracle call, and it runs only at saves.
"""

import math

import numpy as np
from numba import njit, prange

from ._config import NJIT, NJIT_PARALLEL, inline_into_callers
from .fastexp import fexp

#: Vectorizable reductions in the serial pair pass (sum, min over a row).
NJIT_REDUCE = dict(NJIT, fastmath={"contract", "reassoc", "nsz"})

POST_LN, PRE_LN, PERI_LN = 0, 1, 2
SCHEMES = {"post_ln": POST_LN, "pre_ln": PRE_LN, "peri_ln": PERI_LN}


# ------------------------------------------------------- particle-wise


@njit(**NJIT_PARALLEL)
def directions(X, out):
    """Unit directions ``theta_i = x_i / |x_i|`` in float64.

    Parameters
    ----------
    X : (N, d) positions (any float dtype)
    out : (N, d) float64 output

    Returns
    -------
    float
        ``min_i |x_i|`` (0 means some direction is undefined; that row is left as x_i).
    """
    N, d = X.shape
    norms = np.empty(N)
    for i in prange(N):
        s = 0.0
        for k in range(d):
            v = np.float64(X[i, k])
            s += v * v
        r = math.sqrt(s)
        norms[i] = r
        inv = 1.0 / r if r > 0.0 else 1.0
        for k in range(d):
            out[i, k] = np.float64(X[i, k]) * inv
    return norms.min() if N else 1.0


@njit(**NJIT_PARALLEL)
def norms_into(X, out):
    """``out_i = |x_i|`` (float64). X : (N, d); out : (N,)."""
    N, d = X.shape
    for i in prange(N):
        s = 0.0
        for k in range(d):
            v = np.float64(X[i, k])
            s += v * v
        out[i] = math.sqrt(s)


@njit(**NJIT)
def _retract_row(X, i):
    """``x_i <- x_i / |x_i|`` for one row (norm in float64)."""
    inline_into_callers()
    s = 0.0
    for k in range(X.shape[1]):
        v = np.float64(X[i, k])
        s += v * v
    inv = 1.0 / math.sqrt(s)
    for k in range(X.shape[1]):
        X[i, k] = np.float64(X[i, k]) * inv


@njit(**NJIT_PARALLEL)
def retract(X):
    """In place ``x_i <- x_i / |x_i|`` (the retraction onto S^{d-1}).

    Parameters
    ----------
    X : (N, d), float64 or float32, updated in place
    """
    for i in prange(X.shape[0]):
        _retract_row(X, i)


@njit(**NJIT_PARALLEL)
def retract_tangent(X, Y):
    """In place: retract positions, then project momenta to the tangent space.

    ``x_i <- x_i / |x_i|``, ``y_i <- y_i - (x_i . y_i) x_i`` (with the new x_i).
    One Gram-Schmidt correction leaves ``|x_i . y_i|`` at round-off times
    ``|y_i|``.

    Parameters
    ----------
    X, Y : (N, d), updated in place
    """
    N, d = X.shape
    for i in prange(N):
        _retract_row(X, i)
        c = 0.0
        for k in range(d):
            c += np.float64(X[i, k]) * np.float64(Y[i, k])
        for k in range(d):
            Y[i, k] = np.float64(Y[i, k]) - c * np.float64(X[i, k])


@njit(**NJIT_PARALLEL)
def finish_first_order(X, F, a, b, scheme, out):
    """Write ``out = a X + b f`` with the first-order sphere field ``f`` of a scheme.

    ``F`` holds the attention vectors ``a_i`` (SA or USA sums, evaluated at the
    directions theta = x / |x| by the model). With
    ``P_x = I - x x^T / |x|^2`` (the orthogonal projector onto x^perp):

    * post_ln (0): ``f_i = P_{x_i} a_i`` (the projected flow; x_i . f_i = 0, so
      |x_i| is conserved by the exact flow);
    * pre_ln (1): ``f_i = a_i`` (residual stream ``x' = a(theta)``);
    * peri_ln (2): ``f_i = a_i / |a_i|`` (residual stream ``x' = a(theta) / |a(theta)|``).

    ``out`` may alias ``X``.

    Parameters
    ----------
    X : (N, d) state
    F : (N, d) attention vectors a_i
    a, b : float
    scheme : int (POST_LN, PRE_LN, PERI_LN)
    out : (N, d) output

    Returns
    -------
    int
        Number of rows whose field is not finite (e.g. a_i = 0 under peri_ln).
    """
    N, d = X.shape
    bad = 0
    for i in prange(N):
        c = 0.0
        if scheme == POST_LN:
            xx = 0.0
            xa = 0.0
            for k in range(d):
                xk = np.float64(X[i, k])
                xx += xk * xk
                xa += xk * np.float64(F[i, k])
            c = xa / xx
        scale = 1.0
        if scheme == PERI_LN:
            aa = 0.0
            for k in range(d):
                fk = np.float64(F[i, k])
                aa += fk * fk
            scale = 1.0 / math.sqrt(aa)
        ok = True
        for k in range(d):
            xk = np.float64(X[i, k])
            f = (np.float64(F[i, k]) - c * xk) * scale
            v = a * xk + b * f
            out[i, k] = v
            ok &= abs(v) <= 1.7976931348623157e308
        if not ok:
            bad += 1
    return bad


@njit(**NJIT_PARALLEL)
def finish_hamiltonian(X, Y, F, G, ax, bx, ay, by, outX, outY):
    """Constrained (tangent) Hamiltonian field on the sphere, combined into an explicit step.

    From the unconstrained field ``F = y / z``, ``G = -N dH/dx`` of docs/models.md §3
    (A = beta Q^T K symmetric, B = I) the field on ``{|x_i| = 1, x_i . y_i = 0}``
    is ``x' = F``, ``y' = G - lambda_i x_i`` with the Lagrange multiplier
    ``lambda_i = (x_i . G_i + y_i . F_i) / |x_i|^2``. This choice makes
    ``x_i . y_i`` an exact invariant of the ambient flow, and then ``|x_i|``
    too (``d|x|^2/dt = 2 x . y / z``), so a consistent integrator of order p
    followed by the retraction stays of order p.

    Writes ``outX = ax X + bx F``, ``outY = ay Y + by (G - lambda X)``; the
    outputs may alias ``X`` and ``Y``.

    Parameters
    ----------
    X, Y, F, G : (N, d)
    ax, bx, ay, by : float
    outX, outY : (N, d) outputs

    Returns
    -------
    int
        Number of rows whose field is not finite.
    """
    N, d = X.shape
    bad = 0
    for i in prange(N):
        xx = 0.0
        lam = 0.0
        for k in range(d):
            xk = np.float64(X[i, k])
            xx += xk * xk
            lam += xk * np.float64(G[i, k]) + np.float64(Y[i, k]) * np.float64(F[i, k])
        lam /= xx
        ok = True
        for k in range(d):
            xk = np.float64(X[i, k])
            gy = ay * np.float64(Y[i, k]) + by * (np.float64(G[i, k]) - lam * xk)
            gx = ax * xk + bx * np.float64(F[i, k])
            outY[i, k] = gy
            outX[i, k] = gx
            ok &= abs(gx) <= 1.7976931348623157e308 and abs(gy) <= 1.7976931348623157e308
        if not ok:
            bad += 1
    return bad


@njit(**NJIT_PARALLEL)
def constraint_errors(X, Y):
    """``(max_i ||x_i| - 1|, max_i |x_i . y_i| / max(1, |y_i|))``; Y may be a 0-row array.

    Parameters
    ----------
    X : (N, d)
    Y : (N, d) or (0, d)
    """
    N, d = X.shape
    en = np.zeros(N)
    et = np.zeros(N)
    hasy = Y.shape[0] == N
    for i in prange(N):
        s = 0.0
        for k in range(d):
            v = np.float64(X[i, k])
            s += v * v
        en[i] = abs(math.sqrt(s) - 1.0)
        if hasy:
            c = 0.0
            yy = 0.0
            for k in range(d):
                c += np.float64(X[i, k]) * np.float64(Y[i, k])
                yy += np.float64(Y[i, k]) * np.float64(Y[i, k])
            et[i] = abs(c) / max(1.0, math.sqrt(yy))
    return (en.max() if N else 0.0), (et.max() if N else 0.0)


# ---------------------------------------------------------- pairs (saves)


@njit(**NJIT_REDUCE)
def _dots(xc, W, m, s):
    """``s[p] = xc . W[:, p]`` for the m remaining nodes (unit stride over p)."""
    inline_into_callers()
    d = W.shape[0]
    x0 = xc[0]
    W0 = W[0]
    for p in range(m):
        s[p] = x0 * W0[p]
    for k in range(1, d):
        xk = xc[k]
        Wk = W[k]
        for p in range(m):
            s[p] += xk * Wk[p]


@njit(**NJIT_REDUCE)
def _exp_sum(s, m, beta):
    """sum_p exp(beta (s[p] - 1)) (vectorized polynomial exp)."""
    inline_into_callers()
    acc = 0.0
    for p in range(m):
        acc += fexp(beta * s[p] - beta)
    return acc


@njit(**NJIT)
def _min(s, m):
    """min of ``s[:m]`` with 8 independent running minima (vectorizes; a single chain does not)."""
    inline_into_callers()
    t = np.full(8, np.inf)
    p = 0
    while p + 8 <= m:
        for k in range(8):
            v = s[p + k]
            t[k] = v if v < t[k] else t[k]  # noqa: FURB136 (explicit select vectorizes)
        p += 8
    g = np.inf
    for k in range(8):
        g = t[k] if t[k] < g else g  # noqa: FURB136 (explicit select vectorizes)
    while p < m:
        g = s[p] if s[p] < g else g  # noqa: FURB136 (explicit select vectorizes)
        p += 1
    return g


@njit(**NJIT)
def _prim_update(s, m, best, parent, cur):
    inline_into_callers()
    for p in range(m):
        g = s[p]
        better = g > best[p]
        best[p] = g if better else best[p]
        parent[p] = cur if better else parent[p]


@njit(**NJIT)
def _row_update(xc, W, m, beta, s, best, parent, cur):
    """Dots of the new tree node with the m remaining nodes; energy/min sums; Prim update.

    Returns (sum_p exp(beta (g_p - 1)), min_p g_p) over the m remaining nodes.
    """
    inline_into_callers()
    _dots(xc, W, m, s)
    acc = _exp_sum(s, m, beta)
    gmin = _min(s, m)
    _prim_update(s, m, best, parent, cur)
    return acc, gmin


@njit(**NJIT)
def _argmax(v, m):
    """First index of the maximum of ``v[:m]``: a vectorized max, then a scan for it."""
    inline_into_callers()
    t = np.full(8, -np.inf)
    p = 0
    while p + 8 <= m:
        for k in range(8):
            x = v[p + k]
            t[k] = x if x > t[k] else t[k]  # noqa: FURB136 (explicit select vectorizes)
        p += 8
    best = -np.inf
    for k in range(8):
        best = t[k] if t[k] > best else best  # noqa: FURB136 (explicit select vectorizes)
    while p < m:
        best = v[p] if v[p] > best else best  # noqa: FURB136 (explicit select vectorizes)
        p += 1
    for p in range(m):
        if v[p] == best:
            return p
    return 0


@njit(**NJIT)
def prim_pass(T, beta, W, s, best, parent, idx, xc, edge_u, edge_v, edge_w):
    """One sweep over all pairs: energy sum, minimum inner product, maximum spanning tree.

    Parameters
    ----------
    T : (N, d) float64 unit directions theta_i
    beta : float
    W : (d, N) float64 scratch (remaining nodes, column-major)
    s, best : (N,) float64 scratch
    parent, idx : (N,) int64 scratch
    xc : (d,) float64 scratch
    edge_u, edge_v : (N - 1,) int64 outputs, tree edges (u, v)
    edge_w : (N - 1,) float64 output, their weights <theta_u, theta_v>

    Returns
    -------
    (sum_exp, gmin)
        ``sum_{i<j} exp(beta (<theta_i, theta_j> - 1))`` and ``min_{i != j} <theta_i, theta_j>``
        (``gmin = 1`` when N = 1).
    """
    N, d = T.shape
    for p in range(N):
        for k in range(d):
            W[k, p] = T[p, k]
        best[p] = -np.inf
        parent[p] = -1
        idx[p] = p
    total = 0.0
    gmin = 1.0
    # node 0 joins first: it sits at position 0, swap it out with the last
    cur = 0
    m = N
    pos = 0
    for e in range(N):
        # remove position `pos` (node `cur`) from the remaining set
        for k in range(d):
            xc[k] = W[k, pos]
        last = m - 1
        if pos != last:
            for k in range(d):
                W[k, pos] = W[k, last]
            best[pos] = best[last]
            parent[pos] = parent[last]
            idx[pos] = idx[last]
        m = last
        if m == 0:
            break
        acc, g = _row_update(xc, W, m, beta, s, best, parent, cur)
        total += acc
        gmin = g if g < gmin or e == 0 else gmin
        pos = _argmax(best, m)
        edge_u[e] = parent[pos]
        edge_v[e] = idx[pos]
        edge_w[e] = best[pos]
        cur = idx[pos]
    return total, gmin


@njit(**NJIT)
def components_from_tree(n, edge_u, edge_v, edge_w, threshold, labels):
    """Connected components of a spanning tree after removing edges of weight <= threshold.

    Union-find with path halving; labels are 0..k-1 in order of the smallest
    particle index of each component.

    Parameters
    ----------
    n : int
    edge_u, edge_v : (n - 1,) int64
    edge_w : (n - 1,) float64
    threshold : float, an edge is kept when its weight > threshold
    labels : (n,) int64 output

    Returns
    -------
    int
        Number of components.
    """
    root = np.arange(n)
    for e in range(n - 1):
        if edge_w[e] > threshold:
            a = edge_u[e]
            while root[a] != a:
                root[a] = root[root[a]]
                a = root[a]
            b = edge_v[e]
            while root[b] != b:
                root[b] = root[root[b]]
                b = root[b]
            if a != b:
                if a < b:
                    root[b] = a
                else:
                    root[a] = b
    k = 0
    for i in range(n):
        a = i
        while root[a] != a:
            a = root[a]
        if a == i:
            labels[i] = k
            k += 1
        else:
            labels[i] = labels[a]
    return k
