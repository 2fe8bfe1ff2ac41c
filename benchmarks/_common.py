"""Shared helpers of the benchmark scripts: timing, tables, JSON output, machine info."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

#: Environment variable naming a folder for a benchmark's JSON and figures instead of the tracked
#: benchmarks/results/ and figures/ (``meanfield bench`` sets it unless given --update-results).
OUT_ENV = "MEANFIELD_BENCH_OUT"
RESULTS = os.environ.get(OUT_ENV) or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


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


def cpu_info() -> dict:
    """The CPU as /proc/cpuinfo, lscpu and numba (LLVM's host CPU name) see it."""
    import subprocess

    import llvmlite.binding as llvm
    import numba

    info = {"model_name": None, "lscpu_model_name": None, "avx512f": None,
            "numba_cpu_name": numba.config.CPU_NAME or llvm.get_host_cpu_name()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and info["model_name"] is None:
                    info["model_name"] = value.strip()
                if key.strip() == "flags" and info["avx512f"] is None:
                    info["avx512f"] = "avx512f" in value.split()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                info["lscpu_model_name"] = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return info


def cpu_label(info: dict) -> str:
    """One line naming the CPU, e.g. ``Intel(R) Xeon(R) Processor (emeraldrapids, AVX-512), 2 cores``."""
    vec = "AVX-512" if info.get("avx512f") else "no AVX-512"
    return f"{info.get('model_name') or 'unknown CPU'} ({info.get('numba_cpu_name')}, {vec}), {os.cpu_count()} cores"


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (another job on these cores skews every timing)."""
    return [round(v, 2) for v in os.getloadavg()]


def machine() -> dict:
    import numba
    import numpy as np

    return {
        "cpu_count": os.cpu_count(), "numba_threads": numba.get_num_threads(),
        "numpy": np.__version__, "numba": numba.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "cpu": cpu_info(),
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
