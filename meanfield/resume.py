"""Continue a run file from its checkpoint (``meanfield run --resume OUT.h5``).

The checkpoint is the newest of the sidecar ``OUT.h5.ckpt`` (written
atomically while the run goes, so it survives SIGKILL) and ``/checkpoint`` of
the file (written when the run stops cleanly); see :mod:`meanfield.io.hdf5`.

What a resume may change
------------------------
Only how long the run goes and what it records on the way: the keys in
:data:`RESUMABLE` (a longer ``run.t1`` / ``steps`` / ``oracle_calls``, or
switching between them; ``save_every``, ``check_every``, ``max_wall_time``).
A finished run can be extended too when its last step ended on the grid
``t0 + k h`` (its final step was not shortened to land on ``t1``).
Anything else (model, dynamics, damping, integrator, ``h``, initial state,
dtype, saved fields, diagnostics) would make the file describe two different
runs and is refused, naming the key. Every resume is recorded in the file:
``attrs["config"]`` holds the parameters now in force and
``attrs["resume_history"]`` (JSON list) one entry per resume with the
checkpoint it started from and the keys it changed (``[old, new]``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json

import h5py
import numpy as np

from . import schema
from .errors import ParameterError
from .integrators.controllers import ConstantStep
from .io.reader import SavedTasks, load, saved_rows
from .io.runfile import is_open_elsewhere, run_file_status, unreadable_reason
from .io.writer import HDF5Writer, truncate_to
from .run import CHOICES, STREAMED_BYTES, Run, RunResult
from .simulate import LoopState, Recorder, Status

#: Parameters ``--resume`` may change (all others must equal the file's): the schema's resumable keys.
RESUMABLE = schema.resumable()
_BOUNDS = ("t1", "steps", "oracle_calls", "layers")


def _default(full_key: str):
    """The schema's plain default of ``section.key`` (MISSING if it has none)."""
    sec, key = full_key.split(".", 1)
    known = sec in schema.SECTIONS and key in schema.section(sec).keys
    return schema.section(sec).default(key) if known else schema.MISSING


def _flat(cfg: dict) -> dict:
    return {f"{sec}.{key}": value for sec, body in cfg.items() if isinstance(body, dict)
            for key, value in body.items()}


def resumed_run(stored: dict, overrides=(), params=None) -> tuple[Run, dict]:
    """The run a resume continues, and what it changes in the stored parameters.

    Parameters
    ----------
    stored : dict
        The resolved parameters stored in the run file.
    overrides : sequence of str
        ``section.key=value``; setting one of ``run.t1/steps/oracle_calls``
        replaces the stored bound.
    params : str or None
        A parameter file given with ``--resume -o OUT.h5``: it must describe
        the same run as the file, up to the keys in :data:`RESUMABLE`.

    Returns
    -------
    run : Run
    changed : dict
        ``{"section.key": [old, new]}`` for every key that differs from ``stored``.

    Raises
    ------
    ParameterError
        Naming the first key that a resume may not change.
    """
    if params is not None:
        run = Run(params, overrides)
    else:
        keys = {item.split("=", 1)[0].strip() for item in overrides or () if "=" in item}
        base = schema.typed(json.loads(json.dumps(stored)))
        if any(f"run.{b}" in keys for b in _BOUNDS):  # a new bound replaces the stored one
            base = dataclasses.replace(base, run=dataclasses.replace(base.run, **dict.fromkeys(_BOUNDS)))
        run = Run(schema.as_dict(base), overrides)
    new = schema.typed(run.resolved())
    was = schema.typed(stored)
    if was.output.path is not None:  # the file's own name, wherever it was written from
        new = dataclasses.replace(new, output=dataclasses.replace(new.output, path=was.output.path))
    old_flat, new_flat = _flat(schema.as_dict(was)), _flat(schema.as_dict(new))
    changed = {}
    # what the run is (model, dynamics, solver, choices) before the keys that depend on it
    first = ("model.name", "model.dynamics", "solver.kind", *CHOICES)
    for key in sorted(set(old_flat) | set(new_flat),
                      key=lambda k: (first.index(k) if k in first else len(first), k)):
        old, val = old_flat.get(key), new_flat.get(key)
        if old == val or (key not in old_flat and val == _default(key)):
            continue  # a default that files written before it was filled in do not record
        if key not in RESUMABLE:
            same = "a parameter file given with --resume describes the same run; " if params else ""
            raise ParameterError(key, f"the run file's value {old!r} ({same}--resume may change "
                                 f"only {', '.join(RESUMABLE)})", val, file=params)
        changed[key] = [old, val]
    if (was.cluster is None) != (new.cluster is None):  # in-process passes round otherwise than sharded ones
        raise ParameterError("cluster", "the run file's [cluster] section, or none as in the file (the sharded "
                             "row-wise sums and this process's sums differ in the last bits; --resume may move "
                             "a cluster run to another cluster)", "a section added" if new.cluster is not None
                             else "the section removed", file=params)
    return run, changed


