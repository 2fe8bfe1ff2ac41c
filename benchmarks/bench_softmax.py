"""Softmax oracle throughput, in isolation and as users get it (``meanfield run``).

One command produces every number of the softmax performance table::

    python benchmarks/bench_softmax.py            # ~8-10 min on a quiet 2-core machine
    python benchmarks/bench_softmax.py --quick    # smaller sizes, writes softmax_quick.json
    python benchmarks/bench_softmax.py --markdown benchmarks/results/softmax.json  # the tables of docs/performance.md

and writes ``benchmarks/results/softmax.json`` (``--quick``: ``softmax_quick.json``,
never the published file). Sections, all in one process or its children:

1. the CPU (``/proc/cpuinfo``, ``lscpu`` and numba's host CPU name) and the load
   average before and after (timings taken while other jobs run are not
   comparable; the JSON says so);
2. this machine's large-matmul FLOP rate, float64/float32, 1 and 2 threads;
3. the isolated oracles: first-order SA (``Softmax.first_order``) and accelerated
   (``Softmax.hamiltonian_field``: z pass + force pass), symmetric A = I, at
   d = 4, 16, 64, float64 and float32, N = 16000 and 20000; at N = 20000 on 1
   and 2 threads (with a bit-identity check of the two), and the row-wise passes
   (each ordered pair, what non-symmetric A and causal masks use) for comparison;
   a pair counts 4 d + 10 flops, and ``x matmul`` is the rate in those flops over
   the matmul rate of the same dtype and thread count;
4. NumPy tiled and PyTorch tiled comparators (N = 16000, d = 16; torch optional);
5. the user path: ``meanfield run params.toml`` in fresh subprocesses, each step
   timed from the file's own ``/scales/wall_time`` (the loop's clock: no start-up,
   import or compile time), between saves far apart (``save_every`` = 8) and with a
   save every step (each save computes the energies, and its pass over pairs serves
   the next step); the intervals between saves in the middle of the run (not the
   first, which loads the cached kernels, nor the last, whose save has no next
   step to serve); >= 5 runs, min/median/max, and the ratio loop time per oracle
   call / isolated oracle timed in this process just before each run (the loop's
   overhead, under the same load; median and range over the runs); runs alternate
   with and without ``OPENBLAS_NUM_THREADS=1`` to see whether OpenBLAS threads slow
   the numba regions down;
6. peak memory of a 64000-particle d = 16 first-order run of 10 steps.
"""

from __future__ import annotations

import os

# OpenBLAS idle threads spin after a matmul and can slow a numba region started
# right after: make them sleep quickly (meanfield does the same on import). Must precede numpy.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np
from _common import RESULTS, cpu_info, cpu_label, load_average, machine
from threadpoolctl import threadpool_limits

from meanfield.models import make_model


def flops_per_pair(d: int) -> int:
    return 4 * d + 10


def timings(fn, reps: int) -> list[float]:
    fn()  # warm up (compilation, caches)
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def data(N, d, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((N, d)) / np.sqrt(d)).astype(dtype)
    Y = (0.3 * rng.standard_normal((N, d))).astype(dtype)
    return X, Y


# ------------------------------------------------------------ comparators


def numpy_tiled(X, A, block=1024):
    """SA field with BLAS tile products and np.exp, ``block`` targets at a time."""
    QA = X @ A  # rows x_i^T A
    out = np.empty_like(X)
    for i0 in range(0, X.shape[0], block):
        L = QA[i0:i0 + block] @ X.T
        L -= L.max(1, keepdims=True)
        np.exp(L, out=L)
        out[i0:i0 + block] = (L @ X) / L.sum(1)[:, None]
    return out


def torch_tiled_factory():
    try:
        import torch
    except Exception:  # noqa: BLE001 - torch is optional: a comparator, never a dependency
        return None, None

    def run(X, A, block=1024):
        Xt = torch.from_numpy(X)
        QA = Xt @ torch.from_numpy(A)
        out = torch.empty_like(Xt)
        with torch.no_grad():
            for i0 in range(0, X.shape[0], block):
                L = QA[i0:i0 + block] @ Xt.T
                L -= L.amax(1, keepdim=True)
                L.exp_()
                out[i0:i0 + block] = (L @ Xt) / L.sum(1, keepdim=True)
        return out

    return run, torch


