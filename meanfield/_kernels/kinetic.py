"""Kernels of the kinetic semi-Lagrangian solver: conservative 1-D remaps and characteristics.

A 1-D transport substep moves every line of the density (a row of cell
averages along one axis, the other variable frozen) along accurate
characteristics. The remap is a forward (particle-in-cell) deposit: the mass
``f_j dx`` of cell ``j`` is carried to the image ``X_j`` of the cell centre
under the substep's flow and spread over the cells around ``X_j`` with
weights that sum to 1 and whose centroid is ``X_j``:

* the linear (cloud-in-cell) weights ``(1 - s, s)`` on the two nearest
  centres: non-negative, first order;
* the quintic Lagrange weights on the six nearest centres: exact for the
  first six moments of each parcel and, for a translation, sixth order per
  substep (fifth order per unit time), but with negative lobes.

A parcel's deposit is the linear one plus ``theta_j`` times the difference
(quintic minus linear), ``theta_j`` in [0, 1] as large as keeps every cell
non-negative (a Zalesak flux-corrected limiter per cell, applied per parcel).
Every parcel, whatever its ``theta_j``, keeps its mass and moves its centroid
to ``X_j`` exactly, so mass and the first moment sum_i x_i m_i are
transported exactly whenever the flow is affine (a constant force, the
damping, any Moebius map to second order in the cell width), whatever the
shape of the line: a one-cell spike moves at its true speed for any number of
substeps (a monotone primitive remap moves a fraction s^2 (3 - 2 s) of it for
a shift s). The limiter is active only where a cell would turn negative
(the cold, monokinetic state and the edges of the support), and there the
deposit is the cloud-in-cell one, whose numerical diffusion s (1 - s) dx^2 per
substep adds up to at most |speed| dx per unit time: bounded as the time step
shrinks, so the scheme converges in any order of refinement.

A bounded line is remapped as part of a longer line padded with cells
outside, under the same limiter, and what the padding receives leaves. Where
the flow leaves the line, ghost parcels beyond the wall continue its end cell
(:func:`_parcel`), so the cells by the wall see the stencil of a longer line
and mass crosses the wall at its true speed (the ghosts' corrections change
the mass inside by a high-order amount); where it enters, nothing does.

Every line is independent: the kernels are parallel over lines, so results
do not depend on the number of threads.
"""

import math

import numpy as np
from numba import njit, prange

from ._config import NJIT, NJIT_PARALLEL

#: The high-order stencil: centres i0 - _LEFT .. i0 - _LEFT + _WIDTH - 1 around a parcel in [i0, i0 + 1].
_LEFT, _WIDTH = 2, 6
#: Images further than this many cells outside a bounded line are put at that distance ...
_FAR = 4
#: Ghost parcels beyond each wall of a bounded line (every parcel whose stencil reaches the line) ...
_GHOSTS = _WIDTH - _LEFT
#: ... and the line is padded with this many cells at each end: every stencil lies in the padded line.
_PAD = _FAR + _GHOSTS + _WIDTH


def scratch_width(n: int, periodic: bool) -> int:
    """Width of the scratch lines :func:`deposit_lines` needs: a bounded line is padded with cells outside."""
    return n if periodic else n + 2 * _PAD


@njit(**NJIT)
def _stencil(X, lo, inv_dx, n, periodic):
    """``(i0, s)``: the centre at or left of ``X`` (index into the scratch line) and the fraction to the next."""
    u = (X - lo) * inv_dx - 0.5
    if not periodic:
        # parcels far outside are deposited far outside (the padding holds every stencil)
        u = min(max(u, -_FAR), n - 1 + _FAR) + _PAD
    i0 = math.floor(u)
    return int(i0), u - i0


@njit(**NJIT)
def _placed(fl, Xl, j, n, lo, dx, periodic, w):
    """``(mass, b, s)`` of parcel ``j``: the first cell ``b`` of its stencil in [0, w) and its fraction ``s``."""
    m, X = _parcel(fl, Xl, j, n, lo, dx)
    if m == 0.0:
        return m, 0, 0.0
    i0, s = _stencil(X, lo, 1.0 / dx, n, periodic)
    b = i0 - _LEFT
    # only a periodic line wraps (a bounded line's padding holds every stencil)
    return m, (b % w if b < 0 or b >= w else b), s


@njit(**NJIT)
def _wrap(i, w):
    """``i mod w`` for ``0 <= i < 2 w`` (a stencil's cells from its first one; an integer modulo is slow)."""
    return i - w if i >= w else i


