"""Error-controlled integrators: a step is *attempted*, a controller judges it.

An adaptive integrator works on the flat state ``z`` of a
:class:`~meanfield.integrators.vector_field.VectorField` and declares

* ``order`` -- the order of the solution it propagates (a test measures it),
* ``error_order`` -- the order of its embedded solution: the local error
  estimate is ``O(h^(error_order + 1))``, which sets the controller's exponent,
* ``dense_order`` -- the order of :meth:`AdaptiveIntegrator.dense` between steps,
* ``oracle_calls`` -- field evaluations of one attempt (after the first step,
  FSAL methods reuse the last one); Jacobians and Jacobian-vector products are
  extra, counted by the model as they happen.

The time loop (:mod:`meanfield.simulate`) calls :meth:`attempt` with a step
size from its :class:`~meanfield.integrators.controllers.Controller`; if the
controller accepts the error it calls :meth:`commit`, else it retries with a
smaller step (a rejected attempt changes nothing but the counters and the
integrator's caches, and is never saved).

The error of an attempt is the weighted RMS norm over every state component
(scipy's ``OdeSolver``, SUNDIALS' CVODE, diffrax's ``PIDController``)::

    err = sqrt( mean_k ( e_k / (atol + rtol * max(|z_k|, |z_new_k|)) )^2 ),

accepted when ``err <= 1``.
"""

from __future__ import annotations

import numpy as np

from ..schema import Checked, Derived, Key, Real
from .base import INTEGRATOR, Integrator


def error_norm(e, z, z_new, rtol: float, atol: float) -> float:
    """The weighted RMS norm of a local error estimate ``e``, all ``(n,)`` arrays (module docstring)."""
    scale = np.maximum(np.abs(z), np.abs(z_new))
    scale *= rtol
    scale += atol
    return float(np.sqrt(np.mean(np.square(e / scale)))) if e.size else 0.0


def dense_state(dense) -> dict:
    """The data ``(t, h, z, stages)`` of the last committed step's dense output as state entries."""
    if dense is None:
        return {}
    t, h, z, stages = dense
    return {"dense_t": t, "dense_h": h, "dense_z": z.copy(), "dense_stages": stages.copy()}


def dense_from_state(state: dict):
    """Inverse of :func:`dense_state`: ``(t, h, z, stages)`` or None."""
    if "dense_z" not in state:
        return None
    return (float(state["dense_t"]), float(state["dense_h"]), np.array(state["dense_z"], dtype=float),
            np.array(state["dense_stages"], dtype=float))


