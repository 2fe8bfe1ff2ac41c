"""Damping schedules alpha(t), their integrals eta(t) and exact damping factors.

docs/models.md §1. Every schedule knows ``alpha(t)``, ``eta(t) = int_{t0}^t alpha`` and
the exact factor ``sigma(t, h) = exp(-(eta(t + h) - eta(t)))`` by which the
pure damping ODE ``y' = -alpha(t) y`` shrinks ``y`` over ``[t, t + h]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import schema
from .errors import ParameterError
from .schema import Key, Kind

#: The ``[damping]`` section of the schema: the schedule and each schedule's keys.
DAMPING = schema.section("damping")
DAMPING.declare(Key("schedule", Kind("a registered schedule"), "none", "none | constant | nesterov | loglin"))
_RATE = Kind("a finite number")
DAMPING.declare(Key("a", _RATE, 1.0, "constant damping alpha = a"), owners="constant")
DAMPING.declare(Key("r", _RATE, 3.0, "alpha(t) = r / t (needs t0 > 0)"), owners="nesterov")
DAMPING.declare(Key("c_log", _RATE, 1.0, "alpha(t) = c_log / (t log t) + c_lin"),
                Key("c_lin", _RATE, 0.0, "alpha(t) = c_log / (t log t) + c_lin"), owners="loglin")


@dataclass(frozen=True)
class Schedule:
    """Base class of damping schedules; subclasses define ``alpha`` and ``eta``.

    Parameters
    ----------
    t0 : float
        Initial time; ``eta(t0) = 0``.
    """

    t0: float = 0.0
    name = "base"

    def alpha(self, t: float) -> float:  # pragma: no cover - abstract
        """The damping rate alpha(t) >= 0 at time ``t`` (float)."""
        raise NotImplementedError

    def eta(self, t: float) -> float:  # pragma: no cover - abstract
        """eta(t) = int_{t0}^t alpha(s) ds, the integrated damping (float; sigma = exp(-delta eta))."""
        raise NotImplementedError

    def deta(self, t: float, h: float) -> float:
        """Increment ``eta(t + h) - eta(t)`` (computed without cancellation where possible)."""
        return self.eta(t + h) - self.eta(t)

    def sigma(self, t: float, h: float) -> float:
        """Exact damping factor ``exp(-(eta(t+h) - eta(t)))`` over ``[t, t + h]``."""
        return math.exp(-self.deta(t, h))

    @property
    def is_zero(self) -> bool:
        """True when alpha(t) = 0 for every t (no damping at all)."""
        return False


@dataclass(frozen=True)
class NoDamping(Schedule):
    """alpha = 0: conservative Hamiltonian dynamics."""

    name = "none"

    def alpha(self, t):
        return 0.0

    def eta(self, t):
        return 0.0

    def deta(self, t, h):
        return 0.0

    @property
    def is_zero(self):
        return True


@dataclass(frozen=True)
class Constant(Schedule):
    """alpha = a (heavy-ball friction)."""

    a: float = DAMPING.default("a")
    name = "constant"

    def __post_init__(self):
        _check_finite("damping.a", self.a)
        if self.a < 0:
            raise ParameterError("damping.a", "a number >= 0", self.a)

    def alpha(self, t):
        return self.a

    def eta(self, t):
        return self.a * (t - self.t0)

    def deta(self, t, h):
        return self.a * h

    @property
    def is_zero(self):
        return self.a == 0.0


@dataclass(frozen=True)
class Nesterov(Schedule):
    """alpha = r / t (Nesterov / Su-Boyd-Candes damping); needs t0 > 0."""

    r: float = DAMPING.default("r")
    name = "nesterov"

    def __post_init__(self):
        _check_finite("damping.r", self.r)
        if self.r < 0:
            raise ParameterError("damping.r", "a number >= 0", self.r)
        if not self.t0 > 0:
            raise ParameterError(
                "run.t0", "t0 > 0 for the nesterov schedule (alpha = r/t)", self.t0
            )

    def alpha(self, t):
        return self.r / t

    def eta(self, t):
        return self.r * math.log(t / self.t0)

    def deta(self, t, h):
        return self.r * math.log1p(h / t)


@dataclass(frozen=True)
class LogLin(Schedule):
    """alpha = c_log / t + c_lin; needs t0 > 0 when c_log != 0."""

    c_log: float = DAMPING.default("c_log")
    c_lin: float = DAMPING.default("c_lin")
    name = "loglin"

    def __post_init__(self):
        _check_finite("damping.c_log", self.c_log)
        _check_finite("damping.c_lin", self.c_lin)
        if self.c_log < 0 or self.c_lin < 0:
            raise ParameterError(
                "damping.c_log/c_lin", "numbers >= 0", (self.c_log, self.c_lin)
            )
        if self.c_log != 0 and not self.t0 > 0:
            raise ParameterError("run.t0", "t0 > 0 for the loglin schedule with c_log > 0", self.t0)

    def alpha(self, t):
        return (self.c_log / t if self.c_log else 0.0) + self.c_lin

    def eta(self, t):
        out = self.c_lin * (t - self.t0)
        if self.c_log:
            out += self.c_log * math.log(t / self.t0)
        return out

    def deta(self, t, h):
        out = self.c_lin * h
        if self.c_log:
            out += self.c_log * math.log1p(h / t)
        return out

    @property
    def is_zero(self):
        return self.c_log == 0 and self.c_lin == 0


def _check_finite(key, value):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise ParameterError(key, "a finite number", value)


#: Names used in parameter files -> schedule classes.
SCHEDULES: dict[str, type[Schedule]] = {
    "none": NoDamping,
    "constant": Constant,
    "nesterov": Nesterov,
    "loglin": LogLin,
}

#: Parameter keys each schedule accepts (besides ``schedule``).
SCHEDULE_KEYS: dict[str, tuple[str, ...]] = {
    name: tuple(k for k in DAMPING.keys_of(name) if DAMPING.owners[k]) for name in SCHEDULES}


def make_schedule(name: str, t0: float, **params) -> Schedule:
    """Build a schedule from its registry name and parameters.

    Raises
    ------
    ParameterError
        For an unknown name or parameter (the message lists the valid ones).
    """
    if not isinstance(name, str) or name not in SCHEDULES:
        raise ParameterError("damping.schedule", f"one of {sorted(SCHEDULES)}", name)
    allowed = SCHEDULE_KEYS[name]
    for key in params:
        if key not in allowed:
            raise ParameterError(
                f"damping.{key}",
                f"a key of schedule {name!r} (valid: {', '.join(('schedule',) + allowed)})",
                key,
            )
    for key, val in params.items():
        _check_finite(f"damping.{key}", val)
    return SCHEDULES[name](t0=float(t0), **{k: float(v) for k, v in params.items()})


__all__ = ["SCHEDULES", "Constant", "LogLin", "Nesterov", "NoDamping", "Schedule", "make_schedule"]
