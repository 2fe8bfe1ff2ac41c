"""Kernels of the kinetic semi-Lagrangian solver: conservative 1-D remaps and characteristic feet.

A 1-D transport substep moves every line of the density (a row of cell
averages along one axis, the other variable frozen) along exact or accurate
backward characteristics. The scheme is the conservative semi-Lagrangian
method of Crouseilles, Mehrenberger & Sonnendrucker (2010): the new mass of
cell ``[x_i, x_{i+1}]`` is the old mass between the feet ``X(x_i)`` and
``X(x_{i+1})`` of its edges, read off a reconstruction of the primitive
(the cumulative mass). The primitive is a monotone cubic Hermite
interpolant on the cell edges: its node derivatives (the density at the
edges) are the fourth-order edge values ``(7 (f_{e-1} + f_e) - (f_{e-2} + f_{e+1})) / 12``
limited to ``[0, 3 min(f_{e-1}, f_e)]`` (the Fritsch-Carlson box), so the
primitive is non-decreasing, every new cell mass is >= 0, and the masses
telescope (mass is conserved to round-off on periodic lines; on bounded
lines the mass that leaves the interval is lost and nothing enters).

Every line is independent: the kernels are parallel over lines, so results
do not depend on the number of threads.
"""

import math

import numpy as np
from numba import njit, prange

from ._config import NJIT, NJIT_PARALLEL


@njit(**NJIT)
def _cell(fl, c, n, periodic):
    """Cell average ``c`` of a line (wrapped when periodic, zero outside a bounded line)."""
    if periodic:
        return fl[c % n]
    if c < 0 or c >= n:
        return 0.0
    return fl[c]


@njit(**NJIT)
def _partial(fc, m0, m1, t):
    """Mass of one cell between its left edge and fraction ``t`` of it, in units of the cell width."""
    t2 = t * t
    t3 = t2 * t
    return fc * (3.0 * t2 - 2.0 * t3) + m0 * (t3 - 2.0 * t2 + t) + m1 * (t3 - t2)


@njit(**NJIT)
def _locate(X, lo, dx, n, periodic):
    """(cell index, fraction) of a point; bounded lines clamp to the interval."""
    u = (X - lo) / dx
    if not periodic:
        if u <= 0.0:
            return 0, 0.0
        if u >= n:
            return n - 1, 1.0
    c = math.floor(u)
    return int(c), u - c


@njit(**NJIT_PARALLEL)
def remap_lines(f, feet, periodic, lo, dx, slopes, out):
    """Conservative semi-Lagrangian remap of every line: ``out[l, i]`` = mass between feet / dx.

    Parameters
    ----------
    f : (L, n) array
        Cell averages of each line (cells ``[lo + i dx, lo + (i + 1) dx]``).
    feet : (L, n + 1) array
        Backward feet of the cell edges, non-decreasing along each line
        (periodic lines: unwrapped, ``feet[l, n] - feet[l, 0]`` = the period).
    periodic : bool
    lo, dx : float
    slopes : (L, n + 1) scratch
        Node derivatives of the primitive (the limited edge densities).
    out : (L, n) output, new cell averages (must not alias ``f``).
    """
    L, n = f.shape
    for l in prange(L):
        fl = f[l]
        m = slopes[l]
        for e in range(n + 1):
            fm = _cell(fl, e - 1, n, periodic)
            fp = _cell(fl, e, n, periodic)
            g = (7.0 * (fm + fp) - (_cell(fl, e - 2, n, periodic) + _cell(fl, e + 1, n, periodic))) / 12.0
            hi = 3.0 * min(fm, fp)
            m[e] = min(max(g, 0.0), hi)
        c0, t0 = _locate(feet[l, 0], lo, dx, n, periodic)
        for i in range(n):
            c1, t1 = _locate(feet[l, i + 1], lo, dx, n, periodic)
            if c1 < c0 or (c1 == c0 and t1 < t0):  # feet out of order by round-off
                c1, t1 = c0, t0
            k0 = c0 % n if periodic else c0
            fc = fl[k0]
            if c1 == c0:
                mass = _partial(fc, m[k0], m[k0 + 1], t1) - _partial(fc, m[k0], m[k0 + 1], t0)
                mass = max(mass, 0.0)
            else:
                mass = max(fc - _partial(fc, m[k0], m[k0 + 1], t0), 0.0)
                for c in range(c0 + 1, c1):
                    mass += fl[c % n] if periodic else fl[c]
                k1 = c1 % n if periodic else c1
                mass += max(_partial(fl[k1], m[k1], m[k1 + 1], t1), 0.0)
            out[l, i] = mass
            c0, t0 = c1, t1