@njit(**NJIT)
def _corrections(m, s, c):
    """``c (6,)`` = mass ``m`` times (quintic Lagrange - linear) weights on the centres i0 - 2 .. i0 + 3
    at fraction ``s`` of [i0, i0 + 1]."""
    a, b, d0, d1, d2, d3 = s + 2.0, s + 1.0, s, s - 1.0, s - 2.0, s - 3.0
    ab, d12 = a * b, d1 * d2
    c[0] = m * (b * d0 * d12 * d3 * (-1.0 / 120.0))
    c[1] = m * (a * d0 * d12 * d3 * (1.0 / 24.0))
    c[2] = m * (ab * d12 * d3 * (-1.0 / 12.0) - (1.0 - s))
    c[3] = m * (ab * d0 * d2 * d3 * (1.0 / 12.0) - s)
    c[4] = m * (ab * d0 * d1 * d3 * (-1.0 / 24.0))
    c[5] = m * (ab * d0 * d12 * (1.0 / 120.0))


@njit(**NJIT)
def _parcel(fl, Xl, j, n, lo, dx):
    """``(mass, image)`` of parcel ``j`` of a line; ``j`` outside [0, n) is a ghost beyond a wall.

    A ghost continues the line's end cell (its average, its images extrapolated
    linearly) while the flow there leaves the line, and is empty while it enters:
    the cells by a wall then receive the high-order corrections they would
    receive on a longer line, and nothing enters from outside.
    """
    if 0 <= j < n:
        return fl[j], Xl[j]
    if j >= n:
        X = Xl[n - 1] + (j - n + 1) * (Xl[n - 1] - Xl[n - 2])
        out = X > lo + (j + 0.5) * dx
        return (fl[n - 1] if out else 0.0), X
    X = Xl[0] + j * (Xl[1] - Xl[0])
    out = X < lo + (j + 0.5) * dx
    return (fl[0] if out else 0.0), X


@njit(**NJIT_PARALLEL)
def deposit_lines(f, images, periodic, lo, dx, low, ratio, out):
    """Forward conservative remap of every line: the mass of cell j moves to ``images[l, j]``.

    Parameters
    ----------
    f : (L, n) array
        Cell averages of each line (cells ``[lo + i dx, lo + (i + 1) dx]``, centres ``lo + (i + 1/2) dx``).
    images : (L, n) array
        Image of each cell centre under the substep's (forward) flow; periodic
        lines may be unwrapped, bounded lines may lie outside (what is deposited
        outside leaves the line).
    periodic : bool
    lo, dx : float
    low, ratio : (L, w) scratch, ``w = scratch_width(n, periodic)``
        The cloud-in-cell deposit, and the limiter's negative parts, then ratios,
        on the line and (bounded lines) the cells padding it outside.
    out : (L, n) output, new cell averages (must not alias ``f``).
    """
    L, n = f.shape
    w = low.shape[1]
    first = 0 if periodic else _PAD
    ghosts = 0 if periodic else _GHOSTS
    P = n + 2 * ghosts
    for l in prange(L):
        fl, Xl, lw, rt, o = f[l], images[l], low[l], ratio[l], out[l]
        # each parcel's stencil and corrections, kept for the second pass
        first_cell = np.empty(P, np.int64)
        corr = np.empty((P, _WIDTH))
        lw[:] = 0.0
        rt[:] = 0.0
        for p in range(P):
            m, b, s = _placed(fl, Xl, p - ghosts, n, lo, dx, periodic, w)
            first_cell[p] = b if m != 0.0 else -1
            if m == 0.0:
                continue
            lw[_wrap(b + _LEFT, w)] += m * (1.0 - s)
            lw[_wrap(b + _LEFT + 1, w)] += m * s
            c = corr[p]
            _corrections(m, s, c)
            for k in range(_WIDTH):
                rt[_wrap(b + k, w)] += min(c[k], 0.0)
        for i in range(w):
            # the fraction of its negative corrections a cell can take and stay >= 0
            rt[i] = 1.0 if rt[i] == 0.0 or lw[i] >= -rt[i] else lw[i] / -rt[i]
        for p in range(P):
            b, c = first_cell[p], corr[p]
            if b < 0:  # an empty parcel
                continue
            theta = 1.0
            for k in range(_WIDTH):
                if c[k] < 0.0:
                    theta = min(theta, rt[_wrap(b + k, w)])
            for k in range(_WIDTH):
                lw[_wrap(b + k, w)] += theta * c[k]
        for i in range(n):
            # the limiter makes every cell >= 0 up to the round-off of its sums
            o[i] = max(lw[first + i], 0.0)


