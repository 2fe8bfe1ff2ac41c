"""Particle-wise kernels of the Fourier summation backend (docs/models.md §8).

The backend (:mod:`meanfield.models._fourier`) writes every interaction sum
as ``sum_j w_j G(u_i - u_j) f_j`` with a unit Gaussian ``G`` in the
coordinates ``u = L x`` (``A = L^T L``), source weights
``w_j = exp(|u_j|^2/2 - M)`` (``M = max_j |u_j|^2/2``) and a few real
vectors ``f`` (1, the coordinates x_j, s_j x_j). These kernels embed the
points, pack the weighted vectors two at a time into the complex strengths
of one type-1 NUFFT (real part one vector, imaginary part the next: the
Gaussian's Fourier coefficients are real and even, so the two sums come back
as the real and imaginary parts of the type-2 output) and unpack the
results into the pass sums of :func:`meanfield._kernels.pairwise.loop_pass`
(``m_i``, ``l_i``, ``acc_i``), so the model's finishers do not change.

All kernels write into preallocated outputs. They are serial on purpose:
they are O(N d), and waking numba's OpenMP threads right before FINUFFT's
own (a second OpenMP runtime) made the two fight for the cores.
"""

import math

import numpy as np
from numba import njit, prange

from ._config import NJIT, NJIT_PARALLEL

#: What a packed strength vector column holds: the weight itself, w_j x_jk, w_j s_j x_jk.
COL_ONE, COL_X, COL_SX = 0, 1, 2


@njit(**NJIT)
def embed(X, L, U, mu):
    """``U[k, i] = (L x_i)_k`` and ``mu_i = |L x_i|^2 / 2`` (float64).

    Parameters
    ----------
    X : (N, d) positions (state dtype)
    L : (r, d) float64 factor, ``A = L^T L``
    U : (r, N) float64 output (one contiguous row per axis, as FINUFFT takes them)
    mu : (N,) float64 output
    """
    N, d = X.shape
    r = L.shape[0]
    for i in range(N):
        s = 0.0
        for k in range(r):
            v = 0.0
            for l in range(d):
                v += L[k, l] * np.float64(X[i, l])
            U[k, i] = v
            s += v * v
        mu[i] = 0.5 * s


@njit(**NJIT)
def to_angles(U, lo, P, T):
    """``T[k, i] = 2 pi (U[k, i] - lo_k) / P_k - pi``, the NUFFT coordinates in [-pi, pi).

    Parameters
    ----------
    U : (r, N) float64
    lo, P : (r,) float64, box corner and period per axis
    T : (r, N) output (float64, or float32 for single-precision transforms)
    """
    r, N = U.shape
    for i in range(N):
        for k in range(r):
            T[k, i] = 2.0 * math.pi * (U[k, i] - lo[k]) / P[k] - math.pi


@njit(**NJIT)
def weights(mu, M, w):
    """``w_j = exp(mu_j - M)``; returns ``sum_j w_j``."""
    N = mu.shape[0]
    total = 0.0
    for j in range(N):
        wj = math.exp(mu[j] - M)
        w[j] = wj
        total += wj
    return total


@njit(**NJIT)
def pack(w, X, s, kinds, axes, C):
    """Fill complex strengths: real column ``c`` goes to ``C[c // 2]`` (real part if c even, else imaginary).

    Column ``c`` is ``w_j`` (``kinds[c] == COL_ONE``), ``w_j x_j[axes[c]]``
    (``COL_X``) or ``w_j s_j x_j[axes[c]]`` (``COL_SX``). Slots past the last
    column are zero (padding to a multiple of the thread count).

    Parameters
    ----------
    w : (N,) float64 weights
    X : (N, d) positions
    s : (N,) float64 (used by ``COL_SX``)
    kinds, axes : (m,) int64
    C : (ntr, N) complex output, ``ntr >= ceil(m / 2)``
    """
    N = w.shape[0]
    m = kinds.shape[0]
    ntr = C.shape[0]
    for j in range(N):
        for p in range(ntr):
            re = 0.0
            im = 0.0
            for h in range(2):
                c = 2 * p + h
                if c < m:
                    v = w[j]
                    if kinds[c] != COL_ONE:
                        v *= np.float64(X[j, axes[c]])
                        if kinds[c] == COL_SX:
                            v *= s[j]
                    if h == 0:
                        re = v
                    else:
                        im = v
            C[p, j] = re + 1j * im


