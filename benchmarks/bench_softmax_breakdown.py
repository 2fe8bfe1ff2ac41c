"""Where a symmetric softmax pass spends its time: its four tile sweeps, one thread, CPU time.

The symmetric first-order pass (``meanfield._kernels.pairwise._sym_round``) does, for
every group of four target rows against a source tile, four sweeps over the tile:

* ``logits``  -- ``l_ij - mu_i`` (d multiply-adds per pair),
* ``exp + z`` -- ``g_ij = exp(l_ij - mu_i - mu_j)`` (the polynomial exp of
  ``meanfield._kernels.fastexp``) and the z sums of both rows (2 multiply-adds),
* ``row sums`` -- ``sum_j g_ij w_j x_j`` (d multiply-adds),
* ``columns`` -- ``sum_i g_ij w_i x_i`` into the source tile's sums (d multiply-adds).

Each sweep is timed alone over one (TJ x TJ) tile pair held in cache, in CPU time
(usable while other jobs share the cores), as ns per unordered pair, and as
*multiply-add equivalents*: the number of multiply-adds per pair that a one-thread
large matmul of the same dtype performs in that time. A sweep that needs k
multiply-adds per pair and shows about k equivalents runs at the matmul's rate.

It also times a loop of nothing but independent 512-bit multiply-adds (``peak``): the
rate at which one core issues vector operations. The matmul runs at about that rate,
so a pass that issues n vector operations per ordered pair is bounded by
(2 d + 5) / n times the matmul rate (the 4 d + 10 flops of the target are 2 d + 5
multiply-adds). The vector operations of the exponential sweep are counted in its
compiled hot loop (``exp_ops_per_pair``: numba's assembly of a fresh compile, every
512-bit instruction that is not a move or broadcast, per exponential); the logits, row
and column sweeps issue d multiply-adds per pair each. Per ordered pair the pass then
issues n = (3 d + e) / 2 operations, and ``ceiling_x_matmul`` = (2 d + 5) / n is what the pass
would reach if every operation issued at the matmul's rate (which the loop shows to be the
core's issue rate)::

    python benchmarks/bench_softmax_breakdown.py   # ~1 min; writes results/softmax_breakdown.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import re
import time

import numba
import numpy as np
from _common import cpu_info, cpu_label, load_average, save_json
from numba import njit
from threadpoolctl import threadpool_limits

from meanfield._kernels import pairwise as PK
from meanfield._kernels._config import wide_vectors

SWEEPS = {0: "logits", 1: "exp + z", 2: "row sums", 3: "columns", 9: "all four"}


@njit(cache=False)
def _sweeps(which, reps, tj, QA, Xt, XWt, MUt, Wt, S, col, U, at, sh, rows, zero):
    d = QA.shape[1]
    total = 0.0
    for _ in range(reps):
        for g in range(0, tj, PK.R):
            for r in range(PK.R):
                rows[r] = g + r
            if which == 0 or which == 9:
                PK._tile_logits_group(QA, rows, Xt, tj, S, sh)
            if which == 1 or which == 9:
                z0, z1, z2, z3 = PK._tile_sym_exp_group(S, MUt, Wt, tj, U[0, d], U[1, d], U[2, d], U[3, d],
                                                        col[d], True, zero)
                total += z0
            if which == 2 or which == 9:
                PK._tile_accumulate_group(S, XWt, tj, at, zero)
            if which == 3 or which == 9:
                PK._tile_columns_group(S, U[:, :d], tj, col[:d])
    return total


@njit(cache=False, fastmath={"contract"})
def _peak(v, m, c, reps):
    """``reps`` times 16 dependent multiply-adds on each of the independent lanes of ``v``."""
    wide_vectors()
    for _ in range(reps):
        for i in range(v.shape[0]):
            t = v[i]
            for _ in range(16):
                t = t * m + c
            v[i] = t


def peak_gflops(dtype, rounds=5):
    """One-thread rate of the multiply-add loop :func:`_peak`, GFLOP/s (best of ``rounds``)."""
    v = np.ones(256, dtype)
    m, c = dtype(0.999), dtype(1e-4)
    _peak(v, m, c, 1)
    reps = 100000
    best = np.inf
    for _ in range(rounds):
        t = time.process_time()
        _peak(v, m, c, reps)
        best = min(best, time.process_time() - t)
    return 2 * 16 * v.size * reps / best / 1e9


def exp_ops_per_pair(dtype) -> float:
    """512-bit arithmetic instructions per exponential in the hot loop of the exp + z sweep.

    Compiles a fresh copy of ``PK._tile_sym_exp_group`` (cached code cannot be
    inspected), takes the basic block with the most 512-bit instructions, and
    counts those that are not moves or broadcasts, per vector shift (each
    exponential builds its 2^n with one). Includes the shift subtraction, the
    clamp and the two z sums of the pair.
    """
    dt = np.dtype(dtype)
    fresh = njit(**dict(PK.NJIT_PAIR, cache=False))(PK._tile_sym_exp_group.py_func)
    tj, zero = 256, dt.type(0)
    S = PK.empty_aligned((PK.R, tj), dt)
    S[:] = -1.0
    fresh(S, np.zeros(tj, dt), np.ones(tj, dt), tj, zero, zero, zero, zero, np.zeros(tj, dt), True, zero)
    blocks, cur = [], None
    for line in next(iter(fresh.inspect_asm().values())).splitlines():
        if re.match(r"^\.LBB\S+:", line):
            cur = []
            blocks.append(cur)
        elif cur is not None and "zmm" in line:
            cur.append(line.split()[0])
    hot = max(blocks, key=len)
    shifts = sum(op in ("vpsllq", "vpslld") for op in hot)
    return sum(not op.startswith(("vmov", "vbroadcast")) for op in hot) / shifts


def breakdown(d, dtype, reps, rounds=3):
    """ns of CPU time per unordered pair of each sweep (best of ``rounds``)."""
    dt = np.dtype(dtype)
    tj = PK.tile_width(d, dt.itemsize)
    rng = np.random.default_rng(0)
    Xt = PK.empty_aligned((d, tj), dt)
    Xt[:] = rng.standard_normal((d, tj)) / np.sqrt(d)
    XWt = PK.empty_aligned((d, tj), dt)
    XWt[:] = Xt
    QA = (rng.standard_normal((tj, d)) / np.sqrt(d)).astype(dt)
    MUt = PK.empty_aligned((tj,), dt)
    MUt[:] = 0.5
    Wt = PK.empty_aligned((tj,), dt)
    Wt[:] = np.exp(0.5)
    S = PK.empty_aligned((PK.R, tj), dt)
    col = PK.empty_aligned((d + 1, tj), dt)
    col[:] = 0.0
    U = np.full((PK.R, d + 1), 0.01, dt)
    at = np.zeros((PK.R, d))
    sh = np.full(PK.R, 0.5, dt)
    rows = np.arange(PK.R)
    args = (tj, QA, Xt, XWt, MUt, Wt, S, col, U, at, sh, rows, dt.type(0))
    best = {}
    for _ in range(rounds):
        for w in SWEEPS:
            _sweeps(w, 1, *args)  # compile, warm the caches
            t = time.process_time()
            _sweeps(w, reps, *args)
            ns = (time.process_time() - t) / (reps * tj * tj) * 1e9
            best[w] = min(best.get(w, np.inf), ns)
    return best


def main():
    numba.set_num_threads(1)
    before = load_average()
    rows = []
    print("ns of CPU time per unordered pair (multiply-add equivalents at the one-thread matmul rate)")
    for dt in (np.float64, np.float32):
        a = np.random.default_rng(0).standard_normal((2000, 2000)).astype(dt)
        with threadpool_limits(1):
            a @ a
            t = time.process_time()
            for _ in range(3):
                a @ a
            gflops = 3 * 2 * 2000**3 / (time.process_time() - t) / 1e9
        fma_ns = gflops / 2  # multiply-adds per ns at the matmul rate
        peak = peak_gflops(dt)
        e = exp_ops_per_pair(dt)
        print(f"{np.dtype(dt).name}: matmul {gflops:.1f} GFLOP/s, multiply-add loop {peak:.1f} GFLOP/s "
              f"(matmul / loop {gflops / peak:.2f}), one thread; exp + z sweep: {e:.1f} vector operations "
              "per pair", flush=True)
        for d in (4, 16, 64):
            b = breakdown(d, dt, reps=max(20, 3200 // d))
            parts = sum(b[w] for w in (0, 1, 2, 3))
            row = {"d": d, "dtype": np.dtype(dt).name, "matmul_GFLOP_s_1thread": gflops,
                   "fma_loop_GFLOP_s_1thread": peak, "exp_ops_per_pair": e,
                   "ceiling_x_matmul": 2 * (2 * d + 5) / (3 * d + e),
                   **{f"{SWEEPS[w]}_ns": b[w] for w in SWEEPS},
                   **{f"{SWEEPS[w]}_share": b[w] / parts for w in (0, 1, 2, 3)},
                   **{f"{SWEEPS[w]}_fma_equivalents": b[w] * fma_ns for w in SWEEPS},
                   # the whole sequence per ordered pair, counted at 4 d + 10 flops, over the matmul rate
                   "all_x_matmul": (4 * d + 10) / (b[9] / 2) / gflops}
            rows.append(row)
            print(f"d={d:>3} {row['dtype']}: " + ", ".join(
                f"{SWEEPS[w]} {b[w]:.3f} ns ({b[w] * fma_ns:.0f})" for w in SWEEPS)
                + f"; all four x matmul {row['all_x_matmul']:.2f} (ceiling {row['ceiling_x_matmul']:.2f})",
                flush=True)
    path = save_json("softmax_breakdown.json", {
        "cpu_label": cpu_label(cpu_info()), "load_average_before": before, "load_average_after": load_average(),
        "unit": "ns of CPU time per unordered pair, one thread; fma_equivalents = ns x the one-thread matmul's "
                "multiply-adds per ns", "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
