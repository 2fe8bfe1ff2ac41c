"""Multi-head softmax attention through per-head factors (GPT-2-style networks).

The caller computes every head's queries, keys and values by one BLAS product
``qkv (N, 3 H d_h)``. :func:`multi_head_attention` then runs the heads in
parallel: it copies each head's ``q, k, v`` (biases added) into contiguous
arrays, then, per (head, block of targets), forms the logits ``S = Q_blk K^T``
(rank d_h, never a d x d matrix per pair; sources up to the block's last
target when causal), turns them into softmax weights in place
(:func:`softmax_rows`) and multiplies by ``V``: the two products are BLAS
calls from inside the kernel (numba's ``np.dot``), at BLAS speed. The earlier
kernel, a loop over sources per target, reached a tenth of it (its partial
sums cost a load and a store per multiply-add).

Each block's work is serial (BLAS on one thread: call the kernel inside
:func:`blas_single_threaded`), so the bits do not depend on the thread count.
The threads are Python threads running ``nogil`` kernels
(:func:`meanfield._kernels.workers.in_workers`), not a numba ``prange``,
whose OpenMP workers spin after the region and slowed the BLAS product that
follows. A call is two rounds of the threads (copy, items): on a shared machine every
fork and join can wait a scheduler time slice for a busy core, which made
per-head BLAS calls from Python (36 per layer) slower than this.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._config import NJIT
from .fastexp import fexp
from .lanes import lane_max, lane_sum
from .workers import in_ranges

#: Logits per block of targets ``(rows, N)`` of one head: 2^17 entries (0.5 MiB in float32, a core's L2
#: here). Causal blocks compute the square of their last rows: at N = 1024, 128-row blocks do 12% more
#: products than the triangle, 256-row ones 25%; the heads at GPT-2-small shape took 27.5 against 28.5 ms
#: (float32) and 48 against 52 ms (float64) on one thread.
BLOCK = 1 << 17
#: Fewest targets per block (a product with fewer rows runs far below BLAS speed).
MIN_ROWS = 16


def block_rows(n: int, block: int = BLOCK) -> int:
    """Targets per block of logits for ``n`` tokens: ``block // n``, at least MIN_ROWS, at most ``n``."""
    return max(1, min(n, max(MIN_ROWS, block // n)))


_CONTROLLER = []


def blas_single_threaded():
    """Context manager: every loaded BLAS on one thread (the kernel's threads call it concurrently)."""
    if not _CONTROLLER:
        import scipy.linalg.cython_blas  # noqa: F401  (numba's np.dot calls it: loaded before it is listed)
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


@njit(**NJIT)
def softmax_rows(S, first, scale, causal, inv):
    """In place, row a of ``S``: ``exp(scale s_aj - max_j scale s_aj)`` for the sources it sees, 0 beyond.

    Parameters
    ----------
    S : (r, m) C-contiguous array
        Logits ``q_i . k_j`` of targets ``i = first + a`` and sources ``j < m``;
        overwritten with the unnormalized weights.
    first : int
        Index of the target of row 0.
    scale : float
        Multiplies the logits (``1 / sqrt(d_h)``).
    causal : bool
        Row a sees sources ``j <= first + a`` only (the others are set to 0).
    inv : (>= r,) array
        Written: ``inv[a] = 1 / sum_j`` of row a's weights.
    """
    r, m = S.shape
    for a in range(r):
        row = S[a]
        jmax = min(first + a + 1, m) if causal else m
        # separate loops: the elementwise ones vectorize, the reductions keep a fixed order (lanes)
        inv[a] = lane_max(row, jmax)  # through inv: the shift in S's dtype (lane_max returns float64),
        shift = inv[a] * scale  # so float32 logits take float32 exponentials, twice as many per vector
        for j in range(jmax):
            # scale > 0: max_j scale s_j = scale max_j s_j, and the product fuses into the subtraction;
            # below exp's range the weight is 0 (a NaN still propagates)
            row[j] = fexp(row[j] * scale - shift)
        for j in range(jmax, m):
            row[j] = 0.0
        inv[a] = 1.0 / lane_sum(row, jmax)


@njit(**NJIT)
def _block_order(nb, causal):
    """Blocks of targets in the order the kernel hands them out: 0, nb-1, 1, nb-2, ... when causal.

    A causal block's cost grows with its index; the threads take contiguous runs
    of work items, so interleaving the cheap and the dear ones balances them
    (for any head count, one head included).
    """
    order = np.empty(nb, np.int64)
    for t in range(nb):
        order[t] = (t // 2 if t % 2 == 0 else nb - 1 - t // 2) if causal else t
    return order


@njit(**NJIT)
def _gather_heads(qkv, bias, H, h0, h1, heads):
    """``heads[c, h] = `` head h's columns of ``qkv`` plus their biases (c = q, k, v), h in [h0, h1).

    Each head's q, k, v contiguous ``(N, d_h)``: the products need it.
    """
    n, dh = qkv.shape[0], heads.shape[3]
    D = H * dh
    for h in range(h0, h1):
        for i in range(n):
            for c in range(3):
                col = c * D + h * dh
                for e in range(dh):
                    heads[c, h, i, e] = qkv[i, col + e] + bias[col + e]


@njit(**NJIT)
def _head_items(heads, scale, causal, rows, order, t0, t1, out):
    """Items ``t0 <= t < t1`` (head ``t // nb``, block of targets ``order[t % nb]``) into ``out (N, H, d_h)``."""
    n, dh = heads.shape[2], heads.shape[3]
    nb = order.shape[0]
    logits = np.empty(rows * n, heads.dtype)
    inv = np.empty(rows, heads.dtype)
    o = np.empty((rows, dh), heads.dtype)
    for t in range(t0, t1):
        h = t // nb
        i0 = order[t % nb] * rows
        r = min(n, i0 + rows) - i0
        m = i0 + r if causal else n  # the sources this block sees
        s = logits[: r * m].reshape((r, m))
        q, k, v = heads[0, h], heads[1, h], heads[2, h]
        np.dot(q[i0: i0 + r], k[:m].T, s)
        softmax_rows(s, i0, scale, causal, inv)
        ob = o[:r]
        np.dot(s, v[:m], ob)
        for a in range(r):
            w = inv[a]
            for e in range(dh):
                out[i0 + a, h, e] = ob[a, e] * w


def multi_head_attention(qkv, bias, H, scale, causal, rows, workers, out, work=None):
    """``out[i, h] = sum_j softmax_j(scale q_i^h . k_j^h) v_j^h`` over j (j <= i when causal).

    Parameters
    ----------
    qkv : (N, 3 H d_h) array
        Every head's queries, then keys, then values, without their biases
        (columns ``c H d_h + h d_h + [0, d_h)`` for c = q, k, v).
    bias : (3 H d_h,) array
        Their biases.
    H : int
        Heads.
    scale : float
        Multiplies the logits (``1 / sqrt(d_h)``), in ``qkv``'s dtype.
    causal : bool
        Sum over sources j <= i only.
    rows : int
        Targets per block of logits (:func:`block_rows`).
    workers : int
        Threads (:func:`meanfield._kernels.workers.in_workers`), each running one run of
        consecutive (head, block) items (``numba.get_num_threads()``; any value gives the same bits: which worker
        takes an item changes no bit of it). Call inside :func:`blas_single_threaded`.
    out : (N, H, d_h) array
        Written; must not alias the inputs.
    work : (3, H, N, d_h) array or None
        Space for each head's contiguous q, k, v (allocated when None: 9 MB at GPT-2-small's
        size in float32, fresh pages to fault in at every call).

    Returns
    -------
    out
    """
    n, dh = qkv.shape[0], out.shape[2]
    heads = np.empty((3, H, n, dh), qkv.dtype) if work is None else work
    nb = (n + rows - 1) // rows
    order = _block_order(nb, causal)
    in_ranges(H, lambda h0, h1: _gather_heads(qkv, bias, H, h0, h1, heads), workers)
    in_ranges(H * nb, lambda t0, t1: _head_items(heads, scale, causal, rows, order, t0, t1, out), workers)
    return out


def attention_heads(qkv, bias, H: int, scale, causal: bool, out, work=None):
    """:func:`multi_head_attention` with BLAS on one thread, blocks of :func:`block_rows`, a run of
    items per numba thread: what a network's attention calls. Returns ``out (N, H, d_h)``."""
    import numba

    with blas_single_threaded():  # the kernel's threads each run their items' products
        multi_head_attention(qkv, bias, H, scale, causal, block_rows(qkv.shape[0]), numba.get_num_threads(), out,
                             work)
    return out