@njit(**NJIT)
def multiply_modes(F, g0, g1, g2):
    """In place ``F[t, a, b, c] *= g0[a] g1[b] g2[c]`` (the Gaussian's Fourier coefficients).

    Parameters
    ----------
    F : (ntr, K0, K1, K2) complex modes (unused axes have length 1, coefficient 1)
    g0, g1, g2 : (K0,), (K1,), (K2,) float64
    """
    ntr, K0, K1, K2 = F.shape
    for a in range(K0):
        for t in range(ntr):
            for b in range(K1):
                gab = g0[a] * g1[b]
                for c in range(K2):
                    F[t, a, b, c] *= gab * g2[c]


@njit(**NJIT)
def finish_sums(V, col_one, col_x, mu, M, lrow, mrow, acc):
    """Pass sums of the first-order and z passes from the packed type-2 output.

    ``m_i = mu_i + M``, ``l_i = sum_j w_j G_ij`` (column ``col_one``) and, when
    ``col_x >= 0``, ``acc_ik = sum_j w_j G_ij x_jk`` (columns ``col_x + k``);
    then ``exp(m_i) l_i = sum_j E_ij`` and ``exp(m_i) acc_i = sum_j E_ij x_j``.
    Returns ``min_i l_i``.

    Parameters
    ----------
    V : (ntr, N) complex type-2 output
    col_one, col_x : int
    mu : (N,) float64, M : float
    lrow, mrow : (N,) float64 outputs
    acc : (N, d) float64 output (written when ``col_x >= 0``)
    """
    N = mu.shape[0]
    d = acc.shape[1]
    lmin = np.inf
    for i in range(N):
        p = col_one // 2
        li = V[p, i].real if col_one % 2 == 0 else V[p, i].imag
        lrow[i] = li
        mrow[i] = mu[i] + M
        lmin = min(lmin, li)
        if col_x >= 0:
            for k in range(d):
                c = col_x + k
                q = c // 2
                acc[i, k] = V[q, i].real if c % 2 == 0 else V[q, i].imag
    return lmin


@njit(**NJIT)
def finish_force(V, col_sx, Sx, cvec, mu, M, mrow, acc):
    """Force-pass sums: ``acc_ik = exp(mu_i + M - m_i) (c_i Sx_ik + sum_j w_j G_ij s_j x_jk)``.

    ``Sx`` holds ``sum_j w_j G_ij x_j`` from the z pass of the same points,
    ``m_i`` (``mrow``, input) the shift of that pass, so that
    ``exp(m_i) acc_i = sum_j E_ij (c_i + s_j) x_j`` as in
    :func:`meanfield._kernels.pairwise.loop_pass` (MODE_FORCE).

    Parameters
    ----------
    V : (ntr, N) complex type-2 output (columns ``col_sx + k``)
    Sx : (N, d) float64
    cvec, mu : (N,) float64, M : float
    mrow : (N,) float64 input
    acc : (N, d) float64 output
    """
    N, d = acc.shape
    for i in range(N):
        f = math.exp(mu[i] + M - mrow[i])
        for k in range(d):
            c = col_sx + k
            q = c // 2
            sx = V[q, i].real if c % 2 == 0 else V[q, i].imag
            acc[i, k] = f * (cvec[i] * Sx[i, k] + sx)


@njit(**NJIT)
def circle_angles(X, T):
    """``T[0, i] = atan2(x_i2, x_i1)`` in [-pi, pi], the NUFFT coordinate of a token on the circle.

    Parameters
    ----------
    X : (N, 2) unit vectors (state dtype)
    T : (1, N) float64 output
    """
    N = X.shape[0]
    for i in range(N):
        T[0, i] = math.atan2(np.float64(X[i, 1]), np.float64(X[i, 0]))


