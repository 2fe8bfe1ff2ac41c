"""Explicit Runge-Kutta methods as data (Butcher tables), for both kinds of dynamics.

For accelerated dynamics the methods integrate the damped field
``x' = F(x, y)``, ``y' = G(x, y) - alpha(t) y``; they are reference
solvers, not structure-preserving.
"""

from __future__ import annotations

from .base import Integrator


class ExplicitRK(Integrator):
    """Explicit Runge-Kutta method given by class attributes ``A``, ``B``, ``C``."""

    A: tuple = ()
    B: tuple = ()
    C: tuple = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.B:
            cls.oracle_calls = len(cls.B)

    def _stages(self, h, state, ks):
        """Stage input ``state + h sum_j a_ij k_j`` for the next stage (numpy)."""
        i = len(ks)
        out = [s.copy() for s in state]
        for j, a in enumerate(self.A[i]):
            if a:
                for o, k in zip(out, ks[j]):
                    o += (h * a) * k
        return out

    def step(self, model, schedule, t, h, x, y):
        accelerated = y is not None
        state = (x, y) if accelerated else (x,)
        ks = []
        for i, c in enumerate(self.C):
            xs = self._stages(h, state, ks) if i else state
            tc = t + c * h
            if accelerated:
                F, G = model.hamiltonian_field(xs[0], xs[1], tc)
                alpha = schedule.alpha(tc)
                if alpha:
                    G -= alpha * xs[1]
                ks.append((F, G))
            else:
                ks.append((model.first_order(xs[0], tc),))
        for b, k in zip(self.B, ks):
            if b:
                for s, kk in zip(state, k):
                    s += (h * b) * kk
        return (x, y) if accelerated else (x, None)


class Heun(ExplicitRK):
    """Heun's method (explicit trapezoid), order 2, 2 calls."""

    name = "heun"
    order = 2
    kind = "first_order"
    A = ((), (1.0,))
    B = (0.5, 0.5)
    C = (0.0, 1.0)


class RK4(ExplicitRK):
    """Classical Runge-Kutta, order 4, 4 calls: the reference solver."""

    name = "rk4"
    order = 4
    kind = "first_order"
    A = ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0))
    B = (1 / 6, 1 / 3, 1 / 3, 1 / 6)
    C = (0.0, 0.5, 0.5, 1.0)


class RK4Damped(RK4):
    """Classical Runge-Kutta on the damped field (x, y): reference solutions, order 4."""

    kind = "accelerated"

