"""Explicit integrators of the damped Hamiltonian system (docs/models.md §5).

Notation: F = dx/dt, G = dy/dt without the damping term, sigma the exact
damping factor exp(-(eta(t+h) - eta(t))) of the schedule over the step.
"""

from __future__ import annotations

import math

from ..schema import Derived, Key, Real
from .base import INTEGRATOR, Integrator
from .runge_kutta import RK4Damped


class ExpEuler(Integrator):
    """Exponential Euler: y+ = sigma y + w G(x, y), x+ = x + h F(x, y). Order 1, 1 call.

    ``w = (1 - sigma) / alpha_eff`` with ``alpha_eff = (eta(t+h) - eta(t)) / h``
    (``w = h`` without damping): the exact integral of the damping kernel
    for a field frozen over the step.
    """

    name = "exp_euler"
    order = 1
    oracle_calls = 1
    kind = "accelerated"

    def step(self, model, schedule, t, h, x, y):
        deta = schedule.deta(t, h)
        sigma = math.exp(-deta)
        w = -math.expm1(-deta) * h / deta if deta > 0 else h
        model.combine_hamiltonian(x, y, t, 1.0, h, sigma, w, out_x=x, out_y=y)
        return x, y


class KickDrift(Integrator):
    """Conformal semi-implicit Euler: y+ = sigma (y + h G(x, y)), x+ = x + h F(x, y+).

    Order 1, 2 calls (the drift needs F at the new momentum).
    """

    name = "kick_drift"
    order = 1
    oracle_calls = 2
    kind = "accelerated"

    def step(self, model, schedule, t, h, x, y):
        sigma = schedule.sigma(t, h)
        model.combine_hamiltonian(x, y, t, 1.0, 0.0, sigma, sigma * h, out_x=x, out_y=y)
        model.combine_hamiltonian(x, y, t, 1.0, h, 1.0, 0.0, out_x=x, out_y=y)
        return x, y


class HeavyBall(Integrator):
    """Heavy ball (plain Euler, multiplicative damping): y+ = beta y + h G, x+ = x + h F.

    ``beta = 1 - h alpha(t)`` unless ``beta`` is given. A fixed beta in (0, 1)
    is the classical heavy-ball block; it is consistent with the damped flow
    only for a constant schedule with ``alpha = (1 - beta) / h``. Order 1, 1 call.
    """

    name = "heavy_ball"
    order = 1
    oracle_calls = 1
    kind = "accelerated"
    options = INTEGRATOR.declare(
        Key("beta", Real("a number in (0, 1)", lambda v: 0.0 < v < 1.0), Derived("1 - h alpha(t)"),
            "heavy_ball's momentum coefficient"),
        owners="heavy_ball")
    beta = None  # derived from the schedule at every step

    def __init__(self, **options):
        super().__init__(**options)
        if self.beta is not None:  # checked by the schema (Integrator)
            self.beta = float(self.beta)

    def step(self, model, schedule, t, h, x, y):
        beta = self.beta if self.beta is not None else 1.0 - h * schedule.alpha(t)
        model.combine_hamiltonian(x, y, t, 1.0, h, beta, h, out_x=x, out_y=y)
        return x, y


__all__ = ["ExpEuler", "HeavyBall", "KickDrift", "RK4Damped"]
