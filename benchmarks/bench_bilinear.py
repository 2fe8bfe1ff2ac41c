"""Bilinear model: one accelerated exp_euler step vs the two BLAS products it needs.

Usage::

    python benchmarks/bench_bilinear.py [--n 1000000] [--d 16] [--dtype float64] [--quick]

Prints a table and writes benchmarks/results/bilinear.json. The acceptance
ratio (issue 2) is  t(exp_euler step) / (t(X.T @ Y) + t(X @ L))  <= 1.5, all
measured in this process. Also compares the O(N d^2) moment form with the
naive O(N^2 d) pairwise form at small N, and reports peak memory.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # before numpy loads OpenBLAS (docs/performance.md)

import argparse
import sys

import numpy as np
from _common import peak_rss_mb, print_table, save_json, timeit


def build(n, d, dtype, seed=0):
    import meanfield

    rng = np.random.default_rng(seed)
    R = rng.standard_normal((d, d))
    cfg = {
        "model": {"name": "bilinear", "dynamics": "accelerated", "d": d, "A": "identity",
                  "Q": (np.eye(d) + 0.05 * (R + R.T)).tolist(), "m": [0.1] * d},
        "damping": {"schedule": "nesterov", "r": 3.0},
        "integrator": {"name": "exp_euler", "h": 0.01},
        "initial": {"law": "gaussian", "n": 10, "momentum": "zero"},
        "run": {"t0": 1.0, "steps": 1, "dtype": dtype},
        "output": {"save": []},
    }
    run = meanfield.Run(cfg)
    X = rng.standard_normal((n, d)).astype(dtype)
    Y = (0.1 * rng.standard_normal((n, d))).astype(dtype)
    return run, X, Y


def pairwise_field(X, Y, As, Q, q):
    """The naive O(N^2 d) form of the Hamiltonian field (the test oracle)."""
    N = X.shape[0]
    Kx = X @ As @ X.T
    F = Kx @ Y / N
    del Kx
    Ky = Y @ Y.T
    G = -(Ky @ (X @ As)) / N - X @ Q + q
    return F, G


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="N = 10^5 and fewer repeats")
    a = ap.parse_args(argv)
    n = 100_000 if a.quick else a.n
    repeat = 3 if a.quick else a.repeat
    run, X, Y = build(n, a.d, a.dtype)
    rss0 = peak_rss_mb()
    model, sched, integ = run.model, run.schedule, run.integrator
    L = np.ascontiguousarray(np.eye(a.d, dtype=a.dtype) * 0.5)
    state = {"t": 1.0}

    def step():
        integ.step(model, sched, state["t"], 0.01, X, Y)
        state["t"] += 0.01

    # interleave the measurements so that load on the shared machine hits all alike
    samples = {"xty": [], "xl": [], "step": []}
    for _ in range(repeat):
        samples["xty"].append(timeit(lambda: X.T @ Y, 1, warmup=0 if samples["xty"] else 1))
        samples["xl"].append(timeit(lambda: X @ L, 1, warmup=0 if samples["xl"] else 1))
        samples["step"].append(timeit(step, 1, warmup=0 if samples["step"] else 1))
    t_xty, t_xl, t_step = (float(np.median(samples[k])) for k in ("xty", "xl", "step"))
    t_field = timeit(lambda: model.hamiltonian_field(X, Y, 1.0), repeat)
    rss1 = peak_rss_mb()
    ratio = t_step / (t_xty + t_xl)
    rows = [
        {"what": "X.T @ Y (BLAS)", "ms": 1e3 * t_xty},
        {"what": "X @ L (BLAS)", "ms": 1e3 * t_xl},
        {"what": "exp_euler step (in place)", "ms": 1e3 * t_step},
        {"what": "hamiltonian_field (new F, G)", "ms": 1e3 * t_field},
    ]
    print(f"bilinear, N = {n}, d = {a.d}, {a.dtype}")
    print_table(rows, ["what", "ms"])
    print(f"ratio step / (X.T@Y + X@L) = {ratio:.3f}  (target <= 1.5)")
    state_mb = 2 * X.nbytes / 2**20
    print(f"peak RSS {rss1:.0f} MiB (before timing {rss0:.0f} MiB); the state (x, y) is {state_mb:.0f} MiB")

    # moment form vs the pairwise O(N^2 d) form at small N
    pair_rows = []
    for m in (2000, 4000, 8000) if not a.quick else (2000,):
        run_m, Xm, Ym = build(m, a.d, "float64", seed=1)
        As, Q, q = run_m.model.As, run_m.model.Q, run_m.model.q
        tp = timeit(lambda: pairwise_field(Xm, Ym, As, Q, q), 3)
        tm = timeit(lambda: run_m.model.hamiltonian_field(Xm, Ym, 1.0), 7)
        F1, G1 = run_m.model.hamiltonian_field(Xm, Ym, 1.0)
        F2, G2 = pairwise_field(Xm, Ym, As, Q, q)
        err = max(np.abs(F1 - F2).max() / np.abs(F2).max(), np.abs(G1 - G2).max() / np.abs(G2).max())
        pair_rows.append({"N": m, "pairwise_ms": 1e3 * tp, "moments_ms": 1e3 * tm,
                          "speedup": tp / tm, "max_rel_diff": err})
    print_table(pair_rows, ["N", "pairwise_ms", "moments_ms", "speedup", "max_rel_diff"])
    path = save_json("bilinear_quick.json" if a.quick else "bilinear.json", {
        "n": n, "d": a.d, "dtype": a.dtype, "t_xty_s": t_xty, "t_xl_s": t_xl, "t_step_s": t_step,
        "t_field_s": t_field, "ratio_step_over_blas": ratio, "target": 1.5, "peak_rss_mib": rss1,
        "state_mib": state_mb, "moment_vs_pairwise": pair_rows,
    })
    print(f"wrote {path}")
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