@njit(**NJIT)
def cell_totals(U, lo, h, ncell, w, totals):
    """Add the weights into cells of side ``h``: ``totals[key(u_j)] += w_j``.

    The key is the row-major index of ``floor((u_j - lo) / h)`` (clipped to
    ``ncell - 1`` per axis). Returns the number of occupied cells.

    Parameters
    ----------
    U : (r, N) float64 coordinates
    lo : (r,) float64 box corner
    h : float, cell side
    ncell : (r,) int64 cells per axis
    w : (N,) float64 weights
    totals : (prod(ncell),) float64 output
    """
    r, N = U.shape
    totals[:] = 0.0
    for j in range(N):
        key = 0
        for k in range(r):
            c = int(math.floor((U[k, j] - lo[k]) / h))
            c = min(max(c, 0), ncell[k] - 1)
            key = key * ncell[k] + c
        totals[key] += w[j]
    occupied = 0
    for c in range(totals.shape[0]):
        if totals[c] > 0.0:
            occupied += 1
    return occupied


@njit(**NJIT)
def cell_lower_bound(totals, ncell, h, circle_beta):
    """A lower bound of ``min_i sum_j w_j G(u_i - u_j)`` over the occupied cells (from :func:`cell_totals`).

    For a target in cell ``a``, every source in cell ``b`` lies at most
    ``Dmax(a, b)`` away, so ``sum_j w_j G_ij >= sum_b W_b G(Dmax(a, b))``
    (``W_b`` the weight of cell ``b``, ``G`` decreasing in the distance).
    Euclidean cells (``circle_beta == 0``): ``Dmax^2 = sum_k ((|a_k - b_k| + 1) h)^2``,
    ``G(D) = exp(-D^2 / 2)``. The circle (one axis of ``ncell[0] = 2 pi / h``
    angular cells, ``circle_beta = beta``): ``Dmax = min(pi, (circular index
    distance + 1) h)``, ``G(D) = exp(beta (cos D - 1))``. O(occupied cells^2).

    Returns
    -------
    float, ``min_a sum_b W_b G(Dmax(a, b))`` over occupied cells ``a``
    """
    r = ncell.shape[0]
    nc = totals.shape[0]
    occ = 0
    for c in range(nc):
        if totals[c] > 0.0:
            occ += 1
    cells = np.empty(occ, np.int64)
    idx = np.empty((occ, r), np.int64)
    q = 0
    for c in range(nc):
        if totals[c] > 0.0:
            cells[q] = c
            rem = c
            for k in range(r - 1, -1, -1):
                idx[q, k] = rem % ncell[k]
                rem //= ncell[k]
            q += 1
    # G(Dmax) is a product of per-axis factors of the index distance (one factor on the circle)
    nmax = 0
    for k in range(r):
        nmax = max(nmax, ncell[k])
    tab = np.ones((r, nmax))
    for k in range(r):
        for di in range(ncell[k]):
            if circle_beta > 0.0:
                D = min(math.pi, (min(di, ncell[k] - di) + 1) * h)
                tab[k, di] = math.exp(circle_beta * (math.cos(D) - 1.0))
            else:
                D = (di + 1) * h
                tab[k, di] = math.exp(-0.5 * D * D)
    best = np.inf
    for a in range(occ):
        s = 0.0
        for b in range(occ):
            g = totals[cells[b]]
            for k in range(r):
                g *= tab[k, abs(idx[a, k] - idx[b, k])]
            s += g
        best = min(best, s)
    return best


#: Points per block of the spherical-harmonic sums (a multiple of SH_LANES).
SH_BLOCK = 256
SH_LANES = 16


