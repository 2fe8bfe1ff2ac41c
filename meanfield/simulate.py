"""The one time loop: steps, saves, observers, stop conditions, checkpoints.

:func:`advance` moves a *system* (:mod:`meanfield.systems`: particles ``x, y``,
a grid density, the bilinear flow map) with an integrator, asks it for
energies and diagnostics at every save, hands each save record to its
observers (an in-memory :class:`Recorder`, an HDF5 writer, ...) together
with the state to checkpoint, and stops on the first of: the end time / step
count / oracle budget, a non-finite or blown-up state
(:class:`~meanfield.errors.SimulationError`), a wall-time limit, or a stop
signal (Ctrl-C, SIGTERM, SIGHUP: a checkpoint is written first, then
:class:`~meanfield.errors.Interrupted`, a ``KeyboardInterrupt``, propagates).
A failure inside a step is reported with the loop's step and time. The
per-save diagnostics never stop a run whose state is finite: an energy beyond
the float64 range is stored as +-inf, and :class:`EnergyWatch` appends a
warning to the final status ("finished: warning: ...") for that, for an
energy below the model's known infimum and for a dissipation residual larger
than the energy scale.
Per-step bookkeeping is done by probes: :class:`DissipationResidual`
integrates ``2 alpha K`` between saves. :func:`simulate` is the particle
form ``simulate(model, schedule, integrator, x, y, horizon, ...)``.
"""

from __future__ import annotations

import enum
import math
import signal
import threading
import time
from dataclasses import dataclass, field, fields

import numpy as np

from ._kernels._config import compile_clock, serial_if_small
from ._threads import AdaptiveThreads, serial_blas
from .errors import STOP_SIGNALS, Interrupted, SimulationError
from .steppers import SaveAt, make_stepper
from .systems import particle_system

#: |state| above this counts as a blow-up (well below float64 overflow of products).
BLOWUP = {np.dtype(np.float64): 1e150, np.dtype(np.float32): 1e18}


def _at_step(exc: SimulationError, k: int, t: float, where: str) -> SimulationError:
    """The same failure with the step and time of the loop (a model only knows stage times)."""
    if exc.step is not None:
        return exc
    return SimulationError(f"{where}: {exc}", step=k, t=t)


class EnergyWatch:
    """Checks of the saved energies that warn instead of stopping a run whose state is finite.

    * an energy beyond the float64 range (stored as +-inf or nan);
    * ``energy`` below the model's known lower bound ``model.energy_infimum``
      by more than sqrt(eps) of the energy scale (round-off stays far below);
    * a dissipation residual larger than the energy scale of the first save
      (the energy balance dH/dt = -2 alpha K is then lost: a runaway or a far
      too large step).

    The energy scale is max(|H|, K, |U|, |H - infimum|) at the first save (of
    this run or of the resumed file's last save). Each kind is reported once,
    at its first occurrence, in ``messages``.

    Parameters
    ----------
    infimum : float or None
        The known lower bound of the energy (``model.energy_infimum``), if any.
    dtype : numpy dtype of the state (sets the round-off allowance)
    resume_state : dict or None, ``{"energy", "kinetic"}`` of a resumed run's last save
    """

    def __init__(self, infimum, dtype, resume_state=None):
        self.infimum = infimum
        self.rel = float(np.sqrt(np.finfo(dtype).eps))
        self.scale = None
        self.messages: list[str] = []
        self._kinds: set[str] = set()
        if resume_state is not None and resume_state.get("energy") is not None:
            self._set_scale({"energy": resume_state["energy"], "kinetic": resume_state.get("kinetic", 0.0)})

    def _set_scale(self, energies: dict) -> None:
        vals = [energies.get(k, 0.0) for k in ("energy", "kinetic", "potential")]
        if self.infimum is not None:
            vals.append(energies["energy"] - self.infimum)
        finite = [abs(v) for v in vals if math.isfinite(v)]
        self.scale = max(finite, default=math.inf)

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._kinds:
            self._kinds.add(kind)
            self.messages.append(message)

    def __call__(self, tasks: dict, k: int, t: float) -> None:
        bad = [name for name, v in tasks.items() if np.ndim(v) == 0 and not math.isfinite(v)]
        if bad:
            self._warn("range", f"{', '.join(bad)} beyond the float64 range from step {k} (t = {t:.6g}) on "
                       "(stored as inf or nan; the state itself is finite)")
        if self.scale is None:
            self._set_scale(tasks)
        E = tasks["energy"]
        if self.infimum is not None and E < self.infimum - self.rel * self.scale:
            self._warn("infimum", f"energy {E:.6g} below the known infimum {self.infimum:.6g} at step {k} "
                       f"(t = {t:.6g}): a numerical runaway (reduce the step size)")
        res = tasks.get("dissipation_residual", 0.0)
        if abs(res) > self.scale:
            self._warn("residual", f"dissipation residual {res:.3g} exceeds the energy scale {self.scale:.3g} "
                       f"at step {k} (t = {t:.6g}): the energy balance dH/dt = -2 alpha K is lost "
                       "(a runaway, or a step size far too large)")

    def status(self, status: str) -> str:
        """``status`` with the warnings appended ("finished: warning: ...")."""
        if not self.messages:
            return status
        return status + (": " if status == "finished" else "; ") + "warning: " + "; ".join(self.messages)


