"""A vectorizable exponential for numba loops (float64 and float32).

numba's ``math.exp`` / ``np.exp`` inside a loop is a scalar libm call on this
machine (no SVML), and the exponential is the bottleneck of the softmax
pairwise sums. :func:`fexp` is written so that LLVM vectorizes it when it is
inlined into a loop:

* range reduction by ln 2: ``x = n ln2 + r``, ``|r| <= ln2 / 2``, where
  ``n = rint(x / ln2)`` comes from the "magic number" rounding trick
  ``t = x log2(e) + 1.5 * 2^52`` (no float -> int conversion needed) and
  ``r`` uses a two-part (Cody-Waite) ln 2 so it is exact to ~1 ulp;
* ``exp(r) = 1 + r + r^2 q(r)`` with ``q`` a polynomial of degree 9 for float64
  (exp of degree 11) and 4 for float32 (degree 6), the Chebyshev fits of
  ``(e^r - 1 - r) / r^2`` on ``[-ln2/2, ln2/2]`` (``mpmath.chebyfit``; with the
  coefficients rounded, the relative error of ``1 + r + r^2 q(r)`` in exact
  arithmetic is 1.6e-17 = 0.07 ulp for float64 and 9.7e-9 = 0.16 ulp for
  float32), in Horner form (FMA). The Taylor polynomials of the same accuracy
  have degree 13 and 7: two and one multiply-adds more per exponential;
* ``2^n`` built by bit manipulation: the integer ``n`` is read off the bits of
  ``t`` and shifted into the exponent field.

Measured error against ``np.exp``: at most 1 ulp (float64 on [-708.39, 709.78];
float32 on [-87.33, 88.72] against the correctly rounded value), see
``tests/test_softmax.py``. Below the range the result is flushed to 0 (no
subnormals), above it is ``inf``; NaN propagates.

:func:`fexp_tile` is the variant the pairwise kernels use: the input is
clamped to the range first and ``2^n`` is one exponent-field shift of the
rounding constant's bits (the constant carries the exponent bias), which
saves a third of the instructions. It is as accurate as :func:`fexp` up to
``x = 1023.5 ln 2 = 709.43`` (float32: ``127.5 ln 2 = 88.37``); above that it
returns ``inf``, and below the range the smallest normal number instead of 0. The
kernels only feed it logits minus a running shift and treat a large or
infinite tile sum by re-shifting, so neither edge is reached on a result.

:func:`fexp_bounded` drops the clamps as well (two of the about 20 vector operations
of an exponential): for arguments known to lie in ``[-708.39, 0]`` (float32: ``[-87.33, 0]``), as
in the symmetric passes, whose exponents are bounded by ``-4 mu_max`` and 0. It
equals :func:`fexp_tile` there; outside, its result is undefined (NaN and
infinities give NaN).

These functions are compiled with ``fastmath={"contract"}`` only: the rounding
trick and the two-part reduction must not be re-associated. They are called
from kernels compiled with re-association enabled; LLVM inlines them and keeps
each instruction's own flags.
"""

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

from ._config import NJIT

# ---------------------------------------------------------------- bit casts


def _bitcast(src, dst):
    """An intrinsic reinterpreting the bits of a ``src`` scalar as ``dst`` (one LLVM ``bitcast``, vectorizable)."""

    @intrinsic
    def cast(typingctx, x):
        if x != src:
            return None

        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], context.get_value_type(dst))

        return dst(src), codegen

    return cast


_f64_bits = _bitcast(types.float64, types.int64)
_bits_f64 = _bitcast(types.int64, types.float64)
_f32_bits = _bitcast(types.float32, types.int32)
_bits_f32 = _bitcast(types.int32, types.float32)


# ---------------------------------------------------------------- constants

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693147180369123816490  # 32 significant bits: n * _LN2_HI is exact for |n| < 2^21
_LN2_LO = 1.90821492927058770002e-10
_MAGIC = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer
_MAGIC_BITS = np.int64(0x4338000000000000)
_MAGIC_B = _MAGIC + 1023.0  # the rounding constant with the exponent bias: its low bits hold n + 1023
_LO = -708.3964185322641  # exp below this would be subnormal: flushed to 0
_HI = 709.782712893384  # log(DBL_MAX)

