"""Cheap state checks used by the time loop (serial: see :func:`max_abs_or_nan`)."""

import numpy as np
from numba import njit

from ._config import NJIT


@njit(**NJIT)
def max_abs_or_nan(X, bounds, partial):
    """Return max |X_ij|, or NaN if any entry is NaN (inf propagates as inf).

    One thread on purpose: the pass reads each entry once (memory-bound,
    0.6 ms at N = 2x10^5, d = 3), and forking threads for it cost 4-10 ms per
    call on a 2-core machine with one core busy. Chunk by chunk, so a NaN
    ends the pass at the end of its chunk.

    Parameters
    ----------
    X : (N, d)
    bounds : (nchunks + 1,) int64
    partial : (nchunks,) float64 scratch (the chunks' maxima)
    """
    n, d = X.shape
    nchunks = bounds.shape[0] - 1
    out = 0.0
    for c in range(nchunks):
        m = 0.0
        bad = False
        for i in range(bounds[c], bounds[c + 1]):
            for k in range(d):
                v = abs(X[i, k])
                bad |= v != v
                m = max(m, v)
        partial[c] = np.nan if bad else m
        if bad:
            return partial[c]
        out = max(out, m)
    return out
