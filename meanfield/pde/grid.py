"""A density on a grid as a system of the time loop (method of lines).

:class:`GridSystem` wraps a first-order finite-volume solver (state
``density``, shape ``(M,)``) so that the loop and the existing first-order
integrators advance it unchanged: it presents the two field methods those
integrators call on a model, ``first_order(rho, t)`` and
``combine_first_order(rho, t, a, b, out) = a rho + b drho/dt``, with the
solver's method-of-lines right-hand side as the field. Explicit Euler and
Heun (the explicit trapezoid, SSP-RK2) keep the scheme's positivity under
its CFL bound; rk4 is accepted for smooth solutions.

A solver (e.g. ``CircleFV``, ``LineFV``) provides::

    order : int                   spatial order of the scheme
    grid_names : tuple of str     ("theta",) or ("x",)
    grid : dict of (M,) arrays    cell centres
    cell_volume : float
    oracle_calls : int            counted by rhs
    initial_density(initial_section) -> (M,) array   density per unit length
    rhs(rho, t, out) -> out       d rho / dt
    max_stable_step(rho) -> float CFL bound for positivity of forward Euler
    energies(rho) -> dict         "energy", "potential", ... (names of particle runs)
    diagnostics(rho) -> dict      "mass", "mean", ...
"""

from __future__ import annotations

import math

import numpy as np

from .._kernels._config import chunk_bounds
from .._kernels.checks import max_abs_or_nan
from ..errors import ParameterError
from ..initial import memory_budget
from ..systems import System

#: Arrays of the grid's size a pde run may hold at once (density, integrator stages, fluxes,
#: work arrays of the kinetic solvers): a generous count for the check made before any is allocated.
GRID_ARRAYS = 12


def check_grid_memory(cells, key: str = "solver.grid") -> None:
    """ParameterError when a grid of ``cells`` (``M``, or ``[M, K]`` with momenta) cannot fit.

    Counts :data:`GRID_ARRAYS` float64 arrays of the whole grid against half the
    machine's memory, before the solver allocates any. Values of a wrong type are
    left to the solver's own checks.
    """
    dims = list(cells) if isinstance(cells, (list, tuple)) else [cells]
    if not dims or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in dims):
        return
    need = 8 * GRID_ARRAYS * math.prod(dims)
    if need > memory_budget():
        shape = " x ".join(map(str, dims))
        raise ParameterError(key, f"a grid that fits in memory ({GRID_ARRAYS} float64 arrays of "
                             f"{shape} cells <= {memory_budget() / 2**30:.3g} GiB, half the "
                             "machine's memory)", f"{cells} ({need / 2**30:.3g} GiB)")


#: Integrators of first-order grid runs (method of lines).
GRID_INTEGRATORS = ("euler", "heun", "rk4")
#: Integrators whose steps are convex combinations of forward Euler steps (positivity under CFL).
SSP_INTEGRATORS = ("euler", "heun")


