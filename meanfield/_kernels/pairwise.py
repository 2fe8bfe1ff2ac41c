"""Pairwise O(N^2 d) kernels of the softmax model (SPEC §3, causal mask §6).

Every sum over source particles j is computed without ever forming an N x N
array: targets i are processed in blocks of ``TI`` (one ``prange`` iteration
per block, or per pair of blocks under a causal mask so both threads get the
same amount of work), and sources in tiles of ``TJ`` laid out contiguously as
``XT[t, k, jj] = x_{t TJ + jj, k}`` (shape ``(ntiles, d, TJ)``, zero padded),
so the inner loops run over ``jj`` with unit stride and vectorize. The tile
loop is the outer loop of a block, so one tile stays in L1 while it is used
by all ``TI`` targets of the block.

Logits are ``l_ij = x_i^T A x_j = q_i . x_j`` with ``q_i = A^T x_i`` (rows of
``QA``). Exponentials are always taken of ``l_ij - m_i`` with ``m_i`` a
running shift of row i (online softmax): the first tile sets it to its
maximum, later tiles keep it unless their exponentials would exceed ``big``
(then it moves up to the new maximum and the running sums are rescaled), so
nothing overflows and no max pass is needed on the fast path; what the
kernels return is

    m_i,   l_i = sum_j exp(l_ij - m_i),   acc_i = sum_j exp(l_ij - m_i) w_ij x_j

(``w_ij = 1`` for the softmax pass, ``c_i + s_j`` for the accelerated force),
and the model scales them: SA divides by ``l_i`` (the shift cancels), while
intrinsically unnormalized quantities (USA, z_i, the accelerated force, the
energy) multiply by ``exp(m_i)`` in float64 and check for overflow.

For d >= ``BLAS_MIN_D`` the two O(d) tile products go through BLAS instead
(:func:`gemm_pass`: logits ``S = Q_block XT[t]`` and ``acc += E X_tile`` as
GEMMs, exponentials in between); the caller runs BLAS single-threaded there
(threadpoolctl), since the parallelism is numba's.

Work is partitioned by particle index only, and each target's sums are
accumulated in the same order whatever the thread count, so results do not
depend on ``NUMBA_NUM_THREADS``. Tile-local sums use vectorized reductions
(re-association is enabled for these loops only, see ``FASTMATH_PAIR``);
running totals across tiles are float64 even for float32 states.
"""

import math

import numpy as np
from numba import njit, prange

from ._config import NJIT, NJIT_PARALLEL
from .fastexp import fexp, to_dtype_of

#: Re-association lets LLVM vectorize the tile reductions (sum over jj); the
#: exp helpers are compiled separately with "contract" only and keep it.
FASTMATH_PAIR = {"contract", "reassoc", "nsz"}
NJIT_PAIR = dict(NJIT, fastmath=FASTMATH_PAIR)
NJIT_PAIR_PARALLEL = dict(NJIT_PAIR, parallel=True)
NJIT_PARALLEL_PLAIN = NJIT_PARALLEL

#: Targets per block (one prange iteration).
TI = 32


def big_for(dtype) -> float:
    """Largest tile sum of exponentials accepted without re-shifting (see ``_tile_softmax``)."""
    return 1e30 if np.dtype(dtype) == np.float64 else 1e15


def tile_width(d: int, itemsize: int) -> int:
    """Source tile width TJ: a (d, TJ) tile of at most 32 KiB (fits L1), a power of 2 in [64, 512].

    Measured at d = 64: a tile larger than L1 costs 3x, and rows of 4 KiB
    (TJ = 512 float64) alias in the L1 sets.
    """
    tj = 64
    while tj < 512 and 2 * tj * d * itemsize <= 32768:
        tj *= 2
    return tj


def n_tiles(n: int, tj: int) -> int:
    return (n + tj - 1) // tj


# ---------------------------------------------------------------- layout


