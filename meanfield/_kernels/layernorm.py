"""LayerNorm of every token in one pass (GPT-2-style networks).

NumPy's ``g (x - mean) / sqrt(var + eps) + b`` makes seven passes over the
``(N, d)`` residual stream and a temporary; here each row is read from cache
three times (sum, centred sum of squares, write) and written once. Sums run
in float64 (float32 rows too) in a fixed order (:mod:`meanfield._kernels.lanes`);
the write runs in the rows' dtype (float32 rows: float32 vectors, twice as
wide). Rows are split between Python threads
(:func:`meanfield._kernels.workers.in_workers`, no spinning thread left
behind); a row's bits do not depend on which thread computes it.
"""

from __future__ import annotations

import math

from numba import njit

from ._config import NJIT
from .lanes import lane_sum, lane_sum_sq
from .workers import in_ranges


@njit(**NJIT)
def _layer_norm_range(X, g, b, eps, out, i0, i1, stat):
    """Rows ``i0 <= i < i1`` of :func:`layer_norm_rows`; ``stat (2,)`` in X's dtype holds the row's mean and
    ``1 / sqrt(var + eps)`` (rounded to it: the write loop then stays in X's dtype)."""
    d = X.shape[1]
    for i in range(i0, i1):
        x = X[i]
        mu = lane_sum(x, d) / d
        stat[0] = mu
        stat[1] = 1.0 / math.sqrt(lane_sum_sq(x, mu, d) / d + eps)
        m, rs = stat[0], stat[1]
        o = out[i]
        for j in range(d):
            o[j] = (x[j] - m) * rs * g[j] + b[j]


def layer_norm_rows(X, g, b, eps, out, workers=None):
    """``out[i] = g (x_i - mean x_i) / sqrt(var x_i + eps) + b`` (population variance) for every row.

    Parameters
    ----------
    X : (N, d) array
    g, b : (d,) arrays
        Gain and bias.
    eps : float
    out : (N, d) array
        Written; may not alias ``X``.
    workers : int or None
        Threads (default numba's thread count); any value gives the same bits.
    """
    import numpy as np

    in_ranges(X.shape[0], lambda i0, i1: _layer_norm_range(X, g, b, eps, out, i0, i1, np.empty(2, X.dtype)),
              workers)
