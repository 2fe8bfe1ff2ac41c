"""The sweep's index (``DIR/index.csv``, ``DIR/index.json``): one row per run, written atomically.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
import time

from .spec import Job, Sweep, _canonical

#: Columns of index.csv before the grid values.
_HEAD = ("id", "file", "status", "action")
#: Columns of index.csv after the grid values.
_TAIL = ("t_final", "iterations", "oracle_calls", "energy", "kinetic", "potential",
         "wall_time", "saves", "seconds", "threads", "executions", "message")


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
        from .. import __version__

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


__all__ = []
