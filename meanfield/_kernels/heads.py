"""Multi-head softmax attention through per-head factors (GPT-2-style networks).

Each head h has queries, keys and values of size d_h, computed by the caller
as BLAS products; the kernel forms the logits ``q_i . k_j * scale`` (never a
d x d matrix per pair) and the softmax-weighted value sums by an online
softmax over tiles of sources (running maximum, partial sums rescaled once per
tile: one pass over sources, no (N, N) logits array). Keys are laid out
``(H, d_h, N)`` so that a tile's logits are a loop over contiguous sources,
which the compiler vectorizes. One ``prange`` index per target token, each
with its own row of the scratch, so there are no races and the bits do not
depend on the thread count.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._config import NJIT_PARALLEL

#: Sources per tile of the online softmax (one row of the scratch ``(N, TILE)``).
TILE = 64


@njit(**NJIT_PARALLEL)
def head_attention(Q, KT, Vv, scale, causal, scratch, out):
    """``out[i, h] = sum_j softmax_j(scale q_i^h . k_j^h) v_j^h`` over j (j <= i when causal).

    Parameters
    ----------
    Q : (N, H, d_h) array
        Per-head queries (biases included).
    KT : (H, d_h, N) array
        Per-head keys, transposed (biases included).
    Vv : (N, H, d_h) array
        Per-head values (biases included).
    scale : float
        Multiplies the logits (``1 / sqrt(d_h)``).
    causal : bool
        Sum over sources j <= i only.
    scratch : (N, TILE) array
        Work space, row i for target i.
    out : (N, H, d_h) array
        Written; must not alias the inputs.
    """
    n, H, dh = Q.shape
    T = scratch.shape[1]
    for i in prange(n):
        jmax = i + 1 if causal else n
        s = scratch[i]
        for hd in range(H):
            acc = out[i, hd]
            for c in range(dh):
                acc[c] = 0.0
            m = -np.inf
            den = 0.0
            for j0 in range(0, jmax, T):
                nt = min(T, jmax - j0)
                for jj in range(nt):
                    s[jj] = 0.0
                for c in range(dh):
                    qc = Q[i, hd, c]
                    krow = KT[hd, c]
                    for jj in range(nt):
                        s[jj] += qc * krow[j0 + jj]
                tmax = -np.inf
                for jj in range(nt):
                    s[jj] *= scale
                    if s[jj] > tmax:
                        tmax = s[jj]
                if tmax > m:
                    # a new maximum: rescale what was summed so far so exp never overflows
                    r = math.exp(m - tmax)
                    den *= r
                    for c in range(dh):
                        acc[c] *= r
                    m = tmax
                for jj in range(nt):
                    p = math.exp(s[jj] - m)
                    den += p
                    for c in range(dh):
                        acc[c] += p * Vv[j0 + jj, hd, c]
            inv = 1.0 / den
            for c in range(dh):
                acc[c] *= inv
