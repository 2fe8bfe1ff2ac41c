"""The one time loop: steps, saves, observers, stop conditions, checkpoints.

``simulate`` advances a state with an integrator, asks the model for energies
and diagnostics at every save, hands each save record to its observers (an
in-memory :class:`Recorder`, an HDF5 writer, ...), and stops on the first of:
the end time / step count / oracle budget, a non-finite or blown-up state
(:class:`~meanfield.errors.SimulationError`), a wall-time limit, or Ctrl-C
(a checkpoint is written first, then ``KeyboardInterrupt`` propagates).
A failure inside a step is reported with the loop's step and time. The
per-save diagnostics never stop a run whose state is finite: an energy beyond
the float64 range is stored as +-inf, and :class:`EnergyWatch` appends a
warning to the final status ("finished: warning: ...") for that, for an
energy below the model's known infimum and for a dissipation residual larger
than the energy scale.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ._kernels._config import chunk_bounds, serial_if_small
from ._kernels.checks import max_abs_or_nan
from .errors import SimulationError

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
    model : Model
    x : (N, d) the state the loop starts from (for the infimum)
    resume_state : dict or None, ``{"energy", "kinetic"}`` of a resumed run's last save
    """

    def __init__(self, model, x, resume_state=None):
        self.infimum = model.energy_infimum(x)
        self.rel = float(np.sqrt(np.finfo(x.dtype).eps))
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
    """Turn SIGINT into a flag checked between steps (main thread only).

    Kernels update the state in place, so an interrupt in the middle of a step
    would leave it half-updated; deferring it to the end of the step makes the
    saved checkpoint a consistent state. A second Ctrl-C interrupts at once.
    """

    def __enter__(self):
        self.flag = False
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
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
        if self.t1 is not None:
            return max(0, math.ceil((self.t1 - self.t0) / self.h - 1e-9))
        if self.steps is not None:
            return int(self.steps)
        return int(self.oracle_calls) // int(calls_per_step)

    def time_of(self, k: int, n: int) -> float:
        """Time after ``k`` steps (no accumulated round-off; the last step lands on t1)."""
        if self.t1 is not None and k >= n:
            return float(self.t1)
        return self.t0 + k * self.h


@dataclass
class Recorder:
    """In-memory observer: lists of saved scales and tasks, stacked on demand."""

    scales: dict = field(default_factory=dict)
    tasks: dict = field(default_factory=dict)

    def save(self, record: dict) -> None:
        for k, v in record["scales"].items():
            self.scales.setdefault(k, []).append(v)
        for k, v in record["tasks"].items():
            self.tasks.setdefault(k, []).append(np.array(v, copy=True))

    def arrays(self) -> tuple[dict, dict]:
        """``(scales, tasks)`` as dicts of numpy arrays, first axis = save index."""
        return (
            {k: np.asarray(v) for k, v in self.scales.items()},
            {k: np.stack(v) if np.ndim(v[0]) else np.asarray(v) for k, v in self.tasks.items()},
        )


@dataclass
class LoopResult:
    """What the loop returns: final state and counters.

    ``status`` is "finished" or "stopped: wall time", followed by the
    warnings of :class:`EnergyWatch` if any (also listed in ``warnings``).
    """

    x: np.ndarray
    y: np.ndarray | None
    t: float
    iteration: int
    oracle_calls: int
    wall_time: float
    status: str
    warnings: list = field(default_factory=list)