def _extends(run: Run, ck: dict) -> bool:
    """Whether ``run`` goes past checkpoint ``ck`` with the checkpoint on its time grid.

    A finished run may be extended only if its last step was not shortened to
    land on ``t1``: then continuing gives the steps of the longer run exactly.
    """
    if getattr(run.integrator, "adaptive", False):  # no grid: any later bound goes on from t
        return _goes_past(run, ck)
    # grid points passed (the fixed stepper's j; steps cut at save times do not count), then
    # the grid rule of the loop itself
    stepper = json.loads(ck["loop_state"]).get("stepper") or {} if "loop_state" in ck else {}
    j = int(stepper.get("j", ck["iteration"]))
    h = run.horizon
    return _goes_past(run, ck) and ConstantStep(h.t0, h.h, h.t1).time_of(j) == float(ck["t"])


def _goes_past(run: Run, ck: dict) -> bool:
    """Whether ``run``'s bound lies beyond checkpoint ``ck`` (time, steps or oracle calls)."""
    h = run.horizon
    if not getattr(run.integrator, "adaptive", False):
        return h.n_steps(run.integrator.oracle_calls) > int(ck["iteration"])
    if h.t1 is not None:
        return h.t1 > float(ck["t"])
    if h.steps is not None:
        return h.steps > int(ck["iteration"])
    return h.oracle_calls > int(ck["oracle_calls"])


def _loop_state(tr, ck: dict, loop: dict, keep: int, between: bool) -> LoopState:
    """The loop's state at checkpoint ``ck`` (``loop``: its JSON ``loop_state``; ``keep`` saves kept).

    Checkpoints of earlier versions hold only the clocks and residual between two saves:
    the save they follow gives the rest.
    """
    last = {"energy": float(tr.tasks["energy"][keep - 1]),
            "kinetic": float(tr.tasks["kinetic"][keep - 1]) if "kinetic" in tr.tasks else 0.0}
    wall = float(tr.scales["wall_time"][keep - 1])
    if between:  # the file's clock (it may have been edited) plus the seconds since its last save
        wall += float(loop.get("wall_time_since_save", 0.0))
    return LoopState(
        t=float(ck["t"]), step=int(ck["iteration"]), oracle_calls=int(ck["oracle_calls"]), wall_time=wall,
        compile_time=float(loop.get("compile_time", tr.attrs.get("compile_time", 0.0))),
        stepper=loop.get("stepper") or {}, integrator=ck.get("integrator") or {},
        last_save=last, residual=loop.get("residual") if between else None,
        n_clusters=loop.get("n_clusters"))


def _record_resume(path: str, config: dict, entry: dict) -> None:
    """Store the parameters in force and append ``entry`` to ``attrs["resume_history"]``."""
    with h5py.File(path, "a") as f:
        history = json.loads(f.attrs.get("resume_history", "[]"))
        history.append(entry)
        f.attrs["resume_history"] = json.dumps(history)
        f.attrs["config"] = json.dumps(config)


def _check_not_open_elsewhere(path: str) -> None:
    """ParameterError when another process holds ``path`` open (HDF5's file lock refuses a writer)."""
    if is_open_elsewhere(path):
        raise ParameterError("--resume", "a run file no other process has open (another process "
                             "is reading or writing it: close it, or wait for its run to end)", path)


