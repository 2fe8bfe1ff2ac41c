"""Softmax oracle throughput: pairs/s of the first-order SA and accelerated oracles.

Compares, in one process (ratios are what count on a shared machine):

* the model's first-order SA oracle (``Softmax.first_order``) and accelerated
  oracle (``Softmax.hamiltonian_field``: z_i pass + force pass),
* NumPy tiled (BLAS tile products, ``np.exp``), PyTorch CPU tiled (optional,
  skipped when torch is not importable),
* the attainable FLOP rate of this machine (a large matmul); a pair is
  counted as 4 d + 10 flops,
* 1 vs 2 numba threads,

and checks that a 64000-particle d = 16 first-order run of 10 steps stays
under 1 GB peak memory (measured in a fresh subprocess).

Usage::

    python benchmarks/bench_softmax.py [--quick] [--out benchmarks/results/softmax.json]
"""

from __future__ import annotations

import os

# OpenBLAS idle threads spin after a matmul and halve a numba region started
# right after (PERFORMANCE.md): make them sleep quickly. Must precede numpy.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse
import json
import platform
import subprocess
import sys
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from meanfield.models import make_model

HERE = os.path.dirname(os.path.abspath(__file__))


def flops_per_pair(d: int) -> int:
    return 4 * d + 10


def best_time(fn, reps: int) -> float:
    fn()  # warm up (compilation, caches)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


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
        t = best_time(lambda: a @ a, 3)
    return 2 * n**3 / t / 1e9


# ----------------------------------------------------------------- oracles


def model_oracles(N, d, dtype):
    A = np.eye(d)
    fo = make_model({"name": "softmax", "dynamics": "first_order", "d": d, "A": A.tolist()}, dtype=dtype)
    ac = make_model({"name": "softmax", "dynamics": "accelerated", "d": d, "A": A.tolist()}, dtype=dtype)
    X, Y = data(N, d, dtype)
    out = np.empty_like(X)
    outy = np.empty_like(Y)
    return (lambda: fo.first_order(X, 0.0, out=out),
            lambda: ac.hamiltonian_field(X, Y, 0.0, out_x=out, out_y=outy), X, A)


def bench_case(N, d, dtype, torch_run, torch_mod, threads=2, baselines=True):
    reps = 3 if N <= 16000 else 1
    pairs = float(N) * N
    first, accel, X, A = model_oracles(N, d, dtype)
    numba.set_num_threads(threads)
    row = {"N": N, "d": d, "dtype": np.dtype(dtype).name, "threads": threads}
    t_first = best_time(first, reps)
    t_accel = best_time(accel, reps)
    row["first_order_Gpair_s"] = pairs / t_first / 1e9
    row["accelerated_Gpair_s"] = pairs / t_accel / 1e9
    row["accelerated_over_first_time"] = t_accel / t_first
    row["first_order_GFLOP_s"] = row["first_order_Gpair_s"] * flops_per_pair(d)
    if baselines:
        A_ = A.astype(dtype)
        with threadpool_limits(threads):
            row["numpy_tiled_Gpair_s"] = pairs / best_time(lambda: numpy_tiled(X, A_), reps) / 1e9
        if torch_run is not None:
            torch_mod.set_num_threads(threads)
            row["torch_tiled_Gpair_s"] = pairs / best_time(lambda: torch_run(X, A_), reps) / 1e9
        row["speedup_vs_numpy"] = row["first_order_Gpair_s"] / row["numpy_tiled_Gpair_s"]
        if "torch_tiled_Gpair_s" in row:
            row["speedup_vs_torch"] = row["first_order_Gpair_s"] / row["torch_tiled_Gpair_s"]
    return row


def thread_scaling(N, d, dtype):
    first, _, _, _ = model_oracles(N, d, dtype)
    rates = {}
    for th in (1, 2):
        numba.set_num_threads(th)
        rates[th] = float(N) * N / best_time(first, 3) / 1e9
    numba.set_num_threads(2)
    return {"N": N, "d": d, "dtype": np.dtype(dtype).name, "threads1_Gpair_s": rates[1],
            "threads2_Gpair_s": rates[2], "scaling": rates[2] / rates[1]}


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N in {4000, 16000}, d = 16 only")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "softmax.json"))
    ap.add_argument("--no-memory", action="store_true", help="skip the 64000-particle memory run")
    args = ap.parse_args(argv)

    Ns = (4000, 16000) if args.quick else (4000, 16000, 64000)
    ds = (16,) if args.quick else (4, 16, 64)
    dtypes = (np.float64, np.float32)
    torch_run, torch_mod = torch_tiled_factory()

    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "numba_threads": numba.config.NUMBA_NUM_THREADS,
                    "numba": numba.__version__, "numpy": np.__version__,
                    "torch": None if torch_mod is None else torch_mod.__version__},
        "flops_per_pair": "4 d + 10",
        "matmul_GFLOP_s": {f"{np.dtype(dt).name}_threads{th}": matmul_gflops(dt, th)
                           for dt in dtypes for th in (1, 2)},
        "cases": [], "thread_scaling": [],
    }
    print("large matmul GFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in result["matmul_GFLOP_s"].items()))
    hdr = (f"{'N':>6} {'d':>3} {'dtype':>7} | {'SA':>6} {'accel':>6} {'acc/SA':>6} | {'numpy':>6} "
           f"{'torch':>6} | {'xNumPy':>6} {'xTorch':>6} | {'%peak':>5}")
    print("Gpair/s, 2 threads (SA = first-order oracle; accel = accelerated oracle; acc/SA = time ratio)")
    print(hdr)
    print("-" * len(hdr))
    for dt in dtypes:
        peak = result["matmul_GFLOP_s"][f"{np.dtype(dt).name}_threads2"]
        for d in ds:
            for N in Ns:
                # comparators at N = 64000 would take minutes and rates barely depend on N
                row = bench_case(N, d, dt, torch_run, torch_mod, baselines=N <= 16000)
                row["fraction_of_matmul_peak"] = row["first_order_GFLOP_s"] / peak
                result["cases"].append(row)
                nan = float("nan")
                print(f"{N:>6} {d:>3} {row['dtype']:>7} | {row['first_order_Gpair_s']:6.3f} "
                      f"{row['accelerated_Gpair_s']:6.3f} {row['accelerated_over_first_time']:6.2f} | "
                      f"{row.get('numpy_tiled_Gpair_s', nan):6.3f} {row.get('torch_tiled_Gpair_s', nan):6.3f} | "
                      f"{row.get('speedup_vs_numpy', nan):6.2f} {row.get('speedup_vs_torch', nan):6.2f} | "
                      f"{100 * row['fraction_of_matmul_peak']:5.1f}", flush=True)
    print("\nthreads 1 -> 2 (first-order SA oracle, N = 16000)")
    for dt in dtypes:
        for d in ds:
            sc = thread_scaling(16000, d, dt)
            result["thread_scaling"].append(sc)
            print(f"  d={d:>3} {sc['dtype']:>7}: {sc['threads1_Gpair_s']:.3f} -> {sc['threads2_Gpair_s']:.3f} "
                  f"Gpair/s, x{sc['scaling']:.2f}", flush=True)
    if not args.no_memory:
        mem = memory_check()
        result["memory_64000_d16_10_steps"] = mem
        print(f"\n64000 particles, d = 16, 10 euler steps: {mem}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