class _DeferredInterrupt:
    """Turn the stop signals (SIGINT, SIGTERM, SIGHUP) into a flag checked between steps.

    Kernels update the state in place, so an interrupt in the middle of a step
    would leave it half-updated; deferring it to the end of the step makes the
    saved checkpoint a consistent state. A second signal interrupts at once.
    Handlers are installed from the main thread only (elsewhere Python cannot).
    """

    def __enter__(self):
        self.flag = False
        self.signum = signal.SIGINT
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._old[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.flag:
            raise Interrupted("", signum)
        self.flag = True
        self.signum = signum

    def message(self, k: int, t: float) -> str:
        """The loop's message after its checkpoint of step ``k`` (naming signals but SIGINT)."""
        by = "" if self.signum == signal.SIGINT else f" by {signal.Signals(self.signum).name}"
        return f"interrupted at step {k} (t = {t:.6g}){by}"

    def __exit__(self, *exc):
        for signum, old in self._old.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)
        return False


@dataclass
class Horizon:
    """How long a run lasts: exactly one of ``t1``, ``steps``, ``oracle_calls``.

    Attributes
    ----------
    t0 : float
        Start time.
    h : float
        Step size (the last step is shortened to end exactly at ``t1``).
    """

    t0: float
    h: float
    t1: float | None = None
    steps: int | None = None
    oracle_calls: int | None = None

    def n_steps(self, calls_per_step: int) -> int:
        """The number of steps of this horizon for an integrator making ``calls_per_step`` oracle calls per step."""
        if self.t1 is not None:
            return max(0, math.ceil((self.t1 - self.t0) / self.h - 1e-9))
        if self.steps is not None:
            return int(self.steps)
        return int(self.oracle_calls) // int(calls_per_step)

    def reached(self, k: int, t: float, calls: int, per_step: int | None) -> bool:
        """Whether the run is over after ``k`` steps at time ``t`` with ``calls`` oracle calls.

        ``per_step``: oracle calls per fixed step (the budget is then ``oracle_calls //
        per_step`` steps); None for adaptive methods, whose budget counts calls.
        """
        if self.t1 is not None:
            return t >= self.t1
        if self.steps is not None:
            return k >= self.steps
        return calls >= self.oracle_calls if per_step is None else k >= self.oracle_calls // per_step


