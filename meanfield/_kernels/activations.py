"""Token-wise MLP activations fused with their bias, in place, in one pass over the hidden layer.

NumPy's in-place ``gelu_tanh`` takes nine passes over the ``(N, h)`` hidden
pre-activations (25 MB at GPT-2-small's N = 1024, h = 3072 in float64, beyond
the caches), plus one for the bias: memory-bound, 18-26 ms there. Here each
entry is read and written once, with

    0.5 a (1 + tanh z) = a / (1 + exp(-2 z)),    z = sqrt(2/pi) (a + 0.044715 a^3)

(the same function; this form also keeps its relative accuracy where
``1 + tanh z`` cancels). libm's ``exp`` is a call the compiler cannot
vectorize (no SVML here), so :func:`_exp` is written out: ``2^k e^r`` with
``|r| <= ln 2 / 2``, ``e^r`` by its Taylor polynomial to degree 13 (remainder
below 5e-18) and ``2^k`` from its bits, which vectorizes. One ``prange``
index per row: the bits do not depend on the thread count.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._config import NJIT, NJIT_PARALLEL

_C = math.sqrt(2.0 / math.pi)
_LOG2E = 1.4426950408889634
# ln 2 split so that k * _LN2_HI is exact for |k| < 2^11 (Cody-Waite reduction)
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
#: |z| beyond which exp(z) is clamped: a / (1 + exp(-2 z)) no longer changes in float64.
_ZMAX = 708.0


@njit(**NJIT)
def _exp(z):
    """``exp(z)`` for float64 ``z`` in [-708, 708] to about 1 ulp, in vectorizable arithmetic."""
    k = math.floor(z * _LOG2E + 0.5)
    r = (z - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    two_k = np.int64(np.int64(k) + 1023) << 52
    return p * np.int64(two_k).view(np.float64)


@njit(**NJIT_PARALLEL)
def bias_gelu_tanh(U, b):
    """``U <- gelu_tanh(U + b)`` in place, GPT-2's ``gelu_new``: ``0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3)))``.

    Parameters
    ----------
    U : (N, h) C-contiguous array
        Hidden pre-activations without the bias; overwritten (float32 is
        evaluated in float64 and rounded once).
    b : (h,) array
        The bias (added in U's dtype, as ``U += b`` would).
    """
    n, h = U.shape
    m2c = -2.0 * _C
    for i in prange(n):
        row = U[i]
        for j in range(h):
            a = row[j] + b[j]
            z = min(max(m2c * (a + 0.044715 * a * a * a), -_ZMAX), _ZMAX)
            row[j] = a / (1.0 + _exp(z))