def matmul_gflops(dtype, threads, n=3000):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    with threadpool_limits(threads):
        t = min(timings(lambda: a @ a, 3))
    return 2 * n**3 / t / 1e9


# ----------------------------------------------------------------- oracles


class Oracles:
    """The first-order SA and accelerated oracles of one (N, d, dtype) with A = I (symmetric)."""

    def __init__(self, N, d, dtype):
        A = np.eye(d).tolist()
        self.fo = make_model({"name": "softmax", "dynamics": "first_order", "d": d, "A": A}, dtype=dtype)
        self.ac = make_model({"name": "softmax", "dynamics": "accelerated", "d": d, "A": A}, dtype=dtype)
        self.X, self.Y = data(N, d, dtype)
        self.out = np.empty_like(self.X)
        self.outy = np.empty_like(self.Y)
        self.pairs = float(N) * N

    def symmetric(self, on: bool) -> None:
        self.fo.symmetric_pairs = self.ac.symmetric_pairs = on

    def first(self):
        self.fo.first_order(self.X, 0.0, out=self.out)
        return self.out

    def accel(self):
        self.ac.hamiltonian_field(self.X, self.Y, 0.0, out_x=self.out, out_y=self.outy)
        return self.out, self.outy

    def measure(self, threads, reps, symmetric=True):
        """Best and median seconds of both oracles, and the outputs (for the thread check)."""
        numba.set_num_threads(threads)
        self.symmetric(symmetric)
        t_first = timings(self.first, reps)
        first = self.out.copy()
        t_accel = timings(self.accel, reps)
        accel = (self.out.copy(), self.outy.copy())
        assert self.fo._sym == symmetric and self.ac._sym == symmetric
        self.symmetric(True)
        numba.set_num_threads(2)
        return {"first_s": min(t_first), "first_median_s": statistics.median(t_first),
                "accel_s": min(t_accel), "accel_median_s": statistics.median(t_accel)}, (first, *accel)


def isolated(Ns, ds, dtypes, peaks, reps, table):
    """Section 3: the oracles alone (symmetric passes; at the largest N also 1 thread and row-wise)."""
    rows = []
    for dt in dtypes:
        name = np.dtype(dt).name
        for d in ds:
            for N in Ns:
                orc = Oracles(N, d, dt)
                r = reps if d < 64 else max(1, reps - 1)
                variants = [("symmetric", 2, True)]
                if N == max(Ns):
                    variants += [("symmetric", 1, True), ("row-wise", 2, False)]
                    # the 2-thread symmetric oracle once more after the others: a core taken by another
                    # job for a moment shows as a slow round; each row keeps the best of its rounds
                    variants += [("symmetric", 2, True)]
                outs, best, rounds = {}, {}, {}
                for path, threads, sym in variants:
                    key = (path, threads)
                    t, outs[key] = orc.measure(threads, r, sym)
                    rounds[key] = rounds.get(key, 0) + 1
                    if key not in best or t["first_s"] + t["accel_s"] < best[key]["first_s"] + best[key]["accel_s"]:
                        best[key] = t
                for (path, threads), t in best.items():
                    row = {"N": N, "d": d, "dtype": name, "threads": threads, "path": path, **t,
                           "rounds": rounds[(path, threads)],
                           "first_Gpair_s": orc.pairs / t["first_s"] / 1e9,
                           "accel_Gpair_s": orc.pairs / t["accel_s"] / 1e9,
                           "accel_over_first": t["accel_s"] / t["first_s"]}
                    row["first_x_matmul"] = (row["first_Gpair_s"] * flops_per_pair(d)
                                             / peaks[f"{name}_threads{threads}"])
                    if ("symmetric", 1) in outs:
                        row["threads_1_2_bit_identical"] = all(
                            np.array_equal(a, b) for a, b in zip(outs[("symmetric", 1)], outs[("symmetric", 2)]))
                    rows.append(row)
                    table(row)
    return rows


