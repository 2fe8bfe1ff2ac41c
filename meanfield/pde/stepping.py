"""Method-of-lines time stepping of a grid solver (``rhs``, ``max_stable_step``).

Strong-stability-preserving (SSP) Runge-Kutta methods in Shu-Osher form are
convex combinations of forward-Euler steps, so they keep every property of
one forward-Euler step under the same step size: for the finite-volume
solvers, ``rho >= 0`` when ``h <= max_stable_step(rho)`` (Gottlieb, Shu &
Tadmor, SIAM Review 43, 2001):

* ``euler``  -- order 1, SSP coefficient 1;
* ``heun``   -- SSP-RK2 (Heun's method), order 2, SSP coefficient 1;
* ``ssprk3`` -- Shu-Osher SSP-RK3, order 3, SSP coefficient 1.

``rk4`` (classical Runge-Kutta) is not SSP: it has a stage with a negative
weight on the forward-Euler direction, so a step within the CFL bound can
create (small) negative densities where the density is steep next to a
vacuum; it is accurate on smooth solutions and its stability region covers
the same CFL step, so it runs, but positivity is not guaranteed.

:func:`solve` advances with ``h = min(h_max, cfl * max_stable_step(rho))``
per step (the stage velocities change little within a step; ``cfl < 1``
leaves the margin) and lands exactly on the requested save times.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ParameterError, SimulationError

#: Steppers: name -> (order, strong-stability preserving).
METHODS = {"euler": (1, True), "heun": (2, True), "ssprk3": (3, True), "rk4": (4, False)}


def ssp_step(solver, rho: np.ndarray, t: float, h: float, method: str = "heun") -> np.ndarray:
    """One step of ``method`` from ``rho`` at time t; returns the new ``(M,)`` array.

    Parameters
    ----------
    solver : object with ``rhs(rho, t, out)``
    rho : (M,) state
    t, h : time and step
    method : one of :data:`METHODS`
    """
    L = solver.rhs
    if method == "euler":
        return rho + h * L(rho, t)
    if method == "heun":
        r1 = rho + h * L(rho, t)
        return 0.5 * rho + 0.5 * (r1 + h * L(r1, t + h))
    if method == "ssprk3":
        r1 = rho + h * L(rho, t)
        r2 = 0.75 * rho + 0.25 * (r1 + h * L(r1, t + h))
        return rho / 3.0 + (2.0 / 3.0) * (r2 + h * L(r2, t + 0.5 * h))
    if method == "rk4":
        k1 = L(rho, t)
        k2 = L(rho + 0.5 * h * k1, t + 0.5 * h)
        k3 = L(rho + 0.5 * h * k2, t + 0.5 * h)
        k4 = L(rho + h * k3, t + h)
        return rho + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    raise ParameterError("integrator.name", f"one of {sorted(METHODS)} for pde runs", method)


def solve(solver, rho0: np.ndarray, t0: float, t1: float, h: float | None = None, method: str = "heun",
          cfl: float = 0.8, save=None) -> dict:
    """Advance ``rho0`` from t0 to t1 with CFL-limited steps of ``method``.

    Parameters
    ----------
    solver : object with ``rhs`` and ``max_stable_step``
    rho0 : (M,) initial state (not modified)
    t0, t1 : time interval
    h : largest step (None: the CFL step alone)
    method : one of :data:`METHODS`
    cfl : fraction of ``max_stable_step`` taken, in (0, 1]
    save : increasing times in [t0, t1] to record (default: t0 and t1)

    Returns
    -------
    dict with ``t (S,)``, ``density (S, M)``, ``steps`` (int), ``min_density`` (over all steps)

    Raises
    ------
    SimulationError
        A non-finite density.
    """
    if method not in METHODS:
        raise ParameterError("integrator.name", f"one of {sorted(METHODS)} for pde runs", method)
    save = np.asarray([t0, t1] if save is None else save, dtype=np.float64)
    rho = np.array(rho0, dtype=np.float64)
    t, steps, lowest = float(t0), 0, float(rho.min())
    out = np.empty((save.size, rho.size))
    for k, ts in enumerate(save):
        while t < ts - 1e-12 * max(1.0, abs(ts)):
            step = cfl * solver.max_stable_step(rho)
            if h is not None:
                step = min(step, h)
            step = min(step, ts - t)
            rho = ssp_step(solver, rho, t, step, method)
            t = ts if ts - t - step <= 1e-12 * max(1.0, abs(ts)) else t + step
            steps += 1
            lowest = min(lowest, float(rho.min()))
            if not math.isfinite(lowest) or not np.all(np.isfinite(rho)):
                raise SimulationError(f"non-finite density at t = {t:.6g} (step {steps})", step=steps, t=t)
        out[k] = rho
    return {"t": save, "density": out, "steps": steps, "min_density": lowest}
