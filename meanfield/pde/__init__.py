"""Mean-field equation runs (``[solver] kind = "pde"``, docs/models.md §9) and their registry.

``PDE_SOLVERS[(model name, dynamics)]`` holds the set-up of a pde run for
that model: a callable ``setup(cfg, model, integrator, base_dir)`` returning
an object with ``system(state=None)`` (the system the loop advances; a
checkpoint's state when resuming), ``energy_infimum()`` and ``attrs()``
(extra file attributes), plus the dimension it is limited to. Registered:
the bilinear flow map (any d), the finite-volume solvers of the first-order
continuity equation on the circle (sphere, d = 2) and the line (softmax,
d = 1), and the kinetic equations of the accelerated sphere model on the
circle and of the accelerated softmax model on the line.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ParameterError
from .bilinear_flow import BilinearFlow, push_forward
from .finite_volume import CircleFV, LineFV
from .grid import GridRun, GridSystem
from .kinetic import CircleKinetic, KineticRun, LineKinetic


@dataclass(frozen=True)
class PDEEntry:
    """A registered pde run set-up and the token dimension it covers (None: any)."""

    setup: object
    d: int | None = None

    def covers(self, d: int) -> bool:
        return self.d is None or self.d == d


PDE_SOLVERS: dict[tuple[str, str], PDEEntry] = {}


def register_pde(model: str, dynamics: str, setup, d: int | None = None) -> None:
    """Make ``[solver] kind = "pde"`` available for ``model`` / ``dynamics`` (in dimension ``d``)."""
    PDE_SOLVERS[(model, dynamics)] = PDEEntry(setup, d)


def covered() -> str:
    """What pde runs cover, for error messages: e.g. "bilinear/accelerated (any d), ..."."""
    return ", ".join(f"{m}/{dyn} ({'any d' if e.d is None else f'd = {e.d}'})"
                     for (m, dyn), e in sorted(PDE_SOLVERS.items()))


def make_pde(cfg, model, integrator, base_dir=None):
    """The set-up of a pde run for ``model``; an input error naming solver.kind when not covered.

    ``cfg`` is the run's resolved configuration, typed (:class:`meanfield.schema.Config`).
    """
    entry = PDE_SOLVERS.get((model.name, model.dynamics))
    if entry is None or not entry.covers(model.d):
        raise ParameterError("solver.kind", f'"particles" for this model (pde runs cover: {covered()})',
                             f'"pde" with {model.name}/{model.dynamics}, d = {model.d}')
    if getattr(model, "causal", False):
        raise ParameterError("solver.kind", '"particles" under a causal mask (the mean-field equations '
                             "are those of unmasked attention)", '"pde" with model.causal = true')
    return entry.setup(cfg, model, integrator, base_dir)


register_pde("bilinear", "first_order", BilinearFlow)
register_pde("bilinear", "accelerated", BilinearFlow)
register_pde("sphere", "accelerated", KineticRun.of(CircleKinetic), d=2)
register_pde("softmax", "accelerated", KineticRun.of(LineKinetic), d=1)
register_pde("sphere", "first_order", GridRun.of(CircleFV), d=2)
register_pde("softmax", "first_order", GridRun.of(LineFV), d=1)

__all__ = ["PDE_SOLVERS", "BilinearFlow", "GridRun", "GridSystem", "KineticRun", "make_pde", "push_forward", "register_pde"]
