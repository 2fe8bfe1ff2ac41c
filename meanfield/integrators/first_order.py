"""Integrators of first-order flows x' = f(x) (classical attention blocks)."""

from __future__ import annotations

from .base import Integrator
from .runge_kutta import RK4, Heun


class Euler(Integrator):
    """Explicit Euler, x+ = x + h f(x): the classical residual attention block. Order 1, 1 call."""

    name = "euler"
    order = 1
    oracle_calls = 1
    kind = "first_order"

    def step(self, model, schedule, t, h, x, y):
        model.combine_first_order(x, t, 1.0, h, out=x)
        return x, None


__all__ = ["RK4", "Euler", "Heun"]