def comparators(N, d, dtypes, reps, fo_rows):
    torch_run, torch_mod = torch_tiled_factory()
    out = []
    for dt in dtypes:
        X, _ = data(N, d, dt)
        A = np.eye(d, dtype=dt)
        row = {"N": N, "d": d, "dtype": np.dtype(dt).name, "threads": 2}
        with threadpool_limits(2):
            row["numpy_tiled_Gpair_s"] = float(N) * N / min(timings(lambda: numpy_tiled(X, A), reps)) / 1e9
        if torch_run is not None:
            torch_mod.set_num_threads(2)
            row["torch_tiled_Gpair_s"] = float(N) * N / min(timings(lambda: torch_run(X, A), reps)) / 1e9
            row["torch"] = torch_mod.__version__
        ours = [r for r in fo_rows if r["N"] == N and r["d"] == d and r["dtype"] == row["dtype"]
                and r["threads"] == 2 and r["path"] == "symmetric"]
        if ours:
            row["speedup_vs_numpy"] = ours[0]["first_Gpair_s"] / row["numpy_tiled_Gpair_s"]
            if "torch_tiled_Gpair_s" in row:
                row["speedup_vs_torch"] = ours[0]["first_Gpair_s"] / row["torch_tiled_Gpair_s"]
        out.append(row)
    return out


# --------------------------------------------------------------- user path


def user_params(dynamics, N, d, dtype, steps, save_every, path):
    """A parameter file as a user writes it: A = I, Gaussian start with covariance I/d."""
    lines = [
        "[model]", 'name = "softmax"', f'dynamics = "{dynamics}"', f"d = {d}", 'A = "identity"',
        "[integrator]", f'name = "{"euler" if dynamics == "first_order" else "exp_euler"}"', "h = 0.01",
        "[initial]", 'law = "gaussian"', f"n = {N}", f"mean = {[0.0] * d}",
        f"cov = {(np.eye(d) / d).tolist()}", "seed = 0",
    ]
    if dynamics == "accelerated":
        lines += ['momentum = "gaussian"', "[damping]", 'schedule = "constant"', "a = 1.0"]
    lines += ["[run]", "t0 = 0.0", f"steps = {steps}", f"save_every = {save_every}", f'dtype = "{dtype}"',
              "[output]", f'path = "{path}"', "save = []"]
    return "\n".join(lines) + "\n"


def user_run(params_path, out_path, env):
    """One ``meanfield run`` in a fresh process; per-interval seconds and oracle calls from /scales."""
    import h5py

    cmd = [sys.executable, "-c", "from meanfield_cli.main import main; main()", "run", params_path,
           "-o", out_path, "--overwrite", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"meanfield run failed: {proc.stderr.strip()[-500:]}")
    with h5py.File(out_path, "r") as f:
        wall = f["/scales/wall_time"][:]
        it = f["/scales/iteration"][:]
        calls = f["/scales/oracle_calls"][:]
    return wall, it, calls


def user_path(cases, runs, tmp):
    """Section 5. ``cases``: (label, dynamics, N, d, dtype, steps, save_every, env variants).

    Before each run the isolated oracle of the same case (N, d, dtype, dynamics) is timed
    in this process (median of 3 calls, 2 threads), so each run has its own
    loop / isolated ratio taken under the same load; the row reports their median.
    """
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS")}
    envs = {"default": base_env, "OPENBLAS_NUM_THREADS=1": {**base_env, "OPENBLAS_NUM_THREADS": "1"}}
    numba.set_num_threads(2)
    out = []
    for label, dyn, N, d, dtype, steps, save_every, variants in cases:
        params = os.path.join(tmp, f"{label}.toml")
        h5 = os.path.join(tmp, f"{label}.h5")
        with open(params, "w") as fh:
            fh.write(user_params(dyn, N, d, dtype, steps, save_every, h5))
        orc = Oracles(N, d, np.dtype(dtype))
        oracle = orc.first if dyn == "first_order" else orc.accel
        per = {v: [] for v in variants}
        ratio = {v: [] for v in variants}
        iso = []
        calls_per_step = None
        for _ in range(runs):
            for v in variants:  # interleaved, so a burst of load hits both alike
                iso.append(statistics.median(timings(oracle, 3)))
                wall, it, calls = user_run(params, h5, envs[v])
                # middle intervals: not the first (it loads the cached kernels), nor the last
                # (its save has no next step to hand its pass over pairs to)
                mid = slice(1, -1)
                dt = np.diff(wall)[mid] / np.diff(it)[mid]
                calls_per_step = float(np.diff(calls)[mid].sum() / np.diff(it)[mid].sum())
                per[v].append(float(np.median(dt)))
                ratio[v].append(per[v][-1] / calls_per_step / iso[-1])
        for v in variants:
            s, q = per[v], ratio[v]
            row = {"case": label, "dynamics": dyn, "N": N, "d": d, "dtype": dtype, "steps": steps,
                   "save_every": save_every, "env": v, "runs": len(s), "oracle_calls_per_step": calls_per_step,
                   "step_min_s": min(s), "step_median_s": statistics.median(s), "step_max_s": max(s),
                   "isolated_oracle_median_s": statistics.median(iso),
                   "loop_over_isolated": statistics.median(q), "loop_over_isolated_min": min(q),
                   "loop_over_isolated_max": max(q)}
            out.append(row)
            print(f"  {label:<28} {v:<24} step min/median/max {min(s):.3f}/{statistics.median(s):.3f}/"
                  f"{max(s):.3f} s  ({len(s)} runs)  loop/isolated median {row['loop_over_isolated']:.2f} "
                  f"({min(q):.2f}-{max(q):.2f})", flush=True)
    return out


