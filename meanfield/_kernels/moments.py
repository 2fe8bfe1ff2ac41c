"""O(N d^2) kernels of the bilinear (linear-attention) model.

Every field evaluation of the bilinear model needs only d x d moment matrices
(one pass over particles) and then one particle-wise affine map (a second
pass). Both passes are parallel over chunks of particles; the chunking
depends on N only, so results are identical for any thread count.
"""

import numpy as np
from numba import njit, prange

from ._config import NJIT_PARALLEL


@njit(**NJIT_PARALLEL)
def cross_moment(X, Y, bounds, partial, out):
    """Write ``out = X^T Y / N`` and return nothing.

    Parameters
    ----------
    X, Y : (N, d) arrays
    bounds : (nchunks + 1,) int64, chunk boundaries over particles
    partial : (nchunks, d, d) scratch, same dtype as X; on return ``partial[c]`` holds the
        unnormalized chunk sum of x_i y_i^T (the causal kernels build prefix sums from it)
    out : (d, d) output
    """
    n, d = X.shape
    nchunks = bounds.shape[0] - 1
    for c in prange(nchunks):
        acc = partial[c]
        for a in range(d):
            for b in range(d):
                acc[a, b] = 0.0
        i = bounds[c]
        stop = bounds[c + 1]
        # four particles per sweep over acc: four FMAs per load/store of acc
        while i + 4 <= stop:
            for a in range(d):
                x0 = X[i, a]
                x1 = X[i + 1, a]
                x2 = X[i + 2, a]
                x3 = X[i + 3, a]
                for b in range(d):
                    acc[a, b] += x0 * Y[i, b] + x1 * Y[i + 1, b] + x2 * Y[i + 2, b] + x3 * Y[i + 3, b]
            i += 4
        while i < stop:
            for a in range(d):
                xa = X[i, a]
                for b in range(d):
                    acc[a, b] += xa * Y[i, b]
            i += 1
    inv = 1.0 / n
    for a in range(d):
        for b in range(d):
            s = 0.0
            for c in range(nchunks):
                s += partial[c, a, b]
            out[a, b] = s * inv


@njit(**NJIT_PARALLEL)
def column_mean(X, bounds, partial, out):
    """Write ``out = mean over particles of X``.

    Parameters
    ----------
    X : (N, d)
    bounds : (nchunks + 1,) int64
    partial : (nchunks, d) scratch; on return ``partial[c]`` holds the chunk's column sums
    out : (d,)
    """
    n, d = X.shape
    nchunks = bounds.shape[0] - 1
    for c in prange(nchunks):
        for a in range(d):
            partial[c, a] = 0.0
        for i in range(bounds[c], bounds[c + 1]):
            for a in range(d):
                partial[c, a] += X[i, a]
    for a in range(d):
        s = 0.0
        for c in range(nchunks):
            s += partial[c, a]
        out[a] = s / n


@njit(**NJIT_PARALLEL)
def affine_map(X, PT, c, bounds, out):
    """Particle-wise affine map ``out_i = P x_i + c``; ``out`` may alias ``X``.

    Parameters
    ----------
    X : (N, d)
    PT : (d, d), the transpose of P (so the inner loop is contiguous)
    c : (d,)
    bounds : (nchunks + 1,) int64
    out : (N, d)
    """
    n, d = X.shape
    nchunks = bounds.shape[0] - 1
    for ch in prange(nchunks):
        xi = np.empty(d, X.dtype)
        acc = np.empty(d, X.dtype)
        for i in range(bounds[ch], bounds[ch + 1]):
            for k in range(d):
                xi[k] = X[i, k]
                acc[k] = c[k]
            for l in range(d):
                xl = xi[l]
                for k in range(d):
                    acc[k] += PT[l, k] * xl
            for k in range(d):
                out[i, k] = acc[k]


@njit(**NJIT_PARALLEL)
def affine_pair_map(X, Y, PxxT, PyxT, PyyT, cy, bounds, outX, outY):
    """Particle-wise map ``x_i <- Pxx x_i``, ``y_i <- Pyx x_i + Pyy y_i + cy``.

    This is every explicit step of the bilinear Hamiltonian field written as
    one pass (three d x d mat-vecs per particle). ``outX``/``outY`` may alias
    ``X``/``Y``: each particle reads only its own rows before writing them.

    Parameters
    ----------
    X, Y : (N, d)
    PxxT, PyxT, PyyT : (d, d), transposes of the blocks
    cy : (d,)
    bounds : (nchunks + 1,) int64
    outX, outY : (N, d)
    """
    n, d = X.shape
    nchunks = bounds.shape[0] - 1
    for ch in prange(nchunks):
        xi = np.empty(d, X.dtype)
        yi = np.empty(d, X.dtype)
        ax = np.empty(d, X.dtype)
        ay = np.empty(d, X.dtype)
        for i in range(bounds[ch], bounds[ch + 1]):
            for k in range(d):
                xi[k] = X[i, k]
                yi[k] = Y[i, k]
                ax[k] = 0.0
                ay[k] = cy[k]
            for l in range(d):
                xl = xi[l]
                yl = yi[l]
                for k in range(d):
                    ax[k] += PxxT[l, k] * xl
                    ay[k] += PyxT[l, k] * xl + PyyT[l, k] * yl
            for k in range(d):
                outX[i, k] = ax[k]
                outY[i, k] = ay[k]


