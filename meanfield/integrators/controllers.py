"""Step-size controllers the time loop consults (diffrax's ``ConstantStepSize`` / ``PIDController``).

* :class:`ConstantStep` -- fixed steps: every step is accepted, step ``k``
  ends at ``t0 + k h`` (no accumulated round-off) and the last one lands on t1.
* :class:`PIController` -- error control of an adaptive method: a step is
  accepted when its error norm is <= 1; the next step is
  ``h * safety * err^(-beta1/q) * err_prev^(beta2/q)`` clipped to
  ``[factor_min, factor_max] h``, with ``q = error_order + 1``
  (Gustafsson's PI controller, Hairer & Wanner II.4; after a rejection the
  factor is at most 1). The first step follows Hairer, Norsett & Wanner I.II.4
  (scipy's ``select_initial_step``): one extra field evaluation.

A controller's state (the previous error, the proposed step) is part of a
checkpoint, so a resumed run takes the same steps bit for bit.
"""

from __future__ import annotations

import math

import numpy as np


class ConstantStep:
    """Fixed step ``h`` from ``t0``: every attempt is accepted.

    Parameters
    ----------
    t0, h : float
    t1 : float or None
        The end time: the step that reaches it lands on it exactly.
    """

    adaptive = False

    def __init__(self, t0: float, h: float, t1: float | None = None):
        self.t0, self.h, self.t1 = float(t0), float(h), t1

    def time_of(self, k: int) -> float:
        """Time after ``k`` steps (no accumulated round-off; the last step lands on t1)."""
        t = self.t0 + k * self.h
        if self.t1 is not None and t >= self.t1 - 1e-9 * self.h:
            return float(self.t1)
        return t

    def get_state(self) -> dict:
        """Nothing to store: steps are a function of their index."""
        return {}

    def set_state(self, state: dict) -> None:
        """Nothing to restore."""


class PIController:
    """Accept/reject and the next step of an adaptive method (module docstring).

    Parameters
    ----------
    integrator : AdaptiveIntegrator
        Its ``error_order`` (read at every judgement: ``auto`` changes it when it
        switches methods) sets the exponent ``q = error_order + 1``.
    h0 : float or None
        The first step (None: chosen automatically).
    h_max : float or None
        Largest step.
    h_cap : callable(t) -> float, optional
        A further bound at each step (the finite-volume CFL bound of grid runs at the
        current density: the adaptive stepper sets it from ``system.step_bound``).
    safety, factor_min, factor_max, beta1, beta2 : float
        The usual constants (beta2 = 0 is the plain I controller).
    """

    adaptive = True

    def __init__(self, integrator, h0=None, h_max=None, h_cap=None, safety=0.9,
                 factor_min=0.2, factor_max=10.0, beta1=0.7, beta2=0.4):
        self.integrator = integrator
        self.h = None if h0 is None else float(h0)
        self.h_max = math.inf if h_max is None else float(h_max)
        self.h_cap = h_cap
        self.safety, self.factor_min, self.factor_max = safety, factor_min, factor_max
        self.beta1, self.beta2 = beta1, beta2
        self.err_prev = 1.0
        self.rejected_last = False

    def bound(self, t: float, h: float) -> float:
        """``h`` within ``h_max`` and the state-dependent cap."""
        h = min(h, self.h_max)
        if self.h_cap is not None:
            h = min(h, self.h_cap(t))
        return h

    def initial_step(self, field, t: float, z: np.ndarray, f0: np.ndarray, order: int,
                     rtol: float, atol: float, t_end: float) -> float:
        """Hairer, Norsett & Wanner's first step guess (one field evaluation at an Euler step)."""
        scale = atol + rtol * np.abs(z)
        d0 = float(np.sqrt(np.mean(np.square(z / scale))))
        d1 = float(np.sqrt(np.mean(np.square(f0 / scale))))
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        h0 = min(h0, t_end - t)
        f1 = field(t + h0, z + h0 * f0)
        d2 = float(np.sqrt(np.mean(np.square((f1 - f0) / scale)))) / h0
        if d1 <= 1e-15 and d2 <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
        return min(100.0 * h0, h1)

    @property
    def q(self) -> float:
        """The exponent of the error: ``error_order + 1`` of the method in use."""
        return float(self.integrator.error_order + 1)

    def judge(self, err: float, h: float) -> tuple[bool, float]:
        """``(accepted, next step)`` after an attempt of size ``h`` with error norm ``err``."""
        if not err <= 1.0:  # NaN counts as a rejection
            factor = self.factor_min if not math.isfinite(err) else max(
                self.factor_min, self.safety * err ** (-1.0 / self.q))
            self.rejected_last = True
            return False, h * min(1.0, factor)
        if err == 0.0:
            factor = self.factor_max
        else:
            factor = self.safety * err ** (-self.beta1 / self.q) * self.err_prev ** (self.beta2 / self.q)
            factor = min(self.factor_max, max(self.factor_min, factor))
        if self.rejected_last:
            factor = min(1.0, factor)
        self.rejected_last = False
        self.err_prev = max(err, 1e-4)
        return True, h * factor

    def get_state(self) -> dict:
        """What a checkpoint stores: the proposed step and the previous error."""
        return {"h": self.h, "err_prev": self.err_prev, "rejected_last": self.rejected_last}

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state`."""
        self.h = state["h"]
        self.err_prev = float(state["err_prev"])
        self.rejected_last = bool(state["rejected_last"])