class AdaptiveIntegrator(Integrator):
    """Base class of error-controlled methods (module docstring).

    Parameters
    ----------
    rtol, atol : float
        Relative and absolute tolerances of the error norm.
    h_max : float or None
        Largest step (None: unbounded).

    Attributes
    ----------
    stats : dict of int
        ``jacobians`` (dense Jacobians evaluated), ``jvps`` (Jacobian-vector
        products), ``factorizations`` (LU of the iteration matrix): recorded in
        the run's attributes beside the loop's accepted/rejected steps.
    """

    adaptive = True
    #: Whether the method keeps a dense (n, n) Jacobian (stiff methods).
    uses_jacobian = False
    order = 0
    error_order = 0
    dense_order = 0
    options = INTEGRATOR.declare(
        Key("rtol", Real("a number in (0, 1)", lambda v: 0 < v < 1), 1e-6, "relative tolerance of the error control"),
        Key("atol", Real("a number >= 0", lambda v: v >= 0), 1e-9, "absolute tolerance of the error control"),
        Key("h_max", Checked("a step bound > 0", lambda v: not isinstance(v, bool) and isinstance(v, (int, float))
                             and v > 0), Derived("no bound"), "largest step", "time"),
        owners=("dopri5", "ros34pw2", "auto"))
    rtol, atol = INTEGRATOR.default("rtol"), INTEGRATOR.default("atol")
    h_max = None

    def __init__(self, **options):
        super().__init__(**options)
        self.rtol, self.atol = float(self.rtol), float(self.atol)  # checked by the schema (Integrator)
        self.h_max = None if self.h_max is None else float(self.h_max)
        self.stats = {"jacobians": 0, "jvps": 0, "factorizations": 0}

    def step(self, model, schedule, t, h, x, y):  # pragma: no cover - the loop attempts adaptive steps
        raise TypeError(f"{self.name} is an adaptive method: the loop calls attempt/commit")

    def attempt(self, field, t: float, h: float, z: np.ndarray) -> tuple[np.ndarray, float]:
        """Try one step of size ``h`` from ``(t, z)``; ``z`` is not modified.

        Parameters
        ----------
        field : VectorField
        t, h : float
        z : (n,) array, the state at ``t``

        Returns
        -------
        z_new : (n,) array
            The proposed state at ``t + h``.
        err : float
            :func:`error_norm` of the local error estimate (accept when <= 1).
        """
        raise NotImplementedError

    def commit(self, field, t: float, h: float, z: np.ndarray, z_new: np.ndarray) -> None:
        """The last attempt was accepted: keep what the next step or :meth:`dense` needs."""

    def dense(self, theta: float) -> np.ndarray:
        """The state at ``t + theta h`` of the last committed step, ``theta in [0, 1]``, shape ``(n,)``."""
        raise NotImplementedError

    def retracted(self, field, t: float, z: np.ndarray) -> None:
        """The loop replaced the committed state by its projection ``z`` (sphere): drop caches of the old one."""

    def stats_state(self) -> dict:
        """:attr:`stats` as ``{"stats_<key>": int}`` for :meth:`get_state` (the counters are part of a checkpoint)."""
        return {f"stats_{k}": int(v) for k, v in self.stats.items()}

    def restore_stats(self, state: dict) -> None:
        """Restore the counters that :meth:`stats_state` stored."""
        self.stats.update({k: int(state[f"stats_{k}"]) for k in self.stats})

    def describe(self) -> dict:
        out = super().describe()
        return {k: v for k, v in out.items() if v is not None}


def integrate(field, integ: AdaptiveIntegrator, t0: float, t1: float, z0: np.ndarray, h0=None,
              retract=None, on_step=None, max_steps: int = 1_000_000) -> tuple[np.ndarray, dict]:
    """Advance ``z' = F(t, z)`` from ``t0`` to ``t1`` as the time loop drives an adaptive method.

    A small driver for tests and benchmarks (the run's loop is
    :mod:`meanfield.simulate`): a :class:`~meanfield.integrators.controllers.PIController`
    judges every attempt, an accepted step is committed and then optionally
    retracted.

    Parameters
    ----------
    field : VectorField or callable ``(t, z, out=None) -> (n,)`` with ``jacobian``
    integ : AdaptiveIntegrator
    t0, t1 : float
    z0 : (n,) array
    h0 : float, optional
        First step (default: the controller's choice).
    retract : callable ``z -> z``, optional
        Applied to every accepted state (the sphere's renormalization).
    on_step : callable ``(t, h, z_new)``, optional
        Called after every accepted step (``integ.dense`` is valid then).
    max_steps : int

    Returns
    -------
    z : (n,) array
        The state at ``t1``.
    info : dict
        ``accepted``, ``rejected`` (counts) and ``steps``, the accepted ``(t, h)``.
    """
    from .controllers import PIController

    z = np.array(z0, dtype=float)
    t = float(t0)
    ctrl = PIController(integ, h0=h0, h_max=integ.h_max)
    h = ctrl.h or ctrl.initial_step(field, t, z, field(t, z), integ.order, integ.rtol, integ.atol, t1)
    info = {"accepted": 0, "rejected": 0, "steps": []}
    while t < t1:
        if info["accepted"] + info["rejected"] >= max_steps:
            raise RuntimeError(f"integrate: {max_steps} attempts without reaching t1 = {t1} (t = {t})")
        h = min(ctrl.bound(t, h), t1 - t)
        z_new, err = integ.attempt(field, t, h, z)
        ok, h_next = ctrl.judge(err, h)
        if ok:
            integ.commit(field, t, h, z, z_new)
            t_new = t1 if h == t1 - t else t + h
            info["accepted"] += 1
            info["steps"].append((t, h))
            if on_step is not None:
                on_step(t, h, z_new)
            t, z = t_new, (z_new if retract is None else retract(z_new))
        else:
            info["rejected"] += 1
        h = h_next
    return z, info