def simulate(
    model,
    schedule,
    integrator,
    x,
    y,
    horizon: Horizon,
    *,
    save_every: int = 1,
    save_fields=("x", "y"),
    observers=(),
    progress=None,
    dissipation: str = "auto",
    check_every: int | None = None,
    max_wall_time: float | None = None,
    start_step: int = 0,
    start_oracle_calls: int = 0,
    start_wall_time: float = 0.0,
    resume_state: dict | None = None,
    integrator_state: dict | None = None,
    probes=(),
) -> LoopResult:
    """Integrate from ``(x, y)`` and report saves to ``observers``.

    Parameters
    ----------
    model : Model
    schedule : Schedule
    integrator : Integrator
    x : (N, d) array, positions (updated in place)
    y : (N, d) array or None, momenta for accelerated dynamics (updated in place)
    horizon : Horizon
    save_every : int
        Steps between saves; the initial and final states are always saved.
    save_fields : tuple of str
        Which of ``"x"``, ``"y"`` to store at every save.
    observers : sequence
        Objects with ``save(record)`` and optionally
        ``checkpoint(x, y, t, iteration, calls, integrator_state)``.
    progress : callable(done, total) or None
    dissipation : {"auto", "step", "save", "off"}
        How the integral of ``2 alpha K`` in the dissipation residual
        ``H(t_s) - H(t_{s-1}) + int 2 alpha K dt`` is computed: from K at
        every step ("step", the default when the model's kinetic energy is
        cheap; composite Simpson when an even number of steps separates two
        saves, trapezoid otherwise) or from the saves only ("save", trapezoid).
    check_every : int or None
        Steps between finiteness checks (default: every step).
    max_wall_time : float or None
        Seconds after which the run stops early with status "stopped: wall time".
    start_step, start_oracle_calls, start_wall_time : int, int, float
        Counters of a resumed run (the state passed in is the one after ``start_step`` steps).
    resume_state : dict or None
        ``{"energy": H, "kinetic": K}`` of the last save of a resumed run; the
        initial state is then not saved again.
    integrator_state : dict or None
        What ``integrator.get_state()`` returned at the checkpoint (multistep history).
    probes : sequence of callables ``probe(t, x, y, tasks) -> dict``
        Extra diagnostics added to every save record (e.g. the moment ODE).

    Returns
    -------
    LoopResult

    Raises
    ------
    SimulationError
        When the state becomes non-finite or blows up; everything saved before stays saved.
    """
    accelerated = model.accelerated
    if accelerated and y is None:
        raise ValueError("accelerated dynamics need momenta y")
    n = x.shape[0]
    nsteps = horizon.n_steps(integrator.oracle_calls)
    save_every = max(1, int(save_every))
    check_every = 1 if check_every is None else max(1, int(check_every))
    if dissipation == "auto":
        dissipation = "step" if model.cheap_kinetic else "save"
    track_diss = accelerated and dissipation != "off" and not schedule.is_zero

    bounds = chunk_bounds(n)
    partial = np.empty(bounds.shape[0] - 1)
    limit = BLOWUP.get(np.dtype(x.dtype), 1e150)

    t_start = time.perf_counter() - start_wall_time
    calls0 = model.oracle_calls - start_oracle_calls
    # dissipation quadrature: trapezoid over single steps (diss) and over pairs of
    # steps (diss2); their Richardson combination is composite Simpson, O(h^4)
    state = {"H_prev": None, "diss": 0.0, "diss2": 0.0, "nsub": 0, "f_prev": None, "f_prev2": None,
             "t_prev": horizon.time_of(start_step, nsteps), "t_prev2": None, "K_save": 0.0}
    if resume_state is not None:
        state["H_prev"] = resume_state.get("energy")
        state["K_save"] = resume_state.get("kinetic", 0.0)

    watch = EnergyWatch(model, x, resume_state)

    def make_record(k, t):
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                energies = model.energies(x, y)
        except SimulationError as exc:
            raise _at_step(exc, k, t, f"at the save of step {k} (t = {t:.6g})") from None
        tasks = dict(energies)
        if accelerated:
            H = energies["energy"]
            if state["H_prev"] is None:
                tasks["dissipation_residual"] = 0.0
            else:
                integral = state["diss"]
                if state["nsub"] >= 2 and state["nsub"] % 2 == 0:
                    integral = (4.0 * state["diss"] - state["diss2"]) / 3.0
                if track_diss and dissipation == "save":
                    a0 = schedule.alpha(state["t_prev"])
                    a1 = schedule.alpha(t)
                    integral = (t - state["t_prev"]) * (a0 * state["K_save"] + a1 * energies["kinetic"])
                tasks["dissipation_residual"] = H - state["H_prev"] + integral
            state["H_prev"] = H
            state["K_save"] = energies["kinetic"]
            state["diss"] = 0.0
            state["diss2"] = 0.0
            state["nsub"] = 0
            state["t_prev"] = t
        watch(tasks, k, t)
        tasks.update(model.diagnostics(x, y))
        for probe in probes:
            tasks.update(probe(t, x, y, tasks))
        if "x" in save_fields:
            tasks["x"] = x
        if accelerated and "y" in save_fields:
            tasks["y"] = y
        return {
            "scales": {
                "sim_time": float(t),
                "iteration": int(k),
                "oracle_calls": int(model.oracle_calls - calls0),
                "wall_time": float(time.perf_counter() - t_start),
            },
            "tasks": tasks,
        }

    def emit(k, t):
        rec = make_record(k, t)
        for obs in observers:
            obs.save(rec)
            if hasattr(obs, "checkpoint"):
                obs.checkpoint(x, y, t, k, model.oracle_calls - calls0, integrator.get_state())

    def check(k, t):
        worst = max_abs_or_nan(x, bounds, partial)
        if accelerated and worst == worst:  # not NaN yet: y may hold one (max() would skip it)
            worst_y = max_abs_or_nan(y, bounds, partial)
            worst = worst_y if not worst_y <= worst else worst
        if not (worst <= limit):
            if worst != worst:
                what = "NaN"
            elif math.isinf(worst):
                what = "overflow (inf)"
            else:
                what = f"blow-up (|state| = {worst:.3g})"
            raise SimulationError(
                f"{what} in the state at step {k} (t = {t:.6g}); "
                f"the run stopped and everything saved before is kept",
                step=k,
                t=t,
            )

    integrator.reset()
    if integrator_state:
        integrator.set_state(integrator_state)
    t = horizon.time_of(start_step, nsteps)
    if resume_state is None:
        emit(start_step, t)
    if track_diss and dissipation == "step":
        state["f_prev"] = 2.0 * schedule.alpha(t) * model.kinetic(x, y)
    status = "finished"
    k = start_step
    with _DeferredInterrupt() as interrupt, serial_if_small(n, model.serial_below):
        for k in range(start_step + 1, nsteps + 1):
            t_next = horizon.time_of(k, nsteps)
            h = t_next - t
            try:
                x, y = integrator.step(model, schedule, t, h, x, y)
                model.project(x, y)
            except SimulationError as exc:
                raise _at_step(exc, k, t, f"in step {k} (from t = {t:.6g})") from None
            if k % check_every == 0 or k == nsteps:
                check(k, t_next)
            if track_diss and dissipation == "step":
                f1 = 2.0 * schedule.alpha(t_next) * model.kinetic(x, y)
                state["diss"] += 0.5 * h * (state["f_prev"] + f1)
                state["nsub"] += 1
                if state["nsub"] % 2 == 0:
                    state["diss2"] += 0.5 * (t_next - state["t_prev2"]) * (state["f_prev2"] + f1)
                else:
                    state["f_prev2"], state["t_prev2"] = state["f_prev"], t
                state["f_prev"] = f1
            t = t_next
            saved = k % save_every == 0 or k == nsteps
            if saved:
                emit(k, t)
            if progress is not None:
                progress(k, nsteps)
            if interrupt.flag or (max_wall_time is not None and time.perf_counter() - t_start > max_wall_time):
                # stop between steps, where the state is consistent: save it, then report
                if not saved:
                    emit(k, t)
                if interrupt.flag:
                    raise KeyboardInterrupt(f"interrupted at step {k} (t = {t:.6g})")
                status = "stopped: wall time"
                break
    return LoopResult(
        x=x, y=y, t=t, iteration=k, oracle_calls=model.oracle_calls - calls0,
        wall_time=time.perf_counter() - t_start, status=watch.status(status), warnings=watch.messages,
    )