@njit(**NJIT_PAIR_PARALLEL)
def prepare(X, A, XT, QA):
    """Lay out source tiles and query rows.

    Parameters
    ----------
    X : (N, d) positions
    A : (d, d) float64 query-key matrix, logits ``l_ij = x_i^T A x_j``
    XT : (ntiles, d, TJ) output, ``XT[t, k, jj] = X[t TJ + jj, k]`` (zero padded)
    QA : (N, d) output, rows ``q_i = A^T x_i`` in the dtype of ``QA``
    """
    n, d = X.shape
    ntiles, _, tj = XT.shape
    for t in prange(ntiles):
        j0 = t * tj
        w = min(tj, n - j0)
        for k in range(d):
            for jj in range(w):
                XT[t, k, jj] = X[j0 + jj, k]
            for jj in range(w, tj):
                XT[t, k, jj] = 0.0
        for j in range(j0, j0 + w):
            for l in range(d):
                acc = 0.0
                for k in range(d):
                    acc += np.float64(X[j, k]) * A[k, l]
                QA[j, l] = acc


@njit(**NJIT_PAIR_PARALLEL)
def prepare_values(v, VT):
    """Lay out a per-source scalar ``v_j`` as tiles ``VT[t, jj] = v[t TJ + jj]`` (zero padded).

    Parameters
    ----------
    v : (N,) float64
    VT : (ntiles, TJ) output
    """
    n = v.shape[0]
    ntiles, tj = VT.shape
    for t in prange(ntiles):
        j0 = t * tj
        for jj in range(tj):
            VT[t, jj] = v[j0 + jj] if j0 + jj < n else 0.0


# ------------------------------------------------------- tile primitives


@njit(**NJIT_PAIR)
def _tile_logits(QA, i, Xt, w, s):
    """``s[jj] = q_i . x_{j0 + jj}`` for ``jj < w``; ``Xt`` is one (d, TJ) tile."""
    d = QA.shape[1]
    k = 0
    if d >= 4:
        q0 = QA[i, 0]
        q1 = QA[i, 1]
        q2 = QA[i, 2]
        q3 = QA[i, 3]
        X0 = Xt[0]
        X1 = Xt[1]
        X2 = Xt[2]
        X3 = Xt[3]
        for jj in range(w):
            s[jj] = q0 * X0[jj] + q1 * X1[jj] + q2 * X2[jj] + q3 * X3[jj]
        k = 4
    else:
        q0 = QA[i, 0]
        X0 = Xt[0]
        for jj in range(w):
            s[jj] = q0 * X0[jj]
        k = 1
    while k + 4 <= d:
        q0 = QA[i, k]
        q1 = QA[i, k + 1]
        q2 = QA[i, k + 2]
        q3 = QA[i, k + 3]
        X0 = Xt[k]
        X1 = Xt[k + 1]
        X2 = Xt[k + 2]
        X3 = Xt[k + 3]
        for jj in range(w):
            s[jj] += q0 * X0[jj] + q1 * X1[jj] + q2 * X2[jj] + q3 * X3[jj]
        k += 4
    while k < d:
        q0 = QA[i, k]
        X0 = Xt[k]
        for jj in range(w):
            s[jj] += q0 * X0[jj]
        k += 1


@njit(**NJIT)
def _tile_max(s, w):
    """max of ``s[:w]`` (slow path of :func:`_tile_softmax` only)."""
    mt = s[0]
    for jj in range(1, w):
        v = s[jj]
        mt = v if v > mt else mt  # noqa: FURB136 (NaN never replaces the maximum)
    return mt


@njit(**NJIT_PAIR)
def _tile_exp_into(s, e, w, m, zero):
    """``e[jj] = exp(s[jj] - m)`` for ``jj < w``; returns the tile sum (``m`` of the dtype of s)."""
    lt = zero
    for jj in range(w):
        v = fexp(s[jj] - m)
        e[jj] = v
        lt += v
    return lt


@njit(**NJIT_PAIR)
def _tile_softmax(s, e, w, m, zero, big):
    """Exponentials of one tile of logits against the running shift ``m`` of a row.

    Fast path (no max pass): ``e = exp(s - m)`` with the current shift; it is
    kept when the tile sum is at most ``big`` -- a shift below the maximum
    costs no precision (exp is relative-accurate), only range, and ``big``
    leaves ample range. Otherwise (first tile, a much larger logit, or NaN)
    the tile maximum is taken and ``e`` recomputed against
    ``max(m, tile max)``.

    Returns
    -------
    (lt, shift) : tile sum of ``e`` and the shift used (float64)
    """
    if m > -np.inf:
        lt = _tile_exp_into(s, e, w, to_dtype_of(m, zero), zero)
        if lt <= big:
            return lt, m
    mt = np.float64(_tile_max(s, w))
    shift = mt if mt > m else m  # noqa: FURB136
    if not shift > -np.inf:  # every logit -inf (or NaN): keep the arithmetic honest
        shift = mt
    lt = _tile_exp_into(s, e, w, to_dtype_of(shift, zero), zero)
    return lt, shift


