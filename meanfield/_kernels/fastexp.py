"""A vectorizable exponential for numba loops (float64 and float32).

numba's ``math.exp`` / ``np.exp`` inside a loop is a scalar libm call on this
machine (no SVML), and the exponential is the bottleneck of the softmax
pairwise sums. :func:`fexp` is written so that LLVM vectorizes it when it is
inlined into a loop:

* range reduction by ln 2: ``x = n ln2 + r``, ``|r| <= ln2 / 2``, where
  ``n = rint(x / ln2)`` comes from the "magic number" rounding trick
  ``t = x log2(e) + 1.5 * 2^52`` (no float -> int conversion needed) and
  ``r`` uses a two-part (Cody-Waite) ln 2 so it is exact to ~1 ulp;
* ``exp(r)`` by its Taylor polynomial (degree 13 for float64, 7 for float32,
  truncation error below 0.1 ulp) in Horner form (FMA);
* ``2^n`` built by bit manipulation: the integer ``n`` is read off the bits of
  ``t`` and shifted into the exponent field.

Measured error against ``np.exp``: at most 1 ulp (float64 on [-708.39, 709.78];
float32 on [-87.33, 88.72] against the correctly rounded value), see
``tests/test_softmax.py``. Below the range the result is flushed to 0 (no
subnormals), above it is ``inf``; NaN propagates.

These functions are compiled with ``fastmath={"contract"}`` only: the rounding
trick and the two-part reduction must not be re-associated. They are called
from kernels compiled with re-association enabled; LLVM inlines them and keeps
each instruction's own flags.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from ._config import NJIT

# ---------------------------------------------------------------- bit casts


@intrinsic
def _f64_bits(typingctx, x):
    """Reinterpret a float64 as int64 (one ``bitcast``, vectorizable)."""
    if x != types.float64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _bits_f64(typingctx, i):
    """Reinterpret an int64 as float64."""
    if i != types.int64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _f32_bits(typingctx, x):
    """Reinterpret a float32 as int32."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _bits_f32(typingctx, i):
    """Reinterpret an int32 as float32."""
    if i != types.int32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


# ---------------------------------------------------------------- constants

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693147180369123816490  # 32 significant bits: n * _LN2_HI is exact for |n| < 2^21
_LN2_LO = 1.90821492927058770002e-10
_MAGIC = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer
_MAGIC_BITS = np.int64(0x4338000000000000)
_LO = -708.3964185322641  # exp below this would be subnormal: flushed to 0
_HI = 709.782712893384  # log(DBL_MAX)

_INV_FACT = [1.0]
for _k in range(1, 14):
    _INV_FACT.append(_INV_FACT[-1] / _k)
C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13 = _INV_FACT[2:14]

_F_LOG2E = np.float32(1.4426950408889634)
_F_LN2_HI = np.float32(0.693145751953125)  # 13 bits after the point: n * hi exact for |n| < 2^11
_F_LN2_LO = np.float32(1.428606765330187e-06)
_F_MAGIC = np.float32(12582912.0)  # 1.5 * 2^23
_F_MAGIC_BITS = np.int32(0x4B400000)
_F_LO = np.float32(-87.33654)  # -126 ln 2
_F_HI = np.float32(88.72283)  # log(FLT_MAX)
_F_ZERO = np.float32(0.0)
_F_ONE = np.float32(1.0)
_F_INF = np.float32(np.inf)
_F_C = [np.float32(c) for c in _INV_FACT[:8]]
F2, F3, F4, F5, F6, F7 = _F_C[2:8]

_I64_1023 = np.int64(1023)
_I32_127 = np.int32(127)


