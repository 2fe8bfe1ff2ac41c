"""Figure: merge times of the metastable staircase against beta, and the e^{c beta} law.

Regenerate with::

    python figures/merge_times.py             # writes figures/merge_times.png and figures/merge_times.json
    python figures/merge_times.py --replot    # redraws the PNG from the JSON

N = 32 tokens uniform on S^2 (seeds 0..7), first-order SA (Q = K = V = I,
normalized, post_ln), beta = 4, 6, ..., 20, each run a ``meanfield.Run`` with
the ``auto`` integrator (rtol 1e-6, atol 1e-9), ``saves_per_decade = 1`` and
``stop_clusters = 1``. A run records ``/events/n_clusters``: the times at
which the cluster count (tol 1e-3) changed. The figure shows every drop of
the count from 9 clusters or fewer (small dots: the steps of the staircase)
and, per run, the *last merge*: the time the count reached 1 (filled), or,
for runs that still had two or more clusters at t1, the cap t1 (open
triangles, censored).

The cap is t1 = 10^12, not 10^8: at 10^8 every run with beta >= 16 is
censored (the last merge at beta = 16 comes at 10^9..10^12), so the slope
would rest on beta <= 14 alone. Beyond ~10^13 a float64 clock cannot resolve
a merge (its O(1) time scale falls below 16 eps t: the run stops with a step
size underflow, measured at t = 6 * 10^14), and for beta >~ 18 the pull
between two antipodal clusters, e^{-2 beta}, falls below the round-off of the
attention average (eps ~ e^{-36}): the merge of such a pair is then driven
by round-off, not by the dynamics.

The fit is least squares of log(last merge time) against beta over the
betas at which every run merged (solid line; censored runs would bias the
slope low), and, dotted, over every run that merged. Its slope c, with the
standard error of least squares, is the rate in T_last ~ e^{c beta}. Two
clusters at angle theta attract each other with a force ~ e^{-beta (1 - cos
theta)}, so c is an effective 1 - cos theta of the last pair, in (0, 2]: c
near 2 says the last two clusters are nearly antipodal.

Cost: each run is a few hundred to ~10^4 steps of the stiff method, under
a second to ~6 s; the 72 runs take a few minutes on 2 cores (the measured
total is printed and stored in the JSON as ``total_s``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
N, T1, TOL = 32, 1.0e12, 1e-3
BETAS = tuple(range(4, 21, 2))
SEEDS = tuple(range(8))


def config(beta: float, seed: int, n: int = N, t1: float = T1, method: str = "auto") -> dict:
    """One run of the figure, as a user writes it."""
    return {"model": {"name": "sphere", "dynamics": "first_order", "d": 3, "beta": float(beta)},
            "integrator": {"name": method, "rtol": 1e-6, "atol": 1e-9},
            "initial": {"law": "sphere_uniform", "n": n, "seed": seed},
            "run": {"t1": t1, "saves_per_decade": 1, "stop_clusters": 1},
            "diagnostics": {"cluster_tol": TOL},
            "output": {"save": []}}


def merges(events: np.ndarray) -> tuple[list, list]:
    """The times and new counts of every drop of the cluster count in ``events`` rows ``[t, n_clusters]``."""
    ev = np.asarray(events, float).reshape(-1, 2)
    drops = np.flatnonzero(np.diff(ev[:, 1]) < 0) + 1
    return ev[drops, 0].tolist(), ev[drops, 1].astype(int).tolist()


def one_run(beta: float, seed: int, n: int, t1: float, method: str) -> dict:
    import meanfield
    from meanfield.errors import SimulationError

    try:
        res = meanfield.Run(config(beta, seed, n, t1, method)).simulate()
    except SimulationError as exc:  # e.g. a merge at t ~ 1e14, where 16 eps t exceeds the merge's time scale
        return {"beta": beta, "seed": seed, "merge_times": [], "counts_after": [], "last_merge": t1,
                "censored": True, "failed": str(exc), "final_clusters": None, "t_end": exc.t,
                "status": "failed", "wall_s": math.nan, "oracle_calls": 0, "accepted_steps": 0}
    ev = np.asarray(res.events["n_clusters"], float).reshape(-1, 2)
    times, counts = merges(ev)
    final = int(ev[-1, 1]) if len(ev) else None
    merged = final == 1
    return {"beta": beta, "seed": seed, "merge_times": times, "counts_after": counts,
            "last_merge": times[-1] if merged else t1, "censored": not merged, "final_clusters": final,
            "t_end": float(res.t_end), "status": res.status, "wall_s": float(res.wall_time),
            "oracle_calls": int(res.oracle_calls), "accepted_steps": int(res.attrs.get("accepted_steps", 0))}


def fit(runs: list, complete_only: bool = False) -> dict:
    """Least squares of log(last merge) = a + c beta over the runs that merged; c, a and their standard errors.

    ``complete_only``: only the betas at which every run merged (no censoring bias at the large betas).
    """
    censored = {r["beta"] for r in runs if r["censored"]}
    pts = [(r["beta"], math.log(r["last_merge"])) for r in runs
           if not r["censored"] and not (complete_only and r["beta"] in censored)]
    b, y = np.array(pts).T if pts else (np.array([]), np.array([]))
    if len(b) < 3 or np.ptp(b) == 0:
        return {"points": len(b), "c": math.nan, "c_se": math.nan, "a": math.nan, "a_se": math.nan}
    A = np.column_stack([np.ones_like(b), b])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - A @ coef
    s2 = float(resid @ resid) / (len(b) - 2)
    cov = s2 * np.linalg.inv(A.T @ A)
    return {"points": int(len(b)), "a": float(coef[0]), "c": float(coef[1]),
            "a_se": float(math.sqrt(cov[0, 0])), "c_se": float(math.sqrt(cov[1, 1])),
            "residual_sd": math.sqrt(s2)}


def figure(data: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, f = data["runs"], data["fit"]
    fig, ax = plt.subplots(figsize=(7.2, 5.0))
    rng = np.random.default_rng(0)
    for r in runs:
        jitter = 0.25 * (rng.random() - 0.5)
        # every drop once the count is small: the steps of the staircase
        late = [t for t, k in zip(r["merge_times"], r["counts_after"]) if k <= 8]
        ax.scatter(np.full(len(late), r["beta"] + jitter), late, s=6, color="0.6", zorder=1)
        if r["censored"]:
            ax.scatter(r["beta"] + jitter, r["last_merge"], marker="^", facecolors="none", edgecolors="C3",
                       s=40, zorder=3)
        else:
            ax.scatter(r["beta"] + jitter, r["last_merge"], color="C0", s=30, zorder=3)
    fa = data["fit_all_merged"]
    for ff, style, what in ((f, "k-", "betas where every run merged"), (fa, "k:", "every run that merged")):
        if math.isfinite(ff["c"]):
            bb = np.linspace(min(data["betas"]), max(data["betas"]), 50)
            ax.plot(bb, np.exp(ff["a"] + ff["c"] * bb), style, lw=1,
                    label=f"fit over {what}: c = {ff['c']:.2f} +- {ff['c_se']:.2f} ({ff['points']} runs)")
    ax.scatter([], [], color="C0", s=30, label="last merge (to 1 cluster)")
    ax.scatter([], [], marker="^", facecolors="none", edgecolors="C3", s=40,
               label=f"not merged by t = {data['t1']:.0e} (censored, not fitted)")
    ax.scatter([], [], s=6, color="0.6", label="every merge from <= 9 clusters")
    ax.axhline(data["t1"], color="C3", lw=0.5, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("beta")
    ax.set_ylabel("merge time t")
    ax.set_title(f"Metastable merges on S^2: N = {data['n']}, first-order SA, {len(data['seeds'])} seeds, "
                 f"{data['method']}\nlast merge ~ e^{{c beta}}, c = {f['c']:.2f} +- {f['c_se']:.2f}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--betas", type=float, nargs="+", default=list(BETAS))
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--n", type=int, default=N)
    ap.add_argument("--t1", type=float, default=T1)
    ap.add_argument("--method", default="auto")
    ap.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON")
    ap.add_argument("--out", default=os.path.join(HERE, "merge_times.png"))
    args = ap.parse_args(argv)
    data_path = os.path.splitext(args.out)[0] + ".json"
    if args.replot:
        with open(data_path) as fh:
            data = json.load(fh)
    else:
        import meanfield

        meanfield.Run(config(8.0, 0, 8, 1.0, args.method)).simulate()  # compile first
        start = time.perf_counter()
        runs = []
        for beta in args.betas:
            for seed in args.seeds:
                r = one_run(beta, seed, args.n, args.t1, args.method)
                runs.append(r)
                print(f"beta {beta:5.1f} seed {seed}: last merge {r['last_merge']:.3g}"
                      f"{' (censored, ' + str(r['final_clusters']) + ' clusters left)' if r['censored'] else ''}, "
                      f"{r['accepted_steps']} steps, {r['oracle_calls']} calls, {r['wall_s']:.2f} s", flush=True)
        data = {"n": args.n, "t1": args.t1, "betas": args.betas, "seeds": args.seeds, "method": args.method,
                "cluster_tol": TOL, "runs": runs, "fit": fit(runs, complete_only=True),
                "fit_all_merged": fit(runs),
                "censored_per_beta": {str(b): sum(r["censored"] for r in runs if r["beta"] == b) for b in args.betas},
                "total_s": time.perf_counter() - start,
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        with open(data_path, "w") as fh:
            json.dump(data, fh, indent=1)
    f = data["fit"]
    fa = data["fit_all_merged"]
    print(f"last merge ~ e^(c beta): c = {f['c']:.3f} +- {f['c_se']:.3f} over the {f['points']} runs of the betas "
          f"where every run merged; c = {fa['c']:.3f} +- {fa['c_se']:.3f} over all {fa['points']} runs that merged; "
          f"censored per beta {data['censored_per_beta']}; total {data['total_s']:.0f} s")
    figure(data, args.out)
    print("wrote", args.out, "and", data_path)


if __name__ == "__main__":
    main()