@njit(**NJIT_PAIR)
def _tile_accumulate(s, Xt, w, acc, zero):
    """``acc[k] += sum_jj s[jj] Xt[k, jj]`` (four rows of the tile per sweep over s)."""
    d = Xt.shape[0]
    k = 0
    while k + 4 <= d:
        X0 = Xt[k]
        X1 = Xt[k + 1]
        X2 = Xt[k + 2]
        X3 = Xt[k + 3]
        a0 = zero
        a1 = zero
        a2 = zero
        a3 = zero
        for jj in range(w):
            e = s[jj]
            a0 += e * X0[jj]
            a1 += e * X1[jj]
            a2 += e * X2[jj]
            a3 += e * X3[jj]
        acc[k] += a0
        acc[k + 1] += a1
        acc[k + 2] += a2
        acc[k + 3] += a3
        k += 4
    while k < d:
        X0 = Xt[k]
        a0 = zero
        for jj in range(w):
            a0 += s[jj] * X0[jj]
        acc[k] += a0
        k += 1


@njit(**NJIT_PAIR)
def _block_of(p, half, nblk, causal):
    """Block handled by half ``half`` of prange iteration ``p`` (-1: none).

    Under a causal mask block b costs ~b, so iteration p takes blocks p and
    nblk - 1 - p (balanced); otherwise iteration p is block p alone.
    """
    if not causal:
        return p if half == 0 else -1
    if half == 0:
        return p
    b = nblk - 1 - p
    return b if b != p else -1


# ------------------------------------------------------------- passes


@njit(**NJIT_PAIR_PARALLEL)
def softmax_pass(QA, XT, n, causal, zero, big, acc, mrow, lrow):
    """One pass over pairs: online-softmax weighted sums of the sources.

    For every target i (sources j < n, or j <= i under a causal mask)::

        l_i = sum_j exp(l_ij - m_i),  acc_i = sum_j exp(l_ij - m_i) x_j

    with a shift ``m_i`` between the largest logit minus ``log(big)`` and the
    largest logit (see :func:`_tile_softmax`); the shift cancels in SA.

    Parameters
    ----------
    QA : (N, d) query rows ``q_i = A^T x_i`` (state dtype)
    XT : (ntiles, d, TJ) source tiles (state dtype)
    n : int, number of sources
    causal : bool
    zero : scalar 0 of the state dtype (types the tile reductions)
    big : scalar of the state dtype, largest accepted tile sum before re-shifting
    acc : (N, d) float64 output
    mrow, lrow : (N,) float64 outputs
    """
    N, d = QA.shape
    tj = XT.shape[2]
    nblk = (N + TI - 1) // TI
    npar = (nblk + 1) // 2 if causal else nblk
    for p in prange(npar):
        s = np.empty(tj, QA.dtype)
        e = np.empty(tj, QA.dtype)
        m = np.empty(TI, np.float64)
        l = np.empty(TI, np.float64)
        a = np.empty((TI, d), np.float64)
        at = np.empty(d, np.float64)
        for half in range(2):
            b = _block_of(np.int64(p), half, nblk, causal)
            if b < 0:
                continue
            i0 = b * TI
            i1 = min(N, i0 + TI)
            for ii in range(i1 - i0):
                m[ii] = -np.inf
                l[ii] = 0.0
                for k in range(d):
                    a[ii, k] = 0.0
            jend = i1 if causal else n
            for t in range(n_tiles_of(jend, tj)):
                j0 = t * tj
                Xt = XT[t]
                for ii in range(i1 - i0):
                    i = i0 + ii
                    w = min(tj, (i + 1 if causal else n) - j0)
                    if w <= 0:
                        continue
                    _tile_logits(QA, i, Xt, w, s)
                    lt, shift = _tile_softmax(s, e, w, m[ii], zero, big)
                    if shift != m[ii]:
                        # rescale the running sums to the new shift (rare after the first tile)
                        sc = math.exp(m[ii] - shift) if m[ii] > -np.inf else 0.0
                        l[ii] *= sc
                        for k in range(d):
                            a[ii, k] *= sc
                        m[ii] = shift
                    l[ii] += lt
                    for k in range(d):
                        at[k] = 0.0
                    _tile_accumulate(e, Xt, w, at, zero)
                    for k in range(d):
                        a[ii, k] += at[k]
            for ii in range(i1 - i0):
                i = i0 + ii
                mrow[i] = m[ii]
                lrow[i] = l[ii]
                for k in range(d):
                    acc[i, k] = a[ii, k]


