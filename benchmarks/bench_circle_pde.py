"""Particles on the circle -> the mean-field PDE: W1 distance decays like N^{-1/2}.

Usage::

    python benchmarks/bench_circle_pde.py [--quick]

Tokens on S^1 (sphere model, d = 2, beta = 1, Q = K = V = I) are sampled
i.i.d. from the smooth density (1 + 0.5 cos th + 0.2 cos 2 th + 0.3 sin th) / (2 pi)
and run with rk4 (h = 0.1) to T = 1.5, for SA and USA. The continuity equation
is solved on a 256-point periodic grid (FFT interaction, spectral flux,
DOP853). The Wasserstein-1 distance on the circle between the particles'
empirical law and the PDE solution at T, averaged over seeds, is fitted
against N; the exponent should be -1/2. Also reported: the PDE's mass error
and the distance the law moved (W1 between the initial and final PDE
solutions), so the comparison is not vacuous. Results go to
benchmarks/results/circle_pde.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # before numpy loads OpenBLAS (docs/performance.md)

import argparse
import sys
import time

import numpy as np
from _common import print_table, save_json

from meanfield.integrators import make_integrator
from meanfield.models import make_model
from meanfield.reductions.circle_pde import CirclePDE, sample_trig_density, trig_density, w1_circle
from meanfield.schedules import make_schedule
from meanfield.simulate import Horizon, simulate

A, B = (0.5, 0.2), (0.3,)
BETA, T, H, M = 1.0, 1.5, 0.1, 256


def particles(theta, normalized):
    x = np.ascontiguousarray(np.stack([np.cos(theta), np.sin(theta)], 1))
    m = make_model({"name": "sphere", "dynamics": "first_order", "d": 2, "beta": BETA, "normalized": normalized})
    simulate(m, make_schedule("none", 0.0), make_integrator("rk4", "first_order"), x, None,
             Horizon(t0=0.0, h=H, t1=T), save_every=10**6)
    return np.arctan2(x[:, 1], x[:, 0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N up to 4096, fewer seeds")
    a = ap.parse_args(argv)
    Ns = [256, 1024, 4096] if a.quick else [256, 1024, 4096, 16384]
    rows, fits, pde_info = [], {}, {}
    for normalized in (True, False):
        name = "SA" if normalized else "USA"
        pde = CirclePDE(M, BETA, normalized)
        f0 = trig_density(A, B, pde.theta)
        f = pde.solve(f0, [0.0, T])
        moved = w1_circle(sample_trig_density(A, B, 400000, np.random.default_rng(12345)), pde, f[-1])
        pde_info[name] = {"mass_error": float(max(abs(pde.mass(fk) - 1) for fk in f)),
                          "w1_initial_sample_to_final_pde": float(moved)}
        means = []
        for n in Ns:
            seeds = 4 if n >= 16384 else (4 if a.quick else 8)
            t0 = time.perf_counter()
            w = [w1_circle(particles(sample_trig_density(A, B, n, np.random.default_rng(s)), normalized), pde, f[-1])
                 for s in range(seeds)]
            means.append(float(np.mean(w)))
            rows.append({"attention": name, "N": n, "seeds": seeds, "mean_W1": means[-1],
                         "std_W1": float(np.std(w)), "seconds": time.perf_counter() - t0})
        slope = float(np.polyfit(np.log(Ns), np.log(means), 1)[0])
        fits[name] = slope
        print(f"{name:4s} fitted exponent of W1(particles, PDE) vs N: {slope:+.3f}  (expected -0.5); "
              f"PDE mass error {pde_info[name]['mass_error']:.1e}, law moved W1 = {moved:.3f}")
    print_table(rows, ["attention", "N", "seeds", "mean_W1", "std_W1", "seconds"])
    path = save_json("circle_pde.json", {"rows": rows, "exponents": fits, "expected": -0.5, "pde": pde_info,
                                         "setup": {"beta": BETA, "T": T, "h": H, "M": M, "a": A, "b": B}})
    print(f"wrote {path}")
    ok = all(abs(s + 0.5) < 0.15 for s in fits.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