# ------------------------------------------------------------------ memory

MEMORY_SCRIPT = """
import resource, sys, time
import numpy as np
import meanfield
cfg = {"model": {"name": "softmax", "dynamics": "first_order", "d": 16, "A": 0.25},
       "integrator": {"name": "euler", "h": 0.01},
       "initial": {"law": "gaussian", "n": int(sys.argv[1]), "mean": [0.0] * 16,
                   "cov": np.eye(16).tolist(), "seed": 0},
       "run": {"t0": 0.0, "steps": 10, "save_every": 10}, "output": {"save": []}}
t = time.perf_counter()
res = meanfield.Run(cfg).simulate()
wall = time.perf_counter() - t
# VmHWM: this process's peak RSS. (ru_maxrss is not: Linux carries the parent's RSS
# across fork + exec into it, so it reports the benchmark process itself.)
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")]
print(res.status, res.oracle_calls, wall, hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory_check():
    """64000 particles, d = 16, 10 first-order steps in a fresh process: peak RSS.

    A small run first fills numba's cache, so the measured peak is the run's,
    not the compiler's.
    """
    env = {**os.environ, "OPENBLAS_THREAD_TIMEOUT": "4"}
    subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, "500"], capture_output=True, env=env, check=False)
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, "64000"], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        return {"ok": False, "error": out.stderr.strip().splitlines()[-1:]}
    status, calls, wall, rss_kb = out.stdout.split()
    peak_mb = int(rss_kb) / 1024
    return {"N": 64000, "d": 16, "steps": 10, "status": status, "oracle_calls": int(calls),
            "wall_s": float(wall), "peak_rss_MB": peak_mb, "under_1GB": peak_mb < 1024}


# -------------------------------------------------------------------- main


def write(result, path):
    """Write the result so far (each section adds to it: a run stopped midway keeps what it measured)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(result, fh, indent=2)


def print_isolated_row(row):
    print(f"{row['N']:>6} {row['d']:>3} {row['dtype']:>7} {row['threads']:>2} {row['path']:>9} | "
          f"{row['first_Gpair_s']:6.3f} {row['accel_Gpair_s']:6.3f} {row['accel_over_first']:6.2f} | "
          f"{row['first_x_matmul']:5.2f}", flush=True)


