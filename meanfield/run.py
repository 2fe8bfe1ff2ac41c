"""The Python API: build a run from a dict or a TOML file, simulate, get arrays back.

Example
-------
>>> import meanfield
>>> run = meanfield.Run({"model": {"d": 2}, "integrator": {"h": 0.05},
...                      "run": {"steps": 10}, "initial": {"n": 100}})
>>> res = run.simulate()
>>> res["energy"].shape
(11,)

The CLI (``meanfield run``) is a thin layer over :class:`Run`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import initial as _initial
from . import schema
from .errors import ParameterError
from .initial import initial_state
from .integrators import make_integrator
from .io import config as _config
from .io.reader import SavedTasks, saved_array
from .io.runfile import check_output_path
from .io.writer import HDF5Writer
from .models import make_model
from .models._params import config_path
from .schedules import SCHEDULE_KEYS, make_schedule
from .simulate import Horizon, LoopResult, Recorder, Status, advance
from .steppers import SaveAt
from .systems import particle_system


@dataclass(repr=False)
class RunResult:
    """Trajectory and diagnostics of a finished run, as arrays.

    Attributes
    ----------
    scales : dict of (T,) arrays
        ``sim_time``, ``iteration``, ``oracle_calls``, ``wall_time`` of each save.
    tasks : mapping of (T, ...) arrays
        ``energy``, ``potential``, ``mean (T, d)``, ``cov (T, d, d)``, ``x (T, N, d)``, ...;
        a run that wrote a file reads its large tasks (states, densities) from it
        when first used (they were streamed there, not kept in memory).
    x, y : (N, d) arrays
        Final particle state (``y`` is None for first-order dynamics; both
        None for pde runs, whose final state is in ``state``).
    config : dict
        The fully resolved parameters.
    state : dict of arrays
        Final named state of the system (``x``, ``y``; ``density``; ``flow_x``, ``flow_y``).
    grid : dict of (M,) arrays
        Cell centres of a grid run (``theta`` or ``x``), empty otherwise.
    path : str or None
        The HDF5 file written, if any.
    attrs : dict
        File attributes of the run (``integrator_order``, ``energy_infimum``, ...) and
        ``compile_time``: seconds numba spent compiling kernels, not counted in ``wall_time``.
    t_end : float or None
        Time of the final state (``x``, ``y``, ``state``): the last save's, or later when the
        run stopped between two saves (Ctrl-C, ``run.max_wall_time``; saves keep their grid).
    events : dict of (E, 2) arrays
        Rows ``[t, value]`` of the loop's events: ``n_clusters`` (the times the cluster
        count changed, and the new count) of sphere runs that track it.
    """

    scales: dict
    tasks: dict
    x: np.ndarray
    y: np.ndarray | None
    config: dict
    status: str
    oracle_calls: int
    wall_time: float
    path: str | None = None
    attrs: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    t_end: float | None = None
    events: dict = field(default_factory=dict)

    @property
    def t(self) -> np.ndarray:
        """Save times, shape ``(T,)``."""
        return self.scales["sim_time"]

    def __getitem__(self, name):
        return saved_array(self.tasks, self.scales, name)

    def __contains__(self, name):
        return name in self.tasks or name in self.scales

    def to_xarray(self):
        """The saves as an ``xarray.Dataset`` (see :meth:`meanfield.Trajectory.to_xarray`)."""
        from .io.xr import to_dataset

        return to_dataset(self)

    def __repr__(self) -> str:
        # shapes, not the arrays: a result holds every save of every particle
        m = schema.typed(self.config).model
        shapes = ", ".join(f"{k}: {np.shape(v)}" for k, v in self.tasks.items())
        state = ", ".join(f"{k}={np.shape(v)}" for k, v in self.state.items() if v is not None)
        times = f"t = {self.t[0]:.6g}..{self.t[-1]:.6g}" if len(self.t) else "no saves"
        return (f"RunResult({m.name}/{m.dynamics}, status={self.status!r}, "
                f"{len(self.t)} saves ({times}), state {state or 'none'}, "
                f"oracle_calls={self.oracle_calls}, path={self.path!r}, tasks {{{shapes}}})")


class Run:
    """A validated, ready-to-simulate run.

    Parameters
    ----------
    config : dict, str, os.PathLike or None
        A parameter dict (sections as in docs/parameters.md), a path to a TOML file,
        or None for the built-in default example.
    overrides : sequence of str, or dict
        ``"section.key=value"`` overrides (TOML values), applied after the file, or a dict
        ``{"section.key": value}``. ``"section={key = value, ...}"`` replaces a whole section;
        switching a choice (``damping.schedule``, ``initial.law``, ...) drops the old choice's
        keys (see :data:`CHOICES`).
    base_dir : str or None
        Folder that relative file names of a dict ``config`` (``initial.path``,
        ``model.mlp``, ``model.A`` files, ...) are taken from; None: the current
        directory. A TOML path sets it to the file's folder.

    Raises
    ------
    ParameterError
        Naming the file (if any), the key, what was expected and what was found.
    """

    def __init__(self, config=None, overrides=(), base_dir=None):
        file = None
        if config is None:
            raw = copy.deepcopy(_config.DEFAULT)
        elif isinstance(config, (str, os.PathLike)):
            file = os.fspath(config)
            raw = _config.read_toml(file)
            base_dir = os.path.dirname(os.path.abspath(file))
        elif isinstance(config, dict):
            raw = copy.deepcopy(config)
        else:
            raise ParameterError("(config)", "a dict, a TOML path or None", type(config).__name__)
        self.file = file
        #: Folder that relative file names of the parameters are read from (None: the current directory).
        self.base_dir = base_dir
        try:
            raw = _config.apply_overrides(raw, overrides, choices=CHOICES)
            P = schema.typed(_config.resolve(raw))
            #: A damping schedule a first-order run does not use (dropped from the config), or None.
            self._dropped_schedule = _unused_damping(P)
            if self._dropped_schedule is not None:
                P = dataclasses.replace(P, damping=schema.section("damping").typed({"schedule": "none"}))
            #: The resolved parameters, typed (:class:`meanfield.schema.Config`).
            self.params = P
            #: The same as ``{section: {key: value}}``.
            self.config = schema.as_dict(P)
            self._grid_is_default = schema.typed(raw).solver.grid is None
            self._build(P, base_dir)
        except ParameterError as exc:
            # a bad value given with --set is named as that option, not as a key of the file
            where = _override_of(exc.key, overrides) or file
            raise exc.in_file(None if str(exc.key).startswith("--set") else where) from None

    @classmethod
    def from_toml(cls, path, overrides=()) -> Run:
        """Build a run from a TOML parameter file."""
        return cls(os.fspath(path), overrides)

    def _build(self, P: schema.Config, base_dir: str | None) -> None:
        run, solver = P.run, P.solver
        dtype = np.dtype(run.dtype)
        self.model = make_model(P.model.given(), dtype=dtype, base_dir=base_dir, diagnostics=P.diagnostics)
        dyn = self.model.dynamics
        self.schedule = make_schedule(P.damping.schedule, run.t0, **P.damping.options())
        name, h = P.integrator.name, P.integrator.h
        self.integrator = make_integrator(name, dyn, **P.integrator.options())
        self.integrator.check_model(self.model)
        adaptive = getattr(self.integrator, "adaptive", False)
        if h is None and not adaptive:
            raise ParameterError("integrator.h", "a step size h > 0", None)
        _check_block(self.model, P)
        if run.layers:
            if self.model.n_layers < 2:
                raise ParameterError("run.layers", "per-layer weights (a leading layer axis L >= 2 in "
                                     "model.mlp, or (L, d, d) files for model.A / model.V)",
                                     f"{self.model.n_layers} layer")
        _warn_unsaved_fields(P, self.model, file=self.file)
        if dyn == "first_order":
            _warn_first_order_ignores(self._dropped_schedule, P, file=self.file)
        self.pde = None
        self.x0 = self.y0 = None
        unused = [f"solver.{k}" for k in PDE_ONLY_KEYS if getattr(solver, k) is not None]
        if solver.kind == "particles" and unused:
            warnings.warn(f"{self.file + ': ' if self.file else ''}solver.kind = \"particles\" ignores "
                          f"{', '.join(unused)} (only pde runs have a grid)", UserWarning, stacklevel=2)
        if solver.kind == "pde":
            from .pde import make_pde
            from .pde.grid import check_grid_memory

            if dtype != np.float64:
                raise ParameterError("run.dtype", '"float64" for pde runs', run.dtype)
            try:
                check_grid_memory(solver.grid)
                self.pde = make_pde(P, self.model, self.integrator, base_dir)
            except ParameterError as exc:
                if exc.key == "solver.grid" and self._grid_is_default:
                    raise exc.as_default() from None
                raise
            # a solver that steps itself (kinetic runs) declares its own oracle calls per step
            self.integrator = getattr(self.pde, "integrator", self.integrator)
            _warn_stationary_law(P, file=self.file)
        layers = run.layers  # one pass: layer l acts for t in [t0 + l, t0 + l + 1)
        self.horizon = Horizon(
            t0=float(run.t0), h=math.nan if h is None else float(h),
            t1=float(run.t0) + self.model.n_layers if layers else run.t1,
            steps=None if layers else run.steps, oracle_calls=run.oracle_calls,
        )
        #: The first step of an adaptive method (None: chosen automatically).
        self.h0 = None if h is None else float(h)
        self.save_at = _save_clock(run)
        if not adaptive:
            try:
                nsteps = self.horizon.n_steps(self.integrator.oracle_calls)
            except OverflowError:  # (t1 - t0) / h is inf
                nsteps = math.inf
            if nsteps < 1:
                raise ParameterError("run.oracle_calls",
                                     f"at least {self.integrator.oracle_calls} calls (one step of {name})",
                                     run.oracle_calls)
            check_horizon(self.horizon, nsteps)
        if adaptive and (self.model.mlp is not None or self.model.n_layers > 1):
            raise ParameterError("integrator.name", "a fixed-step integrator for transformer blocks (an "
                                 "MLP or per-layer weights: a block is a splitting)", name)
        self.track_clusters = _track_clusters(P, self.model, adaptive)
        if self.pde is None:
            # law = "tokens": x_i(0) = wte[id_i] + wpe[i] of a network's weights (its embed)
            where = _initial.Where(base_dir, getattr(self.model, "embed", None))
            x, y = initial_state(P.initial.given(), self.model.d, self.model.accelerated, where)
            self.x0 = x.astype(dtype)
            self.y0 = None if y is None else y.astype(dtype)
            self.model.check_state(self.x0, self.y0)
        if getattr(self.integrator, "uses_jacobian", False):  # a system is built only to size it
            _check_jacobian_size(self.integrator, self.make_system())
        self.probes = []
        if P.diagnostics.moment_ode:
            from .diagnostics.moments import moment_ode_probe

            moment_ode_probe(self)  # validates now: a bad combination is an input error, not a crash later
            self.probes.append(moment_ode_probe)
        #: The dask client of a ``[cluster]`` run (:class:`meanfield.cluster.Connection`), else None.
        self.cluster = _connect_cluster(P, self.model) if P.cluster is not None else None

    def close(self) -> None:
        """Close the run's dask client and a LocalCluster it started (``[cluster]``; also done at exit)."""
        if self.cluster is not None:
            self.cluster.close()

    def resolved(self) -> dict:
        """The fully resolved parameters, JSON-able (stored in every output file); a new dict each call."""
        return json.loads(self._resolved_json)

    @functools.cached_property
    def _resolved_json(self) -> str:
        """:meth:`resolved` as JSON text, built once (the run's parameters do not change after it is built)."""
        P = self.params
        integrator = P.integrator.given()
        if getattr(self.integrator, "adaptive", False):  # rtol, atol in force (defaults filled in)
            integrator.update(self.integrator.describe())
        # file names as absolute paths, like the model's weight files: a resume from another
        # folder (or a sweep's worker) reads the same files
        initial = {k: (os.path.abspath(config_path(v, self.base_dir))
                       if k in _initial.FILE_KEYS and isinstance(v, str) and v else v)
                   for k, v in P.initial.given().items()}
        model = {**P.model.given(), **self.model.describe(), **self.model.block_files}
        sections = schema.as_dict(P)
        sections.update(model=model, integrator=integrator, initial=initial)
        return json.dumps(sections, default=_jsonable)

    def make_system(self, state=None):
        """What the loop advances: the initial system, or one holding ``state`` (resume).

        Parameters
        ----------
        state : dict of arrays or None
            Named state arrays of a checkpoint (``x``, ``y`` for particles,
            ``density`` of a grid, ...); None starts from the initial state (copied).
        """
        if self.pde is not None:
            return self.pde.system(state)
        if state is None:
            state = {"x": self.x0.copy()} if self.y0 is None else {"x": self.x0.copy(), "y": self.y0.copy()}
        x, y, v = (None if state.get(k) is None else np.ascontiguousarray(state[k], dtype=self.model.dtype)
                   for k in ("x", "y", "v"))
        return particle_system(self.model, x, y, v, keep_mid="x_mid" in self.params.output.save)

    def advance(self, system, observers, progress=None, start=None) -> LoopResult:
        """The time loop on ``system`` with this run's schedule, integrator and run options.

        ``start`` (:class:`~meanfield.simulate.LoopState`): where a resumed run goes on.
        """
        P = self.params
        events = None
        if self.track_clusters:
            from .events import ClusterEvents

            events = ClusterEvents(self.model.count_clusters, P.run.stop_clusters)
        return advance(
            system, self.schedule, self.integrator, self.horizon,
            save_at=self.save_at, save_fields=tuple(P.output.save),
            observers=observers, progress=progress, dissipation=P.diagnostics.dissipation,
            check_every=P.run.check_every, max_wall_time=P.run.max_wall_time,
            probes=[make(self) for make in self.probes], energy_infimum=self.energy_infimum,
            h0=self.h0, events=events, start=start,
        )

    def drive(self, system, observers, writer=None, progress=None, start=None) -> LoopResult:
        """:meth:`advance` inside the writer's lifecycle, shared by a run and its resumes.

        The writer (if any) gets the run's status on every outcome ("interrupted",
        "failed: ...", or the loop's), the step statistics as attributes, and is closed.
        """
        self.model.oracle_calls = 0 if start is None else start.oracle_calls
        try:
            res = self.advance(system, observers, progress, start=start)
        except KeyboardInterrupt:
            if writer is not None:
                writer.set_status(Status.INTERRUPTED.value)
                writer.close()
            raise
        except Exception as exc:
            if writer is not None:
                writer.set_status(f"{Status.FAILED.value}: {exc}")
                writer.close()
            raise
        if writer is not None:
            for key, value in res.stats.items():
                writer.set_attr(key, value)
            writer.set_status(res.status)
            writer.close(final=True)  # also when called inside an except block
        return res

    @functools.cached_property
    def energy_infimum(self) -> float | None:
        """The known lower bound of this run's energy (None when unknown); computed once."""
        return self.model.energy_floor(self.x0) if self.pde is None else self.pde.energy_infimum()

    def loop(self, x, y, observers, progress=None, start=None) -> LoopResult:
        """The time loop on particles ``(x, y)`` (updated in place); see :meth:`advance`."""
        if self.pde is not None:
            raise TypeError("a pde run advances its own system: use advance(make_system(), ...)")
        return self.advance(particle_system(self.model, x, y), observers, progress, start)

    def simulate(self, output=None, *, overwrite=False, progress=None, observers=()) -> RunResult:
        """Run the simulation; optionally also write an HDF5 file.

        Parameters
        ----------
        output : str, True or None
            HDF5 path to write (``True``: the config's ``output.path``); None keeps
            everything in memory only.
        overwrite : bool
            Replace an existing output file (otherwise an existing file is an error).
        progress : bool, callable(done, total) or None
            True: a progress line on stderr; False or None: none; a callable is
            called after every step with the steps done and the total.
        observers : extra observers with ``save(record)``.

        Returns
        -------
        RunResult

        Raises
        ------
        SimulationError
            On a NaN / blow-up; the HDF5 file keeps every save made before.
        """
        progress = _progress_callback(progress)  # before any file is written
        if output is True:
            output = self.params.output.path
        replace = False
        if output is not None:
            output = os.fspath(output)
            try:
                check_output_path(output, "output.path", overwrite=overwrite,
                                  overwrite_hint="overwrite=True")
            except ParameterError as exc:
                raise exc.in_file(self.file) from None
            replace = os.path.exists(output)
        attrs = {"oracle_calls_per_step": self.integrator.oracle_calls}
        if self.integrator.order is not None:  # None: a map without an order (mean_shift)
            attrs["integrator_order"] = self.integrator.order
        e_inf = self.energy_infimum
        if self.pde is not None:
            attrs.update(self.pde.attrs())
        if e_inf is not None:
            attrs["energy_infimum"] = float(e_inf)
        # a run writing a file streams its large saves there instead of keeping them
        recorder = Recorder(keep_bytes=None if output is None else STREAMED_BYTES)
        obs = [recorder, *observers]
        writer = None
        if output is not None:
            writer = HDF5Writer(output, self.resolved(), mode="w", replace=replace)
            for key, value in attrs.items():
                writer.set_attr(key, value)
            obs.append(writer)
        system = self.make_system()
        if writer is None:
            self._check_saves_fit(system)
        if writer is not None and system.grid:
            writer.set_grid(system.grid)
        res = self.drive(system, obs, writer, progress)
        attrs.update(res.stats)
        attrs["compile_time"] = res.compile_time
        scales, tasks = recorder.arrays()
        tasks = SavedTasks(tasks, output, recorder.dropped)
        return RunResult(scales=scales, tasks=tasks, x=res.x, y=res.y, config=self.resolved(),
                         status=res.status, oracle_calls=res.oracle_calls,
                         wall_time=res.wall_time, path=output, attrs=attrs, state=res.state,
                         grid=dict(system.grid), t_end=res.t, events=recorder.event_arrays())

    def _check_saves_fit(self, system) -> None:
        """ParameterError when the saves of a run kept in memory (no output file) cannot fit."""
        saved = system.fields(tuple(self.params.output.save))
        per_save = sum(np.asarray(a).nbytes for a in saved.values())
        every = self.save_at.every
        if self.save_at.times:
            n_saves = len(self.save_at.times) + 1
        elif getattr(self.integrator, "adaptive", False):
            return  # the number of steps is not known in advance
        else:
            nsteps = self.horizon.n_steps(self.integrator.oracle_calls)
            n_saves = nsteps // every + 1 + (nsteps % every != 0)  # 0, every, 2 every, ..., the last
        if per_save * n_saves > _initial.memory_budget():
            budget = _initial.memory_budget() / 2**30
            raise ParameterError("run.save_every", f"saves that fit in memory ({n_saves} saves of "
                                 f"{per_save / 2**20:.3g} MiB <= {budget:.3g} GiB): a larger "
                                 "save_every, fewer output.save fields, or an output file (saves "
                                 "are streamed to it)", every)