def resume_run(path: str, overrides=(), progress=None, params=None) -> RunResult:
    """Continue the run stored in ``path`` from its checkpoint, appending to the same file.

    The steps after the checkpoint are those of the uninterrupted run (same
    times, same operations), so the final state equals the uninterrupted one
    bit for bit with the same thread count. Saves made after the checkpoint
    (after a SIGKILL: those since the last sidecar checkpoint) are dropped and
    made again.

    Parameters
    ----------
    path : str
        A run file whose status is not "finished".
    overrides : sequence of str
        ``section.key=value`` applied to the stored config (e.g. a longer
        ``run.t1``); only the keys in :data:`RESUMABLE` may change.
    progress : callable(done, total) or None
    params : str or None
        A parameter file to check against the file (``meanfield run P.toml
        --resume -o OUT.h5``): it must describe the same run up to :data:`RESUMABLE`.

    Returns
    -------
    RunResult
        Only the saves made by this continuation are in ``scales``/``tasks``.

    Raises
    ------
    ParameterError
        The file is unreadable, finished, has no checkpoint (and saves beyond
        the initial state), or its saves do not reach the checkpoint; an
        override or ``params`` changes a key outside :data:`RESUMABLE`; the
        new bound does not reach past the checkpoint.

    Notes
    -----
    A run killed before its first checkpoint (no checkpoint, at most the
    initial save) is started again from its stored parameters; one killed as
    it created its file (an empty or truncated file, see
    :func:`~meanfield.io.hdf5.is_unstarted`) from ``params``, which it then needs.
    """
    try:
        tr = load(path, tasks=["energy", "kinetic"])
    except (OSError, KeyError, ValueError, RuntimeError) as exc:  # RuntimeError: h5py, damaged inside
        # load() names a missing, unreadable or locked file in one line (ParameterError); --resume
        # says which run is writing it, or restarts a run killed as it created its file
        rf = run_file_status(path)
        if rf.kind == "busy":
            raise ParameterError("--resume", "a run file no other process is writing (a run is "
                                 "writing it: wait for it, or stop it with Ctrl-C)", path) from None
        unstarted = rf.kind == "unstarted"
        if isinstance(exc, ParameterError) and not unstarted:
            raise
        reason = exc.found if isinstance(exc, ParameterError) else (rf.reason or unreadable_reason(path, exc))
        if not (unstarted and params is not None):
            how = (f": start it again with meanfield run PARAMS -o {path} (no --overwrite needed)"
                   if unstarted else "")
            raise ParameterError("--resume", f"a readable meanfield run file; {path} is "
                                 f"{reason}{how}", path) from None
        tr = None
    if tr is None:  # killed as it created the file, which holds no parameters: start from PARAMS
        return Run(params, overrides).simulate(path, progress=progress)
    ck = tr.checkpoint
    status = str(tr.attrs.get("status", ""))
    cfg = tr.config
    if not cfg:
        raise ParameterError("--resume", "a meanfield run file with its parameters", path)
    run, changed = resumed_run(cfg, overrides, params)
    finished = Status.of(status) is Status.FINISHED  # also "finished: warning: ..."
    if finished and not (ck is not None and _extends(run, ck)):
        raise ParameterError("--resume", "an unfinished run (status running/interrupted/failed), "
                             "or a finished one with a later run.t1/steps/oracle_calls on its "
                             "time grid t0 + k h", f"{path} (status {status})")
    entry = {"resumed_at": _dt.datetime.now().isoformat(timespec="seconds"), "changed": changed}
    if params is not None:
        entry["params"] = str(params)
    if ck is None or not ck.get("state"):
        if len(tr.scales.get("sim_time", ())) <= 1:
            # killed before its first checkpoint: only the initial state was saved, which the
            # stored parameters reproduce, so nothing is lost by starting again
            res = run.simulate(path, overwrite=True, progress=progress)
            _record_resume(path, run.resolved(), {**entry, "iteration": 0, "t": float(run.horizon.t0)})
            return res
        raise ParameterError("--resume", "a run file with a checkpoint", path)
    it = int(ck["iteration"])
    if not _goes_past(run, ck):
        bound = next(b for b in _BOUNDS if getattr(run.params.run, b) is not None)
        raise ParameterError(f"run.{bound}", f"a run longer than its checkpoint (iteration {it}, "
                             f"t = {float(ck['t']):.6g})", getattr(run.params.run, bound), file=params)
    if "energy" not in tr.tasks:
        raise ParameterError("--resume", "a run file with its saved energies (/tasks/energy)", path)
    rows = saved_rows(path)  # every dataset (a deleted one is refused), not only those loaded
    iters = tr.scales.get("iteration", np.zeros(0, np.int64))
    keep = int(np.searchsorted(iters, it, side="right"))
    lengths = set(rows.values())
    # a checkpoint is written right after the save of its step, or between two saves (a run
    # stopped there) with the loop's state; either way the saves up to it must be there
    loop = json.loads(ck["loop_state"]) if "loop_state" in ck else None
    if keep == 0 or (iters[keep - 1] != it and loop is None) or min(lengths, default=0) < keep:
        last = int(iters[keep - 1]) if keep else None
        short = min(rows, key=rows.get)
        raise ParameterError("--resume", f"the saves up to the checkpoint (iteration {it}, "
                             f"{keep} saves)", f"{path} (saved iterations end at {last}; "
                             f"/{short} holds {rows[short]} saves)")
    _check_not_open_elsewhere(path)  # just before writing: a reader may come and go meanwhile
    truncate_to(path, keep, t=float(ck["t"]))
    system = run.make_system({name: np.ascontiguousarray(arr) for name, arr in ck["state"].items()})
    start = _loop_state(tr, ck, loop or {}, keep, between=iters[keep - 1] != it)
    _record_resume(path, run.resolved(), {**entry, "iteration": it, "t": float(ck["t"])})
    recorder = Recorder(keep_bytes=STREAMED_BYTES)
    writer = HDF5Writer(path, mode="a")
    res = run.drive(system, [recorder, writer], writer, progress, start=start)
    scales, tasks = recorder.arrays() if recorder.scales else ({}, {})
    tasks = SavedTasks(tasks, path, recorder.dropped, start=keep)
    return RunResult(scales=scales, tasks=tasks, x=res.x, y=res.y, config=run.resolved(),
                     status=res.status, oracle_calls=res.oracle_calls, wall_time=res.wall_time,
                     path=path, state=res.state, grid=dict(system.grid),
                     attrs={"compile_time": res.compile_time, **res.stats}, t_end=res.t,
                     events=recorder.event_arrays())


__all__ = ["RESUMABLE", "resume_run", "resumed_run"]