def markdown(result) -> str:
    """The tables of docs/performance.md (markdown) from a result JSON of this script."""
    big = max(r["N"] for r in result["cases"])
    after = result.get("load_average_after")
    load = (f"load average {result['load_average_before'][0]:.1f} before, "
            + (f"{after[0]:.1f} after" if after else "run stopped before the end"))
    mm = result["matmul_GFLOP_s"]
    lines = [f"CPU: {result['cpu_label']}; {load}. Large matmul: {mm['float64_threads1']:.0f} / "
             f"{mm['float64_threads2']:.0f} GFLOP/s float64 on 1 / 2 threads, "
             f"{mm['float32_threads1']:.0f} / {mm['float32_threads2']:.0f} float32.", "",
             f"Isolated oracles, N = {big}, Gpair/s (x matmul: at 4d + 10 flops per ordered pair, over the "
             "matmul rate of the same dtype and threads):", "",
             "| d, dtype | SA, 2 thr | x matmul | accelerated | acc / SA | SA 1 -> 2 thr | row-wise SA | "
             "symmetric / row-wise (SA, acc) |",
             "|---|---|---|---|---|---|---|---|"]
    sel = {(r["d"], r["dtype"], r["threads"], r["path"]): r for r in result["cases"] if r["N"] == big}
    for dt in ("float64", "float32"):
        for d in sorted({r["d"] for r in result["cases"]}):
            s2, s1, rw = sel[(d, dt, 2, "symmetric")], sel[(d, dt, 1, "symmetric")], sel[(d, dt, 2, "row-wise")]
            lines.append(
                f"| {d}, f{dt[5:]} | {s2['first_Gpair_s']:.2f} | {s2['first_x_matmul']:.2f} | "
                f"{s2['accel_Gpair_s']:.2f} | {s2['accel_over_first']:.2f} | "
                f"x{s2['first_Gpair_s'] / s1['first_Gpair_s']:.2f} | {rw['first_Gpair_s']:.2f} | "
                f"x{s2['first_Gpair_s'] / rw['first_Gpair_s']:.2f}, x{s2['accel_Gpair_s'] / rw['accel_Gpair_s']:.2f} |")
    lines += ["", "Through `meanfield run` (seconds per step from `/scales/wall_time`, min / median / max "
              "over the runs; middle intervals between saves; loop / isolated = step per oracle call over the isolated "
              "oracle timed just before each run, median (range) over the runs):", "",
              "| run | env | step (s) | loop / isolated |", "|---|---|---|---|"]
    for u in result.get("user_path", []):
        lo, hi = u.get("loop_over_isolated_min", float("nan")), u.get("loop_over_isolated_max", float("nan"))
        lines.append(f"| {u['case']} | {u['env']} | {u['step_min_s']:.3f} / {u['step_median_s']:.3f} / "
                     f"{u['step_max_s']:.3f} ({u['runs']} runs) | {u['loop_over_isolated']:.2f} "
                     f"({lo:.2f}-{hi:.2f}) |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", metavar="JSON",
                    help="print the tables of docs/performance.md from a result file and exit")
    ap.add_argument("--quick", action="store_true",
                    help="N = 4000 and 8000, d = 16, 3 user runs: a smoke test (writes softmax_quick.json)")
    ap.add_argument("--out", default=None,
                    help="JSON path (default benchmarks/results/softmax.json, or softmax_quick.json with --quick)")
    ap.add_argument("--runs", type=int, default=None, help="user-path runs per variant (default 5; 3 with --quick)")
    ap.add_argument("--no-memory", action="store_true", help="skip the 64000-particle memory run")
    args = ap.parse_args(argv)
    if args.markdown:
        with open(args.markdown) as fh:
            print(markdown(json.load(fh)))
        return
    out_path = args.out or os.path.join(RESULTS, "softmax_quick.json" if args.quick else "softmax.json")
    runs = args.runs or (3 if args.quick else 5)
    Ns = (4000, 8000) if args.quick else (16000, 20000)
    ds = (16,) if args.quick else (4, 16, 64)
    dtypes = (np.float64, np.float32)
    cpu = cpu_info()
    label = cpu_label(cpu)
    t_begin = time.perf_counter()
    result = {"machine": machine(), "cpu_label": label, "load_average_before": load_average(),
              "flops_per_pair": "4 d + 10", "quick": args.quick}
    print(f"CPU: {label}; load average {result['load_average_before']}")
    if result["load_average_before"][0] > 0.5:
        print("WARNING: the machine is busy (load average above 0.5): absolute rates and thread "
              "scaling are not reliable; ratios within one run are less affected")

    peaks = {f"{np.dtype(dt).name}_threads{th}": matmul_gflops(dt, th) for dt in dtypes for th in (1, 2)}
    result["matmul_GFLOP_s"] = peaks
    print("large matmul GFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items()))

    print(f"\nisolated oracles, Gpair/s ({label}); x matmul = rate at 4 d + 10 flops per ordered pair "
          "over the matmul rate (same dtype and threads)")
    hdr = f"{'N':>6} {'d':>3} {'dtype':>7} {'th':>2} {'path':>9} | {'SA':>6} {'accel':>6} {'acc/SA':>6} | {'x mm':>5}"
    print(hdr)
    print("-" * len(hdr))
    rows = isolated(Ns, ds, dtypes, peaks, 3, print_isolated_row)
    result["cases"] = rows
    write(result, out_path)

    big = max(Ns)
    scaling = []
    for dt in dtypes:
        for d in ds:
            sel = {r["threads"]: r for r in rows if r["N"] == big and r["d"] == d
                   and r["dtype"] == np.dtype(dt).name and r["path"] == "symmetric"}
            row_wise = next(r for r in rows if r["N"] == big and r["d"] == d
                            and r["dtype"] == np.dtype(dt).name and r["path"] == "row-wise")
            scaling.append({"N": big, "d": d, "dtype": np.dtype(dt).name,
                            "first_threads1_Gpair_s": sel[1]["first_Gpair_s"],
                            "first_threads2_Gpair_s": sel[2]["first_Gpair_s"],
                            "first_scaling": sel[2]["first_Gpair_s"] / sel[1]["first_Gpair_s"],
                            "accel_scaling": sel[2]["accel_Gpair_s"] / sel[1]["accel_Gpair_s"],
                            "bit_identical": sel[1]["threads_1_2_bit_identical"],
                            "first_symmetric_over_row_wise": sel[2]["first_Gpair_s"] / row_wise["first_Gpair_s"],
                            "accel_symmetric_over_row_wise": sel[2]["accel_Gpair_s"] / row_wise["accel_Gpair_s"]})
    result["thread_scaling"] = scaling
    print(f"\nN = {big}: threads 1 -> 2 and symmetric over row-wise (2 threads)")
    for s in scaling:
        print(f"  d={s['d']:>3} {s['dtype']:>7}: SA x{s['first_scaling']:.2f}, accel x{s['accel_scaling']:.2f}, "
              f"bit-identical {s['bit_identical']}; symmetric/row-wise SA x{s['first_symmetric_over_row_wise']:.2f}, "
              f"accel x{s['accel_symmetric_over_row_wise']:.2f}", flush=True)

    cN = 4000 if args.quick else 16000
    result["comparators"] = comparators(cN, 16, dtypes, 1, rows)
    print(f"\ncomparators, N = {cN}, d = 16, 2 threads, Gpair/s")
    for c in result["comparators"]:
        print(f"  {c['dtype']}: NumPy tiled {c['numpy_tiled_Gpair_s']:.3f}, PyTorch tiled "
              f"{c.get('torch_tiled_Gpair_s', float('nan')):.3f}; ours x{c.get('speedup_vs_numpy', float('nan')):.1f} "
              f"NumPy, x{c.get('speedup_vs_torch', float('nan')):.1f} PyTorch", flush=True)

    both = ("default", "OPENBLAS_NUM_THREADS=1")
    uN, ud = big, 16
    se = 4 if args.quick else 8
    cases = [(f"sa_d{ud}_f64_save_every_{se}", "first_order", uN, ud, "float64", 3 * se, se, both),
             (f"sa_d{ud}_f64_save_every_1", "first_order", uN, ud, "float64", 5, 1, both[:1]),
             (f"accel_d{ud}_f64_save_every_{se}", "accelerated", uN, ud, "float64", 3 * se, se, both[:1]),
             (f"sa_d{ud}_f32_save_every_{se}", "first_order", uN, ud, "float32", 3 * se, se, both[:1])]
    print(f"\nuser path: meanfield run, N = {uN}, d = {ud}, seconds per step from /scales/wall_time "
          f"(middle intervals), {runs} runs; loop/isolated = step per oracle call / isolated oracle timed just before "
          "each run (median and range over the runs)")
    write(result, out_path)
    with tempfile.TemporaryDirectory() as tmp:
        result["user_path"] = user_path(cases, runs, tmp)
    write(result, out_path)

    if not args.no_memory:
        mem = memory_check()
        result["memory_64000_d16_10_steps"] = mem
        print(f"\n64000 particles, d = 16, 10 euler steps: {mem}")
    result["load_average_after"] = load_average()
    result["wall_s"] = time.perf_counter() - t_begin
    print(f"\nload average after: {result['load_average_after']}; total {result['wall_s']:.0f} s")
    write(result, out_path)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
