"""Fourier vs exact summation: time per oracle call against N, and the S^2 targets at N = 10^6.

One command, re-runnable (about 4-5 minutes on a quiet 2-core machine)::

    python benchmarks/bench_fourier.py            # writes benchmarks/results/fourier.json
                                                  # and figures/fourier_scaling.png
    python benchmarks/bench_fourier.py --quick    # N <= 10^5 (exact <= 16000), no 10^7 run (~1 min)

What it measures, in one process (ratios are what count on a shared machine):

* time of one first-order oracle call (SA, post_ln) against N on S^1
  (sphere d = 2, beta = 4: the 1-D circle path), S^2 (sphere d = 3, beta = 4:
  the spherical-harmonic path) and R^2 (softmax, A = I / 4, Gaussian tokens:
  the 2-D NUFFT), for summation = "fourier" (N = 10^3 .. 10^6)
  and "exact" (N up to 64000; larger N extrapolated with its fitted power
  law, and marked so); the fitted growth exponents (fourier from its three
  largest N, exact from N >= 16000) and the crossover N;
* S^2 first-order call at N = 10^6, summation_tol = 1e-10: the exact-equivalent
  pair rate 10^12 / time against the best rate any exact sum could reach on
  this machine, the large-matmul FLOP rate / (4 d + 10) flops per pair,
  measured in the same run; the accelerated call's time over the first-order one;
  and, for reference, the same S^2 call forced through the 3-D NUFFT path;
* peak memory (VmHWM) of a fresh subprocess doing one S^2 first-order call at N = 10^7;
* the user path: ``Run.simulate`` of an S^2 run with summation = "fourier",
  per-step time from the loop's own clock (``scales/wall_time``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse
import json
import platform
import subprocess
import sys
import time

import numba
import numpy as np
from bench_softmax import matmul_gflops, timings

from meanfield.models import make_model

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CASES = {
    "S1": {"name": "sphere", "d": 2, "beta": 4.0},
    "S2": {"name": "sphere", "d": 3, "beta": 4.0},
    "R2": {"name": "softmax", "d": 2, "A": 0.25},
}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def tokens(case: str, N: int, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, CASES[case]["d"]))
    if CASES[case]["name"] == "sphere":
        x /= np.linalg.norm(x, axis=1)[:, None]
    return np.ascontiguousarray(x)


def oracle(case: str, summation: str, dynamics="first_order", tol=1e-10):
    p = dict(CASES[case], dynamics=dynamics, summation=summation, summation_tol=tol)
    return make_model(p)


def call_time(case, summation, N, dynamics="first_order", reps=None, facts=None):
    m = oracle(case, summation, dynamics)
    x = tokens(case, N)
    # two states that differ in one coordinate, used in turn: every call is a new state (the
    # fourier backend keeps the embedding and the z_i of a state it has already seen)
    x2 = x.copy()
    x2[0, 0] = np.nextafter(x2[0, 0], 2.0)
    states = [x, x2]
    y = np.random.default_rng(1).standard_normal(x.shape)
    if CASES[case]["name"] == "sphere":
        y -= np.einsum("ij,ij->i", x, y)[:, None] * x

    def fn():
        states.reverse()
        if dynamics == "first_order":
            return m.first_order(states[0], 0.0)
        return m.hamiltonian_field(states[0], y, 0.0)

    reps = reps if reps is not None else (3 if N <= 10**5 else 2)
    ts = timings(fn, reps)
    if facts is not None:
        fs = (m.attention if CASES[case]["name"] == "sphere" else m)._fourier
        facts.update(times_s=[float(t) for t in ts], **(fs.last if fs is not None else {}))
    return min(ts)


def slope(Ns, ts) -> float:
    return float(np.polyfit(np.log(Ns), np.log(ts), 1)[0])


def crossover(Nf, f, Ne, e, pe):
    """Smallest N >= Ne[0] where fourier (log-log interpolated) beats exact (interpolated within
    its measured range, its power law N^pe beyond); None if never up to Nf[-1]. A value equal to
    Ne[0] means fourier already wins at the smallest exact N timed."""
    grid = np.logspace(np.log10(Ne[0]), np.log10(Nf[-1]), 400)
    fi = np.exp(np.interp(np.log(grid), np.log(Nf), np.log(f)))
    ei = np.where(grid <= Ne[-1], np.exp(np.interp(np.log(grid), np.log(Ne), np.log(e))),
                  e[-1] * (grid / Ne[-1]) ** pe)
    faster = grid[fi < ei]
    return float(faster[0]) if len(faster) else None


def memory_run(N: int) -> dict:
    """One S^2 first-order fourier call at N in a fresh subprocess: peak RSS (VmHWM) and time."""
    code = f"""
