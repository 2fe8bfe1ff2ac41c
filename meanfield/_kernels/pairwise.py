"""Pairwise O(N^2 d) kernels of the softmax model (docs/models.md §3, causal mask §6).

Every sum over source particles j is computed without ever forming an N x N
array: targets i are processed in blocks of ``TI`` (one ``prange`` iteration
per block, or per pair of blocks under a causal mask so both threads get the
same amount of work), and sources in tiles of ``TJ`` laid out contiguously as
``XT[t, k, jj] = x_{t TJ + jj, k}`` (shape ``(ntiles, d, TJ)``, zero padded),
so the inner loops run over ``jj`` with unit stride and vectorize (512-bit
vectors where the CPU has them, see :func:`~._config.wide_vectors`). The tile
loop is the outer loop of a block, so one tile stays in L1 while it is used
by all ``TI`` targets of the block; within a block the loop kernels take
targets ``R = 4`` at a time, so every source value loaded from the tile feeds
four multiply-adds. Exponentials use the polynomial :func:`~.fastexp.fexp_tile` (the symmetric
passes, whose exponents are bounded, :func:`~.fastexp.fexp_bounded`).

Logits are ``l_ij = x_i^T A x_j = q_i . x_j`` with ``q_i = A^T x_i`` (rows of
``QA``). Exponentials are always taken of ``l_ij - m_i`` with ``m_i`` a
running shift of row i (online softmax): it starts at a logit of the row
(the self logit ``l_ii``), and tiles keep it unless their exponentials would exceed ``big``
(then it moves up to the new maximum and the running sums are rescaled), so
nothing overflows and no max pass is needed on the fast path; what the
kernels return is

    m_i,   l_i = sum_j exp(l_ij - m_i),   acc_i = sum_j exp(l_ij - m_i) w_ij x_j

(``w_ij = 1`` for the softmax pass, ``c_i + s_j`` for the accelerated force),
and the model scales them: SA divides by ``l_i`` (the shift cancels), while
intrinsically unnormalized quantities (USA, z_i, the accelerated force, the
energy) multiply by ``exp(m_i)`` in float64 and check for overflow.

For a symmetric A (no mask) :func:`symmetric_pass` does the same three passes
visiting each unordered pair once: one logit and one exponential feed the
sums of both rows, with the separable shift ``mu_i + mu_j``,
``mu_i = x_i^T |A| x_i / 2``, instead of the online one; it needs every
``mu_i <= mu_max_for(dtype)`` and the model falls back to :func:`loop_pass`
otherwise.

There is no BLAS path: with four targets per source load these loops beat
BLAS tile products (logits and weighted sums as GEMMs, as in an earlier
version) at every d measured, 24 to 512 (benchmarks/bench_softmax.py and the
README), and matched them with 256-bit vectors.

Work is partitioned by particle index only, and each target's sums are
accumulated in the same order whatever the thread count, so results do not
depend on ``NUMBA_NUM_THREADS``. Tile-local sums use vectorized reductions
(re-association is enabled for these loops only, see ``FASTMATH_PAIR``);
running totals across tiles are float64 even for float32 states. Every helper
is inlined into the kernels (``inline_into_callers``), so a kernel loaded from
numba's cache gives the bits of a fresh compile (``_config``).
"""

import math

import numpy as np
from numba import njit, prange, set_parallel_chunksize

from ._config import NJIT, NJIT_PARALLEL, inline_into_callers, wide_vectors
from .fastexp import fexp_bounded, fexp_tile, to_dtype_of

#: Re-association lets LLVM vectorize the tile reductions (sum over jj); the
#: exp helpers are compiled separately with "contract" only and keep it.
FASTMATH_PAIR = {"contract", "reassoc", "nsz"}
NJIT_PAIR = dict(NJIT, fastmath=FASTMATH_PAIR)
NJIT_PAIR_PARALLEL = dict(NJIT_PAIR, parallel=True)
NJIT_PARALLEL_PLAIN = NJIT_PARALLEL

#: Targets per block (one prange iteration).
TI = 32


def big_for(dtype) -> float:
    """Largest tile sum of exponentials accepted without re-shifting (see :func:`loop_pass`)."""
    return 1e30 if np.dtype(dtype) == np.float64 else 1e15


