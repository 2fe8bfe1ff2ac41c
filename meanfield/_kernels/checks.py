"""Cheap parallel state checks used by the time loop."""

import numpy as np
from numba import njit, prange

from ._config import NJIT_PARALLEL


@njit(**NJIT_PARALLEL)
def max_abs_or_nan(X, bounds, partial):
    """Return max |X_ij|, or NaN if any entry is NaN (inf propagates as inf).

    Parameters
    ----------
    X : (N, d)
    bounds : (nchunks + 1,) int64
    partial : (nchunks,) float64 scratch
    """
    n, d = X.shape
    nchunks = bounds.shape[0] - 1
    for c in prange(nchunks):
        m = 0.0
        bad = False
        for i in range(bounds[c], bounds[c + 1]):
            for k in range(d):
                v = abs(X[i, k])
                bad |= v != v
                m = max(m, v)
        partial[c] = np.nan if bad else m
    out = 0.0
    for c in range(nchunks):
        p = partial[c]
        if p != p:
            return p
        out = max(out, p)
    return out