@dataclass
class Recorder:
    """In-memory observer: lists of saved scales and tasks, stacked on demand.

    ``keep_bytes`` (None: keep all) drops every task larger than that per save
    (states ``(N, d)``, densities): a run that streams its saves to a file keeps
    only its scalars and moments in memory, and lists the names of the others
    in ``dropped``.
    """

    scales: dict = field(default_factory=dict)
    tasks: dict = field(default_factory=dict)
    keep_bytes: int | None = None
    dropped: list = field(default_factory=list)
    events: dict = field(default_factory=dict)

    def event(self, name: str, t: float, value) -> None:
        """Record an event of the loop (``n_clusters`` changed at ``t``): rows ``[t, value]``."""
        self.events.setdefault(name, []).append((float(t), float(value)))

    def save(self, record: dict) -> None:
        """Record one save: the scales (t, iteration, oracle calls, wall time) and the tasks (arrays)."""
        for k, v in record["scales"].items():
            self.scales.setdefault(k, []).append(v)
        for k, v in record["tasks"].items():
            if self.keep_bytes is not None and np.asarray(v).nbytes > self.keep_bytes:
                if k not in self.dropped:
                    self.dropped.append(k)
                continue
            self.tasks.setdefault(k, []).append(np.array(v, copy=True))

    def event_arrays(self) -> dict:
        """``{name: (E, 2) array}`` of the recorded events."""
        return {k: np.asarray(v, np.float64).reshape(-1, 2) for k, v in self.events.items()}

    def arrays(self) -> tuple[dict, dict]:
        """``(scales, tasks)`` as dicts of numpy arrays, first axis = save index."""
        return (
            {k: np.asarray(v) for k, v in self.scales.items()},
            {k: np.stack(v) if np.ndim(v[0]) else np.asarray(v) for k, v in self.tasks.items()},
        )


@dataclass
class LoopResult:
    """What the loop returns: final state and counters.

    ``state`` holds the system's named arrays; ``x`` and ``y`` are its
    particle positions and momenta (None for systems without them).
    ``status`` is "finished", "stopped: wall time" or "stopped: clusters: ...",
    followed by the warnings of :class:`EnergyWatch` if any (also listed in
    ``warnings``); ``outcome`` is the :class:`Status` without them. ``stats``:
    ``accepted_steps`` and, for adaptive methods, ``rejected_steps``,
    ``jacobians``, ``jvps``, ``factorizations``.
    ``wall_time`` (seconds of computation) leaves out ``compile_time``, the
    seconds numba spent compiling kernels or loading them from its cache
    (both continued across resumes).
    """

    x: np.ndarray | None
    y: np.ndarray | None
    t: float
    iteration: int
    oracle_calls: int
    wall_time: float
    status: str
    state: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    compile_time: float = 0.0
    outcome: Status | None = None
    stats: dict = field(default_factory=dict)


class DissipationResidual:
    """Probe of accelerated runs: ``H(t_s) - H(t_{s-1}) + int 2 alpha K dt`` at every save.

    Parameters
    ----------
    system : system with ``kinetic()`` and ``cheap_kinetic``
    schedule : Schedule
    mode : {"auto", "step", "save", "off"}
        "step" integrates ``2 alpha K`` from K at every step (default when K is
        cheap): composite Simpson when an even number of steps separates two
        saves, trapezoid otherwise; "save" uses the trapezoid over the saves
        only; "off" (or no damping) records ``H(t_s) - H(t_{s-1})``.
    t : float
        Time of the first state.
    resume_state : dict or None
        ``{"energy": H, "kinetic": K}`` of the last save of a resumed run, and
        ``"residual"``: :meth:`get_state` at its checkpoint when that fell between
        two saves (the quadrature then goes on where it stopped).
    """

    #: What :meth:`get_state` returns: the quadrature since the last save.
    STATE = ("H_prev", "K_save", "t_prev", "diss", "diss2", "nsub", "f_prev", "f_prev2", "t_prev2")

    def __init__(self, system, schedule, mode, t, resume_state=None):
        if mode == "auto":
            mode = "step" if system.cheap_kinetic else "save"
        track = mode != "off" and not schedule.is_zero
        self.per_step = track and mode == "step"
        self.per_save = track and mode == "save"
        self.system, self.schedule = system, schedule
        self.H_prev = None if resume_state is None else resume_state.get("energy")
        self.K_save = 0.0 if resume_state is None else resume_state.get("kinetic", 0.0)
        self.t_prev = t
        # trapezoid over single steps (diss) and over pairs of steps (diss2): their
        # Richardson combination is composite Simpson, O(h^4)
        self.diss = self.diss2 = 0.0
        self.nsub = 0
        self.f_prev = self.f_prev2 = self.t_prev2 = None
        self._restored = resume_state is not None and resume_state.get("residual") is not None
        if self._restored:
            for name in self.STATE:
                setattr(self, name, resume_state["residual"][name])

    def get_state(self) -> dict:
        """The quadrature since the last save (JSON-able floats), for a checkpoint between saves."""
        return {name: getattr(self, name) for name in self.STATE}

    def start(self, t) -> None:
        """Called once before the first step, at time ``t``."""
        if self.per_step and not self._restored:
            self.f_prev = 2.0 * self.schedule.alpha(t) * self.system.kinetic()

    def after_step(self, t, t_next) -> None:
        """Add the step ``[t, t_next]`` to the quadrature (the system is at ``t_next``)."""
        if not self.per_step:
            return
        f1 = 2.0 * self.schedule.alpha(t_next) * self.system.kinetic()
        self.diss += 0.5 * (t_next - t) * (self.f_prev + f1)
        self.nsub += 1
        if self.nsub % 2 == 0:
            self.diss2 += 0.5 * (t_next - self.t_prev2) * (self.f_prev2 + f1)
        else:
            self.f_prev2, self.t_prev2 = self.f_prev, t
        self.f_prev = f1

    def record(self, t, energies) -> dict:
        """The residual since the previous save; starts the next interval."""
        H = energies["energy"]
        if self.H_prev is None:
            residual = 0.0
        else:
            integral = self.diss
            if self.nsub >= 2 and self.nsub % 2 == 0:
                integral = (4.0 * self.diss - self.diss2) / 3.0
            if self.per_save:
                a0, a1 = self.schedule.alpha(self.t_prev), self.schedule.alpha(t)
                integral = (t - self.t_prev) * (a0 * self.K_save + a1 * energies["kinetic"])
            residual = H - self.H_prev + integral
        self.H_prev, self.K_save, self.t_prev = H, energies["kinetic"], t
        self.diss = self.diss2 = 0.0
        self.nsub = 0
        return {"dissipation_residual": residual}


