"""One run of a sweep, inside a worker: continue, restart or skip it by what its file says.
"""

from __future__ import annotations

import os
import threading
import time

from .. import schema
from ..cluster import set_numba_threads as _set_numba_threads
from ..errors import ParameterError, SimulationError
from .spec import _DONE, BAD

#: One run at a time per process: concurrent numba parallel regions from several
#: threads are unsafe with the workqueue threading layer, and one run per process
#: with cores/processes numba threads is the faster layout anyway.
_RUN_LOCK = threading.Lock()


def _file_state(path: str):
    """``(state, status)``: state is missing | done | unfinished | unreadable | busy | foreign."""
    from ..io.runfile import run_file_status

    rf = run_file_status(path)
    if rf.kind in ("missing", "unstarted"):  # unstarted: a run killed before its first save
        return "missing", None
    if rf.kind != "readable":
        return rf.kind, None
    stored = os.path.basename(str(schema.typed(rf.config or {}).output.path or ""))
    if stored != os.path.basename(path):
        return "foreign", rf.status
    if rf.status.startswith(_DONE):
        return "done", rf.status
    return "unfinished", rf.status


def _summary(path: str) -> dict:
    """Final diagnostics of a run file (last save)."""
    from ..io.reader import load

    tr = load(path, tasks=["energy", "kinetic", "potential"])
    out = {"status": str(tr.attrs.get("status", "?")), "saves": len(tr.t)}
    if len(tr.t):
        out.update(t_final=float(tr.t[-1]), iterations=int(tr.scales["iteration"][-1]),
                   oracle_calls=int(tr.scales["oracle_calls"][-1]),
                   wall_time=float(tr.scales["wall_time"][-1]))
        for name in ("energy", "kinetic", "potential"):
            if name in tr.tasks and len(tr.tasks[name]):
                out[name] = float(tr.tasks[name][-1])
    return out


def run_job(job: dict, threads: int | None = None, overwrite: bool = False) -> dict:
    """Run (or skip, continue, restart) one sweep job; returns its index row.

    Parameters
    ----------
    job : dict
        :meth:`Job.as_dict` (plain data: the run is built here, in the worker).
    threads : int or None
        Numba threads for this run (None: leave numba's setting).
    overwrite : bool
        Run again even if the file says "finished".

    Returns
    -------
    dict
        ``id``, ``file``, ``status``, ``action`` (skipped | ran | resumed |
        restarted | rerun | none), ``message``, ``threads`` (numba threads)
        and the final diagnostics.

    Notes
    -----
    Bad parameters (ParameterError) and numerical failures (SimulationError)
    are reported in the row; other exceptions (I/O errors, ...) propagate so
    that dask retries the run.
    """
    from ..resume import resume_run
    from ..run import Run

    t0 = time.perf_counter()
    path = job["path"]
    row = {"id": job["id"], "file": os.path.basename(path), "action": "none", "message": ""}
    with _RUN_LOCK:
        row["threads"] = _set_numba_threads(threads)
        state, _ = _file_state(path)
        if state in ("foreign", "busy"):
            why = ("exists with other parameters" if state == "foreign"
                   else "is being written by another process (HDF5 lock held)")
            row.update(status="error", message=f"{path} {why}; not touched")
            return _finish(row, t0)
        if state == "done" and not overwrite:
            row.update(_summary(path), action="skipped")
            return _finish(row, t0)
        try:
            run = Run(job["config"], base_dir=job["base_dir"])  # relative file names: beside the sweep file
        except ParameterError as exc:  # a bad grid point: report it, the others run
            row.update(status=BAD, message=str(exc))
            return _finish(row, t0)
        try:
            if state == "unreadable":
                # never destroy data silently: keep the unreadable file next to the new one
                aside = path + ".unreadable"
                os.replace(path, aside)
                row["message"] = f"unreadable file moved to {os.path.basename(aside)}; "
                state = "missing"
            if state == "unfinished" and not overwrite:
                try:
                    row["action"] = "resumed"
                    resume_run(path)
                except ParameterError as exc:  # no usable checkpoint: start again
                    row["message"] += f"could not resume ({exc}); restarted"
                    row["action"] = "restarted"
                    run.simulate(path, overwrite=True)
            else:
                row["action"] = "ran" if state == "missing" else "rerun"
                run.simulate(path, overwrite=state != "missing")
        except SimulationError:  # deterministic: reported (status "failed: ..."), not retried
            pass
        row.update(_summary(path))
    return _finish(row, t0)


def _finish(row: dict, t0: float) -> dict:
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


__all__ = ['BAD', 'run_job']