@njit(**NJIT_PARALLEL)
def quadratic_mean(X, Q, m, bounds, partial):
    """Return ``(1/N) sum_i 1/2 (x_i - m)^T Q (x_i - m)`` without moment cancellation.

    Parameters
    ----------
    X : (N, d)
    Q : (d, d)
    m : (d,)
    bounds : (nchunks + 1,) int64
    partial : (nchunks,) float64 scratch
    """
    n, d = X.shape
    nchunks = bounds.shape[0] - 1
    for ch in prange(nchunks):
        r = np.empty(d, np.float64)
        s = 0.0
        for i in range(bounds[ch], bounds[ch + 1]):
            for k in range(d):
                r[k] = X[i, k] - m[k]
            for k in range(d):
                qk = 0.0
                for l in range(d):
                    qk += Q[k, l] * r[l]
                s += r[k] * qk
        partial[ch] = 0.5 * s
    tot = 0.0
    for ch in range(nchunks):
        tot += partial[ch]
    return tot / n


@njit(**NJIT_PARALLEL)
def causal_hamiltonian(X, Y, AsT, QT, q, offsets, bounds, ax, bx, ay, by, outX, outY):
    """Causally masked bilinear Hamiltonian field, combined: one ordered scan per chunk (docs/models.md §6).

    With the prefix sums S_i = sum_{j<=i} x_j y_j^T (so Mxy(i) = S_i / i, i 1-based)::

        F_i = S_i^T As x_i / i,    G_i = -As S_i y_i / i - Q x_i + q
        outX_i = ax x_i + bx F_i,  outY_i = ay y_i + by G_i

    ``outX``/``outY`` may alias ``X``/``Y`` (each particle is read before it is written).

    Parameters
    ----------
    X, Y : (N, d)
    AsT, QT : (d, d), transposes of As = sym(A) and Q
    q : (d,) Q m
    offsets : (nchunks, d, d) float64, S at the start of each chunk (exclusive prefix of chunk sums)
    bounds : (nchunks + 1,) int64
    ax, bx, ay, by : float
    outX, outY : (N, d)
    """
    n, d = X.shape
    nchunks = bounds.shape[0] - 1
    for c in prange(nchunks):
        S = offsets[c].copy()
        xi = np.empty(d, np.float64)
        yi = np.empty(d, np.float64)
        v = np.empty(d, np.float64)
        w = np.empty(d, np.float64)
        for i in range(bounds[c], bounds[c + 1]):
            for k in range(d):
                xi[k] = X[i, k]
                yi[k] = Y[i, k]
            for a in range(d):
                for b in range(d):
                    S[a, b] += xi[a] * yi[b]
            inv = 1.0 / (i + 1)
            for k in range(d):
                v[k] = 0.0
            for l in range(d):
                for k in range(d):
                    v[k] += AsT[l, k] * xi[l]  # v = As x_i
            for k in range(d):
                f = 0.0
                sy = 0.0
                for a in range(d):
                    f += S[a, k] * v[a]  # (S^T v)_k
                    sy += S[k, a] * yi[a]  # (S y_i)_k
                w[k] = sy
                outX[i, k] = ax * xi[k] + bx * f * inv
            for k in range(d):
                g = q[k]
                for l in range(d):
                    g -= AsT[l, k] * w[l] * inv + QT[l, k] * xi[l]
                outY[i, k] = ay * yi[k] + by * g


@njit(**NJIT_PARALLEL)
def causal_first_order(X, AT, QT, q, offsets, bounds, a, b, out):
    """Causally masked first-order bilinear field, combined: one ordered scan per chunk (docs/models.md §6).

    With S_i = sum_{j<=i} grad W(x_j) x_j^T (so C_i = S_i / i)::

        f_i = -S_i A x_i / i,   out_i = a x_i + b f_i

    ``out`` may alias ``X``.

    Parameters
    ----------
    X : (N, d)
    AT, QT : (d, d), transposes of A and Q
    q : (d,) Q m
    offsets : (nchunks, d, d) float64, S at the start of each chunk
    bounds : (nchunks + 1,) int64
    a, b : float
    out : (N, d)
    """
    n, d = X.shape
    nchunks = bounds.shape[0] - 1
    for c in prange(nchunks):
        S = offsets[c].copy()
        xi = np.empty(d, np.float64)
        g = np.empty(d, np.float64)
        u = np.empty(d, np.float64)
        for i in range(bounds[c], bounds[c + 1]):
            for k in range(d):
                xi[k] = X[i, k]
                g[k] = -q[k]
                u[k] = 0.0
            for l in range(d):
                for k in range(d):
                    g[k] += QT[l, k] * xi[l]
                    u[k] += AT[l, k] * xi[l]
            for r in range(d):
                for k in range(d):
                    S[r, k] += g[r] * xi[k]
            inv = 1.0 / (i + 1)
            for k in range(d):
                f = 0.0
                for l in range(d):
                    f += S[k, l] * u[l]
                out[i, k] = a * xi[k] - b * f * inv
