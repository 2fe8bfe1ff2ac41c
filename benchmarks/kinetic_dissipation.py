"""What limits the energy identity dH/dt = -alpha int int y^T B y / z f of the kinetic solver.

Usage::

    python benchmarks/kinetic_dissipation.py

The dissipation residual a run records, R = H(t) - H(0) + int_0^t 2 alpha K
(trapezoid over the steps), is the sum of three errors: the time step's
(h), the position grid's (M cells) and the momentum grid's (K cells).
Refining one of them with the others fixed, R itself converges only until
the other two errors dominate, so log2(R_j / R_{j+1}) (``raw order``) falls
below the true order and tends to 0; the differences D_j = R_j - R_{j+1}
cancel the fixed part and show the order of the refined contribution
(``order of differences``, log2(D_j / D_{j+1})).

Run: accelerated sphere model on the circle, beta = 2, alpha = 1, the von
Mises mixture of tests/test_kinetic.py, omega ~ N(0, 0.6^2), box 6, t = 1.
Results in benchmarks/results/kinetic_dissipation.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import sys

import numpy as np
from _common import print_table, save_json

import meanfield

VM = {"law": "von_mises", "mu": [0.0, 2.5], "kappa": [2.0, 1.0], "weights": [0.6, 0.4],
      "momentum": "gaussian", "momentum_scale": 0.6}


def residual(M, K, h):
    cfg = {"model": {"name": "sphere", "dynamics": "accelerated", "d": 2, "beta": 2.0},
           "integrator": {"name": "strang", "h": h}, "damping": {"schedule": "constant", "a": 1.0},
           "initial": VM, "run": {"t0": 0.0, "t1": 1.0, "save_every": 10**6},
           "solver": {"kind": "pde", "grid": [M, K], "momentum_max": 6.0}}
    return float(meanfield.Run(cfg).simulate().tasks["dissipation_residual"][-1])


def sweep(name, values, make):
    R = np.array([residual(*make(v)) for v in values])
    D = R[:-1] - R[1:]
    rows = []
    for j, v in enumerate(values):
        rows.append({name: v, "R": float(R[j]),
                     "raw order": float(np.log2(abs(R[j - 1] / R[j]))) if j else None,
                     "D": float(D[j]) if j < D.size else None,
                     "order of differences": float(np.log2(abs(D[j - 1] / D[j]))) if 0 < j < D.size else None})
    print(f"refining {name} ({', '.join(f'{k} = {v}' for k, v in zip(('M', 'K', 'h'), make('*')) if v != '*')})")
    print_table(rows, [name, "R", "raw order", "D", "order of differences"])
    return rows


def main():
    out = {
        "K": sweep("K", [96, 192, 384, 768], lambda K: (64, K, 0.0125)),
        "M": sweep("M", [32, 64, 128, 256], lambda M: (M, 768, 0.0125)),
        "h": sweep("h", [0.1, 0.05, 0.025, 0.0125], lambda h: (128, 384, h)),
    }
    path = save_json("kinetic_dissipation.json", {"sweeps": out, "setup": {"initial": VM, "beta": 2.0, "alpha": 1.0,
                                                                           "momentum_max": 6.0, "t": 1.0}})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
