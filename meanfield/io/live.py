"""The status sidecar ``OUT.h5.status`` (JSON) of a running run: what ``meanfield info`` shows.

While a run writes ``OUT.h5``, HDF5 locks the file and readers are refused
(reading in the middle of a write is unsafe). The writer therefore also keeps
a small JSON file beside it, rewritten atomically (write ``OUT.h5.status.tmp``,
rename) at every save::

    {"status": "running", "step": 300, "t": 16.0, "saves": 31, "energy": 0.0123,
     "wall_time": 4.2, "updated": "2026-12-07T13:40:02", "pid": 4242, "host": "node7",
     "file": "/abs/OUT.h5", "model": "bilinear/accelerated", "end": {"t1": 61.0}}

and removes it when the run stops (the file then holds the status). A run
killed with SIGKILL leaves it behind; :func:`read_running` ignores it then
(its process is gone).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import socket

from .. import schema

#: Suffix of the status sidecar (``OUT.h5`` -> ``OUT.h5.status``).
STATUS_SUFFIX = ".status"


def status_path(path) -> str:
    """Path of the status sidecar of run file ``path``."""
    return os.fspath(path) + STATUS_SUFFIX


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def _number(value):
    """A JSON-able float (None for inf / nan, which JSON does not have)."""
    value = float(value)
    return value if math.isfinite(value) else None


class LiveStatus:
    """Keeps ``OUT.h5.status`` current while a run writes ``OUT.h5``.

    Parameters
    ----------
    path : str
        The run file (its final name, also while a replacing run writes a temporary file).
    config : dict or None
        The run's resolved parameters (model and end of the run are shown).
    """

    def __init__(self, path: str, config: dict | None = None):
        self.path = status_path(path)
        P = schema.typed(config or {})
        model = P.model
        bound = {k: v for k, v in P.run.given().items()
                 if k in ("t1", "steps", "oracle_calls", "layers") and v not in (None, False)}
        self.base = {"file": os.path.abspath(path), "pid": os.getpid(), "host": socket.gethostname(),
                     "model": f"{model.name}/{model.dynamics}", "end": bound,
                     "started": _now()}
        self.state = {"status": "running", "step": None, "t": None, "saves": 0}

    def save(self, record: dict, saves: int) -> None:
        """Record a save (``{"scales": ..., "tasks": ...}``); ``saves`` counts those in the file."""
        scales, tasks = record["scales"], record["tasks"]
        self.state.update(step=int(scales["iteration"]), t=float(scales["sim_time"]),
                          saves=int(saves),
                          wall_time=_number(scales["wall_time"]),
                          oracle_calls=int(scales["oracle_calls"]))
        if "energy" in tasks:
            self.state["energy"] = _number(tasks["energy"])
        self.write()

    def write(self) -> None:
        """Rewrite the sidecar atomically; a monitoring aid, so a failure to write is ignored."""
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w") as fh:
                json.dump({**self.base, **self.state, "updated": _now()}, fh)
            os.replace(tmp, self.path)
        except OSError:
            pass

    def remove(self) -> None:
        """The run stopped: its file holds the status now."""
        for name in (self.path, self.path + ".tmp"):
            try:
                os.remove(name)
            except OSError:
                pass


def read_status(path) -> dict | None:
    """The status sidecar of run file ``path`` as a dict; None when there is none (or unreadable)."""
    try:
        with open(status_path(path)) as fh:
            status = json.load(fh)
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:  # alive, another user's
        return True
    except (ProcessLookupError, OverflowError, TypeError, ValueError):
        return False
    return True


def read_running(path) -> dict | None:
    """The status sidecar of a run still writing ``path``, else None.

    A sidecar left by a killed run (its process gone) is ignored; one written on
    another host (a shared file system) is trusted.
    """
    status = read_status(path)
    if not status or status.get("status") != "running":
        return None
    if status.get("host") == socket.gethostname() and not _alive(status.get("pid")):
        return None
    return status