import time, numpy as np
from meanfield.models import make_model
rng = np.random.default_rng(0)
x = rng.standard_normal(({N}, 3)); x /= np.linalg.norm(x, axis=1)[:, None]
m = make_model(dict(name="sphere", d=3, beta=4.0, dynamics="first_order", summation="fourier"))
t = time.perf_counter(); m.first_order(x, 0.0); t = time.perf_counter() - t
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(t, int(hwm) / 1024.0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    t, mb = map(float, out.stdout.split())
    return {"N": N, "time_s": t, "peak_rss_MiB": mb, "state_MiB": N * 3 * 8 / 2**20}


def user_path(N: int, steps: int = 3) -> dict:
    import meanfield

    cfg = {"model": {"name": "sphere", "dynamics": "first_order", "d": 3, "beta": 4.0,
                     "summation": "fourier"},
           "integrator": {"name": "euler", "h": 0.1},
           "initial": {"law": "sphere_uniform", "n": N, "seed": 2},
           "run": {"t0": 0.0, "steps": steps, "save_every": steps}, "output": {"save": []}}
    meanfield.Run(dict(cfg, run=dict(cfg["run"], steps=1, save_every=1),
                       initial=dict(cfg["initial"], n=1000))).simulate()  # compile
    res = meanfield.Run(cfg).simulate()
    wall = np.asarray(res.scales["wall_time"])
    # wall_time of the last save: steps oracle calls plus two saves' diagnostics
    return {"N": N, "steps": steps, "wall_time_s": float(wall[-1]),
            "per_step_s_incl_saves": float(wall[-1]) / steps,
            "per_call_s_oracle_only": call_time("S2", "fourier", N, reps=1)}


def figure(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = {"S1": "C0", "S2": "C1", "R2": "C2"}
    for case, row in result["scaling"].items():
        f, e = row["fourier"], row["exact"]
        ax.loglog(f["N"], f["time_s"], "o-", color=colors[case], label=f"{case} fourier")
        ax.loglog(e["N"], e["time_s"], "s--", color=colors[case], mfc="none", label=f"{case} exact")
        Nx = np.array([e["N"][-1], f["N"][-1]], float)
        ax.loglog(Nx, e["time_s"][-1] * (Nx / Nx[0]) ** e["exponent"], ":", color=colors[case])
    ax.set_xlabel("N (tokens)")
    ax.set_ylabel("seconds per first-order oracle call")
    ax.set_title(f"fourier vs exact summation, summation_tol = 1e-10\n{result['cpu']}, "
                 f"{result['threads']} threads (shared machine); dotted: exact extrapolated", fontsize=8)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N <= 10^5, no 10^7 memory run")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "fourier.json"))
    ap.add_argument("--figure", default=os.path.join(ROOT, "figures", "fourier_scaling.png"))
    args = ap.parse_args(argv)
    Nf = [10**3, 10**4, 10**5] + ([] if args.quick else [3 * 10**5, 10**6])
    Ne = [1000, 4000, 8000, 16000] if args.quick else [4000, 16000, 32000, 64000]
    load = os.getloadavg()
    result = {"cpu": cpu_name(), "threads": numba.get_num_threads(), "loadavg_at_start": load,
              "note": ("ratios within this run are the meaningful numbers; the load average at the "
                       "start and end says whether other jobs shared the cores"),
              "matmul_GFLOP_s": matmul_gflops(np.float64, numba.get_num_threads()), "scaling": {}}
    print(f"{result['cpu']}, {result['threads']} threads, load {load}")
    print(f"large matmul: {result['matmul_GFLOP_s']:.1f} GFLOP/s float64", flush=True)
    for case in CASES:
        f = [call_time(case, "fourier", N) for N in Nf]
        e = [call_time(case, "exact", N) for N in Ne]
        pe = slope(Ne[1:], e[1:])
        pf = slope(Nf[-3:], f[-3:])
        exact_at = lambda N: e[-1] * (N / Ne[-1]) ** pe  # noqa: E731
        row = {"fourier": {"N": Nf, "time_s": f, "exponent": pf},
               "exact": {"N": Ne, "time_s": e, "exponent": pe,
                         "extrapolated_N_1e6_s": exact_at(1e6)},
               "crossover_N": crossover(Nf, f, Ne, e, pe)}
        result["scaling"][case] = row
        print(f"{case}: fourier {['%.3g' % v for v in f]} s (exponent {pf:.2f}); exact "
              f"{['%.3g' % v for v in e]} s (exponent {pe:.2f}); crossover N ~ {row['crossover_N']}",
              flush=True)
    if not args.quick:
        from meanfield.models import _fourier

        f1, fa, fn = {}, {}, {}
        t1 = call_time("S2", "fourier", 10**6, reps=3, facts=f1)
        ta = call_time("S2", "fourier", 10**6, "accelerated", reps=3, facts=fa)
        keep = _fourier.SH_MAX_FEATURES
        _fourier.SH_MAX_FEATURES = 0  # force the 3-D NUFFT path, for reference
        try:
            tn = call_time("S2", "fourier", 10**6, reps=1, facts=fn)
        finally:
            _fourier.SH_MAX_FEATURES = keep
        # the exact-rate bound again, right after the timings (the machine's load changes)
        gflops = max(result["matmul_GFLOP_s"], matmul_gflops(np.float64, numba.get_num_threads()))
        exact_rate = gflops * 1e9 / (4 * 3 + 10)
        result["S2_N1e6"] = {
            "first_order_s": t1, "first_order_facts": f1, "accelerated_s": ta,
            "accelerated_facts": fa, "accelerated_over_first_order": ta / t1,
            "nufft_path_first_order_s": tn, "nufft_path_facts": fn,
            "matmul_GFLOP_s_best": gflops,
            "exact_equivalent_pair_rate": 1e12 / t1,
            "exact_rate_bound_pairs_s": exact_rate,
            "ratio_vs_exact_bound": 1e12 / t1 / exact_rate,
            "exact_engine_extrapolated_s": result["scaling"]["S2"]["exact"]["extrapolated_N_1e6_s"]}
        print(json.dumps(result["S2_N1e6"], indent=1), flush=True)
        result["memory_N1e7"] = memory_run(10**7)
        print("N = 10^7 S^2 call:", result["memory_N1e7"], flush=True)
    result["user_path"] = user_path(10**5 if args.quick else 10**6)
    print("Run.simulate:", result["user_path"], flush=True)
    result["loadavg_at_end"] = os.getloadavg()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    figure(result, args.figure)
    print("wrote", args.out, "and", args.figure)


if __name__ == "__main__":
    main()
