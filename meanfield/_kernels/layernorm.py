"""LayerNorm of every token in one parallel pass (GPT-2-style networks).

NumPy's ``g (x - mean) / sqrt(var + eps) + b`` makes seven passes over the
``(N, d)`` residual stream and a temporary; here each row is read from cache
three times (sum, centred sum of squares, write) and written once. Sums run
in float64 (float32 rows too) in a fixed order (:mod:`meanfield._kernels.lanes`),
one ``prange`` index per row: the bits do not depend on the thread count.
"""

from __future__ import annotations

import math

from numba import njit, prange

from ._config import NJIT_PARALLEL
from .lanes import lane_sum, lane_sum_sq


@njit(**NJIT_PARALLEL)
def layer_norm_rows(X, g, b, eps, out):
    """``out[i] = g (x_i - mean x_i) / sqrt(var x_i + eps) + b`` (population variance) for every row.

    Parameters
    ----------
    X : (N, d) array
    g, b : (d,) arrays
        Gain and bias.
    eps : float
    out : (N, d) array
        Written; may not alias ``X``.
    """
    n, d = X.shape
    for i in prange(n):
        x = X[i]
        mu = lane_sum(x, d) / d
        sd = math.sqrt(lane_sum_sq(x, mu, d) / d + eps)
        o = out[i]
        for j in range(d):
            o[j] = (x[j] - mu) / sd * g[j] + b[j]
