"""Token-wise MLP activations fused with their bias, in place, in one pass over the hidden layer.

NumPy's in-place ``gelu_tanh`` takes nine passes over the ``(N, h)`` hidden
pre-activations (25 MB at GPT-2-small's N = 1024, h = 3072 in float64, beyond
the caches), plus one for the bias: memory-bound, 18-26 ms there. Here each
entry is read and written once, with

    0.5 a (1 + tanh z) = a / (1 + exp(-2 z)),    z = sqrt(2/pi) (a + 0.044715 a^3)

(the same function; this form also keeps its relative accuracy where
``1 + tanh z`` cancels). The exponential is :func:`meanfield._kernels.fastexp.fexp`
(libm's is a call the compiler cannot vectorize). Rows are split between
Python threads (:func:`meanfield._kernels.workers.in_workers`, no spinning
thread left behind): the bits do not depend on the thread count.
"""

from __future__ import annotations

import math

from numba import njit

from ._config import NJIT
from .fastexp import fexp
from .workers import in_ranges

_C = math.sqrt(2.0 / math.pi)


# error_model "numpy": numba's default checks every float division for a zero divisor (to raise
# ZeroDivisionError), and that branch keeps the loop from vectorizing: 18.8 against 3.2 ms for
# GPT-2-small's (1024, 3072) on one thread (a prange loop is compiled without the check). Here the
# divisor is 1 + exp(...) >= 1.
@njit(**dict(NJIT, error_model="numpy"))
def _bias_gelu_tanh_range(U, b, i0, i1):
    """Rows ``i0 <= i < i1`` of :func:`bias_gelu_tanh`."""
    h = U.shape[1]
    m2c = -2.0 * _C
    for i in range(i0, i1):
        row = U[i]
        for j in range(h):
            a = row[j] + b[j]
            # exp overflows to inf where a << 0: a / inf = -0, gelu's limit
            row[j] = a / (1.0 + fexp(m2c * (a + 0.044715 * a * a * a)))


def bias_gelu_tanh(U, b, workers=None):
    """``U <- gelu_tanh(U + b)`` in place, GPT-2's ``gelu_new``: ``0.5 a (1 + tanh(sqrt(2/pi) (a + 0.044715 a^3)))``.

    Parameters
    ----------
    U : (N, h) C-contiguous array
        Hidden pre-activations without the bias; overwritten (float32 is
        evaluated in float64 and rounded once).
    b : (h,) array
        The bias (added in U's dtype, as ``U += b`` would).
    workers : int or None
        Threads (default numba's thread count); any value gives the same bits.
    """
    in_ranges(U.shape[0], lambda i0, i1: _bias_gelu_tanh_range(U, b, i0, i1), workers)
