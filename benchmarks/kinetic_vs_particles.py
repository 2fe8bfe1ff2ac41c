"""The kinetic (semi-Lagrangian) solution of the accelerated sphere model on the circle vs particles.

Usage::

    python benchmarks/kinetic_vs_particles.py [--quick]

Sphere model, d = 2, beta = 2, constant damping alpha = 1, angles ~ a von
Mises mixture (mu = 0, 2.5; kappa = 2, 1; weights 0.6, 0.4), omega ~ N(0,
0.6^2); the same [model], [damping] and [initial] sections drive both runs:

* the kinetic pde run: ``[solver] kind = "pde"``, grid 128 x 160, momentum_max
  5, strang, h = 0.025;
* particle runs: rk4, h = 0.1, ``summation = "fourier"`` (tol 1e-10), N =
  10^3, 10^4, 10^5 with 8, 4, 2 seeds (``--quick``: 10^3, 10^4 with 4, 2).

At t = 1 (after the momenta have mostly damped and the clusters formed)
it prints, per N, the mean over seeds of |dH|, |dK|, |dU|, |d order
parameter| and the W1 distance (exact, on the circle) between the particles'
angles and the kinetic solution's theta marginal, each also times sqrt(N),
and the fitted exponent of W1 against N (expected -1/2). Results in
benchmarks/results/kinetic_vs_particles.json. Timings on a shared machine are
indicative only. Exit status 1 when the exponent is off by more than 0.15 or
a difference at the largest N exceeds 4 / sqrt(N).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # before numpy loads OpenBLAS (docs/performance.md)

import argparse
import copy
import sys
import time

import numpy as np
from _common import print_table, save_json

import meanfield
from meanfield.reductions.circle_pde import w1_circle_cdf

VM = {"law": "von_mises", "mu": [0.0, 2.5], "kappa": [2.0, 1.0], "weights": [0.6, 0.4],
      "momentum": "gaussian", "momentum_scale": 0.6}
T = 1.0
PDE = {"model": {"name": "sphere", "dynamics": "accelerated", "d": 2, "beta": 2.0},
       "integrator": {"name": "strang", "h": 0.025},
       "damping": {"schedule": "constant", "a": 1.0},
       "initial": VM,
       "run": {"t0": 0.0, "t1": T, "save_every": 10**6},
       "solver": {"kind": "pde", "grid": [128, 160], "momentum_max": 5.0}}
NAMES = ("energy", "kinetic", "potential")


def particles(n, seed):
    cfg = copy.deepcopy(PDE)
    cfg["model"].update(summation="fourier", summation_tol=1e-10)
    cfg.update(solver={"kind": "particles"}, integrator={"name": "rk4", "h": 0.1},
               initial={**VM, "n": n, "seed": seed}, output={"save": ["x"]})
    return meanfield.Run(cfg).simulate()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 10^3, 10^4 only")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    pde = meanfield.Run(PDE).simulate()
    pde_seconds = time.perf_counter() - t0
    ref = {k: float(pde.tasks[k][-1]) for k in NAMES}
    mean = pde.tasks["mean"][-1]
    ref["order_parameter"] = float(np.hypot(*mean))
    f = pde.state["density"]
    edges = np.linspace(0.0, 2 * np.pi, f.shape[0] + 1)  # theta + pi
    F = np.concatenate([[0.0], np.cumsum(f.sum(axis=1))])
    print(f"kinetic pde {f.shape[0]} x {f.shape[1]}, h = {PDE['integrator']['h']}: {pde_seconds:.1f} s; "
          + ", ".join(f"{k} = {v:.6f}" for k, v in ref.items()))

    seeds = {10**3: 4, 10**4: 2} if a.quick else {10**3: 8, 10**4: 4, 10**5: 2}
    rows = []
    for n, ns in seeds.items():
        t0 = time.perf_counter()
        d = {k: [] for k in (*NAMES, "order_parameter", "W1")}
        for seed in range(ns):
            res = particles(n, seed)
            for k in NAMES:
                d[k].append(abs(float(res.tasks[k][-1]) - ref[k]))
            x = res["x"][-1]
            d["order_parameter"].append(abs(float(np.hypot(*x.mean(axis=0))) - ref["order_parameter"]))
            d["W1"].append(w1_circle_cdf(np.arctan2(x[:, 1], x[:, 0]) + np.pi, edges, F))
        row = {"N": n, "seeds": ns}
        for k, v in d.items():
            row[f"|d{k}|" if k != "W1" else "W1"] = float(np.mean(v))
            row[f"sqrtN*{k}"] = float(np.mean(v) * np.sqrt(n))
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
    Ns = np.array(list(seeds))
    slope = float(np.polyfit(np.log(Ns), np.log([r["W1"] for r in rows]), 1)[0])
    print_table(rows, ["N", "seeds", "|denergy|", "|dkinetic|", "|dpotential|", "|dorder_parameter|", "W1",
                       "sqrtN*energy", "sqrtN*order_parameter", "sqrtN*W1", "seconds"])
    print(f"W1(particles, kinetic pde) at t = {T:g} ~ N^{slope:+.3f} (expected -0.5)")
    path = save_json("kinetic_vs_particles.json", {
        "pde": {**ref, "seconds": pde_seconds}, "rows": rows, "W1_exponent": slope, "expected": -0.5,
        "setup": {"pde": PDE, "particles": {"integrator": "rk4", "h": 0.1, "summation": "fourier"}},
        "note": "shared, loaded 2-core machine: timings indicative only"})
    print(f"wrote {path}")
    last = rows[-1]
    worst = max(last[f"sqrtN*{k}"] for k in (*NAMES, "order_parameter", "W1"))
    return 0 if abs(slope + 0.5) < 0.15 and worst < 4.0 else 1


if __name__ == "__main__":
    sys.exit(main())
