"""Wall time of a dense analytic Jacobian against one first-order field evaluation.

Sphere model, first-order SA (post_ln, beta = 4), d = 3, tokens uniform on S^2,
N = 64, 256, 1024, on 1 and 2 numba threads; the best of several runs of each
(other jobs on the cores only slow a run down), into a new matrix and into a
reused ``out`` buffer (no first touch of fresh pages). Prints the ratios and the
oracle calls a Jacobian is counted as (``Model.jacobian_cost``)::

    python benchmarks/bench_jacobian.py [--quick]    # ~30 s; writes results/jacobian.json
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
from _common import cpu_info, cpu_label, load_average, print_table, save_json

from meanfield.models import make_model

REPEATS = {64: (2000, 200), 256: (400, 40), 1024: (60, 8)}  # (field, Jacobian) runs per size


def best_of(fn, n):
    """Shortest wall time of ``fn()`` over ``n`` runs (after one warm-up), seconds."""
    fn()
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(quick=False):
    before = load_average()
    rows = []
    for threads in (1, 2):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        for N in (64, 256) if quick else (64, 256, 1024):
            rng = np.random.default_rng(0)
            x = rng.standard_normal((N, 3))
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            model = make_model({"name": "sphere", "d": 3, "beta": 4.0})
            out = np.empty_like(x)
            nf, nj = REPEATS[N]
            if quick:
                nf, nj = max(1, nf // 20), max(1, nj // 20)
            tf = best_of(lambda: model.first_order(x, 0.0, out=out), nf)
            tj = best_of(lambda: model.jacobian_first_order(x, 0.0), nj)
            J = np.empty((3 * N, 3 * N))
            tr = best_of(lambda: model.jacobian_first_order(x, 0.0, out=J), nj)
            rows.append({"threads": numba.get_num_threads(), "N": N, "d": 3, "field_us": tf * 1e6,
                         "jacobian_us": tj * 1e6, "ratio": tj / tf, "reused_out_us": tr * 1e6,
                         "ratio_reused": tr / tf, "counted": model.jacobian_cost(N)})
    print_table(rows, ["threads", "N", "d", "field_us", "jacobian_us", "ratio", "reused_out_us", "ratio_reused",
                       "counted"])
    if quick:
        return
    path = save_json("jacobian.json", {"cpu_label": cpu_label(cpu_info()), "load_average_before": before,
                                       "load_average_after": load_average(), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run (fewer repeats, no JSON)")
    main(**vars(ap.parse_args()))
