"""How the loop takes one step and when it saves: steppers and the save clock.

The loop (:mod:`meanfield.simulate`) asks a *stepper* for one accepted step
from ``t`` that does not pass ``t_stop`` (the next save time or the end):

* :class:`FixedStepper` -- a fixed-step integrator under a
  :class:`~meanfield.integrators.controllers.ConstantStep`: the step grid is
  ``t0 + k h`` (no accumulated round-off, the last step lands on t1), cut at
  the explicit save times of :class:`SaveAt`, which are hit exactly;
* :class:`AdaptiveStepper` -- an error-controlled method
  (:mod:`meanfield.integrators.adaptive`) under a
  :class:`~meanfield.integrators.controllers.PIController`: attempts are
  retried with a smaller step until the error norm is <= 1 (rejected attempts
  are never saved, their oracle calls are counted), save times are hit
  exactly, and :meth:`AdaptiveStepper.dense` interpolates inside the last step.

A stepper's :meth:`get_state` is part of the loop's checkpoint
(:class:`meanfield.simulate.LoopState`), so a resumed run takes the same steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import SimulationError
from .integrators.controllers import ConstantStep, PIController


@dataclass(frozen=True)
class SaveAt:
    """When the loop saves: every ``every`` steps, or at explicit ``times``.

    The initial state and the final state are always saved. With ``times``
    (sorted, in ``(t0, t1]``) a save is made exactly at each of them and
    ``every`` is not used.

    Parameters
    ----------
    every : int
        Steps between saves.
    times : tuple of float
        Explicit save times.
    """

    every: int = 1
    times: tuple = ()

    #: Decades below min(1, t1) where the logarithmic clock of a run from t0 = 0 starts.
    DECADES_BELOW = 2

    @staticmethod
    def per_decade(k: int, t0: float, t1: float) -> tuple:
        """The times ``10^(j/k)`` in ``(t0, t1]`` and t1 itself: ``[run] saves_per_decade``.

        A run from t0 = 0 starts the clock at ``10^-2 min(1, t1)``.
        """
        if t0 > 0:
            lo = math.floor(k * math.log10(t0))
        else:
            lo = math.floor(k * (math.log10(min(1.0, t1)) - SaveAt.DECADES_BELOW))
        hi = math.ceil(k * math.log10(t1))
        times = [10.0 ** (j / k) for j in range(lo, hi + 1)]
        times = [t for t in times if t0 < t < t1 * (1 - 1e-12)]
        return tuple(times) + (float(t1),)

    def next_time(self, t: float) -> float:
        """The first save time after ``t`` (inf when none is left or saves go by steps)."""
        if not self.times:
            return math.inf
        i = int(np.searchsorted(self.times, t, side="right"))
        return self.times[i] if i < len(self.times) else math.inf

    def due(self, k: int, t: float) -> bool:
        """Whether the state after step ``k`` at time ``t`` is saved (the loop adds the last one)."""
        if self.times:
            i = int(np.searchsorted(self.times, t))
            return i < len(self.times) and self.times[i] == t
        return k % self.every == 0


class FixedStepper:
    """Steps of a fixed-step integrator on the grid ``t0 + j h`` (module docstring).

    Parameters
    ----------
    integrator : Integrator
    schedule : Schedule
    controller : ConstantStep
    """

    adaptive = False

    def __init__(self, integrator, schedule, controller: ConstantStep):
        self.integrator, self.schedule, self.controller = integrator, schedule, controller
        self.j = 0  # grid points passed: steps cut at a save time do not count
        self.h_used = controller.h
        self.rejected = 0

    def start(self, system, t: float, step: int, state: dict | None) -> None:
        """Before the first step at ``t`` (after ``step`` steps; ``state`` of a checkpoint)."""
        self.j = int(state["j"]) if state and "j" in state else int(step)

    def step(self, system, t: float, t_stop: float) -> float:
        """One step from ``t``, ending at the next grid point or ``t_stop``; returns the new time."""
        t_grid = self.controller.time_of(self.j + 1)
        t_next = min(t_grid, t_stop)
        system.step(self.integrator, self.schedule, t, t_next - t)
        if t_next == t_grid:
            self.j += 1
        self.h_used = t_next - t
        return t_next

    dense = None

    def get_state(self) -> dict:
        """``{"j": grid points passed}`` (with the integrator's history, stored apart)."""
        return {"j": self.j}

    def stats(self) -> dict:
        """Nothing beyond the loop's step count: every step is accepted."""
        return {}


class AdaptiveStepper:
    """Error-controlled steps of an adaptive integrator on the system's flat state (module docstring).

    Parameters
    ----------
    integrator : AdaptiveIntegrator
    schedule : Schedule
    controller : PIController
    """

    adaptive = True
    #: Below this fraction of |t| a step no longer advances time: the run fails.
    H_MIN = 16 * np.finfo(np.float64).eps

    def __init__(self, integrator, schedule, controller: PIController, t_end: float = math.inf):
        self.integrator, self.schedule, self.controller = integrator, schedule, controller
        self.t_end = t_end  # bounds the first step
        self.rejected = 0
        self.h_used = math.nan

    def start(self, system, t: float, step: int, state: dict | None) -> None:
        """Pack the system's state; restore a checkpoint's counters and controller or pick the first step."""
        self.field = system.vector_field(self.schedule)
        self.z = system.pack()
        bound = getattr(system, "step_bound", None)  # a grid's CFL bound: a constraint of the controller
        if bound is not None:
            self.controller.h_cap = lambda t: bound()
        if state:
            self.controller.set_state(state["controller"])
            self.rejected = int(state["rejected"])
            self.h_used = float(state["h_used"])
        elif self.controller.h is None:
            integ = self.integrator
            self.controller.h = self.controller.initial_step(
                self.field, t, self.z, self.field(t, self.z), integ.order, integ.rtol, integ.atol,
                t_end=max(t + 1e-300, self.t_end))

    def step(self, system, t: float, t_stop: float) -> float:
        """One accepted step from ``t`` not past ``t_stop``; returns the new time."""
        ctrl, integ = self.controller, self.integrator
        while True:
            h_want = ctrl.bound(t, ctrl.h)
            h = min(h_want, t_stop - t)
            if not h > self.H_MIN * max(1.0, abs(t)):
                raise SimulationError(f"step size underflow (h = {h:.3g}) at t = {t:.6g}: the "
                                      "error control cannot meet integrator.rtol/atol here", t=t)
            z_new, err = integ.attempt(self.field, t, h, self.z)
            accepted, ctrl.h = ctrl.judge(err, h)
            if accepted:
                break
            self.rejected += 1
        if h < h_want:  # cut at a save time: the controller's step was not tried
            ctrl.h = max(ctrl.h, h_want)
        integ.commit(self.field, t, h, self.z, z_new)
        system.load(z_new)
        system.pack(out=self.z)
        self.h_used = h
        return t_stop if h == t_stop - t else t + h

    def dense(self, theta: float):
        """The state at ``t + theta h`` inside the last step, as the system's named arrays ``(x, y)``."""
        return self.field.unpack(self.integrator.dense(theta))

    def get_state(self) -> dict:
        """The controller's state and the counters (JSON-able)."""
        return {"controller": self.controller.get_state(), "rejected": self.rejected, "h_used": self.h_used}

    def stats(self) -> dict:
        """``rejected_steps`` and the integrator's ``jacobians``, ``jvps``, ``factorizations``, ..."""
        return {"rejected_steps": self.rejected, **self.integrator.stats}


def make_stepper(integrator, schedule, horizon, h=None):
    """The stepper of ``integrator``: adaptive methods get a PI controller, the others fixed steps.

    Parameters
    ----------
    integrator : Integrator
    schedule : Schedule
    horizon : Horizon
        ``t0``, ``t1`` and the fixed step ``h``.
    h : float or None
        The first step of an adaptive method (None: chosen automatically).
    """
    if getattr(integrator, "adaptive", False):
        return AdaptiveStepper(integrator, schedule, PIController(integrator, h0=h, h_max=integrator.h_max),
                               t_end=math.inf if horizon.t1 is None else float(horizon.t1))
    return FixedStepper(integrator, schedule, ConstantStep(horizon.t0, horizon.h, horizon.t1))
