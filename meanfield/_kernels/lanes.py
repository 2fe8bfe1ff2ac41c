"""Row reductions in eight interleaved partial results, combined in a fixed order.

A plain ``for j: s += x[j]`` is one chain of dependent additions (4 cycles
each) that the compiler may not vectorize without reassociating, which
``_config`` does not allow (bits would depend on the vector width). Eight
partial sums over ``j mod 8``, added pairwise at the end, are a fixed order
of their own: eight independent chains the compiler vectorizes or pipelines,
the same bits on any machine width and thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._config import NJIT, inline_into_callers


@njit(**NJIT)
def lane_sum(x, n):
    """``sum(x[:n])`` in float64, eight partial sums over ``j mod 8`` then pairwise."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    j = 0
    while j + 8 <= n:
        s0 += x[j]
        s1 += x[j + 1]
        s2 += x[j + 2]
        s3 += x[j + 3]
        s4 += x[j + 4]
        s5 += x[j + 5]
        s6 += x[j + 6]
        s7 += x[j + 7]
        j += 8
    while j < n:
        s0 += x[j]
        j += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(**NJIT)
def lane_sum_sq(x, mu, n):
    """``sum((x[:n] - mu)^2)`` in float64, in the order of :func:`lane_sum`."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    j = 0
    while j + 8 <= n:
        c0 = x[j] - mu
        c1 = x[j + 1] - mu
        c2 = x[j + 2] - mu
        c3 = x[j + 3] - mu
        c4 = x[j + 4] - mu
        c5 = x[j + 5] - mu
        c6 = x[j + 6] - mu
        c7 = x[j + 7] - mu
        s0 += c0 * c0
        s1 += c1 * c1
        s2 += c2 * c2
        s3 += c3 * c3
        s4 += c4 * c4
        s5 += c5 * c5
        s6 += c6 * c6
        s7 += c7 * c7
        j += 8
    while j < n:
        c = x[j] - mu
        s0 += c * c
        j += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(**NJIT)
def lane_max(x, n):
    """``max(x[:n])`` (``n >= 1``; NaN entries are skipped, as ``v > m`` is false for them).

    Written as comparisons, not ``max()``: their NaN rule is the one callers rely on.
    """
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = -np.inf
    j = 0
    while j + 8 <= n:
        m0 = x[j] if x[j] > m0 else m0
        m1 = x[j + 1] if x[j + 1] > m1 else m1
        m2 = x[j + 2] if x[j + 2] > m2 else m2
        m3 = x[j + 3] if x[j + 3] > m3 else m3
        m4 = x[j + 4] if x[j + 4] > m4 else m4
        m5 = x[j + 5] if x[j + 5] > m5 else m5
        m6 = x[j + 6] if x[j + 6] > m6 else m6
        m7 = x[j + 7] if x[j + 7] > m7 else m7
        j += 8
    while j < n:
        m0 = x[j] if x[j] > m0 else m0
        j += 1
    return max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))


@njit(**NJIT)
def lane_dot(x, y, n):
    """``sum(x[:n] * y[:n])`` in float64, in the order of :func:`lane_sum`."""
    inline_into_callers()
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    j = 0
    while j + 8 <= n:
        s0 += x[j] * y[j]
        s1 += x[j + 1] * y[j + 1]
        s2 += x[j + 2] * y[j + 2]
        s3 += x[j + 3] * y[j + 3]
        s4 += x[j + 4] * y[j + 4]
        s5 += x[j + 5] * y[j + 5]
        s6 += x[j + 6] * y[j + 6]
        s7 += x[j + 7] * y[j + 7]
        j += 8
    while j < n:
        s0 += x[j] * y[j]
        j += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(**NJIT)
def lane_dot3(w, x, y, n):
    """``sum(w[:n] * x[:n] * y[:n])`` in float64, in the order of :func:`lane_sum`."""
    inline_into_callers()
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    j = 0
    while j + 8 <= n:
        s0 += w[j] * x[j] * y[j]
        s1 += w[j + 1] * x[j + 1] * y[j + 1]
        s2 += w[j + 2] * x[j + 2] * y[j + 2]
        s3 += w[j + 3] * x[j + 3] * y[j + 3]
        s4 += w[j + 4] * x[j + 4] * y[j + 4]
        s5 += w[j + 5] * x[j + 5] * y[j + 5]
        s6 += w[j + 6] * x[j + 6] * y[j + 6]
        s7 += w[j + 7] * x[j + 7] * y[j + 7]
        j += 8
    while j < n:
        s0 += w[j] * x[j] * y[j]
        j += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
