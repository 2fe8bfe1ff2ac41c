"""The long-context phase transition of one attention layer, on particles.

One pure self-attention layer (the ``mean_shift`` block: x_i <- a_i / |a_i|,
SA, Q = K = V = I) at inverse temperature beta = gamma log N, applied to

* equiangular tokens (<x_i, x_j> = rho for i != j, N <= d), whose image is
  equiangular again with the closed-form inner product ``one_layer_inner``;
  as N -> infinity it tends to 1 for gamma < 1/(1 - rho), to
  4 rho / (1 + 3 rho) at gamma = 1/(1 - rho), and stays rho above;
* i.i.d. uniform tokens on S^{d-1}, d = 32..128, N = 10^2..10^4, whose mean
  pairwise inner product before the layer is rho0 ~ 0 (+-1/N).

The figure plots the mean pairwise inner product after the layer against
gamma, with the equiangular prediction ``one_layer_inner(rho0, gamma log N, N)``
and a Gaussian-logit heuristic for i.i.d. tokens (:func:`iid_heuristic`).
Every layer is one oracle call of the exact O(N^2 d) engine.

What the equiangular theory says at rho = 0. The finite-N map tends to 1
only while rho N^{2 - 2 gamma (1 - rho)} -> infinity; for fixed rho > 0 that
is gamma < 1/(1 - rho), but at rho = 0 the factor rho is replaced by 1/N
and the map (1 + N^{1-gamma})^2 / (... + N) has its transition at gamma = 1/2:
limit 1 below, 1/2 at gamma = 1/2, 0 above. The rho -> 0 limit of the
threshold 1/(1 - rho) (= 1) is not the threshold at rho = 0.

Run:  python figures/long_context.py            (about 2 minutes on 2 cores)
      python figures/long_context.py --n-max 1000   (seconds)
Writes figures/long_context.png and figures/long_context.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np

from meanfield.initial import equiangular, sphere_uniform
from meanfield.models import make_model
from meanfield.reductions.equiangular import long_context_limit, one_layer_inner

HERE = os.path.dirname(os.path.abspath(__file__))


def mean_inner(theta: np.ndarray) -> float:
    """Mean of <theta_i, theta_j> over pairs i != j (unit rows), in O(N d)."""
    n = theta.shape[0]
    s = theta.sum(axis=0)
    return float((s @ s - np.einsum("ij,ij->", theta, theta)) / (n * (n - 1)))


def one_layer(X: np.ndarray, beta: float) -> np.ndarray:
    """One SA layer on the sphere (Q = K = V = I), outputs normalized: the mean_shift step."""
    model = make_model({"name": "sphere", "dynamics": "first_order", "d": X.shape[1], "beta": beta})
    a = model.attention_layer(np.ascontiguousarray(X), 0.0)
    assert model.oracle_calls == 1
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def iid_heuristic(gamma: float, n: int, d: int) -> float:
    """Mean <a_i, a_k> / |a_i||a_k| after one layer for i.i.d. uniform tokens (a heuristic).

    Treat the logits' inner products t = <x_i, x_j> as independent N(0, 1/d).
    Then a_i is proportional to N^gamma x_i + S_i with
    S_i = sum_j e^{beta t_ij} x_j = c x_i + R_i, where c = N (beta/d) e^{beta^2/(2d)}
    is the pull towards the tokens near x_i (attention is local when the tokens
    are dense), |R_i|^2 ~ N e^{2 beta^2/d} and <R_i, R_k> ~ N e^{beta^2/d}, so

        mean inner ~ N e^{beta^2/d} / ((N^gamma + c)^2 + N e^{2 beta^2/d}).

    For d >> sqrt(N) log N this is the equiangular map at rho = 0
    (transition at gamma = 1/2); at fixed d the tilt c^2 ~ N^2 (log N)^2 / d^2
    wins and the layer barely contracts the tokens for any gamma.
    """
    b = gamma * math.log(n)
    c = n * (b / d) * math.exp(b * b / (2 * d))
    return n * math.exp(b * b / d) / ((n**gamma + c) ** 2 + n * math.exp(2 * b * b / d))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-max", type=int, default=10_000, help="largest N of the i.i.d. runs (powers of 10 from 100)")
    ap.add_argument("--dims", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--gammas", type=float, nargs="+",
                    default=[0.1, 0.3, 0.45, 0.5, 0.55, 0.7, 0.85, 1.0, 1.25, 1.6])
    ap.add_argument("--rhos", type=float, nargs="+", default=[0.2, 0.5])
    ap.add_argument("--n-equiangular", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", default=os.path.join(HERE, "long_context.png"))
    ap.add_argument("--replot", action="store_true", help="redraw the figure from the JSON next to --output")
    args = ap.parse_args(argv)
    js = os.path.splitext(args.output)[0] + ".json"
    if args.replot:
        with open(js) as fh:
            plot(json.load(fh), args.output)
        return
    rng = np.random.default_rng(args.seed)
    gammas = sorted(args.gammas)
    Ns = [10**k for k in range(2, 9) if 10**k <= args.n_max]
    t_start = time.perf_counter()
    out = {"gammas": gammas, "iid": [], "equiangular": [], "machine": "shared 2-core machine"}

    # --- equiangular particles against the closed form and the N -> infinity limit
    ne = args.n_equiangular
    for rho in args.rhos:
        crit = 1.0 / (1.0 - rho)
        eg = sorted(set(np.round(np.linspace(0.1, 2.6, 14), 6).tolist()) | {crit})
        X0 = equiangular({"n": ne, "rho": rho}, ne, rng)
        rows = []
        for g in eg:
            beta = g * math.log(ne)
            Y = one_layer(X0, beta)
            G = Y @ Y.T
            off = G[~np.eye(ne, dtype=bool)]
            rows.append({"gamma": g, "mean_inner": float(off.mean()), "spread_inner": float(off.max() - off.min()),
                         "theory": one_layer_inner(rho, beta, ne), "limit": long_context_limit(rho, g)})
        err = max(abs(r["mean_inner"] - r["theory"]) for r in rows)
        out["equiangular"].append({"rho": rho, "n": ne, "d": ne, "rows": rows, "max_abs_error": err})
        print(f"equiangular rho = {rho}, N = d = {ne}: max |particles - one_layer_inner| = {err:.2e}")

    # --- i.i.d. uniform tokens
    for d in args.dims:
        for n in Ns:
            X0 = sphere_uniform({"n": n}, d, rng)
            rho0 = mean_inner(X0)
            rows = []
            t0 = time.perf_counter()
            for g in gammas:
                beta = g * math.log(n)
                rows.append({"gamma": g, "mean_inner": mean_inner(one_layer(X0, beta)),
                             "equiangular_theory": one_layer_inner(rho0, beta, n),
                             "iid_heuristic": iid_heuristic(g, n, d)})
            out["iid"].append({"d": d, "n": n, "rho0": rho0, "rows": rows,
                               "seconds": time.perf_counter() - t0})
            print(f"iid d = {d:4d} N = {n:6d}: rho0 = {rho0:+.2e}, after one layer "
                  + " ".join(f"{r['mean_inner']:.3f}" for r in rows)
                  + f"  ({time.perf_counter() - t0:.1f} s)")
    out["seconds"] = time.perf_counter() - t_start
    with open(js, "w") as fh:
        json.dump(out, fh, indent=1)
    plot(out, args.output)
    print(f"wrote {args.output} and {js} ({out['seconds']:.0f} s)")


def plot(out: dict, path: str) -> None:
    """Draw the two panels from the numbers of :func:`main`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    ax = axes[0]
    gg = np.linspace(0.1, 2.6, 500)
    gammas = out["gammas"]
    for k, e in enumerate(out["equiangular"]):
        rho, c, ne = e["rho"], f"C{k}", e["n"]
        for nn, ls in ((ne, "-"), (10**4, "--"), (10**8, ":")):
            ax.plot(gg, [one_layer_inner(rho, g * math.log(nn), nn) for g in gg], ls, color=c, lw=1,
                    label=f"rho = {rho}: closed form, N = {nn:g}")
        lim = [long_context_limit(rho, g) for g in gg]
        ax.plot(gg, lim, color=c, lw=3, alpha=0.3, label=f"rho = {rho}: N -> inf limit")
        ax.plot([1 / (1 - rho)], [4 * rho / (1 + 3 * rho)], "D", color=c, ms=5)
        ax.plot([r["gamma"] for r in e["rows"]], [r["mean_inner"] for r in e["rows"]], "o", color=c,
                mfc="none", label=f"rho = {rho}: particles, N = d = {ne}")
    ax.set(xlabel="gamma  (beta = gamma log N)", ylabel="<x_i, x_j> after one layer",
           title="equiangular tokens: one pure attention layer")
    ax.legend(fontsize=6.5)
    ax = axes[1]
    gg = np.linspace(min(gammas), max(gammas), 400)
    for k, e in enumerate(out["iid"]):
        c = f"C{k}"
        ax.plot([r["gamma"] for r in e["rows"]], [r["mean_inner"] for r in e["rows"]], "o-", color=c, ms=4,
                label=f"i.i.d. uniform, d = {e['d']}, N = {e['n']}")
        ax.plot(gg, [one_layer_inner(e["rho0"], g * math.log(e["n"]), e["n"]) for g in gg], ":", color=c, lw=1)
        ax.plot(gg, [iid_heuristic(g, e["n"], e["d"]) for g in gg], "--", color=c, lw=0.8, alpha=0.7)
    ax.axvline(0.5, color="k", lw=0.5, ls="--")
    ax.axvline(1.0, color="k", lw=0.5, ls="-.")
    ax.set(xlabel="gamma  (beta = gamma log N)", ylabel="mean <x_i, x_j> after one layer",
           title="i.i.d. uniform tokens (dotted: equiangular map at rho0;\n"
           "dashed: Gaussian-logit heuristic)")
    ax.legend(fontsize=6.5)
    axes[1].title.set_fontsize(10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


if __name__ == "__main__":
    main()