@njit(**NJIT)
def sh_tables(L):
    """Recurrence coefficients of the 4 pi-normalized associated Legendre functions over sin^m.

    ``R_lm(z) = Pbar_lm(z) / sin^m(theta)`` (``z = cos theta``) obeys
    ``R_mm = c_m``, ``R_lm = a_lm z R_{l-1,m} - b_lm R_{l-2,m}``; returns
    ``a, b`` of shape ``(L + 1, L + 1)`` (indexed ``[l, m]``) and ``c`` of shape ``(L + 1,)``.
    """
    a = np.zeros((L + 1, L + 1))
    b = np.zeros((L + 1, L + 1))
    c = np.ones(L + 1)
    for m in range(1, L + 1):
        c[m] = c[m - 1] * math.sqrt((2.0 * m + 1.0) / (2.0 * m)) if m > 1 else math.sqrt(3.0)
    for m in range(L + 1):
        for l in range(m + 1, L + 1):
            a[l, m] = math.sqrt((2.0 * l - 1.0) * (2.0 * l + 1.0) / ((l - m) * (l + m)))
            if l >= m + 2:
                b[l, m] = math.sqrt((2.0 * l + 1.0) * (l + m - 1.0) * (l - m - 1.0)
                                    / ((l - m) * (l + m) * (2.0 * l - 3.0)))
    return a, b, c


@njit(**NJIT)
def _sh_block(X, j0, n, a, b, c, L, work, mode, S, Cacc, V, coef, lanes):
    """One block of points: every real spherical harmonic up to degree L, analysed or synthesized.

    Features, in the order m = 0..L, l = m..L (for m > 0 the cos part, then the sin part):
    ``R_lm(z_p) Re (x_p + i y_p)^m`` and ``R_lm(z_p) Im (x_p + i y_p)^m``, so that
    ``sum_m f_lm(x) f_lm(x') = (2 l + 1) P_l(x . x')`` on the unit sphere.
    ``mode == 0`` (analysis): ``Cacc[f, c] += sum_p f(x_p) S[c, p]``;
    ``mode == 1`` (synthesis): ``V[c, p] += coef[f] Cacc[f, c] f(x_p)``.
    Points ``p >= n`` of the block are padding (their features are zero).

    Parameters
    ----------
    X : (N, 3) unit vectors; j0, n : first point and number of points of the block
    a, b, c : recurrence tables of :func:`sh_tables`; L : int, degree
    work : (8, B) float64 scratch (rows: z, x, y, Re and Im of (x + i y)^m, two Legendre rows,
        the feature)
    lanes : (SH_LANES,) float64 scratch
    S : (ncol, B) float64 strengths of the block (analysis)
    Cacc : (nf, ncol) float64 coefficients (accumulated, or read by the synthesis)
    V : (ncol, B) float64 block output (synthesis)
    coef : (nf,) float64 kernel coefficient per feature
    """
    z, xs, ys, re, im, r0, r1, y = work[0], work[1], work[2], work[3], work[4], work[5], work[6], work[7]
    B = z.shape[0]
    ncol = Cacc.shape[1]
    for p in range(B):
        if p < n:
            z[p] = np.float64(X[j0 + p, 2])
            xs[p] = np.float64(X[j0 + p, 0])
            ys[p] = np.float64(X[j0 + p, 1])
            re[p] = 1.0
        else:
            z[p] = 0.0
            xs[p] = 0.0
            ys[p] = 0.0
            re[p] = 0.0
        im[p] = 0.0
    f = 0
    for m in range(L + 1):
        if m > 0:
            for p in range(B):
                t = re[p] * xs[p] - im[p] * ys[p]
                im[p] = re[p] * ys[p] + im[p] * xs[p]
                re[p] = t
        cm = c[m]
        for p in range(B):
            r0[p] = 0.0
            r1[p] = cm
        for l in range(m, L + 1):
            if l > m:
                alm = a[l, m]
                blm = b[l, m]
                for p in range(B):
                    v = alm * z[p] * r1[p] - blm * r0[p]
                    r0[p] = r1[p]
                    r1[p] = v
            for part in range(2 if m > 0 else 1):
                if part == 0:
                    for p in range(B):
                        y[p] = r1[p] * re[p]
                else:
                    for p in range(B):
                        y[p] = r1[p] * im[p]
                if mode == 0:
                    for col in range(ncol):
                        for q in range(SH_LANES):
                            lanes[q] = 0.0
                        for p0 in range(0, B, SH_LANES):
                            for q in range(SH_LANES):
                                lanes[q] += y[p0 + q] * S[col, p0 + q]
                        s = 0.0
                        for q in range(SH_LANES):
                            s += lanes[q]
                        Cacc[f, col] += s
                else:
                    for col in range(ncol):
                        w = coef[f] * Cacc[f, col]
                        for p in range(B):
                            V[col, p] += w * y[p]
                f += 1
    return f


