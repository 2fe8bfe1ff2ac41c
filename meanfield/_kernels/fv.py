"""Finite-volume kernel of the first-order mean-field equations (docs/models.md §9).

One function, :func:`continuity_rhs`: the semi-discrete right-hand side of
``d_t rho + d_x (rho v) = 0`` on a uniform 1D grid of cell averages ``rho_j``
with the interface velocities ``v_{j+1/2}`` given. It is the second-order
positivity-preserving scheme of Carrillo, Chertock & Huang (Commun. Comput.
Phys. 17, 2015):

* piecewise-linear reconstruction in every cell with the generalized minmod
  limiter, slope ``s_j = minmod(theta (rho_{j+1} - rho_j), (rho_{j+1} -
  rho_{j-1}) / 2, theta (rho_j - rho_{j-1})) / dx`` with ``theta`` in [1, 2],
  giving the one-sided values ``rho^E_j = rho_j + dx s_j / 2`` and
  ``rho^W_j = rho_j - dx s_j / 2`` (both >= 0 when every rho_j >= 0);
* the upwind flux ``F_{j+1/2} = max(v, 0) rho^E_j + min(v, 0) rho^W_{j+1}``;
* ``d rho_j / dt = -(F_{j+1/2} - F_{j-1/2}) / dx``.

The scheme is conservative by construction (a telescoping sum of fluxes), and
one forward-Euler step keeps ``rho >= 0`` when ``dt max |v| <= dx / 2``
(write ``rho_j = (rho^E_j + rho^W_j) / 2``: the new value is a non-negative
combination of the reconstructed values under that condition).

Periodic grids (the circle) wrap the indices; bounded grids (an interval with
zero flux at its ends) set the two end fluxes to zero and the two end cells'
slopes to zero.
"""

from numba import njit

from ._config import NJIT


@njit(**NJIT)
def _minmod3(a, b, c):
    if a > 0.0 and b > 0.0 and c > 0.0:
        return min(a, min(b, c))
    if a < 0.0 and b < 0.0 and c < 0.0:
        return max(a, max(b, c))
    return 0.0


@njit(**NJIT)
def _half_slope(rm, r, rp, theta):
    """dx s_j / 2 of the limited reconstruction from the three cell averages around j."""
    return 0.5 * _minmod3(theta * (rp - r), 0.5 * (rp - rm), theta * (r - rm))


@njit(**NJIT)
def continuity_rhs(rho, vel, inv_dx, theta, periodic, flux, out):
    """Semi-discrete ``-d_x (rho v)`` by limited reconstruction and upwind fluxes.

    Parameters
    ----------
    rho : (M,) float64 cell averages (>= 0 for the positivity guarantee)
    vel : (M,) float64 velocity at the right interface of each cell, ``v_{j+1/2}``;
        on a bounded grid ``vel[M - 1]`` (the right wall) is not read
    inv_dx : float, 1 / cell width
    theta : float in [1, 2], limiter parameter (1: minmod, 2: monotonized central)
    periodic : bool, wrap indices (circle) or zero flux at both ends (interval)
    flux : (M,) float64 work array; on return ``flux[j] = F_{j+1/2}``
    out : (M,) float64 output, ``d rho_j / dt``
    """
    M = rho.shape[0]
    # F_{j+1/2} for j = 0 .. M-1 (the last one wraps to cell 0 when periodic)
    for j in range(M):
        if not periodic and j == M - 1:
            flux[j] = 0.0
            continue
        jp = j + 1 if j + 1 < M else 0
        v = vel[j]
        if v >= 0.0:
            # east value of cell j
            if periodic:
                jm = j - 1 if j > 0 else M - 1
                s = _half_slope(rho[jm], rho[j], rho[jp], theta)
            elif j == 0:
                s = 0.0
            else:
                s = _half_slope(rho[j - 1], rho[j], rho[jp], theta)
            flux[j] = v * (rho[j] + s)
        else:
            # west value of cell j + 1
            if periodic:
                jpp = jp + 1 if jp + 1 < M else 0
                s = _half_slope(rho[j], rho[jp], rho[jpp], theta)
            elif jp == M - 1:
                s = 0.0
            else:
                s = _half_slope(rho[j], rho[jp], rho[jp + 1], theta)
            flux[j] = v * (rho[jp] - s)
    left = flux[M - 1] if periodic else 0.0
    for j in range(M):
        out[j] = -(flux[j] - left) * inv_dx
        left = flux[j]

