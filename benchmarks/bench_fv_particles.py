"""Particles on the circle -> the finite-volume mean-field density: W1 ~ N^{-1/2}, order parameter.

Usage::

    python benchmarks/bench_fv_particles.py [--quick]

Sphere model, d = 2, SA, beta = 1, Q = K = V = I, initial law von_mises
(mu = 0, 2.5; kappa = 2; weights 0.65, 0.35) for both the particles (exact
pairwise engine, rk4, h = 0.2) and the finite-volume solver (M = 1024,
SSP-RK3 at 0.8 x the CFL step), so the same [model] and [initial] sections
drive both.

1. W1 on the circle between the particles and the pde density at T = 3,
   averaged over seeds (16, 16, 8 for N = 500, 2000, 8000), against N; the
   fitted exponent should be -1/2. W1 of the same samples at t = 0 is shown
   too: the flow (two clusters forming and merging) roughly doubles it, and
   its seed-to-seed spread is large, hence the seeds.
2. The order parameter |int e^{i theta} rho| through cluster formation
   (0.30 -> 0.9998 over t in [0, 8]) for N = 10^4 particles (quick: 2000),
   as a multiple of 1/sqrt(N).
3. Cost of one finite-volume rhs evaluation against M (FFT interaction sums).

``--large``: the same two checks at large N with the particles' fast Fourier
summation (``summation = "fourier"``, tol 1e-10): W1 for N = 10^4, 10^5, 10^6
(4, 2, 1 seeds) and the order parameter for N = 10^5; results in
benchmarks/results/fv_particles_large.json.
Results go to benchmarks/results/fv_particles.json. Timings on a shared machine
are indicative only.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # before numpy loads OpenBLAS (docs/performance.md)

import argparse
import sys
import time

import numpy as np
from _common import print_table, save_json, timeit

import meanfield
from meanfield.pde.finite_volume import CircleFV
from meanfield.pde.stepping import solve

LAW = {"law": "von_mises", "mu": [0.0, 2.5], "kappa": 2.0, "weights": [0.65, 0.35]}
MODEL = {"name": "sphere", "dynamics": "first_order", "d": 2, "beta": 1.0, "normalized": True}
H, M = 0.2, 1024


def particles(n, seed, T, saves=1, summation="exact"):
    steps = round(T / H)
    model = dict(MODEL, summation=summation)
    cfg = {"model": model, "integrator": {"name": "rk4", "h": H}, "initial": dict(LAW, n=n, seed=seed),
           "run": {"t0": 0.0, "t1": T, "save_every": steps // saves}, "output": {"save": ["x"]}}
    return meanfield.Run(cfg).simulate()["x"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N up to 2000, fewer seeds")
    ap.add_argument("--large", action="store_true",
                    help="N = 10^4..10^6 with the particles' Fourier summation (order parameter at 10^5)")
    a = ap.parse_args(argv)
    summation = "fourier" if a.large else "exact"
    s = CircleFV(MODEL, M)

    # 1. W1 against N (and W1 of the same samples at t = 0: the sampling error the flow amplifies)
    T = 3.0
    f = solve(s, s.initial_density(LAW), 0.0, T, method="ssprk3", save=[0.0, T])["density"]
    Ns = [10**4, 10**5, 10**6] if a.large else [500, 2000] if a.quick else [500, 2000, 8000]
    rows, means = [], []
    for n in Ns:
        if a.large:
            seeds = {10**4: 4, 10**5: 2, 10**6: 1}[n]
        else:
            seeds = 4 if a.quick else (8 if n >= 8000 else 16)
        t0 = time.perf_counter()
        w, w0 = [], []
        for seed in range(seeds):
            x = particles(n, seed, T, summation=summation)
            w0.append(s.w1(np.arctan2(x[0, :, 1], x[0, :, 0]), f[0]))
            w.append(s.w1(np.arctan2(x[-1, :, 1], x[-1, :, 0]), f[-1]))
        means.append(float(np.mean(w)))
        rows.append({"N": n, "seeds": seeds, "mean_W1": means[-1], "stderr_W1": float(np.std(w) / np.sqrt(seeds)),
                     "mean_W1_t0": float(np.mean(w0)), "sqrtN_x_W1": means[-1] * np.sqrt(n),
                     "seconds": time.perf_counter() - t0})
    slope = float(np.polyfit(np.log(Ns), np.log(means), 1)[0])
    print(f"W1(particles, pde) at T = {T:g} ~ N^{slope:+.3f} (expected -0.5)")
    print_table(rows, ["N", "seeds", "mean_W1", "stderr_W1", "mean_W1_t0", "sqrtN_x_W1", "seconds"])

    # 2. order parameter through clustering
    n = 10**5 if a.large else 2000 if a.quick else 10000
    times = np.linspace(0.0, 8.0, 5)
    rho = solve(s, s.initial_density(LAW), 0.0, times[-1], method="ssprk3", save=times)["density"]
    r_pde = np.array([s.diagnostics(f)["order_parameter"] for f in rho])
    x = particles(n, 0, times[-1], saves=4, summation=summation)
    r_part = np.linalg.norm(x.mean(axis=1), axis=1)
    dev = (r_part - r_pde) * np.sqrt(n)
    op_rows = [{"t": float(t), "r_pde": float(rp), "r_particles": float(rq), "sqrtN_x_diff": float(d)}
               for t, rp, rq, d in zip(times, r_pde, r_part, dev)]
    print(f"order parameter, N = {n}: max |diff| = {np.abs(dev).max():.2f} / sqrt(N)")
    print_table(op_rows, ["t", "r_pde", "r_particles", "sqrtN_x_diff"])

    # 3. cost of one rhs
    cost = []
    for m in () if a.large else (256, 1024, 4096, 16384):
        sm = CircleFV(MODEL, m)
        r0 = sm.initial_density(LAW)
        out = np.empty(m)
        sec = timeit(lambda: sm.rhs(r0 * (1 + 1e-12 * np.random.rand()), 0.0, out), repeat=20)
        cost.append({"M": m, "rhs_microseconds": 1e6 * sec})
    if cost:
        print_table(cost, ["M", "rhs_microseconds"])

    path = save_json("fv_particles_large.json" if a.large else "fv_particles.json", {"summation": summation,"w1": rows, "exponent": slope, "expected": -0.5,
                                           "order_parameter": {"N": n, "rows": op_rows}, "rhs_cost": cost,
                                           "setup": {"law": LAW, "model": MODEL, "h": H, "M": M, "T": T}})
    print(f"wrote {path}")
    return 0 if abs(slope + 0.5) < 0.15 and np.abs(dev).max() < 4.0 else 1


if __name__ == "__main__":
    sys.exit(main())
