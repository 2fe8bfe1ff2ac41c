"""Exception types with messages a user can act on."""

from __future__ import annotations

import math as _math
import numbers as _numbers
import signal as _signal


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ParameterError(ValueError):
    """A bad input: names the file (when known), the key, what was expected and what was found.

    Parameters
    ----------
    key : str
        Dotted parameter key, e.g. ``"integrator.h"``, or an option (``"-o"``); a
        parenthesized key (``"(file)"``, ``"(syntax)"``) means the whole file and is not shown.
    expected : str
        What a valid value looks like.
    found : object
        The offending value (shortened in the message).
    file : str, optional
        Parameter file the value came from; can be attached later with :meth:`in_file`.
    """

    def __init__(self, key: str, expected: str, found=None, file: str | None = None):
        self.key = key
        self.expected = expected
        self.found = found
        self.file = file
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.file}: " if self.file else ""
        # "(file)", "(syntax)", ...: the whole file is at fault, not a key in it
        key = "" if str(self.key).startswith("(") else f"[{self.key}] "
        found = getattr(self, "found_text", None) or _short(self.found)
        return f"{where}{key}expected {self.expected}, found {found}"

    def as_default(self) -> ParameterError:
        """Return the same error saying that the value found is a default the user did not write."""
        self.found_text = f"{_short(self.found)} (the default: {self.key} is not set)"
        self.args = (self._message(),)
        return self

    def in_file(self, file: str | None) -> ParameterError:
        """Return the same error with ``file`` attached (keeps an existing one)."""
        if file and not self.file:
            self.file = str(file)
            self.args = (self._message(),)
        return self


def is_real(value, *, integer: bool = False) -> bool:
    """Whether ``value`` is a finite real number (an integer with ``integer``); a bool is not.

    An integer beyond the float range is not finite here (``math.isfinite`` would raise).
    """
    if isinstance(value, bool) or not isinstance(value, _numbers.Integral if integer else _numbers.Real):
        return False
    try:
        return _math.isfinite(value)
    except OverflowError:
        return False


def check_real(key: str, value, expected: str, ok=None, *, integer: bool = False):
    """``value`` as a float (an int with ``integer``) if it is a finite real number with ``ok(value)``.

    The one check behind every numeric parameter: a bool is not a number (TOML's
    ``true`` is not 1), nor is NaN or inf.

    Raises
    ------
    ParameterError
        ``ParameterError(key, expected, value)`` otherwise.
    """
    if not is_real(value, integer=integer) or (ok is not None and not ok(value)):
        raise ParameterError(key, expected, value)
    return int(value) if integer else float(value)


class SimulationError(RuntimeError):
    """A run that failed numerically (NaN, overflow, blow-up); says at which step and time."""

    def __init__(self, message: str, step: int | None = None, t: float | None = None):
        self.step = step
        self.t = t
        super().__init__(message)


class NoSpaceError(SimulationError):
    """The output file's disk is full: the run stopped before a write that would not fit.

    The file keeps every save made before and its newest checkpoint (a write
    that fails half-way is never started), so it resumes once space is freed.
    A command reports it in one line with the step and time and exits with status 1.
    """


#: Signals a run treats as Ctrl-C (finish the step, checkpoint, exit with status 128 + signal
#: number): SIGTERM and SIGHUP are what batch systems (SLURM, Kubernetes) and closing terminals
#: send before a kill.
STOP_SIGNALS = tuple(getattr(_signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(_signal, name))


class Interrupted(KeyboardInterrupt):
    """A run or command stopped by a signal of :data:`STOP_SIGNALS` (Ctrl-C, SIGTERM, SIGHUP).

    Parameters
    ----------
    message : str
        ``"interrupted at step k (t = ...)"`` when the time loop wrote a checkpoint first.
    signum : int
        The signal; a command exits with status ``128 + signum`` (130 for Ctrl-C).
    step : int or None
        The step whose checkpoint the time loop wrote before raising (None: stopped
        elsewhere, nothing to resume from this stop).
    """

    def __init__(self, message: str = "", signum: int = _signal.SIGINT, step: int | None = None):
        self.signum = int(signum)
        self.step = None if step is None else int(step)
        super().__init__(message)

    @property
    def signame(self) -> str:
        """The signal's name, e.g. ``"SIGTERM"``."""
        return _signal.Signals(self.signum).name


def raise_interrupted(signum, frame=None):
    """Raise :class:`Interrupted` for ``signum`` (as Python's SIGINT handler does)."""
    raise Interrupted("", signum)
