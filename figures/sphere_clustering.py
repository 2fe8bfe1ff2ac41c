"""Figure: clustering of tokens on the circle and the sphere, first-order vs accelerated blocks.

Regenerate with::

    python figures/sphere_clustering.py      # writes figures/sphere_clustering.png (~1 min)

Same tokens, same energy U = -1/(2N^2) sum_ij exp(beta <x_i, x_j>) (beta = 4),
same step h = 0.2 and the same oracle budget (one oracle call = one pass of
attention over all pairs) for three blocks:

* classical attention (first-order SA with V = beta I, the mobility-1/z_i
  gradient flow of U), explicit Euler: the residual block;
* nag: the same first-order field with Nesterov momentum (constant damping
  0.5), followed by the retraction onto the sphere;
* the accelerated sphere Hamiltonian (docs/models.md §3/§4, B = I, A = beta I, tangent
  momenta), exponential Euler with constant damping 1, followed by the
  retraction and momentum projection.

Top: d = 2, N = 32 tokens on the circle, angles against oracle calls, colored
by the metastable cluster each token is in after 100 calls. Bottom: d = 3, N = 64 tokens on S^2 after 40 oracle calls
(grey: start). Right: 1 - min_i<j <x_i, x_j> against oracle calls.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import meanfield
from meanfield.diagnostics.clustering import cluster_labels

HERE = os.path.dirname(os.path.abspath(__file__))
BETA, H = 4.0, 0.2
METHODS = [  # (label, dynamics, integrator, damping)
    ("first-order SA, euler", "first_order", "euler", None),
    ("nag (momentum, first-order oracle)", "first_order", "nag", 0.5),
    ("accelerated Hamiltonian, exp_euler", "accelerated", "exp_euler", 1.0),
]
COLORS = ["tab:blue", "tab:orange", "tab:green"]


def config(dynamics, integrator, a, d, n, calls, seed):
    cfg = {"model": {"name": "sphere", "dynamics": dynamics, "d": d, "beta": BETA},
           "integrator": {"name": integrator, "h": H},
           "initial": {"law": "sphere_uniform", "n": n, "seed": seed},
           "run": {"t0": 0.0, "oracle_calls": calls, "save_every": 1},
           "output": {"save": ["x"]}}
    if dynamics == "first_order":
        cfg["model"]["V"] = BETA  # the gradient flow of the same U as the Hamiltonian's potential
    else:
        cfg["initial"]["momentum"] = "zero"
    if a is not None:
        cfg["damping"] = {"schedule": "constant", "a": a}
    return cfg


def main():
    fig = plt.figure(figsize=(15, 8.6))
    gs = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 1.15])
    # ---- circle
    runs = [meanfield.Run(config(dyn, integ, a, 2, 32, 2000, 3)).simulate() for _, dyn, integ, a in METHODS]
    for col, ((label, *_), res) in enumerate(zip(METHODS, runs)):
        ax = fig.add_subplot(gs[0, col])
        x = res["x"]
        calls = res["oracle_calls"]
        labels, k = cluster_labels(x[int(np.searchsorted(calls, 100))], 1e-2)  # metastable clusters
        th = np.unwrap(np.arctan2(x[:, :, 1], x[:, :, 0]), axis=0)
        th -= 2 * np.pi * np.floor((th[-1] + np.pi) / (2 * np.pi))
        for i in range(th.shape[1]):
            ax.plot(calls, th[:, i], color=plt.cm.tab10(labels[i] % 10), lw=0.7)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(0, calls[-1])
        ax.set_title(f"{label}\n(d = 2, N = 32)", fontsize=9)
        ax.set_xlabel("oracle calls")
        if col == 0:
            ax.set_ylabel("angle theta_i")
    ax = fig.add_subplot(gs[0, 3])
    for (label, *_), res, c in zip(METHODS, runs, COLORS):
        ax.semilogy(res["oracle_calls"], np.maximum(1 - res["min_inner"], 1e-16), color=c, label=label)
    ax.set_xlabel("oracle calls")
    ax.set_ylabel("1 - min <x_i, x_j>")
    ax.set_title(f"circle, beta = {BETA:g}, h = {H:g}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    # ---- sphere S^2
    budget = 40
    runs = [meanfield.Run(config(dyn, integ, a, 3, 64, 400, 5)).simulate() for _, dyn, integ, a in METHODS]
    u, v = np.mgrid[0:2 * np.pi:40j, 0:np.pi:20j]
    for col, ((label, *_), res) in enumerate(zip(METHODS, runs)):
        ax = fig.add_subplot(gs[1, col], projection="3d")
        ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.3)
        s = int(np.searchsorted(res["oracle_calls"], budget))
        x0, xs = res["x"][0], res["x"][s]
        labels, k = cluster_labels(xs, 1e-2)
        if col == 0:
            m = xs.mean(axis=0)
            view = (np.degrees(np.arcsin(m[2] / np.linalg.norm(m))), np.degrees(np.arctan2(m[1], m[0])))
        ax.view_init(*view)
        ax.scatter(*x0.T, s=5, color="0.55")
        ax.scatter(*(1.02 * xs.T), s=40, c=plt.cm.tab10(labels % 10), depthshade=False, edgecolors="k",
                   linewidths=0.3)
        ax.set_title(f"S^2, N = 64, after {res['oracle_calls'][s]} calls: {k} cluster(s)", fontsize=9)
        ax.set_box_aspect((1, 1, 1))
        ax.set_axis_off()
    ax = fig.add_subplot(gs[1, 3])
    for (label, *_), res, c in zip(METHODS, runs, COLORS):
        ax.semilogy(res["oracle_calls"], np.maximum(1 - res["min_inner"], 1e-16), color=c, label=label)
    ax.axvline(budget, color="0.5", ls=":", lw=1)
    ax.set_xlabel("oracle calls")
    ax.set_ylabel("1 - min <x_i, x_j>")
    ax.set_title(f"sphere S^2, beta = {BETA:g}, h = {H:g}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle("Clustering of self-attention on the sphere at equal oracle calls "
                 "(one call = one attention pass over all pairs)")
    fig.tight_layout()
    out = os.path.join(HERE, "sphere_clustering.png")
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
