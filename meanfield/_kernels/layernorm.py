"""LayerNorm of every token in one parallel pass (GPT-2-style networks).

NumPy's ``g (x - mean) / sqrt(var + eps) + b`` makes seven passes over the
``(N, d)`` residual stream and a temporary; here each row is read from cache
three times (sum, centred sum of squares, write) and written once. Sums run
serially within a row in float64 (float32 rows too), one ``prange`` index per
row: the bits do not depend on the thread count.
"""

from __future__ import annotations

import math

from numba import njit, prange

from ._config import NJIT_PARALLEL


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
        s = 0.0
        for j in range(d):
            s += x[j]
        mu = s / d
        q = 0.0
        for j in range(d):
            c = x[j] - mu
            q += c * c
        sd = math.sqrt(q / d + eps)
        o = out[i]
        for j in range(d):
            o[j] = (x[j] - mu) / sd * g[j] + b[j]
