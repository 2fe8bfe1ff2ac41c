"""What the time loop advances: a *system* owning a state of named arrays.

The loop (:mod:`meanfield.simulate`) never looks inside the state. It asks
the system to take a step with an integrator, for the largest |entry| (the
blow-up check), for energies and diagnostics at a save, and for the named
arrays to checkpoint. Particle runs advance :class:`ParticleSystem` (state
``x``, ``y``), or :class:`BlockSystem` for whole transformer blocks
(attention then a token-wise MLP, per-layer weights; state ``x``, ``y``,
``v``); mean-field equation runs advance a grid density or the bilinear
flow map (:mod:`meanfield.pde`).

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

import math
from types import MappingProxyType

import numpy as np

from ._kernels._config import chunk_bounds
from ._kernels.checks import max_abs_or_nan


class System:
    """Defaults of the system protocol (module docstring) that most systems share.

    The loop calls these on every system; a system overrides what it has:
    grid runs their ``grid``, transformer blocks ``begin``, ``counters`` and
    ``energy_balance``.
    """

    #: Cell centres of a grid system, ``{axis: (M,)}``; empty for particles.
    grid = MappingProxyType({})
    #: Whether dH/dt = -2 alpha K holds, so the loop checks the dissipation residual.
    energy_balance = True
    #: Whether a step's bits do not depend on numba's thread count (the loop may then change it).
    thread_invariant = True

    def begin(self, step: int, t0: float = 0.0) -> None:
        """Called by the loop before the first step: ``step`` steps were taken since the run's ``t0``."""

    def counters(self) -> dict:
        """Extra save scales beyond the loop's own (``{name: int}``; none by default)."""
        return {}

    # ------------------------------------------ adaptive methods (flat state)
    def vector_field(self, schedule):
        """The dynamics as ``z' = F(t, z)`` on a flat vector (:class:`~meanfield.integrators.vector_field.VectorField`)."""
        raise TypeError(f"{type(self).__name__} has no flat vector field: use a fixed-step integrator")

    def pack(self, out=None) -> np.ndarray:
        """The state as the flat vector ``z`` of :meth:`vector_field` (into ``out`` if given)."""
        return self._field.pack(*self._arrays(), out=out)

    def load(self, z) -> None:
        """Write the flat state ``z`` into the state arrays, then retract it (sphere) as a step would."""
        for live, new in zip(self._arrays(), self._field.unpack(z)):
            if live is not None:
                live[...] = new
        self._retract()


class ParticleSystem(System):
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
    def thread_invariant(self) -> bool:
        """As the model's (False for FINUFFT sums)."""
        return self.model.thread_invariant

    @property
    def oracle_calls(self) -> int:
        """Oracle calls (interaction sums) made so far."""
        return self.model.oracle_calls

    @property
    def state(self) -> dict:
        """``{"x": (N, d), "y": (N, d)}``: the live arrays a checkpoint stores (no ``y`` for first order)."""
        nx, ny = self.names[:2]
        return {nx: self.x} if self.y is None else {nx: self.x, ny: self.y}

    # ------------------------------------------------------------------ loop
    def step(self, integrator, schedule, t, h) -> None:
        """Take one step of ``integrator`` from ``t`` with size ``h``, updating the state in place."""
        self.x, self.y = integrator.step(self.model, schedule, t, h, self.x, self.y)
        self.model.project(self.x, self.y)

    def vector_field(self, schedule):
        from .integrators.vector_field import VectorField

        self._field = VectorField(self.model, schedule, self.x.shape, self.accelerated)
        return self._field

    def _arrays(self) -> tuple:
        return self.x, self.y

    def _retract(self) -> None:
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