# q(r) = (e^r - 1 - r) / r^2 ~ Q0 + Q1 r + ... + Q9 r^9 on [-ln2/2, ln2/2]:
# mpmath.chebyfit(q, [-log(2)/2, log(2)/2], 10) at 60 digits, rounded to float64
Q9, Q8, Q7, Q6, Q5 = (2.5100375832561234e-08, 2.7620075879983367e-07, 2.7557268480310024e-06,
                      2.4801521322368692e-05, 0.00019841269863040545)
Q4, Q3, Q2, Q1, Q0 = (0.0013888888917196719, 0.008333333333330065, 0.041666666666624164,
                      0.16666666666666669, 0.5000000000000001)

_F_LOG2E = np.float32(1.4426950408889634)
_F_LN2_HI = np.float32(0.693145751953125)  # 13 bits after the point: n * hi exact for |n| < 2^11
_F_LN2_LO = np.float32(1.428606765330187e-06)
_F_MAGIC = np.float32(12582912.0)  # 1.5 * 2^23
_F_MAGIC_BITS = np.int32(0x4B400000)
_F_MAGIC_B = np.float32(12582912.0 + 127.0)  # exact in float32 (below 2^24)
_F_LO = np.float32(-87.33654)  # -126 ln 2
_F_HI = np.float32(88.72283)  # log(FLT_MAX)
_F_ZERO = np.float32(0.0)
_F_ONE = np.float32(1.0)
_F_INF = np.float32(np.inf)
# the float32 q of degree 4: mpmath.chebyfit(q, [-log(2)/2, log(2)/2], 5), rounded to float32
F4, F3, F2, F1, F0 = (np.float32(0.0013926175888627768), np.float32(0.008363173343241215),
                      np.float32(0.041666556149721146), np.float32(0.16666577756404877), np.float32(0.5))

_I64_1023 = np.int64(1023)
_I32_127 = np.int32(127)


@njit(**NJIT)
def _reduce64(x):
    """Range reduction and polynomial: ``exp(x) = p 2^n``; returns ``(p, t)``, ``n + 1023`` in the low bits of ``t``."""
    t = x * _LOG2E + _MAGIC_B
    n = t - _MAGIC_B
    r = x - n * _LN2_HI
    r = r - n * _LN2_LO
    p = Q9
    p = p * r + Q8
    p = p * r + Q7
    p = p * r + Q6
    p = p * r + Q5
    p = p * r + Q4
    p = p * r + Q3
    p = p * r + Q2
    p = p * r + Q1
    p = p * r + Q0
    p = p * r + 1.0
    p = p * r + 1.0
    return p, t


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
    p, t = _reduce64(x)
    # 2^n as two normal factors 2^(n - n//2) * 2^(n//2): n = 1024 (x near log DBL_MAX)
    # must not overflow the exponent field
    ni = _f64_bits(t) - (_MAGIC_BITS + _I64_1023)
    n1 = ni >> 1
    res = p * _bits_f64((ni - n1 + _I64_1023) << 52) * _bits_f64((n1 + _I64_1023) << 52)
    res = 0.0 if x < _LO else res
    res = np.inf if x > _HI else res
    return res


@njit(**NJIT)
def fexp64_tile(x):
    """exp(x) for the pairwise kernels (float64): as :func:`fexp64` for x < 709.43, inf above.

    Below -708.39 it returns exp(-708.39) ~ 2.2e-308 instead of 0; NaN propagates.
    """
    x = _LO if x < _LO else x  # noqa: FURB136 (NaN must pass through; max() would not)
    x = _HI if x > _HI else x  # noqa: FURB136
    return fexp64_bounded(x)


@njit(**NJIT)
def fexp64_bounded(x):
    """:func:`fexp64_tile` without its clamps, for x in [-708.39, 0] (undefined outside)."""
    p, t = _reduce64(x)
    return p * _bits_f64(_f64_bits(t) << 52)


