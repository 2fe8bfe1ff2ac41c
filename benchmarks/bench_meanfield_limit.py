"""Mean-field reading of the moment closure: particle moments -> population ODE like N^{-1/2}.

Usage::

    python benchmarks/bench_meanfield_limit.py [--quick]

The same elliptical law is sampled at N = 10^3 .. 10^6; particles are run
with rk4 (first-order and accelerated flows of the bilinear model) and their
final mean and covariance are compared with the moment ODE started from the
exact *population* mean and covariance. The distance, averaged over seeds,
should decay like N^{-1/2}; the fitted exponent is printed and written to
benchmarks/results/meanfield_limit.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # before numpy loads OpenBLAS (docs/performance.md)

import argparse
import sys

import numpy as np
from _common import print_table, save_json

import meanfield
from meanfield.reductions import bilinear_moment_ode

MEAN = [0.5, -0.2, 0.1]
SCATTER = np.array([[1.0, 0.3, 0.0], [0.3, 0.7, 0.1], [0.0, 0.1, 0.4]])


def config(law, dynamics, n, seed):
    init = {"law": law, "n": n, "mean": MEAN, "cov": SCATTER.tolist(), "seed": seed}
    if law == "student_t":
        init["dof"] = 7.0
    if dynamics == "accelerated":
        init.update(momentum="affine", S=[[0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1]], b=[0.0, 0.0, 0.0])
    return {
        "model": {"name": "bilinear", "dynamics": dynamics, "d": 3, "A": "identity",
                  "Q": [[1.0, 0.2, 0.0], [0.2, 1.5, 0.0], [0.0, 0.0, 0.6]], "m": [0.2, 0.1, -0.1]},
        "damping": {"schedule": "nesterov", "r": 3.0} if dynamics == "accelerated" else {"schedule": "none"},
        "integrator": {"name": "rk4", "h": 0.02},
        "initial": init,
        "run": {"t0": 1.0, "t1": 2.0, "save_every": 1000},
        "output": {"save": []},
    }


def population_moments(law):
    cov = SCATTER * (7.0 / 5.0 if law == "student_t" else 1.0)
    mu = np.array(MEAN)
    return mu, cov + np.outer(mu, mu)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N up to 10^5, fewer seeds")
    a = ap.parse_args(argv)
    Ns = [1000, 10000, 100000] if a.quick else [1000, 10000, 100000, 1000000]
    rows, fits = [], {}
    for law in ("gaussian", "student_t"):
        for dyn in ("first_order", "accelerated"):
            dist = []
            for n in Ns:
                seeds = range(2 if n >= 10**6 else (4 if a.quick else 8))
                ds = []
                for seed in seeds:
                    run = meanfield.Run(config(law, dyn, n, seed))
                    res = run.simulate()
                    mu0, M0 = population_moments(law)
                    S = np.eye(3) * 0.1 if dyn == "accelerated" else None
                    ode = bilinear_moment_ode(run.model, run.schedule, mu0, M0, res.t, S,
                                              np.zeros(3) if S is not None else None)
                    ds.append(np.linalg.norm(res["mean"][-1] - ode["mean"][-1])
                              + np.linalg.norm(res["cov"][-1] - ode["cov"][-1]))
                dist.append(float(np.sqrt(np.mean(np.square(ds)))))
                rows.append({"law": law, "dynamics": dyn, "N": n, "seeds": len(seeds), "rms_distance": dist[-1]})
            slope = float(np.polyfit(np.log(Ns), np.log(dist), 1)[0])
            fits[f"{law}/{dyn}"] = slope
            print(f"{law:10s} {dyn:12s} fitted exponent {slope:+.3f}  (expected -0.5)")
    print_table(rows, ["law", "dynamics", "N", "seeds", "rms_distance"])
    path = save_json("meanfield_limit.json", {"rows": rows, "exponents": fits, "expected": -0.5})
    print(f"wrote {path}")
    ok = all(abs(s + 0.5) < 0.15 for s in fits.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