def tile_width(d: int, itemsize: int) -> int:
    """Source tile width TJ: 512 while a (d, TJ) tile fits 32 KiB (L1), else rows of 2 KiB.

    That is 512 for float32 and for float64 at d <= 8, and 256 for float64
    otherwise. Measured with the grouped kernels (N = 4000 and 16000):

    * a tile beyond L1 costs nothing visible (each loaded value serves four
      targets), and longer rows amortize the register reductions that end
      every sweep: float32, d = 64: 0.49 -> 0.70 Gpair/s from TJ = 128 to 512;
    * rows of 4 KiB (TJ = 512 float64) alias in the L1 sets once there are
      many of them: with 256-bit vectors, d = 64 drops from 0.22 to 0.15.
    """
    tj = 64
    while tj < 512 and 2 * tj * d * itemsize <= 32768:
        tj *= 2
    return max(tj, 2048 // itemsize)


def n_tiles(n: int, tj: int) -> int:
    return (n + tj - 1) // tj


def n_blocks(n: int) -> int:
    """Blocks of ``TI`` targets covering ``n`` rows (the ``b1`` of a pass over all of them)."""
    return (n + TI - 1) // TI


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

#: What a pass over pairs computes (:func:`loop_pass`).
MODE_SOFTMAX = 0  # shifts m_i, l_i = sum_j exp(l_ij - m_i), acc_i = sum_j exp(l_ij - m_i) x_j
MODE_Z = 1  # m_i and l_i only
MODE_FORCE = 2  # acc_i = sum_j exp(l_ij - m_i) (c_i + s_j) x_j with m_i given

#: Targets per register group: the loop kernels load each source value once for R targets.
R = 4


@njit(**NJIT_PAIR)
def _tile_logits(QA, i, Xt, w, s):
    """``s[jj] = q_i . x_{j0 + jj}`` for ``jj < w``; ``Xt`` is one (d, TJ) tile (one row, slow path)."""
    inline_into_callers()
    wide_vectors()
    d = QA.shape[1]
    for jj in range(w):
        s[jj] = 0.0
    k = 0
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


@njit(**NJIT_PAIR)
def _tile_logits_group(QA, rows, Xt, w, S, sh):
    """``S[r, jj] = q_{rows[r]} . x_{j0 + jj} - sh[r]`` for ``r < R``, ``jj < w``.

    Four targets at a time: every source value loaded from the tile feeds
    four multiply-adds (the one-row loop is bound by loads, not arithmetic).

    Parameters
    ----------
    QA : (N, d) query rows
    rows : (R,) int64 target rows
    Xt : (d, TJ) source tile
    w : int, sources of the tile in use
    S : (R, TJ) output
    sh : (R,) shifts (dtype of S)
    """
    inline_into_callers()
    wide_vectors()
    d = QA.shape[1]
    i0 = rows[0]
    i1 = rows[1]
    i2 = rows[2]
    i3 = rows[3]
    S0 = S[0]
    S1 = S[1]
    S2 = S[2]
    S3 = S[3]
    h0 = -sh[0]
    h1 = -sh[1]
    h2 = -sh[2]
    h3 = -sh[3]
    for jj in range(w):
        S0[jj] = h0
        S1[jj] = h1
        S2[jj] = h2
        S3[jj] = h3
    k = 0
    while k + 4 <= d:
        X0 = Xt[k]
        X1 = Xt[k + 1]
        X2 = Xt[k + 2]
        X3 = Xt[k + 3]
        a0, a1, a2, a3 = QA[i0, k], QA[i0, k + 1], QA[i0, k + 2], QA[i0, k + 3]
        b0, b1, b2, b3 = QA[i1, k], QA[i1, k + 1], QA[i1, k + 2], QA[i1, k + 3]
        c0, c1, c2, c3 = QA[i2, k], QA[i2, k + 1], QA[i2, k + 2], QA[i2, k + 3]
        e0, e1, e2, e3 = QA[i3, k], QA[i3, k + 1], QA[i3, k + 2], QA[i3, k + 3]
        for jj in range(w):
            x0 = X0[jj]
            x1 = X1[jj]
            x2 = X2[jj]
            x3 = X3[jj]
            S0[jj] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
            S1[jj] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3
            S2[jj] += c0 * x0 + c1 * x1 + c2 * x2 + c3 * x3
            S3[jj] += e0 * x0 + e1 * x1 + e2 * x2 + e3 * x3
        k += 4
    while k < d:
        X0 = Xt[k]
        a0, b0, c0, e0 = QA[i0, k], QA[i1, k], QA[i2, k], QA[i3, k]
        for jj in range(w):
            x0 = X0[jj]
            S0[jj] += a0 * x0
            S1[jj] += b0 * x0
            S2[jj] += c0 * x0
            S3[jj] += e0 * x0
        k += 1


@njit(**NJIT)
def _tile_max(s, w):
    """max of ``s[:w]`` (slow path of the online softmax only)."""
    inline_into_callers()
    mt = s[0]
    for jj in range(1, w):
        v = s[jj]
        mt = v if v > mt else mt  # noqa: FURB136 (NaN never replaces the maximum)
    return mt


@njit(**NJIT_PAIR)
def _tile_exp_sum(s, w, zero):
    """``s[jj] <- exp(s[jj])`` in place for ``jj < w``; returns the sum (the loop kernels' fast path)."""
    inline_into_callers()
    wide_vectors()
    lt = zero
    for jj in range(w):
        v = fexp_tile(s[jj])
        s[jj] = v
        lt += v
    return lt


@njit(**NJIT_PAIR)
def _tile_exp_into(s, e, w, m, zero):
    """``e[jj] = exp(s[jj] - m)`` for ``jj < w``; returns the tile sum (``m`` of the dtype of s)."""
    inline_into_callers()
    wide_vectors()
    lt = zero
    for jj in range(w):
        v = fexp_tile(s[jj] - m)
        e[jj] = v
        lt += v
    return lt


@njit(**NJIT_PAIR)
def _tile_reshift(s, e, w, m, zero):
    """Slow path of the online softmax: ``e = exp(s - shift)`` with ``shift = max(m, max s)``.

    ``s`` holds one row's logits of a tile and ``m`` is the row's running
    shift (``-inf`` before its first tile). Returns ``(lt, shift)``: the sum
    of ``e`` and the new shift (float64).
    """
    inline_into_callers()
    mt = np.float64(_tile_max(s, w))
    shift = mt if mt > m else m  # noqa: FURB136
    if not shift > -np.inf:  # every logit -inf (or NaN): keep the arithmetic honest
        shift = mt
    lt = _tile_exp_into(s, e, w, to_dtype_of(shift, zero), zero)
    return lt, shift


@njit(**NJIT_PAIR)
def _tile_weights(s, w, c, sv):
    """``s[jj] <- exp(s[jj]) (c + sv[jj])`` in place for ``jj < w`` (shift already in ``s``)."""
    inline_into_callers()
    wide_vectors()
    for jj in range(w):
        s[jj] = fexp_tile(s[jj]) * (c + sv[jj])


@njit(**NJIT_PAIR)
def _rescale_row(ii, shift, m, l, a):
    """Move row ``ii``'s running shift to ``shift``, rescaling its sums ``l[ii]`` and ``a[ii]``."""
    inline_into_callers()
    if shift != m[ii]:
        sc = math.exp(m[ii] - shift) if m[ii] > -np.inf else 0.0
        l[ii] *= sc
        for k in range(a.shape[1]):
            a[ii, k] *= sc
        m[ii] = shift


@njit(**NJIT_PAIR)
def _tile_accumulate_group(S, Xt, w, at, zero):
    """``at[r, k] += sum_{jj < w} S[r, jj] Xt[k, jj]`` for ``r < R`` (4 x 4 register accumulators).

    Parameters
    ----------
    S : (R, TJ) weights (state dtype)
    Xt : (d, TJ) source tile
    w : int
    at : (R, d) float64, added to
    zero : scalar 0 of the state dtype (tile-local sums are in the state dtype)
    """
    inline_into_callers()
    wide_vectors()
    d = Xt.shape[0]
    E0 = S[0]
    E1 = S[1]
    E2 = S[2]
    E3 = S[3]
    k = 0
    while k + 4 <= d:
        X0 = Xt[k]
        X1 = Xt[k + 1]
        X2 = Xt[k + 2]
        X3 = Xt[k + 3]
        a00 = a01 = a02 = a03 = zero
        a10 = a11 = a12 = a13 = zero
        a20 = a21 = a22 = a23 = zero
        a30 = a31 = a32 = a33 = zero
        for jj in range(w):
            x0 = X0[jj]
            x1 = X1[jj]
            x2 = X2[jj]
            x3 = X3[jj]
            e = E0[jj]
            a00 += e * x0
            a01 += e * x1
            a02 += e * x2
            a03 += e * x3
            e = E1[jj]
            a10 += e * x0
            a11 += e * x1
            a12 += e * x2
            a13 += e * x3
            e = E2[jj]
            a20 += e * x0
            a21 += e * x1
            a22 += e * x2
            a23 += e * x3
            e = E3[jj]
            a30 += e * x0
            a31 += e * x1
            a32 += e * x2
            a33 += e * x3
        at[0, k] += a00
        at[0, k + 1] += a01
        at[0, k + 2] += a02
        at[0, k + 3] += a03
        at[1, k] += a10
        at[1, k + 1] += a11
        at[1, k + 2] += a12
        at[1, k + 3] += a13
        at[2, k] += a20
        at[2, k + 1] += a21
        at[2, k + 2] += a22
        at[2, k + 3] += a23
        at[3, k] += a30
        at[3, k + 1] += a31
        at[3, k + 2] += a32
        at[3, k + 3] += a33
        k += 4
    while k < d:
        X0 = Xt[k]
        a00 = a10 = a20 = a30 = zero
        for jj in range(w):
            x0 = X0[jj]
            a00 += E0[jj] * x0
            a10 += E1[jj] * x0
            a20 += E2[jj] * x0
            a30 += E3[jj] * x0
        at[0, k] += a00
        at[1, k] += a10
        at[2, k] += a20
        at[3, k] += a30
        k += 1


@njit(**NJIT_PAIR)
def _block_of(p, half, b0, b1, causal):
    """Block of ``[b0, b1)`` handled by half ``half`` of prange iteration ``p`` (-1: none).

    Under a causal mask block b costs ~b, so iteration p takes blocks b0 + p and
    b1 - 1 - p (balanced); otherwise iteration p is block b0 + p alone.
    """
    inline_into_callers()
    if not causal:
        return b0 + p if half == 0 else -1
    if half == 0:
        return b0 + p
    b = b1 - 1 - p
    return b if b != b0 + p else -1


@njit(**NJIT_PAIR)
def _empty_aligned(rows, cols, dtype):
    """An uninitialized (rows, cols) array whose start is 64-byte aligned (a cache line, one zmm).

    numba aligns arrays to 32 bytes; with 512-bit vectors every other load of a
    32-byte aligned row would straddle a cache line.
    """
    inline_into_callers()
    buf = np.empty(rows * cols + 64, dtype)
    off = ((64 - buf.ctypes.data % 64) % 64) // buf.itemsize
    return buf[off:off + rows * cols].reshape((rows, cols))


def empty_aligned(shape, dtype):
    """``np.empty(shape, dtype)`` starting on a 64-byte boundary (for source tiles; see :func:`_empty_aligned`)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    buf = np.empty(n + 64 // dtype.itemsize, dtype)
    off = (-buf.ctypes.data % 64) // dtype.itemsize
    return buf[off:off + n].reshape(shape)


@njit(**NJIT_PAIR)
def n_tiles_of(n, tj):
    inline_into_callers()
    return (n + tj - 1) // tj


@njit(**NJIT_PAIR)
def _self_logit(QA, XT, i):
    """``l_ii = q_i . x_i`` in float64 (a logit of row i: the loop kernels' first shift)."""
    inline_into_callers()
    tj = XT.shape[2]
    t = i // tj
    jj = i - t * tj
    v = 0.0
    for k in range(QA.shape[1]):
        v += np.float64(QA[i, k]) * np.float64(XT[t, k, jj])
    return v


# ------------------------------------------------------------- passes


@njit(**NJIT_PAIR_PARALLEL)
def loop_pass(mode, QA, XT, ST, cvec, n, causal, zero, big, b0, b1, acc, mrow, lrow):
    """One pass over pairs (every d), for the targets of blocks ``b0 <= b < b1``.

    For every target i of those blocks (rows ``b TI`` to ``b TI + TI - 1``;
    sources j < n, or j <= i under a causal mask), with
    a row shift ``m_i``::

        MODE_SOFTMAX:  l_i = sum_j exp(l_ij - m_i),  acc_i = sum_j exp(l_ij - m_i) x_j
        MODE_Z:        l_i only
        MODE_FORCE:    acc_i = sum_j exp(l_ij - m_i) (c_i + s_j) x_j,  m_i = mrow[i] given

    In the first two modes ``m_i`` is an online shift between the largest
    logit minus ``log(big)`` and the largest logit: it starts at the self
    logit ``l_ii`` and moves up (rescaling the running sums) only when a tile's
    exponentials would sum above ``big``; it cancels in SA.

    Targets go in blocks of ``TI`` (a ``prange`` iteration, or two balanced
    blocks under a causal mask) and, within a block, in groups of ``R``
    sharing each tile: logits (shift folded in), exponentials in place, then
    the weighted sums of the tile's sources.

    A row's sums depend only on its index (its block and group are fixed by
    ``i // TI``), never on ``b0, b1`` or the thread count: passes over any
    partition of the blocks (the shards of :mod:`meanfield.models._sharded`)
    give the bits of one pass over all of them. The per-target arrays
    (``cvec``, ``acc``, ``mrow``, ``lrow``) hold the rows from ``r0 = b0 TI``
    on: row i is at ``i - r0``.

    Parameters
    ----------
    mode : int, ``MODE_SOFTMAX``, ``MODE_Z`` or ``MODE_FORCE``
    QA : (N, d) query rows ``q_i = A^T x_i`` (state dtype)
    XT : (ntiles, d, TJ) source tiles (state dtype)
    ST : (ntiles, TJ) tiles of s_j (force mode; any 2-D array of the state dtype otherwise)
    cvec : (M,) float64 c_i (force mode; any float64 array otherwise)
    n : int, number of sources (sources are the first n targets: n <= N)
    causal : bool
    zero : scalar 0 of the state dtype (types the tile reductions)
    big : scalar of the state dtype, largest accepted tile sum before re-shifting
    b0, b1 : int, the blocks of targets, ``0 <= b0 < b1 <= ceil(N / TI)``
    acc : (M, d) float64 output (not written in z mode), M >= min(N, b1 TI) - r0
    mrow : (M,) float64, output (input in force mode)
    lrow : (M,) float64 output (not written in force mode)
    """
    N, d = QA.shape
    tj = XT.shape[2]
    r0 = b0 * TI
    nb_range = b1 - b0
    npar = (nb_range + 1) // 2 if causal else nb_range
    force = mode == MODE_FORCE
    for p in prange(npar):
        S = _empty_aligned(R, tj, QA.dtype)  # logits minus shift, then weights, of a group
        s1 = np.empty(tj, QA.dtype)  # one row's logits (slow path)
        sh = np.empty(R, QA.dtype)
        rows = np.empty(R, np.int64)
        m = np.empty(TI, np.float64)
        l = np.empty(TI, np.float64)
        a = np.empty((TI, d), np.float64)
        at = np.empty((R, d), np.float64)
        for half in range(2):
            b = _block_of(np.int64(p), half, b0, b1, causal)
            if b < 0:
                continue
            i0 = b * TI
            nb = min(N, i0 + TI) - i0
            for ii in range(TI):
                i = i0 + min(ii, nb - 1)
                if force:
                    m[ii] = mrow[i - r0]
                elif i < n:
                    # rounded to the state dtype: the shift the exponentials use is exactly m_i
                    m[ii] = np.float64(to_dtype_of(_self_logit(QA, XT, i), zero))
                else:
                    m[ii] = -np.inf
                l[ii] = 0.0
                for k in range(d):
                    a[ii, k] = 0.0
            jend = i0 + nb if causal else n
            for t in range(n_tiles_of(jend, tj)):
                j0 = t * tj
                Xt = XT[t]
                for g in range(0, nb, R):
                    # the group's rows; past the block's end, repeats of its last row (discarded)
                    for r in range(R):
                        rows[r] = i0 + min(g + r, nb - 1)
                        mg = m[g + r]
                        sh[r] = to_dtype_of(mg if mg > -np.inf else 0.0, zero)
                    wg = min(tj, (rows[R - 1] + 1 if causal else n) - j0)
                    if wg <= 0:
                        continue
                    _tile_logits_group(QA, rows, Xt, wg, S, sh)
                    for r in range(R):
                        ii = g + r
                        Sr = S[r]
                        w = min(wg, rows[r] + 1 - j0) if causal else wg
                        if w > 0:
                            if force:
                                _tile_weights(Sr, w, to_dtype_of(cvec[rows[r] - r0], zero), ST[t])
                            else:
                                lt = _tile_exp_sum(Sr, w, zero)
                                if not (m[ii] > -np.inf and lt <= big):
                                    _tile_logits(QA, rows[r], Xt, w, s1)
                                    lt, shift = _tile_reshift(s1, Sr, w, m[ii], zero)
                                    _rescale_row(ii, shift, m, l, a)
                                l[ii] += lt
                        for jj in range(max(w, 0), wg):
                            Sr[jj] = 0.0
                    if mode != MODE_Z:
                        for r in range(R):
                            for k in range(d):
                                at[r, k] = 0.0
                        _tile_accumulate_group(S, Xt, wg, at, zero)
                        for r in range(R):
                            for k in range(d):
                                a[g + r, k] += at[r, k]
            for ii in range(nb):
                i = i0 + ii - r0
                if not force:
                    mrow[i] = m[ii]
                    lrow[i] = l[ii]
                if mode != MODE_Z:
                    for k in range(d):
                        acc[i, k] = a[ii, k]


@njit(**NJIT)
def quadratic_form(M, X, i):
    """``x_i^T M x_i`` in float64 for row ``i`` of ``X`` (N, d) and ``M`` (d, d)."""
    d = X.shape[1]
    q = 0.0
    for k in range(d):
        t = 0.0
        for l in range(d):
            t += M[k, l] * X[i, l]
        q += X[i, k] * t
    return q


# ------------------------------------------ symmetric passes (symmetric A)

#: Largest mu_i = x_i^T |A| x_i / 2 for which :func:`symmetric_pass` is used, per state dtype:
#: every exponent it forms then lies in [-4 mu_max, 0] (up to rounding), inside the range of
#: the dtype's exp (float64 to -708, float32 to -87.3: 4 * 20 = 80 leaves room for rounding).
MU_MAX = 170.0
MU_MAX_F32 = 20.0

#: Tile pairs handed out per request in a round (0: numba's static split).
CHUNK = 1


def mu_max_for(dtype) -> float:
    """Largest mu_i the symmetric passes accept for a state of ``dtype`` (:data:`MU_MAX`, :data:`MU_MAX_F32`)."""
    return MU_MAX if np.dtype(dtype) == np.float64 else MU_MAX_F32


@njit(**NJIT_PARALLEL_PLAIN)
def half_quadratic(X, M, mu, w):
    """``mu_i = x_i^T M x_i / 2`` and ``w_i = exp(mu_i)`` (float64), for ``M = |A|``.

    Parameters
    ----------
    X : (N, d) positions
    M : (d, d) float64 symmetric positive semidefinite
    mu, w : (N,) float64 outputs
    """
    for i in prange(X.shape[0]):
        v = 0.5 * quadratic_form(M, X, i)
        mu[i] = v
        w[i] = math.exp(v)


@njit(**NJIT_PAIR_PARALLEL)
def prepare_symmetric(X, MU, W, XWT, MUT):
    """Lay out the weighted source tiles of the symmetric passes.

    Parameters
    ----------
    X : (N, d) positions
    MU, W : (N,) float64, mu_j and w_j = exp(mu_j) (:func:`half_quadratic`)
    XWT : (ntiles, d + 1, TJ) output (state dtype): ``XWT[t, k, jj] = w_j x_jk`` for
        ``k < d`` and ``XWT[t, d, jj] = w_j``, with ``j = t TJ + jj`` (zero padded)
    MUT : (ntiles, TJ) output (state dtype), ``MUT[t, jj] = mu_j`` (zero padded)
    """
    n, d = X.shape
    ntiles, _, tj = XWT.shape
    for t in prange(ntiles):
        j0 = t * tj
        w = min(tj, n - j0)
        for k in range(d):
            for jj in range(w):
                XWT[t, k, jj] = W[j0 + jj] * np.float64(X[j0 + jj, k])
            for jj in range(w, tj):
                XWT[t, k, jj] = 0.0
        for jj in range(w):
            XWT[t, d, jj] = W[j0 + jj]
            MUT[t, jj] = MU[j0 + jj]
        for jj in range(w, tj):
            XWT[t, d, jj] = 0.0
            MUT[t, jj] = 0.0


@njit(**NJIT_PAIR)
def _tile_sym_weights(s, mut, st, c, w):
    """``s[jj] <- exp(s[jj] - mu_j) (c_i + s_j)`` for ``jj < w``: the symmetric force weight of a pair."""
    inline_into_callers()
    wide_vectors()
    for jj in range(w):
        s[jj] = fexp_bounded(s[jj] - mut[jj]) * (c + st[jj])


@njit(**NJIT_PAIR)
def _tile_sym_exp_group(S, MUt, Wt, w, e0, e1, e2, e3, colz, store, zero):
    """Pair factors of a group, and their z sums both ways, in one sweep.

    With ``S[r, jj] = l_ij - mu_i``, ``g_ij = exp(S[r, jj] - mu_j)`` (written back
    into ``S`` when ``store``); returns the four row sums ``sum_jj g_ij w_j`` and
    adds ``sum_r g_ij e_r`` to ``colz[jj]`` (``e_r = w_i``, or 0 for rows that
    must not count).
    """
    inline_into_callers()
    wide_vectors()
    S0 = S[0]
    S1 = S[1]
    S2 = S[2]
    S3 = S[3]
    r0 = r1 = r2 = r3 = zero
    for jj in range(w):
        mj = MUt[jj]
        wj = Wt[jj]
        g0 = fexp_bounded(S0[jj] - mj)
        g1 = fexp_bounded(S1[jj] - mj)
        g2 = fexp_bounded(S2[jj] - mj)
        g3 = fexp_bounded(S3[jj] - mj)
        if store:
            S0[jj] = g0
            S1[jj] = g1
            S2[jj] = g2
            S3[jj] = g3
        r0 += g0 * wj
        r1 += g1 * wj
        r2 += g2 * wj
        r3 += g3 * wj
        colz[jj] += g0 * e0 + g1 * e1 + g2 * e2 + g3 * e3
    return r0, r1, r2, r3


@njit(**NJIT_PAIR)
def _tile_columns_group(S, U, w, col):
    """``col[k, jj] += sum_{r < R} S[r, jj] U[r, k]`` for ``jj < w``, ``k < K`` (the column side of a pair).

    Parameters
    ----------
    S : (R, TJ) pair weights of a group of target rows
    U : (R, K) the rows' own values (``w_i x_i`` and ``w_i``; 0 for rows that must not count)
    w : int
    col : (K, TJ) column sums of the source tile, added to
    """
    inline_into_callers()
    wide_vectors()
    K = U.shape[1]
    S0 = S[0]
    S1 = S[1]
    S2 = S[2]
    S3 = S[3]
    k = 0
    while k + 4 <= K:
        C0 = col[k]
        C1 = col[k + 1]
        C2 = col[k + 2]
        C3 = col[k + 3]
        a0, a1, a2, a3 = U[0, k], U[1, k], U[2, k], U[3, k]
        b0, b1, b2, b3 = U[0, k + 1], U[1, k + 1], U[2, k + 1], U[3, k + 1]
        c0, c1, c2, c3 = U[0, k + 2], U[1, k + 2], U[2, k + 2], U[3, k + 2]
        e0, e1, e2, e3 = U[0, k + 3], U[1, k + 3], U[2, k + 3], U[3, k + 3]
        for jj in range(w):
            g0 = S0[jj]
            g1 = S1[jj]
            g2 = S2[jj]
            g3 = S3[jj]
            C0[jj] += a0 * g0 + a1 * g1 + a2 * g2 + a3 * g3
            C1[jj] += b0 * g0 + b1 * g1 + b2 * g2 + b3 * g3
            C2[jj] += c0 * g0 + c1 * g1 + c2 * g2 + c3 * g3
            C3[jj] += e0 * g0 + e1 * g1 + e2 * g2 + e3 * g3
        k += 4
    while k < K:
        C0 = col[k]
        a0, a1, a2, a3 = U[0, k], U[1, k], U[2, k], U[3, k]
        for jj in range(w):
            C0[jj] += a0 * S0[jj] + a1 * S1[jj] + a2 * S2[jj] + a3 * S3[jj]
        k += 1


@njit(**NJIT_PAIR_PARALLEL)
def _sym_round(rnd, mode, QA, XT, XWT, MUT, ST, cvec, MU, n, zero, rowacc, colacc):
    """Round ``rnd`` of :func:`symmetric_pass`: target tile I against source tile (I + rnd) mod nt.

    Within a round the target tiles and the source tiles are each hit once,
    so row sums (of tile I, into ``rowacc``) and column sums (of tile J, into
    ``colacc``) never race. Round 0 pairs each tile with itself and is summed
    row-wise in full (no column sums).
    """
    inline_into_callers()
    nt, d, tj = XT.shape
    ntask = nt // 2 if (rnd > 0 and 2 * rnd == nt) else nt  # distance nt/2: each pair once
    sums = mode != MODE_Z  # weighted sums of x (softmax and force); z sums in softmax and z modes
    zsums = mode != MODE_FORCE
    for I in prange(ntask):
        J = (I + rnd) % nt
        S = _empty_aligned(R, tj, QA.dtype)  # l_ij - mu_i, then the pair weights
        col = _empty_aligned(d + 1, tj, QA.dtype)  # column sums of tile J (state dtype, this tile pair)
        sh = np.empty(R, QA.dtype)
        rows = np.empty(R, np.int64)
        U = np.zeros((R, d + 1), QA.dtype)  # w_i x_i and w_i of the group's rows (0: do not count)
        at = np.empty((R, d), np.float64)
        i0 = I * tj
        ni = min(n, i0 + tj) - i0
        j0 = J * tj
        wj = min(tj, n - j0)
        Xt = XT[J]
        XWt = XWT[J, :d]
        Wt = XWT[J, d]
        MUt = MUT[J]
        colx = col[:d]
        colz = col[d]
        for k in range(d + 1):
            for jj in range(wj):
                col[k, jj] = zero
        for g in range(0, ni, R):
            # the group's rows; past the tile's end, repeats of its last row (U = 0, sums discarded)
            for r in range(R):
                ii = min(g + r, ni - 1)
                rows[r] = i0 + ii
                sh[r] = to_dtype_of(MU[i0 + ii], zero)
                if rnd > 0 and g + r < ni:
                    for k in range(d + 1):
                        U[r, k] = XWT[I, k, ii]
                else:
                    for k in range(d + 1):
                        U[r, k] = zero
            _tile_logits_group(QA, rows, Xt, wj, S, sh)
            z0 = z1 = z2 = z3 = 0.0
            if zsums:
                z0, z1, z2, z3 = _tile_sym_exp_group(S, MUt, Wt, wj, U[0, d], U[1, d], U[2, d], U[3, d],
                                                     colz, sums, zero)
            else:
                for r in range(R):
                    _tile_sym_weights(S[r], MUt, ST[J], to_dtype_of(cvec[rows[r]], zero), wj)
            if sums:
                for r in range(R):
                    for k in range(d):
                        at[r, k] = 0.0
                _tile_accumulate_group(S, XWt, wj, at, zero)
                if rnd > 0:
                    _tile_columns_group(S, U[:, :d], wj, colx)
            for r in range(min(R, ni - g)):
                i = rows[r]
                if zsums:
                    rowacc[i, d] += (z0, z1, z2, z3)[r]
                if sums:
                    for k in range(d):
                        rowacc[i, k] += at[r, k]
        if rnd > 0:
            for jj in range(wj):
                for k in range(d + 1):
                    colacc[j0 + jj, k] += col[k, jj]


def symmetric_pass(mode, QA, XT, XWT, MUT, ST, cvec, MU, mu_max, n, zero, rowacc, colacc, acc, mrow, lrow):
    """A pass over pairs for a symmetric A with each unordered pair computed once (no mask).

    With ``mu_i = x_i^T |A| x_i / 2`` (``|A|`` the matrix absolute value),
    ``|l_ij| <= mu_i + mu_j``, so ``g_ij = exp(l_ij - mu_i - mu_j) <= 1``,
    ``g_ij = g_ji``, and with ``w_j = exp(mu_j)``::

        sum_j E_ij v_j = exp(mu_i) sum_j g_ij w_j v_j.

    One ``g_ij`` (one logit, one exponential) feeds the sums of row i
    (``+= g_ij w_j v_j``) and of row j (``+= g_ij w_i v_i``). The modes are those
    of :func:`loop_pass`: ``MODE_SOFTMAX`` sums ``v_j = (x_j, 1)`` (the SA/USA sums
    and z_i), ``MODE_Z`` only ``v_j = 1``, ``MODE_FORCE`` sums ``v_j = x_j`` with the
    symmetric weight ``E_ij (c_i + s_j) = E_ij (s_i + s_j + 2)``. Tiles are paired
    in rounds (tile I with tile I + rnd, rnd = 0 .. nt/2), one parallel region
    per round; every row's terms are added in the same order whatever the
    thread count. Needs ``max mu_i <= mu_max_for(dtype)``: then every exponent
    lies in [-4 mu_max, 0] and nothing over- or underflows.

    Outputs are in the form of :func:`loop_pass`: ``mrow_i = mu_i + max mu``
    (a shift at least every logit of row i), ``lrow_i = sum_j exp(l_ij - mrow_i)``
    and ``acc_i = sum_j exp(l_ij - mrow_i) w_ij x_j`` (``w_ij = 1``, or
    ``c_i + s_j`` in force mode).

    Parameters
    ----------
    mode : int, ``MODE_SOFTMAX``, ``MODE_Z`` or ``MODE_FORCE``
    QA : (N, d) query rows, XT : (ntiles, d, TJ) source tiles (:func:`prepare`)
    XWT : (ntiles, d + 1, TJ), MUT : (ntiles, TJ) weighted tiles (:func:`prepare_symmetric`)
    ST : (ntiles, TJ) tiles of s_j (force mode; any 2-D array of the state dtype otherwise)
    cvec : (N,) float64 c_i (force mode; any float64 array otherwise)
    MU : (N,) float64 mu_i
    mu_max : float, max_i mu_i
    n : int, number of particles (= N)
    zero : scalar 0 of the state dtype
    rowacc, colacc : (N, d + 1) float64 work arrays
    acc : (N, d) float64 output (not written in z mode)
    mrow : (N,) float64 output
    lrow : (N,) float64 output (not written in force mode)
    """
    # tile pairs go to threads one at a time (the split does not change any sum: each tile
    # pair's terms are added in a fixed order), so a busy core delays a round less
    old = set_parallel_chunksize(CHUNK)
    try:
        _symmetric_pass(mode, QA, XT, XWT, MUT, ST, cvec, MU, mu_max, n, zero, rowacc, colacc, acc, mrow, lrow)
    finally:
        set_parallel_chunksize(old)


@njit(**NJIT_PAIR)
def _symmetric_pass(mode, QA, XT, XWT, MUT, ST, cvec, MU, mu_max, n, zero, rowacc, colacc, acc, mrow, lrow):
    """:func:`symmetric_pass` (compiled; the caller sets numba's parallel chunk size)."""
    inline_into_callers()
    nt = XT.shape[0]
    d = XWT.shape[1] - 1
    for i in range(n):
        for k in range(d + 1):
            rowacc[i, k] = 0.0
            colacc[i, k] = 0.0
    for rnd in range(nt // 2 + 1):
        _sym_round(rnd, mode, QA, XT, XWT, MUT, ST, cvec, MU, n, zero, rowacc, colacc)
    sc = math.exp(-mu_max)
    for i in range(n):
        mrow[i] = MU[i] + mu_max
        if mode != MODE_FORCE:
            lrow[i] = (rowacc[i, d] + colacc[i, d]) * sc
        if mode != MODE_Z:
            for k in range(d):
                acc[i, k] = (rowacc[i, k] + colacc[i, k]) * sc


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
    for i in prange(Y.shape[0]):
        q = quadratic_form(B, Y, i)
        yBy[i] = q
        si = q / (z[i] * z[i])
        svec[i] = si
        cvec[i] = si + 2.0


@njit(**NJIT_PARALLEL_PLAIN)
def quadratic_forms(Y, B, yBy):
    """``yBy_i = y_i^T B y_i`` in float64 (the kinetic energy's numerators).

    Parameters
    ----------
    Y : (N, d) momenta
    B : (d, d) float64
    yBy : (N,) float64 output
    """
    for i in prange(Y.shape[0]):
        yBy[i] = quadratic_form(B, Y, i)


@njit(**NJIT_PARALLEL_PLAIN)
def finish_hamiltonian(X, Y, acc, mrow, z, A, B, Q, q, causal, n, FX, GY):
    """Hamiltonian field from the pass sums (docs/models.md §3), G without the damping term.

    ``F_i = B y_i / z_i``, ``G_i = exp(m_i) / (2 n_i) A acc_i - Q x_i + q`` with
    ``q = Q m``.

    Parameters
    ----------
    X, Y : (N, d)
    acc : (N, d) float64 from the force pass (:func:`loop_pass`, MODE_FORCE)
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