#: Saved tasks larger than this per save (states, densities) are streamed to the output file,
#: not kept in memory; :class:`RunResult` reads them back when they are used.
STREAMED_BYTES = 4096


def _keys_by_value(table: dict):
    """``keys(value)``: the keys a choice's value takes (None for an unknown value)."""
    return lambda value: tuple(table[value]) if isinstance(value, str) and value in table else None


def _integrator_options(name) -> tuple:
    from .integrators import INTEGRATORS

    if not isinstance(name, str) or name not in INTEGRATORS:
        return None
    return tuple(dict.fromkeys(o for cls in INTEGRATORS[name].values() for o in cls.options))


#: Keys that choose a variant -> the keys each variant takes: ``--set`` switching one drops the
#: old variant's keys (:func:`meanfield.io.config.apply_overrides`).
CHOICES = {
    "damping.schedule": _keys_by_value(SCHEDULE_KEYS),
    # n is the sample size of a sampled law; a file law takes its particles (and their number) from the file
    "initial.law": _keys_by_value({law: (*keys, *(("n",) if law != "file" else ()))
                                   for law, keys in _initial.LAW_KEYS.items()}),
    "initial.momentum": _keys_by_value(_initial.MOMENTUM_KEYS),
    "integrator.name": _integrator_options,
}
# (model.name is left out: models share key names with other meanings -- the bilinear Q is a
# potential, the sphere's a query matrix -- so keeping "shared" keys would be wrong)


