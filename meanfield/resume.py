"""Continue a run file from its checkpoint (``meanfield run --resume OUT.h5``)."""

from __future__ import annotations

import numpy as np

from .errors import ParameterError
from .io.hdf5 import HDF5Writer, load, truncate_to
from .run import Run, RunResult
from .simulate import Recorder, simulate


def resume_run(path: str, overrides=(), progress=None) -> RunResult:
    """Continue the run stored in ``path`` from its checkpoint, appending to the same file.

    The steps after the checkpoint are those of the uninterrupted run (same
    times, same operations), so the final state equals the uninterrupted one
    bit for bit with the same thread count. Saves made after the checkpoint
    (none, normally: a checkpoint is written at every save) are dropped.

    Returns
    -------
    RunResult
        Only the saves made by this continuation are in ``scales``/``tasks``.
    """
    try:
        tr = load(path, tasks=["energy", "kinetic"])
    except OSError as exc:
        raise ParameterError("--resume", "a meanfield HDF5 file", f"{path} ({exc})") from None
    if tr.checkpoint is None or "x" not in tr.checkpoint:
        raise ParameterError("--resume", "a run file with a /checkpoint group", path)
    status = str(tr.attrs.get("status", ""))
    if status == "finished":
        raise ParameterError("--resume", "an unfinished run (status running/interrupted/failed)",
                             f"{path} (status {status})")
    cfg = tr.config
    run = Run(cfg, overrides)
    ck = tr.checkpoint
    it = int(ck["iteration"])
    keep = int(np.searchsorted(tr.scales["iteration"], it, side="right"))
    truncate_to(path, keep)
    x = np.ascontiguousarray(ck["x"], dtype=run.model.dtype)
    y = None if "y" not in ck else np.ascontiguousarray(ck["y"], dtype=run.model.dtype)
    resume_state = {"energy": float(tr.tasks["energy"][keep - 1])} if keep else None
    if resume_state is not None and "kinetic" in tr.tasks:
        resume_state["kinetic"] = float(tr.tasks["kinetic"][keep - 1])
    recorder = Recorder()
    writer = HDF5Writer(path, mode="a")
    wall0 = float(tr.scales["wall_time"][keep - 1]) if keep else 0.0
    c = run.config
    run.model.oracle_calls = int(ck["oracle_calls"])
    try:
        res = simulate(
            run.model, run.schedule, run.integrator, x, y, run.horizon,
            save_every=c["run"]["save_every"], save_fields=tuple(c["output"]["save"]),
            observers=[recorder, writer], progress=progress,
            dissipation=c["diagnostics"]["dissipation"], check_every=c["run"].get("check_every"),
            start_step=it, start_oracle_calls=int(ck["oracle_calls"]), start_wall_time=wall0,
            resume_state=resume_state, integrator_state=ck.get("integrator"),
        )
    except KeyboardInterrupt:
        writer.set_status("interrupted")
        writer.close()
        raise
    except Exception as exc:
        writer.set_status(f"failed: {exc}")
        writer.close()
        raise
    writer.set_status(res.status)
    writer.close()
    scales, tasks = recorder.arrays() if recorder.scales else ({}, {})
    return RunResult(scales=scales, tasks=tasks, x=res.x, y=res.y, config=run.resolved(),
                     status=res.status, oracle_calls=res.oracle_calls, wall_time=res.wall_time,
                     path=path)


__all__ = ["resume_run"]
