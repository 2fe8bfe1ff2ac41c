"""Parameter sweeps: a base parameter file x a grid x seeds, run on dask.distributed.

A sweep file (TOML, docs/file-format.md)::

    base = "params.toml"              # relative to the sweep file
    seeds = [0, 1, 2]                 # optional: overrides initial.seed
    [grid]                            # cartesian product of the listed values
    "integrator.name" = ["exp_euler", "kick_drift"]
    "damping.schedule" = ["constant", "nesterov"]
    # or a whole section per value (each schedule with its own keys):
    # damping = [{schedule = "constant", a = 1.0}, {schedule = "nesterov", r = 3.0}]
    [output]
    dir = "sweep-out"                 # relative to the sweep file

expands into one run per grid point and seed. Each run writes
``DIR/<slug>-<id>.h5``, where ``id`` is a hash of the run's full parameters
(so the name is stable across invocations and changes when the base file
does) and ``slug`` lists the grid values. ``DIR/index.csv`` and
``DIR/index.json`` list every run: its grid values, status, what this
invocation did with it, final diagnostics and file.

Running a sweep again skips runs whose file says "finished" (or stopped at
its wall-time limit), continues interrupted or killed runs from their
checkpoint, and restarts runs that cannot be continued. Runs are built inside
the workers from plain dicts; a grid point with bad parameters is reported in
the index with its one-line message and the others run. A worker process
that dies takes only its own run with it: the scheduler gives the run to
another worker, which continues it from its checkpoint.

Paths inside ``[initial]`` (``path``, ``momentum_path``) are relative to
the base file, as for ``meanfield run base.toml``. With ``--scheduler``,
the output directory must be visible to the workers at the same path.
"""

from __future__ import annotations

import copy
import csv
import datetime as _dt
import hashlib
import io
import itertools
import json
import math
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field

from .cluster import one_line as _one_line
from .cluster import set_numba_threads as _set_numba_threads
from .cluster import start_client as _start_client
from .cluster import stop_client as _stop_client
from .errors import ParameterError, SimulationError
from .io import config as _config

#: Top-level keys of a sweep file.
SWEEP_KEYS = ("base", "seeds", "grid", "output")
#: Keys of ``[output]`` in a sweep file.
OUTPUT_KEYS = ("dir",)
#: Columns of index.csv before the grid values.
_HEAD = ("id", "file", "status", "action")
#: Columns of index.csv after the grid values.
_TAIL = ("t_final", "iterations", "oracle_calls", "energy", "kinetic", "potential",
         "wall_time", "saves", "seconds", "threads", "executions", "message")
#: Statuses a re-run leaves alone.
_DONE = ("finished", "stopped")
#: Status of a grid point whose parameters are rejected (the message column says why).
BAD = "bad parameters"


@dataclass
class Job:
    """One run of a sweep, as plain data (what a worker receives, as a dict).

    Attributes
    ----------
    id : str
        10 hex digits of a hash of the full parameters (base + grid values).
    name : str
        File stem, ``<slug>-<id>``.
    params : dict
        The grid values of this run, ``{"section.key": value}`` (``initial.seed`` for seeds).
    config : dict
        Raw parameters (base file with the grid values set; ``output.path`` = ``path``).
    base_dir : str
        Directory of the base file (relative paths in ``[initial]`` refer to it).
    path : str
        Absolute path of the run's HDF5 file.
    """

    id: str
    name: str
    params: dict
    config: dict
    base_dir: str
    path: str

    def as_dict(self) -> dict:
        """The job as a JSON-able dict: ``id``, ``name``, ``params``, ``config``, ``base_dir``, ``path``."""
        return {"id": self.id, "name": self.name, "params": self.params, "config": self.config,
                "base_dir": self.base_dir, "path": self.path}