@njit(**NJIT)
def fexp64(x):
    """exp(x) for a float64 scalar, vectorizable when inlined into a loop.

    Parameters
    ----------
    x : float64

    Returns
    -------
    float64
        exp(x) within 1 ulp for x in [-708.39, 709.78]; 0 below, inf above.
    """
    t = x * _LOG2E + _MAGIC
    n = t - _MAGIC
    r = x - n * _LN2_HI
    r = r - n * _LN2_LO
    p = C13
    p = p * r + C12
    p = p * r + C11
    p = p * r + C10
    p = p * r + C9
    p = p * r + C8
    p = p * r + C7
    p = p * r + C6
    p = p * r + C5
    p = p * r + C4
    p = p * r + C3
    p = p * r + C2
    p = p * r + 1.0
    p = p * r + 1.0
    # 2^n as two normal factors 2^(n - n//2) * 2^(n//2): n = 1024 (x near log DBL_MAX)
    # must not overflow the exponent field
    ni = _f64_bits(t) - _MAGIC_BITS
    n1 = ni >> 1
    res = p * _bits_f64((ni - n1 + _I64_1023) << 52) * _bits_f64((n1 + _I64_1023) << 52)
    res = 0.0 if x < _LO else res
    res = np.inf if x > _HI else res
    return res


@njit(**NJIT)
def fexp32(x):
    """exp(x) for a float32 scalar, vectorizable when inlined into a loop.

    Parameters
    ----------
    x : float32

    Returns
    -------
    float32
        exp(x) within 1 ulp for x in [-87.33, 88.72]; 0 below, inf above.
    """
    t = x * _F_LOG2E + _F_MAGIC
    n = t - _F_MAGIC
    r = x - n * _F_LN2_HI
    r = r - n * _F_LN2_LO
    p = F7
    p = p * r + F6
    p = p * r + F5
    p = p * r + F4
    p = p * r + F3
    p = p * r + F2
    p = p * r + _F_ONE
    p = p * r + _F_ONE
    # numba widens int32 arithmetic to int64: narrow back before the bit cast
    ni = _f32_bits(t) - _F_MAGIC_BITS
    n1 = ni >> 1
    res = p * _bits_f32(np.int32((ni - n1 + _I32_127) << 23)) * _bits_f32(np.int32((n1 + _I32_127) << 23))
    res = _F_ZERO if x < _F_LO else res
    res = _F_INF if x > _F_HI else res
    return res


def fexp(x):
    """exp(x) for a float64 or float32 scalar inside numba code (dispatches on type)."""
    return np.exp(x)


@overload(fexp, jit_options=NJIT)
def _fexp_overload(x):
    if x == types.float64:
        return lambda x: fexp64(x)
    if x == types.float32:
        return lambda x: fexp32(x)
    return None


def to_dtype_of(value, like):
    """``value`` converted to the type of the scalar ``like`` inside numba code."""
    return type(like)(value)


@overload(to_dtype_of, jit_options=NJIT)
def _to_dtype_of_overload(value, like):
    if like == types.float64:
        return lambda value, like: np.float64(value)
    if like == types.float32:
        return lambda value, like: np.float32(value)
    return None


@njit(**NJIT)
def _fexp_array64(x, out):
    """Elementwise fast exp of a 1-D float64 array into ``out`` (test/benchmark helper)."""
    for k in range(x.shape[0]):
        out[k] = fexp64(x[k])


@njit(**NJIT)
def _fexp_array32(x, out):
    """Elementwise fast exp of a 1-D float32 array into ``out`` (test/benchmark helper)."""
    for k in range(x.shape[0]):
        out[k] = fexp32(x[k])


def fast_exp(x):
    """exp of a float64 or float32 array with the kernels' polynomial exp (for tests).

    Parameters
    ----------
    x : array of float64 or float32

    Returns
    -------
    array, same shape and dtype as ``x``
    """
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float64, np.float32):
        raise TypeError(f"fast_exp needs float64 or float32, got {x.dtype}")
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    (_fexp_array64 if x.dtype == np.float64 else _fexp_array32)(flat, out)
    return out.reshape(x.shape)