@njit(**NJIT_PARALLEL)
def position_feet(T, zc, lo, dx, period_T, periodic, shift, feet):
    """Backward feet of the edges for dx / dt = c_j / z(x), z frozen in time (c_j = B y_j per line).

    With ``T(x) = int_lo^x z``, a characteristic satisfies
    ``T(x(t)) = T(x(0)) + c_j t``, so the foot of edge ``e`` is
    ``T^{-1}(T_e - c_j tau)``: the inverse is the cubic Hermite
    interpolant of ``x(T)`` on the edge nodes (values ``x_e``,
    derivatives ``1 / z_e``), fourth-order accurate. On a bounded line a
    foot beyond an end is put one cell outside it (no mass enters).

    Parameters
    ----------
    T : (n + 1,) array, ``T_e`` at the edges (``T_0 = 0``, ``T_n = period_T``)
    zc : (n + 1,) array, z at the edges (periodic: ``zc[n] = zc[0]``)
    lo, dx : float, first edge and cell width
    period_T : float, ``int z`` over the interval (one period when periodic)
    periodic : bool
    shift : (K,) array, ``c_j tau`` per line
    feet : (K, n + 1) output, feet (unwrapped when periodic)
    """
    K = shift.shape[0]
    n = T.shape[0] - 1
    period = n * dx
    for j in prange(K):
        c = 0
        for e in range(n + 1):
            target = T[e] - shift[j]
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
                    feet[j, e] = lo - dx
                    continue
                if r > period_T:
                    feet[j, e] = lo + period + dx
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
            feet[j, e] = th + k * period


def momentum_feet(omega_edges, a, b, c, tau, out):
    """Backward feet of the momentum edges for d omega / dt = a_i + c omega + b_i omega^2 (frozen).

    The flow of a Riccati equation with constant coefficients is a Moebius map:
    ``omega = p / q`` with ``(p, q)' = N (p, q)``, ``N = [[c/2, a], [-b, -c/2]]``
    (traceless, ``N^2 = lam I``, ``lam = c^2/4 - a b``), so the foot is
    ``X = ((C - S c/2) omega - S a) / (S b omega + C + S c/2)`` with
    ``C = cosh(r tau)``, ``S = sinh(r tau) / r``, ``r^2 = lam`` (cos / sin when
    ``lam < 0``). With a = b = 0 this is the exact damping ``X = e^{-c tau} omega``.
    Where the denominator is <= 0 the characteristic came from infinity (no
    mass): the foot is put beyond the interval on the side it came from.

    Parameters
    ----------
    omega_edges : (K + 1,) array
    a, b : (M,) arrays
    c : float, the linear coefficient (-alpha)
    tau : float
    out : (M, K + 1) output
    """
    lam = 0.25 * c * c - a * b
    x = lam * tau * tau
    r = np.sqrt(np.abs(lam))
    small = np.abs(x) < 1e-6
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        C = np.where(lam > 0, np.cosh(r * tau), np.cos(r * tau))
        S = np.where(lam > 0, np.sinh(r * tau), np.sin(r * tau)) / np.where(r > 0, r, 1.0)
    C = np.where(small, 1.0 + x / 2.0 + x * x / 24.0, C)
    S = np.where(small, tau * (1.0 + x / 6.0 + x * x / 120.0), S)
    w = omega_edges[None, :]
    den = (b * S)[:, None] * w + (C + 0.5 * c * S)[:, None]
    num = (C - 0.5 * c * S)[:, None] * w - (a * S)[:, None]
    far = -np.sign(b)[:, None] * 1e300 * np.ones_like(w)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.copyto(out, np.where(den > 0, num / np.where(den > 0, den, 1.0), far))
    return out
