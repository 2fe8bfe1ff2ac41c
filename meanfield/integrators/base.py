"""Integrator base class: a step is one attention block.

An integrator is a small class that declares

* ``order`` -- its convergence order (a test measures it); ``None`` for a map
  that discretizes no flow (``mean_shift``), with the reason in ``order_note``,
* ``oracle_calls`` -- oracle calls per step (the loop checks the model's count),
* ``kind`` -- which dynamics it integrates (``"first_order"`` or ``"accelerated"``),
* ``options`` -- the names of the ``[integrator]`` keys it accepts besides ``name`` and ``h``
  (declared in :mod:`meanfield.schema`, with their defaults, by the module that adds them),

and implements ``step(model, schedule, t, h, x, y) -> (x, y)``; ``check_model(model)``
may reject a model it cannot step (a ParameterError when the run is built). A step may
update ``x``/``y`` in place and must return the new state. Integrators know
the model only through its field methods (see :mod:`meanfield.models.base`).
"""

from __future__ import annotations

from .. import schema
from ..schema import Derived, Key, Kind, Number

#: The ``[integrator]`` section of the schema; integrator modules declare the options they add.
INTEGRATOR = schema.section("integrator")
INTEGRATOR.declare(
    Key("name", Kind("a registered integrator name"),
        Derived('"exp_euler" (accelerated), "euler" (first_order)'), "the method (docs/models.md §5)"),
    Key("h", Number(positive=True), Derived("required; optional first step of adaptive methods"),
        "step size (h = 1: one step is one block)", "time"),
)


class Integrator:
    """Base class. Subclasses set the class attributes and implement ``step``."""

    name = "base"
    order: int | None = 0
    order_note = ""
    oracle_calls = 1
    kind = "first_order"
    options: tuple[str, ...] = ()

    def __init__(self, **options):
        INTEGRATOR.check(options)  # each option's kind, as the schema declares it
        for key, value in options.items():
            setattr(self, key, value)

    #: True for error-controlled methods (:mod:`meanfield.integrators.adaptive`): attempt/commit, no ``step``.
    adaptive = False

    #: True for integrators of first-order dynamics that still use the damping schedule (nag).
    uses_schedule = False

    def check_model(self, model) -> None:
        """Raise ParameterError if this integrator cannot step ``model`` (called when a run is built)."""

    def reset(self) -> None:
        """Forget any history (multistep methods); called by the loop before the first step."""

    def get_state(self) -> dict:
        """Internal state carried between steps (history, auxiliary copies), for checkpoints.

        Returns a dict of numpy arrays / floats; empty for one-step methods.
        """
        return {}

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` returned (resume from a checkpoint)."""

    def step(self, model, schedule, t, h, x, y):  # pragma: no cover - abstract
        """Advance the state by one step of size ``h`` from time ``t`` (one attention block).

        Parameters
        ----------
        model : Model
            Owns the fields; the step calls them ``oracle_calls`` times.
        schedule : Schedule
            The damping alpha(t) (accelerated dynamics and ``nag``).
        t, h : float
            Time at the step start and step size.
        x : (N, d) array
            Positions (may be updated in place).
        y : (N, d) array or None
            Momenta (None for first-order dynamics; may be updated in place).

        Returns
        -------
        x, y : (N, d) arrays (y None for first-order dynamics)
            The state at ``t + h``.
        """
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON-able ``{"name": ..., option: value}`` of this integrator (stored in run files)."""
        return {"name": self.name, **{k: getattr(self, k) for k in self.options}}