@njit(**NJIT_PAIR)
def n_tiles_of(n, tj):
    return (n + tj - 1) // tj


@njit(**NJIT_PAIR_PARALLEL)
def z_pass(QA, XT, n, causal, zero, big, mrow, lrow):
    """One pass over pairs for the normalizers: a shift ``m_i`` and ``l_i = sum_j exp(l_ij - m_i)``.

    Then ``z_i = exp(m_i) l_i / n_i`` (see :func:`z_from_rows`).

    Parameters
    ----------
    QA : (N, d) query rows (state dtype)
    XT : (ntiles, d, TJ) source tiles
    n : int, number of sources
    causal : bool
    zero : scalar 0 of the state dtype
    big : scalar of the state dtype (see :func:`_tile_softmax`)
    mrow, lrow : (N,) float64 outputs
    """
    N = QA.shape[0]
    tj = XT.shape[2]
    nblk = (N + TI - 1) // TI
    npar = (nblk + 1) // 2 if causal else nblk
    for p in prange(npar):
        s = np.empty(tj, QA.dtype)
        e = np.empty(tj, QA.dtype)
        m = np.empty(TI, np.float64)
        l = np.empty(TI, np.float64)
        for half in range(2):
            b = _block_of(np.int64(p), half, nblk, causal)
            if b < 0:
                continue
            i0 = b * TI
            i1 = min(N, i0 + TI)
            for ii in range(i1 - i0):
                m[ii] = -np.inf
                l[ii] = 0.0
            jend = i1 if causal else n
            for t in range(n_tiles_of(jend, tj)):
                j0 = t * tj
                Xt = XT[t]
                for ii in range(i1 - i0):
                    i = i0 + ii
                    w = min(tj, (i + 1 if causal else n) - j0)
                    if w <= 0:
                        continue
                    _tile_logits(QA, i, Xt, w, s)
                    lt, shift = _tile_softmax(s, e, w, m[ii], zero, big)
                    if shift != m[ii]:
                        l[ii] *= math.exp(m[ii] - shift) if m[ii] > -np.inf else 0.0
                        m[ii] = shift
                    l[ii] += lt
            for ii in range(i1 - i0):
                mrow[i0 + ii] = m[ii]
                lrow[i0 + ii] = l[ii]


@njit(**NJIT_PAIR)
def _tile_exp_weight(s, w, m, c, sv):
    """``s[jj] <- exp(s[jj] - m) (c + sv[jj])`` for ``jj < w`` (accelerated force weights)."""
    for jj in range(w):
        s[jj] = fexp(s[jj] - m) * (c + sv[jj])