class BlockSystem(ParticleSystem):
    """Particles moved by whole transformer blocks: attention, then a token-wise MLP sub-step.

    Layer l (per-layer attention matrices and MLP weights) acts for t in
    [t0 + l, t0 + l + 1) modulo ``model.n_layers``: a step from t of size h uses
    the layer of its midpoint t + h/2, so with h = 1 step k is layer k mod L and
    with 1/h an integer every layer gets 1/h steps. The MLP sub-step
    (:mod:`meanfield.integrators.mlp_substep`) follows the attention step of the
    run's integrator (``strang``: half before, half after); accelerated blocks
    carry the MLP velocity ``v`` in the state (checkpointed and resumed like
    ``y``). MLP evaluations are counted in ``mlp_calls`` (a save scale), apart
    from the attention oracle calls.

    Parameters
    ----------
    model : Model
        With ``model.mlp`` (a TokenMLP) or per-layer matrices (``n_layers > 1``).
    x, y : (N, d) arrays
        As for :class:`ParticleSystem`.
    v : (N, d) array or None
        MLP velocity of accelerated blocks (zeros when None).
    keep_mid : bool
        Keep ``x_mid`` (N, d), the state after the attention sub-step of the last
        step (the initial state before the first), for ``[output] save = [.., "x_mid"]``.
    """

    names = ("x", "y", "v")

    def __init__(self, model, x, y=None, v=None, keep_mid=False):
        from .integrators.mlp_substep import make_substep

        super().__init__(model, x, y)
        self.substep = make_substep(model)
        self.v = None
        if self.substep is not None and self.substep.uses_velocity:
            self.v = np.zeros_like(x) if v is None else v
        self.x_mid = np.array(x, copy=True) if keep_mid else None
        #: Steps taken so far and the run's start time (the loop sets them, :meth:`begin`).
        self.steps, self.t0 = 0, 0.0

    @property
    def energy_balance(self) -> bool:
        """False with an MLP: dH/dt = -2 alpha K does not hold (the MLP field is no gradient of H)."""
        return self.substep is None

    @property
    def state(self) -> dict:
        out = super().state
        if self.v is not None:
            out["v"] = self.v
        return out

    def begin(self, step: int, t0: float = 0.0) -> None:
        """Called by the loop before the first step: ``step`` steps were taken since ``t0``."""
        self.steps, self.t0 = int(step), float(t0)

    def vector_field(self, schedule):
        """Blocks are splittings (attention, then the MLP sub-step): fixed steps only."""
        raise TypeError("transformer blocks (an MLP or per-layer weights) are stepped by fixed-step integrators")

    def counters(self) -> dict:
        """Extra save scales: ``mlp_calls``, the MLP evaluations so far."""
        if self.substep is None:
            return {}
        return {"mlp_calls": self.steps * self.substep.calls}

    def layer_at(self, t: float, h: float) -> int:
        """The layer of a step from ``t`` of size ``h``: the one whose unit time interval holds t + h/2."""
        return int(math.floor(t - self.t0 + 0.5 * h)) % self.model.n_layers

    def step(self, integrator, schedule, t, h) -> None:
        layer = self.layer_at(t, h)
        model = self.model
        model.use_layer(layer)
        sub = self.substep
        if sub is not None:
            sub.before(model, self.x, self.v, h, layer)
        super().step(integrator, schedule, t, h)
        model.post_norm(self.x, "attention")
        if self.x_mid is not None:
            self.x_mid[...] = self.x
        if sub is not None:
            sub.after(model, self.x, self.v, h, layer)
            model.post_norm(self.x, "mlp")
            model.project(self.x, self.y)
            if self.v is not None:
                model.project(self.x, self.v)
        self.steps += 1

    def max_abs(self) -> float:
        worst = super().max_abs()
        if self.v is not None and worst == worst:
            worst_v = max_abs_or_nan(self.v, self._bounds, self._partial)
            worst = worst_v if not worst_v <= worst else worst
        return worst

    def fields(self, save) -> dict:
        """As :meth:`ParticleSystem.fields`, and ``v``, ``x_mid`` when asked, ``readout`` with ``x``.

        ``readout`` (N, d) is the network's final LayerNorm of the saved ``x``
        (models with a read-out only); the last save's is the network's output.
        """
        out = super().fields(save)
        if self.v is not None and "v" in save:
            out["v"] = self.v
        if self.x_mid is not None and "x_mid" in save:
            out["x_mid"] = self.x_mid
        if "x" in save:
            r = self.model.readout(self.x)
            if r is not None:
                out["readout"] = r
        return out


def particle_system(model, x, y=None, v=None, keep_mid=False):
    """A :class:`BlockSystem` when ``model`` has an MLP or per-layer weights, else a :class:`ParticleSystem`.

    ``keep_mid``: a BlockSystem keeps the state after each attention sub-step (``x_mid``).
    """
    if model.mlp is not None or model.n_layers > 1:
        return BlockSystem(model, x, y, v, keep_mid)
    return ParticleSystem(model, x, y)
