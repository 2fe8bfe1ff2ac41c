"""What the time loop advances: a *system* owning a state of named arrays.

The loop (:mod:`meanfield.simulate`) never looks inside the state. It asks
the system to take a step with an integrator, for the largest |entry| (the
blow-up check), for energies and diagnostics at a save, and for the named
arrays to checkpoint. Particle runs advance :class:`ParticleSystem` (state
``x``, ``y``); mean-field equation runs advance a grid density or the
bilinear flow map (:mod:`meanfield.pde`).

A system has

* ``kind`` (``"particles"`` or ``"pde"``), ``accelerated``, ``cheap_kinetic``,
  ``dtype``, ``size`` and ``serial_below`` (run kernels on one thread when
  ``size < serial_below``), ``oracle_calls`` (interaction sums so far),
* ``state`` -- ``{name: array}``, the arrays a checkpoint stores and resume
  gives back (the live arrays, not copies),
* ``step(integrator, schedule, t, h)``, ``max_abs()``, ``energies()``,
  ``kinetic()``, ``diagnostics()``, ``fields(save)`` (arrays stored at every
  save) and ``probe_args()`` (what user probes ``probe(t, x, y, tasks)`` get).
"""

from __future__ import annotations

import numpy as np

from ._kernels._config import chunk_bounds
from ._kernels.checks import max_abs_or_nan


class ParticleSystem:
    """N particles ``x`` (and momenta ``y``) moved by a model's fields.

    Parameters
    ----------
    model : Model
        Owns the equations; integrators call its field methods.
    x : (N, d) array
        Positions (updated in place by most integrators).
    y : (N, d) array or None
        Momenta, required for accelerated dynamics.
    """

    kind = "particles"
    #: Names of the state arrays (the checkpoint datasets) for positions and momenta.
    names = ("x", "y")

    def __init__(self, model, x, y=None):
        if model.accelerated and y is None:
            raise ValueError("accelerated dynamics need momenta y")
        self.model = model
        self.x = x
        self.y = y
        self._bounds = chunk_bounds(x.shape[0])
        self._partial = np.empty(self._bounds.shape[0] - 1)

    # ----------------------------------------------------------- description
    @property
    def accelerated(self) -> bool:
        """True for accelerated (damped Hamiltonian) dynamics: the state has momenta ``y``."""
        return self.model.accelerated

    @property
    def cheap_kinetic(self) -> bool:
        """True when the kinetic energy costs no oracle call (the dissipation residual may use every step)."""
        return self.model.cheap_kinetic

    @property
    def dtype(self):
        """The floating-point type of the state (float64 or float32)."""
        return np.dtype(self.x.dtype)

    @property
    def size(self) -> int:
        """N, the number of particles."""
        return self.x.shape[0]

    @property
    def serial_below(self) -> int:
        """Run the model's kernels on one thread when ``size`` is below this."""
        return self.model.serial_below

    @property
    def oracle_calls(self) -> int:
        """Oracle calls (interaction sums) made so far."""
        return self.model.oracle_calls

    @property
    def state(self) -> dict:
        """``{"x": (N, d), "y": (N, d)}``: the live arrays a checkpoint stores (no ``y`` for first order)."""
        nx, ny = self.names
        return {nx: self.x} if self.y is None else {nx: self.x, ny: self.y}

    # ------------------------------------------------------------------ loop
    def step(self, integrator, schedule, t, h) -> None:
        """Take one step of ``integrator`` from ``t`` with size ``h``, updating the state in place."""
        self.x, self.y = integrator.step(self.model, schedule, t, h, self.x, self.y)
        self.model.project(self.x, self.y)

    def max_abs(self) -> float:
        """Largest |entry| of the state, NaN if any entry is NaN."""
        worst = max_abs_or_nan(self.x, self._bounds, self._partial)
        if self.accelerated and worst == worst:  # not NaN yet: y may hold one (max() would skip it)
            worst_y = max_abs_or_nan(self.y, self._bounds, self._partial)
            worst = worst_y if not worst_y <= worst else worst
        return worst

    def energies(self) -> dict:
        """The energies at a save, ``{"energy", "kinetic", "potential", ...}`` (floats)."""
        return self.model.energies(self.x, self.y)

    def kinetic(self) -> float:
        """The kinetic energy K of the current momenta, as the model defines it (float)."""
        return self.model.kinetic(self.x, self.y)

    def diagnostics(self) -> dict:
        """The model's diagnostics of the current state at a save, ``{name: array}`` (e.g. ``mean`` (d,), ``cov`` (d, d))."""
        return self.model.diagnostics(self.x, self.y)

    def fields(self, save) -> dict:
        """The state arrays named in ``save`` (``"x"``, ``"y"``), stored at every save."""
        out = {}
        if "x" in save:
            out["x"] = self.x
        if self.accelerated and "y" in save:
            out["y"] = self.y
        return out

    def probe_args(self) -> tuple:
        """``(x, y)``: what user probes ``probe(t, x, y, tasks)`` receive, (N, d) arrays."""
        return self.x, self.y
