"""Does acceleration pay? The standard grid of equal-oracle-budget comparisons (issue 7).

Usage::

    python benchmarks/convergence.py [--quick] [--budget 4000]

For the bilinear and the softmax model, convex potentials W = 1/2 (x-m)^T Q (x-m)
with condition numbers kappa = 1, 10, 100 (eigenvalues of Q from 1/kappa to 1),
damping none / constant (a = 2 sqrt(1/kappa), the heavy-ball choice) / nesterov
(r = 3), every accelerated integrator (and nag, the accelerated block on the
classical oracle) is run against the first-order euler block at the same
number of oracle calls and the same step h. Reported per run: the energy gap
E - E* at the common budget, its ratio to euler's (> 1: acceleration wins),
the oracle calls a run needs to reach the gap euler reaches with the whole
budget, or 1e-8 of the initial gap if euler gets below it (speed-up = euler's
calls / the run's calls to that tolerance), and the fitted power-law exponent.
Gaps are clipped at 1e-12 of the initial gap (round-off). E* is exact for the
bilinear model (infimum over the linear maps both flows reach) and, for softmax (A = 0.005 I, B = I, SA), the
energy of the collapsed state at the local minimum of -1/2 exp(c^T A c) + W(c)
near m (checked to be below every run's energy; Ecal itself is unbounded below).

Writes benchmarks/results/convergence.json (table and curves),
figures/convergence_headline.png and figures/convergence_grid.png
(``--figures-only`` redraws them from the JSON).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # before numpy loads OpenBLAS (docs/performance.md)

import argparse
import copy
import sys
import time

import numpy as np
from _common import OUT_ENV, RESULTS, print_table, save_json
from scipy.optimize import minimize

import meanfield
from meanfield.diagnostics.rates import first_reach, fit_power_law, gap_at
from meanfield.integrators import INTEGRATORS

FIGURES = os.environ.get(OUT_ENV) or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                  "figures")
D = 4
H = 0.05
A_SOFTMAX = 0.005
FLOOR = 1e-12
T0 = 1.0


def potential(kappa):
    Q = np.diag(np.geomspace(1.0, 1.0 / kappa, D))
    m = np.full(D, 0.5)
    return Q, m


def base_config(model, kappa, n):
    Q, m = potential(kappa)
    mdl = {"name": model, "dynamics": "first_order", "d": D, "Q": Q.tolist(), "m": m.tolist()}
    if model == "bilinear":
        mdl["A"] = "identity"
    else:
        # Ecal = -1/(2N^2) sum exp(x_i^T A x_j) + W is unbounded below for any A != 0 (the
        # exponential beats the quadratic); a weak A keeps the basin around the collapsed
        # minimum near m wide enough for every flow (A = 0.2 let momentum methods escape)
        mdl.update(A=A_SOFTMAX, B="identity")
    return {
        "model": mdl,
        "damping": {"schedule": "none"},
        "integrator": {"name": "euler", "h": H},
        "initial": {"law": "gaussian", "n": n, "mean": [1.0, -0.5, 0.5, 0.0], "cov": (0.5 * np.eye(D)).tolist(),
                    "seed": 0},
        "run": {"t0": T0, "oracle_calls": 0, "save_every": 1},
        "output": {"save": []},
        "diagnostics": {"dissipation": "off"},
    }


def damping(name, kappa):
    return {"none": {"schedule": "none"},
            "constant": {"schedule": "constant", "a": 2.0 * np.sqrt(1.0 / kappa)},
            "nesterov": {"schedule": "nesterov", "r": 3.0}}[name]


def e_star_softmax(kappa):
    """Energy of the collapsed state nearest m: min_c -1/2 exp(a |c|^2) + W(c) (a local minimum)."""
    Q, m = potential(kappa)

    def f(c):
        return -0.5 * np.exp(A_SOFTMAX * c @ c) + 0.5 * (c - m) @ Q @ (c - m)

    return float(minimize(f, m, method="BFGS", options={"gtol": 1e-12}).fun)


def run_one(cfg, budget):
    cfg = copy.deepcopy(cfg)
    calls = INTEGRATORS[cfg["integrator"]["name"]][
        "first_order" if cfg["model"]["dynamics"] == "first_order" else "accelerated"].oracle_calls
    cfg["run"]["oracle_calls"] = budget
    cfg["run"]["save_every"] = max(1, budget // calls // 200)
    run = meanfield.Run(cfg)
    t = time.perf_counter()
    res = run.simulate()
    wall = time.perf_counter() - t
    e_inf = res.attrs.get("energy_infimum")
    # compare the same functional (the first-order energy, i.e. the objective) for every flow
    energy = res["first_order_energy"] if "first_order_energy" in res else res["energy"]
    return {"calls": np.asarray(res["oracle_calls"], float), "t": np.asarray(res.t), "energy": np.asarray(energy),
            "e_inf": e_inf, "wall": wall, "status": res.status}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="kappa = 10 only, bilinear only, budget 800")
    ap.add_argument("--budget", type=int, default=4000, help="oracle calls per run")
    ap.add_argument("--figures-only", action="store_true",
                    help="redraw the figures from benchmarks/results/convergence.json")
    a = ap.parse_args(argv)
    if a.figures_only:
        import json

        with open(os.path.join(RESULTS, "convergence.json")) as fh:
            saved = json.load(fh)
        make_figures(saved["rows"], saved["curves"], saved["models"], saved["kappas"], saved["budget"])
        return 0
    budget = 800 if a.quick else a.budget
    models = ["bilinear"] if a.quick else ["bilinear", "softmax"]
    kappas = [10] if a.quick else [1, 10, 100]
    dampings = ["none", "constant", "nesterov"]
    accel = sorted(n for n, by in INTEGRATORS.items() if "accelerated" in by)
    rows, curves = [], {}
    for model in models:
        n = 1000 if model == "bilinear" else 200
        for kappa in kappas:
            base = base_config(model, kappa, n)
            ref = run_one(base, budget)
            if model == "bilinear":
                e_star, src = ref["e_inf"], "exact infimum"
            else:
                e_star, src = e_star_softmax(kappa), "collapsed-state minimum"
            runs = {("euler", "none"): ref}
            for dmp in dampings:
                for name in accel + ["nag"]:
                    cfg = copy.deepcopy(base)
                    if name != "nag":
                        cfg["model"]["dynamics"] = "accelerated"
                        cfg["initial"]["momentum"] = "zero"
                        if model == "softmax":
                            cfg["model"].pop("V", None)
                    cfg["integrator"]["name"] = name
                    cfg["damping"] = damping(dmp, kappa)
                    try:
                        runs[(name, dmp)] = run_one(cfg, budget)
                    except meanfield.SimulationError as exc:
                        runs[(name, dmp)] = {"error": str(exc).split(";")[0]}
            # a run whose energy drops below the reference left the basin (softmax: Ecal is
            # unbounded below, particles escape to infinity): report it, do not rank it
            floor = e_star - 1e-9 * max(1.0, abs(e_star))
            for key, r in list(runs.items()):
                if "energy" in r and float(r["energy"].min()) < floor:
                    runs[key] = {"error": f"left the basin: energy {float(r['energy'].min()):.3g} < E*"}
            # gaps below FLOOR x the initial gap are round-off (softmax converges geometrically
            # and reaches it): they are clipped there, so two converged runs tie
            g0 = float(ref["energy"][0] - e_star)
            floor = FLOOR * g0

            def gap_of(r):
                return np.maximum(r["energy"] - e_star, floor)

            # tolerance = what euler reaches with the whole budget (at least 1e-8 g0): the
            # speed-up is how many times fewer oracle calls a run needs to get there
            g_ref = gap_at(ref["calls"], gap_of(ref), budget)
            tol = max(g_ref * (1 + 1e-12), 1e-8 * g0)
            calls_ref = first_reach(ref["calls"], gap_of(ref), tol)
            for (name, dmp), r in runs.items():
                row = {"model": model, "kappa": kappa, "integrator": name, "damping": dmp}
                if "error" in r:
                    rows.append({**row, "gap": float("nan"), "gap_ratio_vs_euler": float("nan"),
                                 "calls_to_tol": float("nan"), "speedup_calls": float("nan"),
                                 "power_exponent": float("nan"), "note": r["error"][:60]})
                    continue
                gap = gap_of(r)
                k = r["calls"][-1]
                g = gap_at(r["calls"], gap, k)
                c = first_reach(r["calls"], gap, tol)
                fit = fit_power_law(r["t"], np.where(gap > floor, gap, np.nan))
                rows.append({**row, "gap": g, "gap_ratio_vs_euler": gap_at(ref["calls"], gap_of(ref), k) / g,
                             "calls_to_tol": c, "speedup_calls": calls_ref / c if c > 0 else float("nan"),
                             "power_exponent": fit["exponent"], "note": r["status"] if r["status"] != "finished" else ""})
                curves[f"{model}/kappa={kappa}/{name}/{dmp}"] = {
                    "calls": r["calls"].tolist(), "gap": [float(f"{v:.5g}") for v in gap]}
            print(f"{model} kappa={kappa}: E* = {e_star:.8g} ({src}), euler gap at {budget} calls = "
                  f"{g_ref:.3e}, tolerance for calls_to_tol {tol:.3e} (initial gap {g0:.3g})")
    cols = ["model", "kappa", "integrator", "damping", "gap", "gap_ratio_vs_euler", "calls_to_tol",
            "speedup_calls", "power_exponent", "note"]
    print_table(rows, cols)
    path = save_json("convergence_quick.json" if a.quick else "convergence.json", {"budget": budget, "h": H, "d": D, "models": models, "kappas": kappas,
                                          "rows": rows, "curves": curves})
    print(f"wrote {path}")
    if not a.quick:  # the smoke run does not overwrite the published figures
        make_figures(rows, curves, models, kappas, budget)
    return 0


def make_figures(rows, curves, models, kappas, budget):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(FIGURES, exist_ok=True)
    # headline: bilinear, kappa = 10 (or the middle one), nesterov damping
    kappa = 10 if 10 in kappas else kappas[0]
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        for key, c in curves.items():
            mdl, kap, name, dmp = key.split("/")
            if mdl != model or kap != f"kappa={kappa}":
                continue
            if name == "euler" or dmp == "nesterov":
                calls = np.asarray(c["calls"])
                gap = np.asarray(c["gap"])
                keep = (calls > 0) & (gap > 0)
                style = dict(color="k", lw=2.5) if name == "euler" else dict(lw=1.3)
                ax.loglog(calls[keep], gap[keep], label="euler (first-order)" if name == "euler" else name, **style)
        ax.set_xlabel("oracle calls")
        ax.set_ylabel("E - E*")
        ax.set_title(f"{model}, kappa = {kappa}, nesterov damping vs first-order euler")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(FIGURES, "convergence_headline.png"), dpi=110)
    # grid: gap ratio vs euler at the full budget
    names = sorted({r["integrator"] for r in rows if r["integrator"] != "euler"})
    dmps = ["none", "constant", "nesterov"]
    fig, axes = plt.subplots(len(models), len(kappas), figsize=(3.6 * len(kappas) + 2.5, 3.6 * len(models)),
                             squeeze=False, sharey=True, constrained_layout=True)
    for i, model in enumerate(models):
        for j, kap in enumerate(kappas):
            ax = axes[i][j]
            Z = np.full((len(names), len(dmps)), np.nan)
            for r in rows:
                if r["model"] == model and r["kappa"] == kap and r["integrator"] in names:
                    Z[names.index(r["integrator"]), dmps.index(r["damping"])] = np.log10(r["gap_ratio_vs_euler"])
            im = ax.imshow(Z, cmap="RdBu", vmin=-3, vmax=3, aspect="auto")
            for a in range(len(names)):
                for b in range(len(dmps)):
                    txt = "x" if np.isnan(Z[a, b]) else f"{10 ** Z[a, b]:.2g}"
                    ax.text(b, a, txt, ha="center", va="center", fontsize=7)
            ax.set_xticks(range(len(dmps)), dmps)
            if j == 0:
                ax.set_yticks(range(len(names)), names)
            ax.set_title(f"{model}, kappa = {kap}")
    fig.colorbar(im, ax=axes, label="log10 (euler gap / run gap) at equal oracle calls", shrink=0.8)
    fig.get_layout_engine().set(w_pad=0.1)
    fig.suptitle(f"Gap ratio over first-order euler at {budget} oracle calls (blue: acceleration wins; x: failed)")
    fig.savefig(os.path.join(FIGURES, "convergence_grid.png"), dpi=110)
    print(f"wrote {FIGURES}/convergence_headline.png and convergence_grid.png")


if __name__ == "__main__":
    sys.exit(main())