@njit(**NJIT_PAIR_PARALLEL)
def force_pass(QA, XT, ST, cvec, mrow, n, causal, zero, acc):
    """Second pass of the accelerated field: ``acc_i = sum_j exp(l_ij - m_i) (c_i + s_j) x_j``.

    With ``c_i = s_i + 2`` and ``m_i`` the row maxima of :func:`z_pass`, the
    force of SPEC §3 is ``exp(m_i) / (2 n_i) A acc_i``. All weights are at
    most ``big (c_i + s_j)`` (no overflow inside the pass).

    Parameters
    ----------
    QA : (N, d) query rows (state dtype)
    XT : (ntiles, d, TJ) source tiles
    ST : (ntiles, TJ) tiles of s_j (state dtype, zero padded)
    cvec : (N,) float64, c_i = s_i + 2
    mrow : (N,) float64 row shifts from :func:`z_pass` (at least the largest logit minus log(big))
    n : int, number of sources
    causal : bool
    zero : scalar 0 of the state dtype
    acc : (N, d) float64 output
    """
    N, d = QA.shape
    tj = XT.shape[2]
    nblk = (N + TI - 1) // TI
    npar = (nblk + 1) // 2 if causal else nblk
    for p in prange(npar):
        s = np.empty(tj, QA.dtype)
        a = np.empty((TI, d), np.float64)
        at = np.empty(d, np.float64)
        for half in range(2):
            b = _block_of(np.int64(p), half, nblk, causal)
            if b < 0:
                continue
            i0 = b * TI
            i1 = min(N, i0 + TI)
            for ii in range(i1 - i0):
                for k in range(d):
                    a[ii, k] = 0.0
            jend = i1 if causal else n
            for t in range(n_tiles_of(jend, tj)):
                j0 = t * tj
                Xt = XT[t]
                St = ST[t]
                for ii in range(i1 - i0):
                    i = i0 + ii
                    w = min(tj, (i + 1 if causal else n) - j0)
                    if w <= 0:
                        continue
                    _tile_logits(QA, i, Xt, w, s)
                    _tile_exp_weight(s, w, to_dtype_of(mrow[i], zero), to_dtype_of(cvec[i], zero), St)
                    for k in range(d):
                        at[k] = 0.0
                    _tile_accumulate(s, Xt, w, at, zero)
                    for k in range(d):
                        a[ii, k] += at[k]
            for ii in range(i1 - i0):
                for k in range(d):
                    acc[i0 + ii, k] = a[ii, k]


# ------------------------------------------------- particle-wise passes


@njit(**NJIT_PARALLEL_PLAIN)
def finish_first_order(X, acc, mrow, lrow, V, BQ, Bq, potential, normalized, causal, n, F):
    """First-order field from the pass sums: ``F_i = coef_i V acc_i - wcoef_i B (Q x_i - q)``.

    SA: ``coef_i = 1 / l_i`` and mobility ``wcoef_i = 1 / z_i = exp(-m_i) n_i / l_i``;
    USA: ``coef_i = exp(m_i) / n_i`` and ``wcoef_i = 1`` (``n_i = i + 1`` under a
    causal mask, else ``n``). The confining term is skipped when ``potential``
    is False.

    Parameters
    ----------
    X : (N, d) positions
    acc : (N, d) float64
    mrow, lrow : (N,) float64
    V : (d, d) float64 value matrix
    BQ : (d, d) float64, B Q
    Bq : (d,) float64, B Q m
    potential, normalized, causal : bool
    n : int
    F : (N, d) output (state dtype)

    Returns
    -------
    int
        Number of rows whose field is not finite (USA overflow).
    """
    N, d = acc.shape
    bad = 0
    for i in prange(N):
        ni = (i + 1) if causal else n
        if normalized:
            coef = 1.0 / lrow[i]
            wcoef = math.exp(-mrow[i]) * (ni / lrow[i])
        else:
            coef = math.exp(mrow[i]) / ni
            wcoef = 1.0
        ok = True
        for k in range(d):
            v = 0.0
            for l in range(d):
                v += V[k, l] * acc[i, l]
            v *= coef
            if potential:
                g = -Bq[k]
                for l in range(d):
                    g += BQ[k, l] * X[i, l]
                v -= wcoef * g
            F[i, k] = v
            ok &= abs(v) <= 1.7976931348623157e308 and abs(F[i, k]) <= 1.7976931348623157e308
        if not ok:
            bad += 1
    return bad


@njit(**NJIT_PARALLEL_PLAIN)
def z_from_rows(mrow, lrow, causal, n, z):
    """``z_i = exp(m_i) l_i / n_i`` in float64; returns the number of rows with z_i not in (0, inf).

    Parameters
    ----------
    mrow, lrow : (N,) float64
    causal : bool
    n : int
    z : (N,) float64 output
    """
    N = mrow.shape[0]
    bad = 0
    for i in prange(N):
        zi = math.exp(mrow[i]) * (lrow[i] / ((i + 1) if causal else n))
        z[i] = zi
        if not (zi > 0.0 and zi <= 1.7976931348623157e308):
            bad += 1
    return bad


