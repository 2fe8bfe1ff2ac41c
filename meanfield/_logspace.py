"""Exponentials that cannot overflow: shared by the energies of the softmax and sphere models.

Energies like -1/(2N^2) sum_ij exp(beta <theta_i, theta_j>) exceed the float64
range for beta above ~709.8 although the state and the (normalized) field are
fine; these helpers form them from logarithms and return inf where the value
itself is not representable, instead of raising ``OverflowError``.
"""

from __future__ import annotations

import math

import numpy as np

#: log of the largest float64: exp(v) overflows for v > LOG_MAX.
LOG_MAX = math.log(np.finfo(np.float64).max)


def exp_clipped(v: float) -> float:
    """exp(v) for a float, inf above the float64 range (never ``OverflowError``)."""
    return math.exp(v) if v <= LOG_MAX else math.inf


def log_mean_exp(v: np.ndarray) -> float:
    """log((1/N) sum_i exp(v_i)) of an (N,) array without overflow (inf / nan propagate)."""
    top = float(np.max(v))
    if not math.isfinite(top):
        return top
    return top + math.log(float(np.mean(np.exp(v - top))))
