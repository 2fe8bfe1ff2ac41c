"""Linear multistep integrators of the damped Hamiltonian system (docs/models.md §5)."""

from __future__ import annotations

import numpy as np

from .base import Integrator


class AB2(Integrator):
    """Adams-Bashforth 2 on the damped field ``(F, G - alpha(t) y)``. Order 2, 1 call.

    With ``f_n`` the damped field at ``(x_n, y_n, t_n)`` and step ratio
    ``r = h_n / h_{n-1}``, the variable-step formula is

        z_{n+1} = z_n + h_n ((1 + r/2) f_n - (r/2) f_{n-1}),   z = (x, y),

    which reduces to the classical ``(3 f_n - f_{n-1}) / 2`` for a constant
    step and stays second order when the loop shortens the last step to land
    on ``t1``. The first step after :meth:`reset` is explicit Euler (its
    O(h^2) local error does not lower the global order).

    The previous field and step size are the integrator's state
    (:meth:`get_state` / :meth:`set_state`), so a resumed run continues with
    the same history.
    """

    name = "ab2"
    order = 2
    oracle_calls = 1
    kind = "accelerated"

    def __init__(self, **options):
        super().__init__(**options)
        self.reset()

    def reset(self) -> None:
        """Forget the history; the next step is an Euler step."""
        self._Fp = None  # previous damped field, (N, d) each
        self._Gp = None
        self._hp = None  # previous step size
        self._F = None   # buffers for the current field (swapped with the previous)
        self._G = None

    def get_state(self) -> dict:
        """``{"F_prev", "G_prev": (N, d), "h_prev": float}``; empty before the first step."""
        if self._Fp is None:
            return {}
        return {"F_prev": self._Fp.copy(), "G_prev": self._Gp.copy(), "h_prev": float(self._hp)}

    def set_state(self, state: dict) -> None:
        """Restore the history saved by :meth:`get_state` (an empty dict resets it)."""
        self.reset()
        if state:
            self._Fp = np.array(state["F_prev"], copy=True)
            self._Gp = np.array(state["G_prev"], copy=True)
            self._hp = float(state["h_prev"])

    def step(self, model, schedule, t, h, x, y):
        if self._F is None or self._F.shape != x.shape or self._F.dtype != x.dtype:
            self._F = np.empty_like(x)
            self._G = np.empty_like(y)
        F, G = self._F, self._G
        # damped field in one call: F(x, y) and -alpha y + G(x, y)
        model.combine_hamiltonian(x, y, t, 0.0, 1.0, -schedule.alpha(t), 1.0, out_x=F, out_y=G)
        if self._Fp is None or self._Fp.shape != x.shape:
            x += h * F
            y += h * G
            self._Fp = np.empty_like(x)
            self._Gp = np.empty_like(y)
        else:
            r = h / self._hp
            a, b = 1.0 + 0.5 * r, -0.5 * r
            # z += h (a f_n + b f_{n-1}) written into the old buffer: it is free after this step
            for z, f, fp in ((x, F, self._Fp), (y, G, self._Gp)):
                fp *= b / a
                fp += f
                fp *= h * a
                z += fp
        # the current field becomes the previous one; the old buffer is reused next step
        self._Fp, self._F = F, self._Fp
        self._Gp, self._G = G, self._Gp
        self._hp = float(h)
        return x, y


__all__ = ["AB2"]