@njit(**NJIT_PARALLEL_PLAIN)
def kinetic_terms(Y, B, z, yBy, svec, cvec):
    """``yBy_i = y_i^T B y_i``, ``s_i = yBy_i / z_i^2``, ``c_i = s_i + 2`` (float64).

    Parameters
    ----------
    Y : (N, d) momenta
    B : (d, d) float64 symmetric preconditioner
    z : (N,) float64
    yBy, svec, cvec : (N,) float64 outputs
    """
    N, d = Y.shape
    for i in prange(N):
        q = 0.0
        for k in range(d):
            bk = 0.0
            for l in range(d):
                bk += B[k, l] * Y[i, l]
            q += Y[i, k] * bk
        yBy[i] = q
        si = q / (z[i] * z[i])
        svec[i] = si
        cvec[i] = si + 2.0


@njit(**NJIT_PARALLEL_PLAIN)
def finish_hamiltonian(X, Y, acc, mrow, z, A, B, Q, q, causal, n, FX, GY):
    """Hamiltonian field from the pass sums (SPEC §3), G without the damping term.

    ``F_i = B y_i / z_i``, ``G_i = exp(m_i) / (2 n_i) A acc_i - Q x_i + q`` with
    ``q = Q m``.

    Parameters
    ----------
    X, Y : (N, d)
    acc : (N, d) float64 from :func:`force_pass`
    mrow, z : (N,) float64
    A, B, Q : (d, d) float64
    q : (d,) float64
    causal : bool
    n : int
    FX, GY : (N, d) outputs (state dtype)

    Returns
    -------
    int
        Number of rows whose field is not finite (overflow).
    """
    N, d = X.shape
    bad = 0
    for i in prange(N):
        coef = math.exp(mrow[i]) / (2.0 * ((i + 1) if causal else n))
        inv_z = 1.0 / z[i]
        ok = True
        for k in range(d):
            f = 0.0
            g = 0.0
            for l in range(d):
                f += B[k, l] * Y[i, l]
                g += A[k, l] * acc[i, l]
            g *= coef
            g += q[k]
            for l in range(d):
                g -= Q[k, l] * X[i, l]
            f *= inv_z
            FX[i, k] = f
            GY[i, k] = g
            ok &= abs(FX[i, k]) <= 1.7976931348623157e308 and abs(GY[i, k]) <= 1.7976931348623157e308
        if not ok:
            bad += 1
    return bad


@njit(**NJIT_PARALLEL_PLAIN)
def axpby(a, X, b, F, out):
    """``out = a X + b F`` (``out`` may alias ``X``).

    Parameters
    ----------
    a, b : float
    X, F, out : (N, d)
    """
    N, d = X.shape
    for i in prange(N):
        for k in range(d):
            out[i, k] = a * X[i, k] + b * F[i, k]


@njit(**NJIT_PARALLEL_PLAIN)
def axpby2(ax, X, bx, FX, ay, Y, by, GY, outX, outY):
    """``outX = ax X + bx FX``, ``outY = ay Y + by GY`` (outputs may alias inputs).

    Parameters
    ----------
    ax, bx, ay, by : float
    X, FX, Y, GY, outX, outY : (N, d)
    """
    N, d = X.shape
    for i in prange(N):
        for k in range(d):
            outX[i, k] = ax * X[i, k] + bx * FX[i, k]
            outY[i, k] = ay * Y[i, k] + by * GY[i, k]


# ------------------------------------------------ BLAS tile products (large d)

#: From this dimension on, tile products go through BLAS (GEMM): at d = 64 the
#: two O(d) products per pair dominate and BLAS kernels beat the loops above.
BLAS_MIN_D = 32
#: Targets per block in the BLAS path (rows of the GEMMs).
TIB = 64
#: Source tile width of the BLAS path.
TJB = 256

MODE_SOFTMAX = 0
MODE_Z = 1
MODE_FORCE = 2


@njit(**NJIT_PAIR_PARALLEL)
def prepare_rows(X, XP):
    """Zero-padded row copy ``XP[:N] = X``, ``XP[N:] = 0`` (sources as GEMM operand).

    Parameters
    ----------
    X : (N, d)
    XP : (ntiles TJ, d) output
    """
    n, d = X.shape
    for j in prange(XP.shape[0]):
        for k in range(d):
            XP[j, k] = X[j, k] if j < n else 0.0


@njit(**NJIT_PAIR)
def _tile_exp_weight_into(s, e, w, m, c, sv):
    """``e[jj] = exp(s[jj] - m) (c + sv[jj])`` for ``jj < w``."""
    for jj in range(w):
        e[jj] = fexp(s[jj] - m) * (c + sv[jj])