@dataclass
class Sweep:
    """A parsed sweep file and its runs.

    Attributes
    ----------
    file : str
        The sweep file.
    base : str
        Absolute path of the base parameter file.
    grid : dict
        ``{"section.key": [values]}`` in file order.
    seeds : list of int or None
    out_dir : str
        Absolute output directory.
    jobs : list of Job
        Cartesian product of the grid values, then seeds (last axis fastest).
    """

    file: str
    base: str
    grid: dict
    seeds: list | None
    out_dir: str
    jobs: list = field(default_factory=list)


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns.

    Attributes
    ----------
    rows : list of dict
        One index row per run, in the order of ``Sweep.jobs``.
    out_dir, index_csv, index_json : str
    """

    rows: list
    out_dir: str
    index_csv: str
    index_json: str

    def count(self, prefix: str, column: str = "status") -> int:
        """Number of rows whose ``column`` starts with ``prefix``."""
        return sum(str(r.get(column, "")).startswith(prefix) for r in self.rows)

    @property
    def ok(self) -> bool:
        """True when every run is finished (or stopped at its wall-time limit)."""
        return all(str(r["status"]).startswith(_DONE) for r in self.rows)


# --------------------------------------------------------------------------- sweep file


def load_sweep(path) -> Sweep:
    """Read and check a sweep file, expand it into jobs.

    Raises
    ------
    ParameterError
        Naming the sweep file, the key, what was expected and what was found.
    """
    file = os.fspath(path)
    raw = _config.read_toml(file)
    here = os.path.dirname(os.path.abspath(file))
    try:
        for key in raw:
            if key not in SWEEP_KEYS:
                raise ParameterError(key, f"a sweep key among {list(SWEEP_KEYS)}", key)
        base = raw.get("base")
        if not isinstance(base, str) or not base:
            raise ParameterError("base", "a parameter file name (relative to the sweep file)", base)
        base_path = os.path.normpath(os.path.join(here, base))
        if not os.path.isfile(base_path):
            raise ParameterError("base", "an existing parameter file (relative to the sweep file)",
                                 base)
        seeds = _check_seeds(raw.get("seeds"))
        grid = _check_grid(raw.get("grid", {}))
        if seeds is not None and "initial.seed" in grid:
            raise ParameterError("seeds", 'either seeds or grid "initial.seed", not both', seeds)
        out = raw.get("output", {})
        if not isinstance(out, dict):
            raise ParameterError("output", "a table [output] with dir", out)
        for key in out:
            if key not in OUTPUT_KEYS:
                raise ParameterError(f"output.{key}",
                                     f"a key of [output] (valid: {', '.join(OUTPUT_KEYS)})", key)
        default_dir = os.path.splitext(os.path.basename(file))[0] + "-out"
        out_dir = out.get("dir", default_dir)
        if not isinstance(out_dir, str) or not out_dir:
            raise ParameterError("output.dir", "a directory name", out_dir)
        out_dir = os.path.normpath(os.path.join(here, out_dir))
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise ParameterError("output.dir", "a directory (or a name not taken yet)", out_dir)
        if not os.path.isdir(os.path.dirname(out_dir)):  # as run -o: a typo creates no tree of folders
            raise ParameterError("output.dir", "a directory in an existing folder (only the last "
                                 "level is created)", out_dir)
    except ParameterError as exc:
        raise exc.in_file(file) from None
    base_raw = _config.read_toml(base_path)  # its syntax errors name the base file
    sweep = Sweep(file=file, base=base_path, grid=grid, seeds=seeds, out_dir=out_dir)
    sweep.jobs = expand(base_raw, grid, seeds, out_dir, os.path.dirname(base_path))
    return sweep


def _check_seeds(seeds):
    if seeds is None:
        return None
    if not isinstance(seeds, list) or not seeds:
        raise ParameterError("seeds", "a non-empty list of integers >= 0", seeds)
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ParameterError("seeds", "a non-empty list of integers >= 0", seeds)
    if len(set(seeds)) != len(seeds):
        raise ParameterError("seeds", "seeds without repeats", seeds)
    return list(seeds)


def _check_grid(grid) -> dict:
    if not isinstance(grid, dict):
        raise ParameterError("grid", 'a table [grid] of "section.key" = [values]', grid)
    flat = {}
    for key, values in grid.items():
        # `integrator.name = [...]` without quotes is a nested table in TOML: accept it
        if isinstance(values, dict):
            for sub, v in values.items():
                if isinstance(v, dict):
                    raise ParameterError(f"grid.{key}.{sub}", '"section.key" = [values]', v)
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = values
    for key, values in flat.items():
        parts = key.split(".")
        if len(parts) == 1 and key in _config.SECTIONS and key != "output":
            # a whole section per grid value: damping = [{schedule = "constant", a = 1.0}, ...]
            if not isinstance(values, list) or not values or \
                    not all(isinstance(v, dict) for v in values):
                raise ParameterError(f"grid.{key}", f"a non-empty list of [{key}] tables", values)
            parts = [key, ""]
        elif len(parts) != 2 or not all(parts):
            raise ParameterError(f"grid.{key}", 'a key "section.key" (e.g. "integrator.h")', key)
        if parts[0] not in _config.SECTIONS:
            raise ParameterError(f"grid.{key}", f"a section among {list(_config.SECTIONS)}",
                                 parts[0])
        if key == "output.path":
            raise ParameterError(f"grid.{key}",
                                 "a parameter other than output.path (set by the sweep)", key)
        if not isinstance(values, list) or not values:
            raise ParameterError(f"grid.{key}", "a non-empty list of values", values)
        canon = [_canonical(v) for v in values]
        if len(set(canon)) != len(canon):
            raise ParameterError(f"grid.{key}", "values without repeats", values)
    return flat


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _slug_part(key: str, value) -> str:
    tail = key.split(".")[-1]
    if isinstance(value, dict):  # a whole section: its values, e.g. "constant_1.0"
        text = "_".join(v if isinstance(v, str) else _canonical(v) for v in value.values())
    else:
        text = value if isinstance(value, str) else f"{tail}{_canonical(value)}"
    text = re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_.")
    return text[:24] or tail


def expand(base_raw: dict, grid: dict, seeds, out_dir: str, base_dir: str) -> list:
    """The cartesian product of ``grid`` values x ``seeds`` as a list of :class:`Job`.

    Parameters
    ----------
    base_raw : dict
        The base parameter file as read (not yet validated).
    grid : dict
        ``{"section.key": [values]}``.
    seeds : list of int or None
    out_dir, base_dir : str
        Absolute output directory; directory of the base file.
    """
    keys = list(grid)
    axes = [grid[k] for k in keys]
    if seeds is not None:
        keys.append("initial.seed")
        axes.append(seeds)
    jobs = []
    for values in itertools.product(*axes):
        params = dict(zip(keys, values))
        config = _merge(base_raw, params)
        ident = hashlib.sha1(_canonical(_identity(config)).encode()).hexdigest()[:10]
        slug = "_".join(_slug_part(k, v) for k, v in params.items())[:80].strip("_") or "run"
        name = f"{slug}-{ident}"
        path = os.path.join(out_dir, name + ".h5")
        if isinstance(config.get("output"), dict):
            config["output"]["path"] = path
        jobs.append(Job(id=ident, name=name, params=params, config=config, base_dir=base_dir,
                        path=path))
    return jobs


def _merge(base_raw: dict, params: dict) -> dict:
    """Base parameters with ``section.key`` values set (a bad section type is left to Run)."""
    config = copy.deepcopy(base_raw)
    for key, value in params.items():
        if "." not in key:  # a whole section
            config[key] = copy.deepcopy(value)
            continue
        section, name = key.split(".")
        body = config.setdefault(section, {})
        if isinstance(body, dict):
            body[name] = copy.deepcopy(value)
    out = config.setdefault("output", {})
    if isinstance(out, dict):
        out.setdefault("save", ["x", "y"])
    return config


def _identity(config: dict) -> dict:
    """What names a run: its parameters without the output path."""
    ident = copy.deepcopy(config)
    if isinstance(ident.get("output"), dict):
        ident["output"].pop("path", None)
    return ident


# --------------------------------------------------------------------------- one run (in a worker)

#: One run at a time per process: concurrent numba parallel regions from several
#: threads are unsafe with the workqueue threading layer, and one run per process
#: with cores/processes numba threads is the faster layout anyway.
_RUN_LOCK = threading.Lock()


def _file_state(path: str):
    """``(state, status)``: state is missing | done | unfinished | unreadable | busy | foreign."""
    from .io.runfile import run_file_status

    rf = run_file_status(path)
    if rf.kind in ("missing", "unstarted"):  # unstarted: a run killed before its first save
        return "missing", None
    if rf.kind != "readable":
        return rf.kind, None
    stored = os.path.basename(str(((rf.config or {}).get("output") or {}).get("path", "")))
    if stored != os.path.basename(path):
        return "foreign", rf.status
    if rf.status.startswith(_DONE):
        return "done", rf.status
    return "unfinished", rf.status


def _summary(path: str) -> dict:
    """Final diagnostics of a run file (last save)."""
    from .io.reader import load

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
    from .resume import resume_run
    from .run import Run

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


# --------------------------------------------------------------------------- the sweep (client)


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

    from .io.live import LiveStatus
    from .io.runfile import is_open_elsewhere

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


def _pending_row(job: Job) -> dict:
    return {"id": job.id, "file": os.path.basename(job.path), "status": "pending", "action": "none",
            "params": dict(job.params), "message": ""}


def _complete_row(old: dict, new: dict, job: Job) -> dict:
    row = dict(old)
    row.update(new)
    row["params"] = dict(job.params)
    return row


def _previous_executions(out_dir: str) -> dict:
    """``{id: executions}`` from an earlier index.json (missing or unreadable: empty)."""
    try:
        with open(os.path.join(out_dir, "index.json")) as fh:
            return {r["id"]: int(r.get("executions", 0)) for r in json.load(fh)["runs"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


class _IndexWriter:
    """Writes index.csv / index.json atomically, at most every few seconds unless forced."""

    def __init__(self, sweep: Sweep, rows: list, previous: dict, every: float = 2.0):
        self.sweep = sweep
        self.rows = rows
        self.previous = previous
        self.every = every
        self.last = -math.inf
        self.csv_path = os.path.join(sweep.out_dir, "index.csv")
        self.json_path = os.path.join(sweep.out_dir, "index.json")

    def _executions(self, row) -> int:
        n = self.previous.get(row["id"], 0)
        return n + (row.get("action") in ("ran", "resumed", "restarted", "rerun"))

    def write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return
        self.last = now
        keys = list(self.sweep.grid) + (["initial.seed"] if self.sweep.seeds is not None else [])
        runs = []
        for r in self.rows:
            r["executions"] = self._executions(r)
            runs.append({k: r.get(k) for k in (*_HEAD, "params", *_TAIL) if k in r})
        from . import __version__

        doc = {"sweep": os.path.abspath(self.sweep.file), "base": self.sweep.base,
               "written": _dt.datetime.now().isoformat(timespec="seconds"),
               "meanfield_version": __version__, "grid": self.sweep.grid, "seeds": self.sweep.seeds,
               "runs": runs}
        _atomic_write(self.json_path, json.dumps(doc, indent=1, default=str))
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow([*_HEAD, *keys, *_TAIL])
        for r in runs:
            params = r.get("params", {})
            w.writerow([*(r.get(k, "") for k in _HEAD),
                        *(_cell(params.get(k)) for k in keys),
                        *(_cell(r.get(k)) for k in _TAIL)])
        _atomic_write(self.csv_path, buf.getvalue())


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return _canonical(value)
    return str(value)


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C or a full disk: keep the old index, leave no temporary behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


__all__ = ["BAD", "Job", "Sweep", "SweepResult", "expand", "load_sweep", "run_job", "run_sweep"]