@njit(**NJIT)
def _reduce32(x):
    """float32 counterpart of :func:`_reduce64`: ``(p, t)``, ``n + 127`` in the low bits of ``t``."""
    t = x * _F_LOG2E + _F_MAGIC_B
    n = t - _F_MAGIC_B
    r = x - n * _F_LN2_HI
    r = r - n * _F_LN2_LO
    p = F4
    p = p * r + F3
    p = p * r + F2
    p = p * r + F1
    p = p * r + F0
    p = p * r + _F_ONE
    p = p * r + _F_ONE
    return p, t


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
    p, t = _reduce32(x)
    # numba widens int32 arithmetic to int64: narrow back before the bit cast
    ni = _f32_bits(t) - (_F_MAGIC_BITS + _I32_127)
    n1 = ni >> 1
    res = p * _bits_f32(np.int32((ni - n1 + _I32_127) << 23)) * _bits_f32(np.int32((n1 + _I32_127) << 23))
    res = _F_ZERO if x < _F_LO else res
    res = _F_INF if x > _F_HI else res
    return res


@njit(**NJIT)
def fexp32_tile(x):
    """exp(x) for the pairwise kernels (float32): as :func:`fexp32` for x < 88.37, inf above.

    Below -87.33 it returns exp(-87.33) ~ 1.2e-38 instead of 0; NaN propagates.
    """
    x = _F_LO if x < _F_LO else x  # noqa: FURB136
    x = _F_HI if x > _F_HI else x  # noqa: FURB136
    return fexp32_bounded(x)


@njit(**NJIT)
def fexp32_bounded(x):
    """:func:`fexp32_tile` without its clamps, for x in [-87.33, 0] (undefined outside)."""
    p, t = _reduce32(x)
    # the shift leaves n + 127 in the exponent field; int32 truncation drops the constant's bits
    return p * _bits_f32(np.int32(_f32_bits(t) << 23))


def _by_dtype(name, f64, f32, doc):
    """A stub ``name`` that numba code calls as ``f64`` on a float64 scalar and ``f32`` on a float32 one."""

    def stub(x):
        return np.exp(x)

    stub.__name__ = stub.__qualname__ = name
    stub.__doc__ = doc

    @overload(stub, jit_options=NJIT)
    def _overload(x):
        if x == types.float64:
            return lambda x: f64(x)
        if x == types.float32:
            return lambda x: f32(x)
        return None

    return stub


fexp = _by_dtype("fexp", fexp64, fexp32,
                 "exp(x) for a float64 or float32 scalar inside numba code (dispatches on type).")
fexp_tile = _by_dtype("fexp_tile", fexp64_tile, fexp32_tile,
                      ":func:`fexp64_tile` / :func:`fexp32_tile` inside numba code (dispatches on type).")
fexp_bounded = _by_dtype("fexp_bounded", fexp64_bounded, fexp32_bounded,
                         ":func:`fexp64_bounded` / :func:`fexp32_bounded` inside numba code (dispatches on type).")


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
def _fexp_array(x, out, variant):
    """Elementwise :func:`fexp` (0), :func:`fexp_tile` (1) or :func:`fexp_bounded` (2) of a 1-D array into ``out``."""
    for k in range(x.shape[0]):
        if variant == 1:
            out[k] = fexp_tile(x[k])
        elif variant == 2:
            out[k] = fexp_bounded(x[k])
        else:
            out[k] = fexp(x[k])


def fast_exp(x, tile=False, bounded=False):
    """exp of a float64 or float32 array with the kernels' polynomial exp (for tests).

    Parameters
    ----------
    x : array of float64 or float32
    tile : bool
        Use :func:`fexp_tile` (the pairwise kernels' variant) instead of :func:`fexp`.
    bounded : bool
        Use :func:`fexp_bounded` (the symmetric passes' variant, for x in [lo, 0]).

    Returns
    -------
    array, same shape and dtype as ``x``
    """
    x = np.ascontiguousarray(x)
    if x.dtype not in (np.float64, np.float32):
        raise TypeError(f"fast_exp needs float64 or float32, got {x.dtype}")
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    _fexp_array(flat, out, 2 if bounded else int(bool(tile)))
    return out.reshape(x.shape)