def _override_of(key, overrides):
    """Where ``key`` was set by an override (``--set section.key=...``, or its whole section), or None."""
    for item in reversed(_config.override_items(overrides)):
        if isinstance(item, tuple):
            path, label = str(item[0]), f"overrides[{item[0]!r}] = {item[1]!r}"
        else:
            path, label = str(item).split("=", 1)[0].strip(), f"--set {str(item).strip()}"
        if path and (path == key or (isinstance(key, str) and "." not in path
                                     and key.startswith(path + "."))):
            return label
    return None


class _TextProgress:
    """``progress=True``: the steps done, rewritten in place on one stderr line."""

    def __init__(self):
        self.shown = -1

    def __call__(self, done, total):
        import sys

        pct = int(100 * done / total) if total else 100
        if pct != self.shown or done == total:  # at most ~100 writes a run
            self.shown = pct
            sys.stderr.write(f"\rmeanfield: step {done}/{total} ({pct}%)" + ("\n" if done >= total else ""))
            sys.stderr.flush()


def _progress_callback(progress):
    """``simulate``'s ``progress`` as a callable or None (TypeError for anything else)."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return _TextProgress()
    if callable(progress):
        return progress
    raise TypeError(f"progress: expected True, False, None or a callable(done, total), found {progress!r}")


def _check_block(model, P: schema.Config) -> None:
    """ParameterError for combinations a block with an MLP or per-layer weights does not support."""
    if model.mlp is None and model.n_layers == 1:
        return
    key = "model.mlp" if model.mlp is not None else "model.A"
    if P.solver.kind != "particles":
        raise ParameterError("solver.kind", f'"particles" with {key} (mean-field equations of '
                             "transformer blocks are not solved)", P.solver.kind)


#: ``[solver]`` keys that only shape pde runs (a particle run warns that it ignores them).
PDE_ONLY_KEYS = ("grid", "domain", "momentum_max")

#: ``[initial]`` keys that only set momenta (accelerated dynamics).
MOMENTUM_KEYS = ("momentum",) + tuple(k for keys in _initial.MOMENTUM_KEYS.values() for k in keys)


def _warn_unsaved_fields(P: schema.Config, model, file=None) -> None:
    """Say (one warning) that ``"v"`` in ``[output] save`` saves nothing without an MLP velocity.

    ``v`` exists for accelerated blocks with an MLP only. (``"y"`` in a first-order
    run stays silent: the commented template lists it, and a first-order run has
    no momenta to save.)
    """
    from .integrators.mlp_substep import make_substep

    if P.solver.kind == "pde" or "v" not in P.output.save:
        return
    substep = make_substep(model)
    if substep is None or not substep.uses_velocity:
        where = f"{file}: " if file else ""
        warnings.warn(f"{where}output.save lists \"v\", which only accelerated blocks with an MLP "
                      "([model] mlp) have: nothing is saved for it", UserWarning, stacklevel=4)


#: Initial laws that are stationary states of every mean-field equation meanfield solves on the
#: circle: uniform in angle, they stay uniform (rotation invariance), while particles sampled from
#: them cluster from their sampling noise.
STATIONARY_LAWS = ("sphere_uniform",)


def _warn_stationary_law(P: schema.Config, file=None) -> None:
    """Say (one warning) that a pde run from a stationary law will not move."""
    law = P.initial.law
    if law in STATIONARY_LAWS:
        where = f"{file}: " if file else ""
        warnings.warn(f"{where}initial.law = \"{law}\" is a stationary state of the mean-field equation: "
                      "this pde run stays uniform (particles sampled from it cluster from sampling noise "
                      "only); start from a non-uniform law, e.g. law = \"von_mises\", mu = [0.0, 2.5], "
                      "kappa = 1.0", UserWarning, stacklevel=4)


def _unused_damping(P: schema.Config) -> str | None:
    """The damping schedule of a first-order run whose integrator takes none (else None).

    Only nag integrates a damped flow x'' + alpha x' = f; every other first-order method
    runs with ``schedule = "none"`` (the run replaces ``[damping]`` before building anything,
    after the schedule's keys are checked).
    """
    from .integrators import INTEGRATORS

    sched, name = P.damping.schedule, P.integrator.name
    if P.model.dynamics != "first_order" or sched == "none" or not isinstance(name, str):
        return None
    cls = INTEGRATORS.get(name, {}).get("first_order")
    if cls is None or getattr(cls, "uses_schedule", False):
        return None  # a bad name is reported when the integrator is built
    make_schedule(sched, P.run.t0, **P.damping.options())  # its keys are checked all the same
    return sched


def _warn_first_order_ignores(dropped: str | None, P: schema.Config, file=None) -> None:
    """Say (one warning) which accelerated-only settings a first-order run ignores.

    ``dropped``: the damping schedule the run does not use (:func:`_drop_unused_damping`);
    momenta are never used. ``momentum = "zero"`` and ``schedule = "none"`` are silent.
    """
    ignored = []
    if dropped is not None:
        ignored.append(f"[damping] schedule = {dropped!r} (only nag uses damping)")
    given = P.initial.given()
    mom = [k for k in MOMENTUM_KEYS if k in given and not (k == "momentum" and given[k] == "zero")]
    if mom:
        ignored.append("initial." + ", initial.".join(mom) + " (first-order runs have no momenta)")
    if ignored:
        where = f"{file}: " if file else ""
        warnings.warn(f"{where}model.dynamics = \"first_order\" ignores {'; '.join(ignored)}",
                      UserWarning, stacklevel=4)


def _connect_cluster(P: schema.Config, model):
    """Shard ``model``'s exact pair passes over the ``[cluster]`` of ``cfg``; the connection.

    Called last in :meth:`Run._build`: every other input error is reported
    before a cluster starts, and an unreachable scheduler before anything is written.
    """
    from .cluster import ClusterSpec, Connection

    spec = ClusterSpec.from_dict(P.cluster.given())
    if P.solver.kind != "particles":
        raise ParameterError("solver.kind", '"particles" with a [cluster] section (the cluster computes '
                             "the pair sums of particles)", P.solver.kind)
    if not hasattr(model, "shard_over"):
        what = "a network from weights" if P.model.weights is not None else f"model {model.name!r}"
        raise ParameterError("cluster", "a softmax or sphere model for a [cluster] section (their exact "
                             "pair sums are what the cluster computes)", what)
    if model.params.summation != "exact":
        raise ParameterError("model.summation", '"exact" with a [cluster] section (the cluster shards the '
                             "exact pair sums; the Fourier summation runs in one process)",
                             model.params.summation)
    conn = Connection(spec)
    model.shard_over(conn.client)
    return conn


def _check_jacobian_size(integrator, system) -> None:
    """ParameterError before the run when ``integrator``'s dense Jacobian would be too large.

    Called for methods that keep one (``uses_jacobian``); ``system`` gives the state's size.
    """
    from .models.base import JACOBIAN_MAX

    n = sum(np.asarray(a).size for a in system.state.values())
    if n > JACOBIAN_MAX:
        raise ParameterError("integrator.name", f"a method without a dense Jacobian (dopri5) for a state of "
                             f"more than {JACOBIAN_MAX} numbers (an n x n matrix of over 512 MB)",
                             f"{integrator.name} with n = {n}")


def _save_clock(run) -> SaveAt:
    """The run's :class:`~meanfield.steppers.SaveAt` (``run``: the typed ``[run]`` section)."""
    if run.save_at is not None:
        return SaveAt(times=tuple(float(t) for t in run.save_at))
    if run.saves_per_decade is not None:
        return SaveAt(times=SaveAt.per_decade(run.saves_per_decade, float(run.t0), float(run.t1)))
    return SaveAt(every=int(run.save_every))


def _track_clusters(P: schema.Config, model, adaptive: bool) -> bool:
    """Whether the run tracks ``n_clusters`` after every step (``/events/n_clusters``).

    Sphere particle runs do with ``stop_clusters``, an adaptive method or a
    logarithmic save clock; ``stop_clusters`` elsewhere is an input error.
    """
    run = P.run
    sphere = hasattr(model, "count_clusters") and P.solver.kind == "particles"
    if run.stop_clusters is not None and not sphere:
        raise ParameterError("run.stop_clusters", "a particle run of the sphere model (clusters are counted "
                             "on S^{d-1})", f"model {model.name}, solver.kind {P.solver.kind}")
    return sphere and (run.stop_clusters is not None or adaptive or run.save_at is not None
                       or run.saves_per_decade is not None)


#: Most steps one run may take (``meanfield run`` refuses longer runs; split them with --resume).
MAX_STEPS = 10**9


def check_horizon(horizon: Horizon, nsteps: int) -> None:
    """Reject a step size that cannot advance time, and runs longer than :data:`MAX_STEPS`.

    Every step must move ``t`` in floating point: ``h`` at least the spacing
    of doubles at the largest ``|t|`` of the run (``t + h == t`` otherwise,
    and the run would save forever at one time).
    """
    bound = "run.t1" if horizon.t1 is not None else "run.steps" if horizon.steps is not None \
        else "run.oracle_calls"
    if nsteps > MAX_STEPS:
        raise ParameterError(bound, f"a run of at most {MAX_STEPS:.0e} steps (a larger integrator.h "
                             "or a shorter run)", f"{nsteps:.3g} steps of h = {horizon.h:g}")
    t_end = horizon.t1 if horizon.t1 is not None else horizon.t0 + nsteps * horizon.h
    spacing = float(np.spacing(max(abs(horizon.t0), abs(t_end))))
    if not horizon.h >= spacing:
        raise ParameterError("integrator.h", f"a step that advances t over the run (h >= {spacing:.3g})",
                             horizon.h)


def simulate_config(config=None, overrides=(), output=None, **kw) -> RunResult:
    """One-call convenience: ``Run(config, overrides).simulate(output, **kw)``."""
    return Run(config, overrides).simulate(output, **kw)


def _jsonable(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return str(obj)
