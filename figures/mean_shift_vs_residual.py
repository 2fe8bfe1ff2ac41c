"""Residual attention (euler, small h) vs pure attention (mean_shift) on S^2, at equal oracle calls.

The same N tokens, i.i.d. uniform on S^2, run through layers of
self-attention (SA, Q = K = V = I, post-LN) either with the residual
connection -- the ``euler`` block x <- (x + h P_x a) / |.| -- or without it
-- the ``mean_shift`` block x <- a / |a|. One layer is one oracle call in
both cases. The figure shows 1 - min_i<j <x_i, x_j> and the number of
clusters (tolerance 1e-3) against the number of layers, and the table (JSON)
the layer at which the tokens are eps-clustered (1 - min inner <= eps) and
the layer from which the number of clusters stays at its final value.

Run:  python figures/mean_shift_vs_residual.py     (well under a minute)
Writes figures/mean_shift_vs_residual.png and figures/mean_shift_vs_residual.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np

import meanfield
from meanfield.diagnostics.clustering import time_to_clustering

HERE = os.path.dirname(os.path.abspath(__file__))


def config(name, h, beta, n, layers, seed):
    return {
        "model": {"name": "sphere", "dynamics": "first_order", "d": 3, "beta": beta},
        "integrator": {"name": name, "h": h},
        "initial": {"law": "sphere_uniform", "n": n, "seed": seed},
        "run": {"t0": 0.0, "oracle_calls": layers, "save_every": 1},
        "output": {"save": []},
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--betas", type=float, nargs="+", default=[1.0, 4.0, 9.0])
    ap.add_argument("--hs", type=float, nargs="+", default=[0.1, 0.5], help="euler step sizes")
    ap.add_argument("--layers", type=int, default=1500, help="oracle-call budget of every run")
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", default=os.path.join(HERE, "mean_shift_vs_residual.png"))
    args = ap.parse_args(argv)

    blocks = [("mean_shift", 1.0)] + [("euler", h) for h in args.hs]
    rows = []
    curves = {}
    for beta in args.betas:
        for name, h in blocks:
            res = meanfield.Run(config(name, h, beta, args.n, args.layers, args.seed)).simulate()
            calls = res["oracle_calls"]
            gap = 1.0 - res["min_inner"]
            k = time_to_clustering(res, eps=args.eps, x="oracle_calls")
            label = "mean_shift" if name == "mean_shift" else f"euler h = {h:g}"
            nc = res["n_clusters"]
            settled = int(calls[np.nonzero(nc != nc[-1])[0][-1] + 1]) if np.any(nc != nc[-1]) else 0
            rows.append({"beta": beta, "block": label, "layers_to_eps_cluster": None if math.isnan(k) else int(k),
                         "final_clusters": int(nc[-1]), "layers_to_final_clusters": settled,
                         "final_gap": float(gap[-1]), "layers": int(calls[-1])})
            curves[(beta, label)] = (calls, gap, res["n_clusters"])
            print(f"beta = {beta:4g}  {label:14s}: eps-clustered after "
                  f"{rows[-1]['layers_to_eps_cluster']} layers; {rows[-1]['final_clusters']} clusters "
                  f"from layer {settled} to {calls[-1]} (1 - min inner = {gap[-1]:.2e})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(args.betas), figsize=(4.2 * len(args.betas), 6.5), squeeze=False)
    for j, beta in enumerate(args.betas):
        for c, (name, h) in enumerate(blocks):
            label = "mean_shift" if name == "mean_shift" else f"euler h = {h:g}"
            calls, gap, nc = curves[(beta, label)]
            axes[0, j].semilogy(np.maximum(calls, 0.8), np.maximum(gap, 1e-17), color=f"C{c}", label=label)
            axes[1, j].plot(np.maximum(calls, 0.8), nc, color=f"C{c}", label=label)
        axes[0, j].axhline(args.eps, color="k", lw=0.5, ls="--")
        axes[0, j].set(xscale="log", title=f"S^2, N = {args.n}, beta = {beta:g}", ylabel="1 - min <x_i, x_j>")
        axes[1, j].set(xscale="log", yscale="log", xlabel="layers (= oracle calls)",
                       ylabel="clusters (tol 1e-3)")
        axes[0, j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    js = os.path.splitext(args.output)[0] + ".json"
    with open(js, "w") as fh:
        json.dump({"n": args.n, "eps": args.eps, "seed": args.seed, "rows": rows}, fh, indent=1)
    print(f"wrote {args.output} and {js}")


if __name__ == "__main__":
    main()