class _Saver:
    """Builds a save record (scales and tasks) and hands it, and the loop's state, to the observers."""

    def __init__(self, system, schedule, integrator, stepper, observers, probes, save_fields,
                 start: LoopState, resumed: bool, dissipation, energy_infimum, events):
        last = dict(start.last_save or {}, residual=start.residual) if resumed else None
        # no energy balance dH/dt = -2 alpha K to check when a block adds a non-gradient field (an MLP)
        self.residual = (DissipationResidual(system, schedule, dissipation, start.t, last)
                         if system.accelerated and system.energy_balance else None)
        self.watch = EnergyWatch(energy_infimum, system.dtype, last)
        self.system, self.integrator, self.stepper, self.observers = system, integrator, stepper, observers
        self.probes, self.save_fields, self.events = probes, save_fields, events
        self.t_start = time.perf_counter() - start.wall_time
        self.calls0 = system.oracle_calls - start.oracle_calls
        self.clock = compile_clock()  # the first calls of kernels compile them: not part of wall_time
        self.compile0 = start.compile_time
        self.last_wall = start.wall_time  # wall_time of the newest save
        self.last_save = start.last_save
        integrator.reset()
        if start.integrator:
            integrator.set_state(start.integrator)

    def calls(self) -> int:
        """Oracle calls of the run so far (resumes included)."""
        return self.system.oracle_calls - self.calls0

    def elapsed(self) -> float:
        """Seconds of computation: the wall clock less numba's compilation (``compile_time``)."""
        return time.perf_counter() - self.t_start - self.clock.seconds

    def compile_time(self) -> float:
        """Seconds numba spent compiling (or loading cached kernels) in this run, resumes included."""
        return self.compile0 + self.clock.seconds

    def record(self, k, t) -> dict:
        system = self.system
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                energies = system.energies()
            diagnostics = system.diagnostics()
        except SimulationError as exc:
            raise _at_step(exc, k, t, f"at the save of step {k} (t = {t:.6g})") from None
        tasks = dict(energies)
        if self.residual is not None:
            tasks.update(self.residual.record(t, energies))
        self.watch(tasks, k, t)
        tasks.update(diagnostics)
        for probe in self.probes:
            tasks.update(probe(t, *system.probe_args(), tasks))
        tasks.update(system.fields(self.save_fields))
        self.last_wall = float(self.elapsed())
        self.last_save = {"energy": float(energies["energy"]), "kinetic": float(energies.get("kinetic", 0.0))}
        scales = {"sim_time": float(t), "iteration": int(k), "oracle_calls": int(self.calls()),
                  "wall_time": self.last_wall}
        if self.stepper.adaptive:
            scales["h"] = float(self.stepper.h_used)
        scales.update(system.counters())  # e.g. mlp_calls of transformer blocks
        return {"scales": scales, "tasks": tasks, "attrs": {"compile_time": self.compile_time()}}

    def loop_state(self, k, t, saved: bool) -> LoopState:
        """The loop's state after step ``k`` (``saved``: it is the newest save)."""
        return LoopState(
            t=float(t), step=int(k), oracle_calls=int(self.calls()),
            wall_time=self.last_wall if saved else self.elapsed(), compile_time=self.compile_time(),
            stepper=self.stepper.get_state(), integrator=self.integrator.get_state(),
            last_save=self.last_save,
            residual=None if saved or self.residual is None else self.residual.get_state(),
            n_clusters=None if self.events is None else self.events.last,
            wall_time_since_save=0.0 if saved else self.elapsed() - self.last_wall)

    def _checkpoint(self, state: LoopState) -> None:
        for obs in self.observers:
            if hasattr(obs, "checkpoint"):
                obs.checkpoint(self.system.state, state.t, state.step, state.oracle_calls,
                               state.integrator, loop_state=state.to_json())

    def __call__(self, k, t) -> None:
        rec = self.record(k, t)
        for obs in self.observers:
            obs.save(rec)
        self._checkpoint(self.loop_state(k, t, saved=True))

    def checkpoint(self, k, t) -> None:
        """Hand the state after step ``k`` to the observers' checkpoints without saving it.

        The run stops between two saves (Ctrl-C, wall time): the file keeps its save
        grid, and the loop state carries what a resume needs to go on exactly as the
        uninterrupted run (the dissipation quadrature since the last save, the clocks).
        """
        self._checkpoint(self.loop_state(k, t, saved=False))


