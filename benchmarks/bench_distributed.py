"""One run's exact pair sums on a dask cluster: the overhead of sharding, measured, and its cost model.

Measures on this machine (docs/performance.md, "One run on a dask cluster"):

1. one oracle call (first-order softmax field, SA, a non-symmetric A so that
   every in-process pass is the row-wise one) at N = 20000, d = 16:
   2 numba threads in one process vs a LocalCluster of 2 single-threaded
   worker processes (``[cluster] scheduler = "local", workers = 2``); the
   target is a ratio <= 1.25;
2. the per-worker rate (pairs / s of one worker's shard) and the fixed cost
   of a call (a tiny N: scheduling, sending and gathering latency);
3. the same comparison through ``Run.simulate`` into a file, timed from the
   file's ``/scales/wall_time`` (what ``meanfield run`` reports);
4. the cost model per call on W workers,

       t(W) = t_fixed + W N d 8 B / bw (the state to every worker, through one link at worst)
              + N^2 / (W r) (compute) + N (d + 2) 8 B / bw (gather)

   with r the measured per-worker rate and bw a stated network bandwidth
   (default 10 Gbit/s), extrapolated to 16 and 64 workers, and the N below
   which W workers lose to one process on ``cores`` threads.

Writes ``benchmarks/results/distributed.json`` (``--out`` elsewhere);
``--quick`` runs a small case in seconds (the test suite runs it).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS, cpu_info, cpu_label, load_average, machine, print_table  # noqa: E402

#: Network bandwidth the extrapolation assumes, bytes per second (10 Gbit/s Ethernet).
BANDWIDTH = 10e9 / 8


def _model(n_d, seed=0):
    from meanfield.models.softmax import Softmax, SoftmaxParams

    rng = np.random.default_rng(seed)
    d = n_d
    A = rng.normal(size=(d, d)) * (0.3 / math.sqrt(d))  # not symmetric: the in-process pass is row-wise
    p = SoftmaxParams.from_dict({"d": d, "A": A.tolist()}, "first_order")
    return Softmax(p, "first_order", np.float64)


def _time_calls(model, x, repeat):
    """Median seconds of one oracle call; each call sees a new state (sent to the cluster again)."""
    model.first_order(x, 0.0)  # compile / warm the workers' tiles
    times = [_one_call(model, x, k) for k in range(repeat)]
    return statistics.median(times), times


def _one_call(model, x, k):
    xk = x * (1.0 + 1e-9 * (k + 1))
    t = time.perf_counter()
    model.first_order(xk, 0.0)
    return time.perf_counter() - t


def measure_calls(n, d, workers, repeat, client):
    """In-process (``workers`` numba threads) vs sharded over ``client``'s workers, one call each.

    The two are timed alternately, call by call, so that both see the same load of a
    shared machine; the ratio is the median of the per-round ratios.
    """
    import numba

    x = np.random.default_rng(1).normal(size=(n, d))
    local = _model(d)
    local.use_row_passes()
    sharded = _model(d)
    sharded.shard_over(client)
    numba.set_num_threads(min(workers, numba.config.NUMBA_NUM_THREADS))
    local.first_order(x, 0.0), sharded.first_order(x, 0.0)  # compile, warm
    all_local, all_cluster = [], []
    for k in range(repeat):
        all_local.append(_one_call(local, x, k))
        all_cluster.append(_one_call(sharded, x, k))
    t_local, t_cluster = statistics.median(all_local), statistics.median(all_cluster)
    # the same bits (docs/performance.md): checked on the benchmark's own state
    same = bool(np.array_equal(local.first_order(x, 0.0), sharded.first_order(x, 0.0)))
    pairs = float(n) * n
    ratio = statistics.median(c / l for c, l in zip(all_cluster, all_local))
    return {"N": n, "d": d, "workers": workers, "local_s": t_local, "cluster_s": t_cluster,
            "ratio": ratio, "local_gpairs_s": pairs / t_local / 1e9,
            "cluster_gpairs_s": pairs / t_cluster / 1e9, "bit_identical": same,
            "local_all_s": all_local, "cluster_all_s": all_cluster}


def measure_fixed(client, d, repeat):
    """Seconds of a call whose compute is negligible (N = 64): scheduling, broadcast, gather latency."""
    m = _model(d)
    m.shard_over(client)
    x = np.random.default_rng(2).normal(size=(64, d))
    return _time_calls(m, x, repeat)[0]


def measure_worker_rate(client, n, d, repeat):
    """Pairs per second of one worker computing every row (one shard, on one single-threaded worker)."""
    from meanfield._kernels import pairwise as PK
    from meanfield.models._sharded import shard_pass

    x = np.random.default_rng(3).normal(size=(n, d))
    A = np.asarray(_model(d).A)
    worker = sorted(client.scheduler_info()["workers"])[0]
    xf = client.scatter(x, workers=[worker])
    nblk = PK.n_blocks(n)

    def one(k):
        fut = client.submit(shard_pass, xf, ("rate", k), A, PK.MODE_SOFTMAX, False, 0, nblk,
                            workers=[worker], pure=False)
        t = time.perf_counter()
        fut.result()
        return time.perf_counter() - t

    one(-1)
    times = [one(k) for k in range(repeat)]  # a new key each time: the tiles are laid out again
    return float(n) * n / statistics.median(times)


def _params(n, d, steps, cluster, path):
    text = f"""[model]
