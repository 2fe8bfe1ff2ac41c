"""Shared helpers of the benchmark scripts: timing, tables, JSON output, machine info."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def timeit(fn, repeat=7, warmup=1):
    """Median wall time of ``fn()`` over ``repeat`` runs (after ``warmup`` runs), seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> dict:
    import numba
    import numpy as np

    return {
        "cpu_count": os.cpu_count(), "numba_threads": numba.get_num_threads(),
        "numpy": np.__version__, "numba": numba.__version__, "python": platform.python_version(),
        "machine": platform.machine(),
    }


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).rjust(widths[c]) for c in columns))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def save_json(name: str, payload: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name)
    with open(path, "w") as fh:
        json.dump({"machine": machine(), **payload}, fh, indent=2)
    return path