@njit(**NJIT_PARALLEL)
def position_flow(T, zc, lo, dx, period_T, periodic, targets, shift, out):
    """Images ``T^{-1}(targets_e + shift_j)`` for dx / dt = c_j / z(x), z frozen in time (c_j = B y_j per line).

    With ``T(x) = int_lo^x z``, a characteristic satisfies
    ``T(x(t)) = T(x(0)) + c_j t``: the image of a point with primitive
    ``targets_e`` after time t is ``T^{-1}(targets_e + c_j t)``. The inverse is
    the cubic Hermite interpolant of ``x(T)`` on the edge nodes (values ``x_e``,
    derivatives ``1 / z_e``), fourth-order accurate. On a bounded line an
    image beyond an end is put one cell outside it (its mass leaves the line).

    Parameters
    ----------
    T : (n + 1,) array, ``T_e`` at the edges (``T_0 = 0``, ``T_n = period_T``)
    zc : (n + 1,) array, z at the edges (periodic: ``zc[n] = zc[0]``)
    lo, dx : float, first edge and cell width
    period_T : float, ``int z`` over the interval (one period when periodic)
    periodic : bool
    targets : (P,) array, non-decreasing, the primitive T at the points to move
    shift : (K,) array, ``c_j t`` per line
    out : (K, P) output, the images (unwrapped when periodic)
    """
    K = shift.shape[0]
    n = T.shape[0] - 1
    period = n * dx
    for j in prange(K):
        c = 0
        for e in range(targets.shape[0]):
            target = targets[e] + shift[j]
            if periodic:
                k = math.floor(target / period_T)
                r = target - k * period_T
                if r >= period_T:
                    r -= period_T
                    k += 1
            else:
                k = 0
                r = target
                if r < 0.0:
                    out[j, e] = lo - dx
                    continue
                if r > period_T:
                    out[j, e] = lo + period + dx
                    continue
            # intervals move monotonically with e: walk from the previous one
            if c > 0 and T[c] > r:
                c = 0
            while c < n - 1 and T[c + 1] <= r:
                c += 1
            dT = T[c + 1] - T[c]
            s = (r - T[c]) / dT
            s2 = s * s
            s3 = s2 * s
            th = ((2.0 * s3 - 3.0 * s2 + 1.0) * (lo + c * dx) + (s3 - 2.0 * s2 + s) * dT / zc[c]
                  + (3.0 * s2 - 2.0 * s3) * (lo + (c + 1) * dx) + (s3 - s2) * dT / zc[c + 1])
            out[j, e] = th + k * period


def momentum_flow(omega, a, b, c, t, out):
    """Images after time ``t`` (either sign) of the momenta ``omega`` under d omega / dt = a_i + c omega + b_i omega^2 (frozen).

    The flow of a Riccati equation with constant coefficients is a Moebius map:
    ``omega = p / q`` with ``(p, q)' = N (p, q)``, ``N = [[c/2, a], [-b, -c/2]]``
    (traceless, ``N^2 = lam I``, ``lam = c^2/4 - a b``), so the image is
    ``((C + S c/2) omega + S a) / (C - S c/2 - S b omega)`` with
    ``C = cosh(r t)``, ``S = sinh(r t) / r``, ``r^2 = lam`` (cos / sin when
    ``lam < 0``). With a = b = 0 this is the exact damping ``e^{c t} omega``.
    Where the denominator is <= 0 the characteristic reaches infinity within
    ``t``: the image is put at +-1e300 on the side it went (no cell receives it).

    Parameters
    ----------
    omega : (P,) array
    a, b : (M,) arrays
    c : float, the linear coefficient (-alpha)
    t : float
    out : (M, P) output
    """
    lam = 0.25 * c * c - a * b
    x = lam * t * t
    r = np.sqrt(np.abs(lam))
    small = np.abs(x) < 1e-6
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        C = np.where(lam > 0, np.cosh(r * t), np.cos(r * t))
        S = np.where(lam > 0, np.sinh(r * t), np.sin(r * t)) / np.where(r > 0, r, 1.0)
    C = np.where(small, 1.0 + x / 2.0 + x * x / 24.0, C)
    S = np.where(small, t * (1.0 + x / 6.0 + x * x / 120.0), S)
    w = omega[None, :]
    den = (C - 0.5 * c * S)[:, None] - (b * S)[:, None] * w
    num = (C + 0.5 * c * S)[:, None] * w + (a * S)[:, None]
    far = np.sign(b * t)[:, None] * 1e300 * np.ones_like(w)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.copyto(out, np.where(den > 0, num / np.where(den > 0, den, 1.0), far))
    return out
