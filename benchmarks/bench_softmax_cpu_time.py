"""Symmetric vs row-wise softmax passes on one thread, in CPU time (usable on a shared machine).

Wall-clock rates mean little while other jobs share the cores; one thread's CPU
time does not count the time the thread waits for a core (caches are still
shared). Both paths of the same model run interleaved in this process, N = 8000,
d = 4, 16, 64, float64 and float32, A = I::

    python benchmarks/bench_softmax_cpu_time.py     # ~1 min quiet; writes results/softmax_cpu_time.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import time

import numba
import numpy as np
from _common import cpu_info, cpu_label, load_average, save_json

from meanfield.models import make_model


def main(N=8000, reps=3):
    numba.set_num_threads(1)
    before = load_average()
    rows = []
    for dt in (np.float64, np.float32):
        for d in (4, 16, 64):
            rng = np.random.default_rng(0)
            X = (rng.standard_normal((N, d)) / np.sqrt(d)).astype(dt)
            Y = (0.3 * rng.standard_normal((N, d))).astype(dt)
            fo = make_model({"name": "softmax", "dynamics": "first_order", "d": d, "A": "identity"}, dtype=dt)
            ac = make_model({"name": "softmax", "dynamics": "accelerated", "d": d, "A": "identity"}, dtype=dt)
            o, oy = np.empty_like(X), np.empty_like(Y)
            oracles = {"SA": lambda: fo.first_order(X, 0.0, out=o),
                       "acc": lambda: ac.hamiltonian_field(X, Y, 0.0, out_x=o, out_y=oy)}
            times = {}
            for rep in range(reps):
                for sym in (True, False):
                    fo.symmetric_pairs = ac.symmetric_pairs = sym
                    for name, fn in oracles.items():
                        if rep == 0:
                            fn()  # compile / warm up
                        t = time.process_time()
                        fn()
                        times.setdefault((sym, name), []).append(time.process_time() - t)
            r = {k: N * N / min(v) / 1e9 for k, v in times.items()}
            row = {"N": N, "d": d, "dtype": np.dtype(dt).name, "threads": 1,
                   "sym_SA": r[(True, "SA")], "row_SA": r[(False, "SA")],
                   "sym_acc": r[(True, "acc")], "row_acc": r[(False, "acc")]}
            rows.append(row)
            print(f"d={d:>3} {row['dtype']}: SA symmetric {row['sym_SA']:.3f} row-wise {row['row_SA']:.3f} "
                  f"(x{row['sym_SA'] / row['row_SA']:.2f}); accelerated {row['sym_acc']:.3f} / {row['row_acc']:.3f} "
                  f"(x{row['sym_acc'] / row['row_acc']:.2f}) Gpair/s of CPU time", flush=True)
    path = save_json("softmax_cpu_time.json", {"cpu_label": cpu_label(cpu_info()), "load_average_before": before,
                                               "load_average_after": load_average(), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