def _check_state(system, k, t, limit) -> None:
    """SimulationError when the state holds a NaN, an inf or an entry above ``limit``."""
    worst = system.max_abs()
    if worst <= limit:
        return
    if worst != worst:
        what = "NaN"
    elif math.isinf(worst):
        what = "overflow (inf)"
    else:
        what = f"blow-up (|state| = {worst:.3g})"
    raise SimulationError(f"{what} in the state at step {k} (t = {t:.6g}); "
                          f"the run stopped and everything saved before is kept", step=k, t=t)


class Status(str, enum.Enum):
    """How a run ended (stored as the string in the file's ``status`` attribute)."""

    FINISHED = "finished"
    WALL_TIME = "stopped: wall time"
    CLUSTERS = "stopped: clusters"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    FAILED = "failed"

    @classmethod
    def of(cls, text: str) -> Status | None:
        """The status a file's ``status`` string starts with ("finished: warning: ..." is FINISHED)."""
        for status in sorted(cls, key=lambda s: -len(s.value)):
            if text == status.value or text.startswith(status.value + ":") or text.startswith(status.value + ";"):
                return status
        return None


@dataclass
class LoopState:
    """Exactly what a checkpoint holds beside the system's arrays: resume is "load it, call the loop".

    Attributes
    ----------
    t : float
    step : int
        Accepted steps so far.
    oracle_calls : int
    wall_time, compile_time : float
        Seconds of computation and of numba compilation so far.
    stepper : dict
        The stepper's state (grid index, or controller + rejected steps).
    integrator : dict
        ``integrator.get_state()`` (arrays: multistep history, FSAL derivative, ...).
    last_save : dict
        ``{"energy", "kinetic"}`` of the last save (energy watch, dissipation residual).
    residual : dict or None
        The dissipation quadrature since the last save, when the state is not a save.
    n_clusters : int or None
        The cluster count of the event tracker.
    wall_time_since_save : float
        Of ``wall_time``, the seconds since the last save (a resume adds them to the file's clock).
    """

    t: float
    step: int = 0
    oracle_calls: int = 0
    wall_time: float = 0.0
    compile_time: float = 0.0
    stepper: dict = field(default_factory=dict)
    integrator: dict = field(default_factory=dict)
    last_save: dict | None = None
    residual: dict | None = None
    n_clusters: int | None = None
    wall_time_since_save: float = 0.0

    def to_json(self) -> dict:
        """The JSON-able part: every field but the integrator's arrays."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "integrator"}


def _progress_of(horizon: Horizon, save_at: SaveAt, nsteps, progress):
    """``report(k, t)`` for ``progress(done, total)``: steps of a fixed grid, else per mille of time.

    On a logarithmic save clock (saves spanning more than two decades) the per
    mille is of log-time, so a run to t = 1e8 does not sit at 0% for its first
    decades. A callback with an attribute ``unit`` is told which
    (``"step"``, ``"time"``, ``"log time"``) and one with ``at_time(t)`` gets the time.
    """
    if progress is None:
        return None
    first = save_at.times[0] if save_at.times else 0.0
    if nsteps is not None and not save_at.times or horizon.t1 is None:
        unit, total = "step", nsteps if nsteps is not None else (horizon.steps or 0)
        done = lambda k, t: k
    elif first > 0 and horizon.t1 / first > 100:
        a, t1 = max(horizon.t0, first / 10), float(horizon.t1)
        unit, total = "log time", 1000
        done = lambda k, t: min(1000, int(1000 * math.log(max(t, a) / a) / math.log(t1 / a)))
    else:
        t0, t1 = horizon.t0, float(horizon.t1)
        unit, total = "time", 1000
        done = lambda k, t: min(1000, int(1000 * (t - t0) / (t1 - t0)))
    if hasattr(progress, "unit"):
        progress.unit = unit
    at_time = getattr(progress, "at_time", None)

    def report(k, t):
        if at_time is not None:
            at_time(t)
        progress(done(k, t), total)
    return report


def _stop_requested(interrupt, wall_start: float, max_wall_time: float | None) -> Status:
    """FINISHED (go on), or why the loop stops between steps: a stop signal or the wall-time budget."""
    if interrupt.flag:
        return Status.INTERRUPTED
    if max_wall_time is not None and time.perf_counter() - wall_start > max_wall_time:
        return Status.WALL_TIME
    return Status.FINISHED


def advance(system, schedule, integrator, horizon: Horizon, *, save_at: SaveAt | None = None,
            save_fields=("x", "y"), observers=(), progress=None, dissipation: str = "auto",
            check_every: int | None = None, max_wall_time: float | None = None, start: LoopState | None = None,
            probes=(), energy_infimum: float | None = None, h0: float | None = None, events=None,
            save_every: int | None = None) -> LoopResult:
    """Integrate ``system`` over ``horizon`` and report saves to ``observers``.

    Parameters
    ----------
    system : ParticleSystem or a pde system (see :mod:`meanfield.systems`)
        Owns the state; updated in place.
    schedule : Schedule
    integrator : Integrator
        Fixed-step, or adaptive (``integrator.adaptive``: error-controlled steps).
    horizon : Horizon
    save_at : SaveAt
        When to save (default: every step); the initial and final states are always saved.
    save_fields : tuple of str
        Which state arrays a particle system stores at every save (``"x"``, ``"y"``).
    observers : sequence
        Objects with ``save(record)`` and optionally
        ``checkpoint(state, t, iteration, oracle_calls, integrator_state, loop_state=None)``
        (``state`` is ``{name: array}``, ``loop_state`` :meth:`LoopState.to_json`) and
        ``event(name, t, value)``.
    progress : callable(done, total) or None
        Steps done of a fixed-step run; per mille of the time (log time on a
        logarithmic save clock) of an adaptive one.
    dissipation : {"auto", "step", "save", "off"}
        Quadrature of the dissipation residual (see :class:`DissipationResidual`).
    check_every : int or None
        Steps between finiteness checks (default: every step).
    max_wall_time : float or None
        Seconds of this call after which the run stops with status "stopped: wall time".
    start : LoopState or None
        Where a resumed run goes on (its system holds the checkpoint's arrays); the
        state is then not saved again.
    probes : sequence of callables ``probe(t, x, y, tasks) -> dict``
    energy_infimum : float or None
        A known lower bound of the energy (:class:`EnergyWatch`).
    h0 : float or None
        First step of an adaptive method (None: chosen automatically).
    events : ClusterEvents or None
        Tracks ``n_clusters`` after every step, records its changes, may stop the run.
    save_every : int or None
        Shorthand for ``save_at=SaveAt(every=save_every)``.

    Returns
    -------
    LoopResult

    Raises
    ------
    SimulationError
        When the state becomes non-finite or blows up, or an adaptive step underflows.
    """
    save_at = save_at or SaveAt(every=max(1, int(save_every or 1)))
    resumed = start is not None
    start = start or LoopState(t=float(horizon.t0))
    stepper = make_stepper(integrator, schedule, horizon, h0)
    per_step = None if stepper.adaptive else integrator.oracle_calls
    report = _progress_of(horizon, save_at, None if per_step is None else horizon.n_steps(per_step), progress)
    check_every, limit = max(1, int(check_every or 1)), BLOWUP.get(system.dtype, 1e150)
    t_end = math.inf if horizon.t1 is None else float(horizon.t1)
    t, k = start.t, start.step
    system.begin(start.step, horizon.t0)  # systems whose step depends on the time (per-layer weights)
    save = _Saver(system, schedule, integrator, stepper, observers, probes, save_fields, start, resumed,
                  dissipation, energy_infimum, events)
    residual, status = save.residual, Status.FINISHED
    wall_start = time.perf_counter()  # max_wall_time budgets this call, not the file's total
    with save.clock, _DeferredInterrupt() as interrupt, serial_if_small(system.size, system.serial_below), \
            serial_blas(system.size, system.serial_below), AdaptiveThreads(system) as threads:
        stepper.start(system, t, k, start.stepper if resumed else None)
        if events is not None:
            events.start(system, t, start.n_clusters, observers)
        if not resumed:
            save(k, t)
        if residual is not None:
            residual.start(t)
        while not horizon.reached(k, t, save.calls(), per_step):
            threads.tick()  # on a busy machine one thread can beat all (meanfield._threads)
            try:
                t_next = stepper.step(system, t, min(t_end, save_at.next_time(t)))
            except SimulationError as exc:
                raise _at_step(exc, k + 1, t, f"in step {k + 1} (from t = {t:.6g})") from None
            k += 1
            last = horizon.reached(k, t_next, save.calls(), per_step)
            if k % check_every == 0 or last:
                _check_state(system, k, t_next, limit)
            if residual is not None:
                residual.after_step(t, t_next)
            t_prev, t = t, t_next
            stop = events is not None and events.after_step(system, stepper, t_prev, t)
            saved = stop or last or save_at.due(k, t)
            if saved:
                save(k, t)
            if report is not None:
                report(k, t)
            status = Status.CLUSTERS if stop else _stop_requested(interrupt, wall_start, max_wall_time)
            if status is not Status.FINISHED:
                if not saved:  # between two saves: checkpoint the state without saving it
                    save.checkpoint(k, t)
                if interrupt.flag:
                    raise Interrupted(interrupt.message(k, t), interrupt.signum, step=k)
                break
    state = system.state
    text = status.value if status is not Status.CLUSTERS else f"{status.value}: {events.describe()}"
    return LoopResult(x=state.get("x"), y=state.get("y"), t=t, iteration=k,
                      oracle_calls=system.oracle_calls - save.calls0, wall_time=save.elapsed(),
                      status=save.watch.status(text), state=state, warnings=save.watch.messages,
                      compile_time=save.compile_time(), outcome=status,
                      stats={"accepted_steps": k, **stepper.stats()} if stepper.adaptive else {})


def simulate(model, schedule, integrator, x, y, horizon: Horizon, **options) -> LoopResult:
    """Integrate particles from ``(x, y)``: :func:`advance` of a :class:`ParticleSystem`.

    Parameters
    ----------
    model : Model
    schedule : Schedule
    integrator : Integrator
    x : (N, d) array, positions (updated in place)
    y : (N, d) array or None, momenta for accelerated dynamics (updated in place)
    horizon : Horizon
    **options
        The keyword options of :func:`advance` (save_every, save_fields,
        observers, progress, dissipation, check_every, max_wall_time, the
        resume counters, probes, energy_infimum: by default the model's
        ``energy_floor(x)``).

    Returns
    -------
    LoopResult
    """
    options.setdefault("energy_infimum", model.energy_floor(x))
    return advance(particle_system(model, x, y), schedule, integrator, horizon, **options)
