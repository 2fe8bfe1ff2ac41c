"""Continue a run file from its checkpoint (``meanfield run --resume OUT.h5``).

The checkpoint is the newest of the sidecar ``OUT.h5.ckpt`` (written
atomically while the run goes, so it survives SIGKILL) and ``/checkpoint`` of
the file (written when the run stops cleanly); see :mod:`meanfield.io.hdf5`.
"""

from __future__ import annotations

import numpy as np

from .errors import ParameterError
from .io.hdf5 import HDF5Writer, load, truncate_to
from .run import Run, RunResult
from .simulate import Recorder


def resume_run(path: str, overrides=(), progress=None) -> RunResult:
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
        ``section.key=value`` applied to the stored config (e.g. a longer ``run.t1``).
    progress : callable(done, total) or None

    Returns
    -------
    RunResult
        Only the saves made by this continuation are in ``scales``/``tasks``.

    Raises
    ------
    ParameterError
        The file is unreadable, finished, has no checkpoint (and saves beyond
        the initial state), or its saves do not reach the checkpoint.

    Notes
    -----
    A run killed before its first checkpoint (no checkpoint, at most the
    initial save) is started again from its stored parameters.
    """
    try:
        tr = load(path, tasks=["energy", "kinetic"])
    except (OSError, KeyError, ValueError) as exc:
        if isinstance(exc, ParameterError):
            raise
        raise ParameterError("--resume", "a readable meanfield HDF5 file",
                             f"{path} ({exc})") from None
    ck = tr.checkpoint
    status = str(tr.attrs.get("status", ""))
    if status == "finished" or status.startswith("finished:"):  # also "finished: warning: ..."
        raise ParameterError("--resume", "an unfinished run (status running/interrupted/failed)",
                             f"{path} (status {status})")
    cfg = tr.config
    if ck is None or not ck.get("state"):
        if cfg and len(tr.scales.get("sim_time", ())) <= 1:
            # killed before its first checkpoint: only the initial state was saved, which the
            # stored parameters reproduce, so nothing is lost by starting again
            return Run(cfg, overrides).simulate(path, overwrite=True, progress=progress)
        raise ParameterError("--resume", "a run file with a checkpoint", path)
    run = Run(cfg, overrides)
    it = int(ck["iteration"])
    iters = tr.scales.get("iteration", np.zeros(0, np.int64))
    keep = int(np.searchsorted(iters, it, side="right"))
    lengths = {len(v) for v in (*tr.scales.values(), *tr.tasks.values())}
    if keep == 0 or iters[keep - 1] != it or min(lengths, default=0) < keep:
        # the checkpoint is written right after the save of its step, so that save must be there
        last = int(iters[keep - 1]) if keep else None
        raise ParameterError("--resume", f"the saves up to the checkpoint (iteration {it})",
                             f"{path} (saved iterations end at {last}, "
                             f"{min(lengths, default=0)} saves)")
    truncate_to(path, keep)
    system = run.make_system({name: np.ascontiguousarray(arr) for name, arr in ck["state"].items()})
    resume_state = {"energy": float(tr.tasks["energy"][keep - 1])}
    if "kinetic" in tr.tasks:
        resume_state["kinetic"] = float(tr.tasks["kinetic"][keep - 1])
    recorder = Recorder()
    writer = HDF5Writer(path, mode="a")
    wall0 = float(tr.scales["wall_time"][keep - 1])
    run.model.oracle_calls = int(ck["oracle_calls"])
    try:
        res = run.advance(
            system, [recorder, writer], progress,
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
                     path=path, state=res.state, grid=dict(getattr(system, "grid", None) or {}))


__all__ = ["resume_run"]
