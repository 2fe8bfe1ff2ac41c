"""Nesterov's accelerated gradient on the first-order oracle (docs/models.md §5, ``nag``)."""

from __future__ import annotations

import numpy as np

from .base import Integrator


class NAG(Integrator):
    """Nesterov lookahead momentum on the classical attention oracle f. Order 1, 1 call.

    With ``sigma = exp(-(eta(t+h) - eta(t)))`` the exact damping factor of the
    schedule over the step and ``v`` the velocity (``v = 0`` initially)::

        v+ = sigma v + h f(x + h sigma v),     x+ = x + h v+.

    This is the accelerated block built from the first-order field ``f`` of
    the model; it integrates the flat-metric damped flow
    ``x'' + alpha(t) x' = f(x)`` (not the model's Stein / mobility
    Hamiltonian). The lookahead point ``x + h sigma v`` approximates
    ``x(t + h)``, so ``f`` is evaluated at time ``t + h``.

    The velocity is the integrator's state (:meth:`get_state` /
    :meth:`set_state`); ``step`` returns ``(x, None)`` like every first-order
    integrator.
    """

    name = "nag"
    order = 1
    oracle_calls = 1
    kind = "first_order"
    #: The damping schedule is part of the method (kept by :class:`meanfield.Run`).
    uses_schedule = True

    def __init__(self, **options):
        super().__init__(**options)
        self.reset()

    def reset(self) -> None:
        """Start again from rest (``v = 0``)."""
        self._v = None
        self._z = None

    def get_state(self) -> dict:
        """``{"v": (N, d)}``, the velocity; empty before the first step (v = 0)."""
        return {} if self._v is None else {"v": self._v.copy()}

    def set_state(self, state: dict) -> None:
        """Restore the velocity saved by :meth:`get_state` (an empty dict means v = 0)."""
        self.reset()
        if state:
            self._v = np.array(state["v"], copy=True)

    def step(self, model, schedule, t, h, x, y):
        if self._v is None or self._v.shape != x.shape or self._v.dtype != x.dtype:
            self._v = np.zeros_like(x)
        if self._z is None or self._z.shape != x.shape or self._z.dtype != x.dtype:
            self._z = np.empty_like(x)
        v, z = self._v, self._z
        v *= schedule.sigma(t, h)
        np.multiply(v, h, out=z)
        z += x                                              # lookahead x + h sigma v
        model.combine_first_order(z, t + h, 0.0, h, out=z)  # z = h f(lookahead)
        v += z
        np.multiply(v, h, out=z)
        x += z
        return x, None


__all__ = ["NAG"]
