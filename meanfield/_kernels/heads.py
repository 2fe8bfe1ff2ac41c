"""Multi-head softmax attention through per-head factors (GPT-2-style networks).

Each head h has queries, keys and values of size d_h, computed by the caller
as BLAS products; the kernel forms the logits ``q_i . k_j * scale`` pair by
pair (never a d x d matrix per pair), and the softmax-weighted value sums by
an online softmax (running maximum, rescaled partial sums: one pass over
sources, no (N, N) logits array). One ``prange`` index per target token, so
there are no races and the bits do not depend on the thread count.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._config import NJIT_PARALLEL


@njit(**NJIT_PARALLEL)
def head_attention(Q, K, Vv, scale, causal, out):
    """``out[i, h] = sum_j softmax_j(scale q_i^h . k_j^h) v_j^h`` over j (j <= i when causal).

    Parameters
    ----------
    Q, K, Vv : (N, H, d_h) arrays
        Per-head queries, keys and values (biases included).
    scale : float
        Multiplies the logits (``1 / sqrt(d_h)``).
    causal : bool
        Sum over sources j <= i only.
    out : (N, H, d_h) array
        Written; must not alias the inputs.
    """
    n, H, dh = Q.shape
    for i in prange(n):
        jmax = i + 1 if causal else n
        for hd in range(H):
            acc = out[i, hd]
            for c in range(dh):
                acc[c] = 0.0
            m = -np.inf
            den = 0.0
            for j in range(jmax):
                s = 0.0
                for c in range(dh):
                    s += Q[i, hd, c] * K[j, hd, c]
                s *= scale
                if s > m:
                    # a new maximum: rescale what was summed so far so exp never overflows
                    r = math.exp(m - s)
                    den *= r
                    for c in range(dh):
                        acc[c] *= r
                    m = s
                p = math.exp(s - m)
                den += p
                for c in range(dh):
                    acc[c] += p * Vv[j, hd, c]
            inv = 1.0 / den
            for c in range(dh):
                acc[c] *= inv