name = "softmax"
dynamics = "first_order"
d = {d}
A = {(np.asarray(_model(d).A)).tolist()}
[integrator]
name = "euler"
h = 0.01
[initial]
law = "gaussian"
n = {n}
seed = 0
[run]
steps = {steps}
save_every = {steps}
[output]
path = "unused.h5"
save = []
"""
    if cluster:
        text += f'[cluster]\nscheduler = "local"\nworkers = {cluster}\n'
    with open(path, "w") as fh:
        fh.write(text)
    return path


def measure_runs(n, d, steps, workers, folder, rounds=2):
    """``Run.simulate`` into a file, in-process (row passes, ``workers`` threads) and on a LocalCluster.

    Returns the seconds of the loop as the file's ``/scales/wall_time`` records them (the
    cluster's start-up is not in it: the run connects and warms its workers before its loop),
    the two runs alternating ``rounds`` times; the ratio is the median of the per-round ratios.
    """
    import h5py
    import numba

    import meanfield

    runs = {}
    for label, cluster in (("local", None), ("cluster", workers)):
        run = meanfield.Run(_params(n, d, steps, cluster, os.path.join(folder, f"{label}.toml")))
        if cluster is None:
            run.model.use_row_passes()
        runs[label] = run
    times = {"local": [], "cluster": []}
    calls = {}
    try:
        for _ in range(rounds):
            for label, run in runs.items():
                numba.set_num_threads(min(workers, numba.config.NUMBA_NUM_THREADS))
                path = os.path.join(folder, f"{label}.h5")
                run.simulate(path, overwrite=True)
                with h5py.File(path) as f:
                    times[label].append(float(f["scales/wall_time"][-1]))
                    calls[label] = int(f["scales/oracle_calls"][-1])
    finally:
        for run in runs.values():
            run.close()
    return {"N": n, "d": d, "steps": steps, "workers": workers,
            "local_wall_time_s": statistics.median(times["local"]),
            "cluster_wall_time_s": statistics.median(times["cluster"]),
            "ratio": statistics.median(c / l for c, l in zip(times["cluster"], times["local"])),
            "local_all_s": times["local"], "cluster_all_s": times["cluster"],
            "local_oracle_calls": calls["local"], "cluster_oracle_calls": calls["cluster"]}


def model_time(n, d, w, rate, fixed, bw=BANDWIDTH):
    """Seconds of one call on ``w`` workers by the cost model (see the module docstring)."""
    # x goes to one worker, the others fetch it from there: W copies through one link at worst
    broadcast = n * d * 8 * w / bw
    gather = n * (d + 2) * 8 / bw
    compute = float(n) * n / (w * rate)
    return {"broadcast_s": broadcast, "compute_s": compute, "gather_s": gather, "fixed_s": fixed,
            "total_s": fixed + broadcast + compute + gather}


def break_even_n(d, w, rate, fixed, cores, bw=BANDWIDTH):
    """Smallest N (a power of 2 step) from which ``w`` workers beat one process on ``cores`` threads."""
    n = 64
    while n < 10**9:
        if model_time(n, d, w, rate, fixed, bw)["total_s"] < float(n) * n / (cores * rate):
            return n
        n = int(n * 1.25) + 1
    return None


def efficient_n(d, w, rate, fixed, ratio=1.25, bw=BANDWIDTH):
    """Smallest N (steps of 25 %) from which a call on ``w`` workers takes at most ``ratio`` times its
    compute alone: below it, the fixed cost and the bytes moved outweigh what sharding saves."""
    n = 64
    while n < 10**9:
        m = model_time(n, d, w, rate, fixed, bw)
        if m["total_s"] <= ratio * m["compute_s"]:
            return n
        n = int(n * 1.25) + 1
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small case in seconds (the test suite's)")
    ap.add_argument("--n", type=int, default=None, help="particles (default 20000; --quick 2000)")
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--bandwidth-gbit", type=float, default=BANDWIDTH * 8 / 1e9,
                    help="network bandwidth of the extrapolation, Gbit/s")
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/results/distributed.json)")
    args = ap.parse_args(argv)
    n = args.n or (2000 if args.quick else 20000)
    repeat = args.repeat or (3 if args.quick else 7)
    bw = args.bandwidth_gbit * 1e9 / 8

    from meanfield.cluster import ClusterSpec, Connection

    info = cpu_info()
    print(f"CPU: {cpu_label(info)}; load average {load_average()}")
    conn = Connection(ClusterSpec(scheduler="local", workers=args.workers, threads_per_worker=1))
    try:
        call = measure_calls(n, args.d, args.workers, repeat, conn.client)
        fixed = measure_fixed(conn.client, args.d, repeat)
        rate = measure_worker_rate(conn.client, max(n // 2, 500), args.d, repeat)
    finally:
        conn.close()
    print(f"\none oracle call, N = {n}, d = {args.d}: {args.workers} numba threads in one process vs a "
          f"LocalCluster of {args.workers} single-threaded workers (row-wise passes, same bits: "
          f"{call['bit_identical']})")
    print_table([call], ["N", "d", "workers", "local_s", "cluster_s", "ratio", "local_gpairs_s",
                         "cluster_gpairs_s"])
    print(f"per-worker rate r = {rate / 1e9:.3g} Gpairs/s; fixed cost of a call {fixed * 1e3:.3g} ms")
    with tempfile.TemporaryDirectory() as folder:
        steps = 2 if args.quick else 4
        runs = measure_runs(n, args.d, steps, args.workers, folder, rounds=1 if args.quick else 3)
    print(f"\nRun.simulate, {runs['steps']} euler steps ({runs['cluster_oracle_calls']} oracle calls), "
          "seconds from /scales/wall_time:")
    print_table([runs], ["N", "d", "steps", "local_wall_time_s", "cluster_wall_time_s", "ratio"])
    rows = []
    for big_n in (20000, 10**5, 10**6):
        for w in (2, 16, 64):
            m = model_time(big_n, args.d, w, rate, fixed, bw)
            rows.append({"N": big_n, "workers": w, **m,
                         "speedup_vs_1": float(big_n) * big_n / rate / m["total_s"]})
    print(f"\ncost model, d = {args.d}, r = {rate / 1e9:.3g} Gpairs/s per worker, "
          f"bandwidth {args.bandwidth_gbit:g} Gbit/s, fixed {fixed * 1e3:.3g} ms:")
    print_table(rows, ["N", "workers", "fixed_s", "broadcast_s", "compute_s", "gather_s", "total_s",
                       "speedup_vs_1"])
    cores = os.cpu_count() or 1
    even = {w: break_even_n(args.d, w, rate, fixed, cores, bw) for w in (16, 64)}
    eff = {w: efficient_n(args.d, w, rate, fixed, 1.25, bw) for w in (2, 16, 64)}
    print(f"\nW workers beat one process on {cores} cores from N = " +
          ", ".join(f"{v} (W = {w})" for w, v in even.items()))
    print("a call costs <= 1.25 x its compute (overhead <= 25 %) from N = " +
          ", ".join(f"{v} (W = {w})" for w, v in eff.items()))
    payload = {"quick": args.quick, "load_average": load_average(), "call": call, "runs": runs,
               "per_worker_gpairs_s": rate / 1e9, "fixed_s": fixed, "bandwidth_gbit_s": args.bandwidth_gbit,
               "model": rows, "break_even_n": {str(w): v for w, v in even.items()},
               "efficient_n": {str(w): v for w, v in eff.items()}, "cores": cores,
               "target_ratio": 1.25}
    path = args.out or os.path.join(RESULTS, "distributed.json")
    import json

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump({"machine": machine(), **payload}, fh, indent=2)
    print(f"\nwrote {path}")
    return payload


if __name__ == "__main__":
    main()