class GridSystem(System):
    """A density on a grid, advanced by a first-order integrator through the solver's rhs.

    Parameters
    ----------
    solver : finite-volume solver (see the module docstring)
    density : (M,) array
        Density per unit length (updated in place by the integrators).
    """

    kind = "pde"
    names = ("density",)
    accelerated = False
    cheap_kinetic = False
    #: Grid kernels decide their own threading.
    serial_below = 0

    def __init__(self, solver, density):
        self.solver = solver
        self.density = density
        self.grid = solver.grid
        self._work = np.empty_like(density)
        self._bounds = chunk_bounds(density.size)
        self._partial = np.empty(self._bounds.shape[0] - 1)

    @property
    def dtype(self):
        """float64: grid runs compute in double precision."""
        return np.dtype(self.density.dtype)

    @property
    def size(self) -> int:
        """M, the number of cells."""
        return self.density.size

    @property
    def oracle_calls(self) -> int:
        """Right-hand-side evaluations (nonlocal interaction sums) made so far."""
        return self.solver.oracle_calls

    @property
    def state(self) -> dict:
        """``{"density": (M,) or (M, K)}``: the live cell masses a checkpoint stores."""
        return {"density": self.density}

    # -------------------------------------- the model interface of integrators
    def first_order(self, rho, t, out=None):
        """d rho / dt of the method of lines, same shape as ``rho``; one oracle call."""
        if out is None:
            out = np.empty_like(rho)
        return self.solver.rhs(rho, t, out)

    def combine_first_order(self, rho, t, a, b, out=None):
        """``out = a rho + b drho/dt`` (``out`` may be ``rho``); one oracle call."""
        k = self.solver.rhs(rho, t, self._work)
        if out is None:
            out = np.empty_like(rho)
        np.multiply(k, b, out=k)
        if a == 1.0:
            np.add(rho, k, out=out)
        else:
            np.add(a * rho, k, out=out)
        return out

    # ---------------------------------------------------------------- loop
    def step(self, integrator, schedule, t, h) -> None:
        """Take one step of ``integrator`` from ``t`` with size ``h``, updating the density in place."""
        self.density, _ = integrator.step(self, schedule, t, h, self.density, None)

    def vector_field(self, schedule):
        """The method of lines ``d rho/dt = rhs(rho)`` on the flat density (adaptive methods)."""
        from ..integrators.vector_field import VectorField

        self._field = VectorField(self, schedule, self.density.shape, False)
        return self._field

    def _arrays(self) -> tuple:
        return (self.density,)

    def _retract(self) -> None:
        """A density has no constraint to restore."""

    def step_bound(self) -> float:
        """The scheme's CFL bound at the current density: adaptive steps stay within it."""
        return float(self.solver.max_stable_step(self.density))

    def max_abs(self) -> float:
        """The largest |cell mass| (NaN if any is NaN): the loop's blow-up check."""
        return max_abs_or_nan(self.density.reshape(-1, 1), self._bounds, self._partial)

    def energies(self) -> dict:
        """The energies of the density at a save (floats, the particle runs' names)."""
        return self.solver.energies(self.density)

    def kinetic(self) -> float:  # pragma: no cover - first-order grids have no momenta
        """The kinetic energy (first-order grids have none)."""
        raise NotImplementedError

    def diagnostics(self) -> dict:
        """The solver's diagnostics; ``mass`` (density.sum() * cell volume) is always among them."""
        out = self.solver.diagnostics(self.density)
        out.setdefault("mass", float(self.density.sum() * self.solver.cell_volume))
        return out

    def fields(self, save) -> dict:
        """The density is stored at every save (``output.save`` is for particle runs)."""
        return {"density": self.density}

    def probe_args(self) -> tuple:
        """``(density,)``: what user probes receive."""
        return None, None


class GridRun:
    """Set-up of a first-order grid run: solver, initial density, checks of the step.

    Parameters
    ----------
    solver_cls : class
        CircleFV, LineFV, ... (see the module docstring).
    cfg : meanfield.schema.Config
        The resolved configuration, typed.
    model : Model
        The particle model of the same section (validated parameters).
    integrator : Integrator
    base_dir : str or None
        Directory of the parameter file (relative paths).
    """

    def __init__(self, solver_cls, cfg, model, integrator, base_dir=None):
        adaptive = getattr(integrator, "adaptive", False)
        if integrator.name not in GRID_INTEGRATORS and not adaptive:
            raise ParameterError("integrator.name", f"an integrator of first-order pde runs "
                                 f"({', '.join(GRID_INTEGRATORS)} or an adaptive method: method of lines)",
                                 integrator.name)
        sol = cfg.solver
        if not isinstance(sol.grid, int):
            raise ParameterError("solver.grid", "cells of the position axis (one integer) for a "
                                 "first-order pde run", sol.grid)
        model_params = {**cfg.model.given(), **model.describe()}
        self.model = model
        self.solver = solver_cls(model_params, sol.grid, sol.domain)
        self.density0 = np.ascontiguousarray(self.solver.initial_density(cfg.initial.given()), dtype=np.float64)
        h = float(cfg.integrator.h or 0.0)  # adaptive methods: the first step, optional
        if integrator.name in SSP_INTEGRATORS:
            h_max = float(self.solver.max_stable_step(self.density0))
            if h > h_max:
                raise ParameterError("integrator.h", f"h <= {h_max:.4g} (the scheme's CFL bound for a "
                                     f"positive density at the initial state)", h)

    @classmethod
    def of(cls, solver_cls):
        """The registry entry for ``solver_cls``: ``register_pde(..., GridRun.of(CircleFV), d=2)``."""
        def setup(cfg, model, integrator, base_dir=None):
            return cls(solver_cls, cfg, model, integrator, base_dir)

        setup.__name__ = solver_cls.__name__
        return setup

    def system(self, state=None) -> GridSystem:
        """The grid system to advance: the initial density, or ``state["density"]`` of a checkpoint."""
        rho = self.density0.copy() if state is None else np.ascontiguousarray(state["density"], np.float64)
        return GridSystem(self.solver, rho)

    def energy_infimum(self):
        """The model's lower bound of the energy when it holds for every law (float or None).

        The grid models' bounds do not depend on the sample: the sphere's -e^beta / 2
        (Q^T K = I) bounds every probability density as it bounds every particle cloud.
        """
        return self.model.energy_infimum(None)

    def attrs(self) -> dict:
        """Extra file attributes of the run (``spatial_order``)."""
        return {"spatial_order": int(self.solver.order)}
