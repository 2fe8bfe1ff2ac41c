"""Integrators and their registry (docs/models.md §5).

``INTEGRATORS[name][kind]`` is the class registered under ``name`` for dynamics
``kind`` (``"first_order"`` or ``"accelerated"``); ``rk4`` exists for both.
Register a new integrator with :func:`register` and the order test walks it.
"""

from __future__ import annotations

from ..errors import ParameterError
from .auto import Auto
from .base import Integrator
from .damped import ExpEuler, HeavyBall, KickDrift
from .dopri5 import Dopri5
from .first_order import Euler
from .mean_shift import MeanShift
from .multistep import AB2
from .nesterov import NAG
from .rosenbrock import Ros34PW2
from .runge_kutta import RK4, Heun, RK4Damped
from .symplectic import Strang, Tao2

INTEGRATORS: dict[str, dict[str, type[Integrator]]] = {}


def register(cls: type[Integrator]) -> type[Integrator]:
    """Add an integrator class to the registry (usable as a decorator)."""
    INTEGRATORS.setdefault(cls.name, {})[cls.kind] = cls
    return cls


for _cls in (Euler, Heun, RK4, ExpEuler, KickDrift, HeavyBall, RK4Damped):
    register(_cls)

for _cls in (Tao2, Strang, AB2, NAG, MeanShift):
    register(_cls)

# adaptive methods work on the flat state of a VectorField: one class serves both kinds
for _cls in (Dopri5, Ros34PW2, Auto):
    register(_cls)
    register(type(_cls.__name__ + "Accelerated", (_cls,), {"kind": "accelerated", "__doc__": _cls.__doc__}))


def names_for(kind: str) -> list[str]:
    """Registered integrator names accepting dynamics ``kind``."""
    return sorted(n for n, by_kind in INTEGRATORS.items() if kind in by_kind)


def make_integrator(name: str, kind: str, **options) -> Integrator:
    """Instantiate integrator ``name`` for dynamics ``kind``; errors list the valid names/keys."""
    if not isinstance(name, str) or name not in INTEGRATORS:
        raise ParameterError("integrator.name", f"one of {sorted(INTEGRATORS)}", name)
    if kind not in INTEGRATORS[name]:
        raise ParameterError(
            "integrator.name",
            f"an integrator for {kind} dynamics (valid: {', '.join(names_for(kind))})",
            name,
        )
    cls = INTEGRATORS[name][kind]
    for key in options:
        if key not in cls.options:
            raise ParameterError(
                f"integrator.{key}",
                f"a key of integrator {name!r} (valid: name, h{''.join(', ' + o for o in cls.options)})",
                key,
            )
    return cls(**options)


__all__ = ["INTEGRATORS", "Integrator", "make_integrator", "names_for", "register"]
