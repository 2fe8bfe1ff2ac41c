"""Running a sweep on dask.distributed: jobs to workers, results to the index, interrupts.
"""

from __future__ import annotations

import os
import time
import uuid

from ..cluster import one_line as _one_line
from ..cluster import start_client as _start_client
from ..cluster import stop_client as _stop_client
from ..errors import ParameterError
from .index import _complete_row, _IndexWriter, _pending_row, _previous_executions
from .job import _file_state, _summary, run_job
from .spec import Sweep, SweepResult, load_sweep


def _numba_threads_by_host(client) -> dict:
    """``{host: numba threads per run}``: cores / worker processes on that host (at least 1)."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    cores = client.run(os.cpu_count)
    per_host: dict = {}
    for addr, info in workers.items():
        host = info.get("host", addr)
        n, c = per_host.get(host, (0, 0))
        per_host[host] = (n + 1, max(c, cores.get(addr) or 1))
    return {host: max(1, c // n) for host, (n, c) in per_host.items()}


def _run_on_worker(job: dict, threads, threads_by_host: dict, overwrite: bool) -> dict:
    if threads is None:
        try:
            from distributed import get_worker

            w = get_worker()
            threads = threads_by_host.get(w.address.rsplit(":", 1)[0].split("://")[-1])
            if threads is None:
                threads = max(1, (os.cpu_count() or 1) // max(1, w.state.nthreads))
        except ValueError:  # not in a worker (e.g. called directly)
            threads = None
    return run_job(job, threads, overwrite)


def run_sweep(sweep, *, scheduler: str | None = None, workers: int | None = None,
              threads: int | None = None, client=None, progress=None, overwrite: bool = False,
              retries: int = 2, connect_timeout: float = 10.0) -> SweepResult:
    """Run every job of a sweep on dask.distributed and write the index.

    Parameters
    ----------
    sweep : Sweep or str
        A :class:`Sweep` or the path of a sweep file.
    scheduler : str or None
        Address of a running scheduler (``tcp://host:port``); None starts a
        LocalCluster with ``workers`` processes of one thread each.
    workers : int or None
        Worker processes of the local cluster (default: all cores).
    threads : int or None
        Numba threads per run (default: cores / worker processes on the host).
    client : distributed.Client or None
        Use this client (then ``scheduler`` and ``workers`` are ignored).
    progress : callable(done, total, row) or None
        Called after each finished run.
    overwrite : bool
        Run finished points again, replacing their files.
    retries : int
        Extra attempts for a run that raised an unexpected error; a run whose
        worker died is given to another worker by the scheduler
        (``distributed.scheduler.allowed-failures`` times).
    connect_timeout : float
        Seconds to wait for the scheduler at ``scheduler``.

    Returns
    -------
    SweepResult

    Raises
    ------
    ParameterError
        Bad ``workers``/``threads``/``scheduler`` values.
    KeyboardInterrupt
        After writing the index (runs not done are marked so) and stopping the cluster.
    """
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    for key, value in (("--workers", workers), ("--threads", threads)):
        bad = isinstance(value, bool) or not isinstance(value, int) or value < 1
        if value is not None and bad:
            raise ParameterError(key, "an integer >= 1", value)
    if not os.path.isdir(sweep.out_dir):
        os.mkdir(sweep.out_dir)  # the last level only: load_sweep checked that its parent exists
    previous = _previous_executions(sweep.out_dir)
    rows = [_pending_row(job) for job in sweep.jobs]
    own = client is None
    cluster = None
    if own:
        client, cluster = _start_client(scheduler, workers, connect_timeout)
    index = _IndexWriter(sweep, rows, previous)
    futures = {}
    try:
        from distributed import as_completed

        threads_by_host = _numba_threads_by_host(client)
        token = uuid.uuid4().hex[:6]
        for i, job in enumerate(sweep.jobs):
            fut = client.submit(_run_on_worker, job.as_dict(), threads, threads_by_host, overwrite,
                                key=f"meanfield-{job.name}-{token}", retries=retries, pure=False)
            futures[fut] = i
        index.write()
        for done, fut in enumerate(as_completed(futures), 1):
            i = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:  # noqa: BLE001 - retries exhausted, KilledWorker: one row
                row = dict(rows[i], status="error",
                           message=f"{type(exc).__name__}: {_one_line(exc)}")
            rows[i] = _complete_row(rows[i], row, sweep.jobs[i])
            index.write(force=done == len(rows))
            if progress is not None:
                progress(done, len(rows), rows[i])
    except KeyboardInterrupt:
        _settle_pending(rows, futures, sweep)
        cut = [job for job, r in zip(sweep.jobs, rows) if r["status"] == "not done: sweep interrupted"]
        index.write(force=True)
        if own:  # the runs go down with our cluster: their files say so (remote ones run on)
            _stop_client(client, cluster)
            own = False
            _mark_interrupted(cut)
        raise
    finally:
        if own:
            _stop_client(client, cluster)
    index.write(force=True)
    return SweepResult(rows=rows, out_dir=sweep.out_dir, index_csv=index.csv_path,
                       index_json=index.json_path)


def _settle_pending(rows: list, futures: dict, sweep: Sweep) -> None:
    """The rows of a stopped sweep as its files are: what finished (even if its result was not
    collected yet) is listed so, the rest "not done: sweep interrupted"."""
    for fut, i in futures.items():
        if rows[i]["status"] == "pending" and fut.status == "finished":
            rows[i] = _complete_row(rows[i], fut.result(), sweep.jobs[i])
    for i, r in enumerate(rows):
        if r["status"] != "pending":
            continue
        path = sweep.jobs[i].path
        if _file_state(path)[0] == "done":
            r.update(_summary(path), message="finished while the sweep was stopping")
        else:
            r["status"] = "not done: sweep interrupted"


def _mark_interrupted(jobs, wait: float = 10.0) -> None:
    """Set the status of runs that stopping the cluster cut short from "running" to "interrupted".

    Their workers were stopped mid-run, like a kill: each file keeps its saves and
    its sidecar checkpoint (what a rerun of the sweep continues from). A file still
    locked (a worker process not yet gone) is retried for up to ``wait`` seconds,
    then left as it is.
    """
    import h5py

    from ..io.live import LiveStatus
    from ..io.runfile import is_open_elsewhere

    deadline = time.monotonic() + wait
    todo = [job.path for job in jobs if os.path.isfile(job.path)]
    while todo:
        locked = []
        for path in todo:
            try:
                with h5py.File(path, "r+") as f:
                    if f.attrs.get("status") == "running":
                        f.attrs["status"] = "interrupted"
            except (OSError, KeyError, RuntimeError):
                if is_open_elsewhere(path):
                    locked.append(path)
                continue  # unreadable: the next sweep moves it aside
            LiveStatus(path).remove()  # its writer is gone
        if not locked or time.monotonic() > deadline:
            return
        todo = locked
        time.sleep(0.1)


__all__ = ['run_sweep']