@njit(**NJIT_PARALLEL)
def sh_analysis(X, C, ncol, L, a, b, c, bounds, part):
    """Per-chunk spherical-harmonic coefficients of the packed strengths.

    ``part[k, f, col] = sum_{j in chunk k} f(x_j) s_col(j)`` where real column
    ``col`` of the strengths is ``C[col // 2].real`` (even) or ``.imag`` (odd),
    as :func:`pack` lays them out. The caller sums ``part`` over chunks in
    order (the chunks depend on N only, so the result does not depend on the
    thread count).

    Parameters
    ----------
    X : (N, 3) unit vectors
    C : (ntr, N) complex packed strengths; ncol : number of real columns used
    L : int; a, b, c : :func:`sh_tables`
    bounds : (nchunks + 1,) int64 chunk boundaries
    part : (nchunks, nf, ncol) float64 output
    """
    B = SH_BLOCK
    nchunks = bounds.shape[0] - 1
    for k in prange(nchunks):
        work = np.empty((8, B))
        lanes = np.empty(SH_LANES)
        S = np.empty((ncol, B))
        V = np.empty((1, 1))
        coef = np.empty(1)
        Cacc = part[k]
        Cacc[:, :] = 0.0
        for j0 in range(bounds[k], bounds[k + 1], B):
            n = min(B, bounds[k + 1] - j0)
            for col in range(ncol):
                for p in range(B):
                    if p < n:
                        v = C[col // 2, j0 + p]
                        S[col, p] = v.real if col % 2 == 0 else v.imag
                    else:
                        S[col, p] = 0.0
            _sh_block(X, j0, n, a, b, c, L, work, 0, S, Cacc, V, coef, lanes)


@njit(**NJIT_PARALLEL)
def sh_synthesis(X, Ccoef, coef, L, a, b, c, bounds, out):
    """``out`` packed like :func:`pack`: real column ``col`` = ``sum_f coef_f Ccoef[f, col] f(x_i)``.

    Parameters
    ----------
    X : (N, 3) unit vectors
    Ccoef : (nf, ncol) float64 coefficients (summed over chunks)
    coef : (nf,) float64 kernel coefficient per feature
    L : int; a, b, c : :func:`sh_tables`
    bounds : (nchunks + 1,) int64
    out : (ntr, N) complex output, ``ntr >= ceil(ncol / 2)`` (unused slots zero)
    """
    B = SH_BLOCK
    ncol = Ccoef.shape[1]
    ntr = out.shape[0]
    nchunks = bounds.shape[0] - 1
    for k in prange(nchunks):
        work = np.empty((8, B))
        lanes = np.empty(SH_LANES)
        S = np.empty((1, 1))
        V = np.empty((ncol, B))
        for j0 in range(bounds[k], bounds[k + 1], B):
            n = min(B, bounds[k + 1] - j0)
            V[:, :] = 0.0
            _sh_block(X, j0, n, a, b, c, L, work, 1, S, Ccoef, V, coef, lanes)
            for p in range(n):
                for q in range(ntr):
                    re_ = V[2 * q, p] if 2 * q < ncol else 0.0
                    im_ = V[2 * q + 1, p] if 2 * q + 1 < ncol else 0.0
                    out[q, j0 + p] = re_ + 1j * im_