@njit(**NJIT_PAIR_PARALLEL)
def gemm_pass(mode, QA, XT, XP, ST, cvec, n, causal, zero, big, acc, mrow, lrow):
    """The three passes over pairs with BLAS tile products (``np.dot``, one BLAS thread per call).

    Per block of ``TIB`` targets and tile of ``TJ`` sources: ``S = Q_block XT[t]``
    (logits, GEMM), exponentials row by row as in the loop kernels, then
    ``acc_block += E XP[tile]`` (GEMM). Results equal the loop kernels' up to
    summation order.

    Parameters
    ----------
    mode : int
        ``MODE_SOFTMAX`` (shift m_i, l_i, acc_i), ``MODE_Z`` (m_i, l_i) or
        ``MODE_FORCE`` (acc_i with weights exp(l_ij - m_i) (c_i + s_j), m_i read).
    QA : (N, d) query rows
    XT : (ntiles, d, TJ) source tiles
    XP : (ntiles TJ, d) zero-padded source rows
    ST : (ntiles, TJ) tiles of s_j (force mode; any array otherwise)
    cvec : (N,) float64 c_i (force mode; any array otherwise)
    n : int, number of sources
    causal : bool
    zero, big : scalars of the state dtype
    acc : (N, d) float64 output (not written in z mode)
    mrow : (N,) float64, output (input in force mode)
    lrow : (N,) float64 output (not written in force mode)
    """
    N, d = QA.shape
    tj = XT.shape[2]
    nblk = (N + TIB - 1) // TIB
    npar = (nblk + 1) // 2 if causal else nblk
    for p in prange(npar):
        Qb = np.zeros((TIB, d), QA.dtype)
        S = np.empty((TIB, tj), QA.dtype)
        E = np.zeros((TIB, tj), QA.dtype)
        AT = np.empty((TIB, d), QA.dtype)
        m = np.empty(TIB, np.float64)
        l = np.empty(TIB, np.float64)
        a = np.empty((TIB, d), np.float64)
        for half in range(2):
            b = _block_of(np.int64(p), half, nblk, causal)
            if b < 0:
                continue
            i0 = b * TIB
            i1 = min(N, i0 + TIB)
            nb = i1 - i0
            for ii in range(TIB):
                for k in range(d):
                    Qb[ii, k] = QA[i0 + ii, k] if ii < nb else 0.0
                for jj in range(tj):
                    E[ii, jj] = 0.0
                m[ii] = mrow[i0 + ii] if (mode == MODE_FORCE and ii < nb) else -np.inf
                l[ii] = 0.0
                for k in range(d):
                    a[ii, k] = 0.0
            jend = i1 if causal else n
            for t in range(n_tiles_of(jend, tj)):
                j0 = t * tj
                np.dot(Qb, XT[t], S)
                for ii in range(nb):
                    i = i0 + ii
                    w = min(tj, (i + 1 if causal else n) - j0)
                    srow = S[ii]
                    erow = E[ii]
                    if w <= 0:
                        for jj in range(tj):
                            erow[jj] = 0.0
                        continue
                    if mode == MODE_FORCE:
                        _tile_exp_weight_into(srow, erow, w, to_dtype_of(m[ii], zero),
                                              to_dtype_of(cvec[i], zero), ST[t])
                    else:
                        lt, shift = _tile_softmax(srow, erow, w, m[ii], zero, big)
                        if shift != m[ii]:
                            sc = math.exp(m[ii] - shift) if m[ii] > -np.inf else 0.0
                            l[ii] *= sc
                            for k in range(d):
                                a[ii, k] *= sc
                            m[ii] = shift
                        l[ii] += lt
                    for jj in range(w, tj):
                        erow[jj] = 0.0
                if mode != MODE_Z:
                    np.dot(E, XP[j0:j0 + tj], AT)
                    for ii in range(nb):
                        for k in range(d):
                            a[ii, k] += AT[ii, k]
            for ii in range(nb):
                i = i0 + ii
                if mode != MODE_FORCE:
                    mrow[i] = m[ii]
                    lrow[i] = l[ii]
                if mode != MODE_Z:
                    for k in range(d):
                        acc[i, k] = a[ii, k]
