"""Figure: the energy staircase of a metastable run on the sphere.

Regenerate with::

    python figures/sphere_staircase.py       # writes figures/sphere_staircase.png (~30 s)

N = 64 tokens uniform on S^2, first-order SA with beta = 9 (Q = K = V = I),
rk4 with h = 0.2 up to t = 10^4. The tokens collapse in a few time units into
a handful of clusters, which then merge one pair at a time after exponentially
long, increasingly separated waits (dynamic metastability, Geshkovski, Koubbi,
Polyanskiy & Rigollet). The interaction energy
E_beta = 1/(2 beta N^2) sum_ij exp(beta <x_i, x_j>) climbs a staircase: on
each plateau it sits at the value of its cluster configuration,
e^beta / (2 beta) sum_a (n_a / N)^2 up to the exponentially small
inter-cluster terms (dashed, from the cluster sizes n_a at that plateau).
Bottom: the tokens at one time on each plateau, colored by cluster.
"""

from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import meanfield
from meanfield.diagnostics.clustering import cluster_labels

HERE = os.path.dirname(os.path.abspath(__file__))
BETA, N, SEED, T1, H = 9.0, 64, 1, 1.0e4, 0.2
TOL = 1e-3


def main():
    cfg = {"model": {"name": "sphere", "dynamics": "first_order", "d": 3, "beta": BETA},
           "integrator": {"name": "rk4", "h": H},
           "initial": {"law": "sphere_uniform", "n": N, "seed": SEED},
           "run": {"t0": 0.0, "t1": T1, "save_every": 10},
           "output": {"save": ["x"]}, }
    res = meanfield.Run(cfg).simulate()
    t, E, nc, x = res.t, res["E_beta"], res["n_clusters"], res["x"]
    # plateaus: maximal runs of a constant cluster count after the initial collapse
    change = np.nonzero(np.diff(nc))[0] + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(t)]])
    plateaus = [(s, e) for s, e in zip(starts, ends) if t[e - 1] - t[s] > 5.0 and nc[s] <= 8]

    fig = plt.figure(figsize=(13, 7.8))
    gs = fig.add_gridspec(2, max(4, len(plateaus)), height_ratios=[1.25, 1])
    ax = fig.add_subplot(gs[0, :])
    tt = t + H * 10  # shift so the first save shows on a log axis
    ax.semilogx(tt, E, color="tab:blue", lw=1.6, label="E_beta(t)")
    for s, e in plateaus:
        labels, k = cluster_labels(x[e - 1], TOL)
        sizes = np.bincount(labels)
        level = math.exp(BETA) / (2 * BETA) * np.sum((sizes / N) ** 2)
        ax.hlines(level, tt[s], tt[e - 1], colors="k", linestyles="--", lw=1)
        ax.text(tt[s] * 1.1, level * 1.015, f"{k} clusters {sorted(sizes.tolist(), reverse=True)}",
                fontsize=8, va="bottom")
    ax.set_xlabel("t (+ 2)")
    ax.set_ylabel("E_beta", color="tab:blue")
    ax2 = ax.twinx()
    ax2.step(tt, nc, where="post", color="tab:red", lw=1)
    ax2.set_yscale("log")
    ax2.set_ylabel(f"clusters (tol {TOL:g})", color="tab:red")
    ax.set_title(f"Metastable clustering on S^2: N = {N}, beta = {BETA:g}, first-order SA (rk4, h = {H:g}); "
                 "dashed: e^beta/(2 beta) sum_a (n_a/N)^2")
    ax.grid(True, which="both", alpha=0.3)
    u, v = np.mgrid[0:2 * np.pi:40j, 0:np.pi:20j]
    m = x[-1].mean(axis=0)
    view = (np.degrees(np.arcsin(m[2] / np.linalg.norm(m))), np.degrees(np.arctan2(m[1], m[0])))
    for col, (s, e) in enumerate(plateaus[: gs.ncols]):
        k = (s + e) // 2
        ax3 = fig.add_subplot(gs[1, col], projection="3d")
        ax3.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.3)
        labels, kk = cluster_labels(x[k], TOL)
        ax3.view_init(*view)
        ax3.scatter(*(1.02 * x[k].T), s=40, c=plt.cm.tab10(labels % 10), depthshade=False, edgecolors="k",
                    linewidths=0.3)
        ax3.set_title(f"t = {t[k]:.0f}: {kk} clusters", fontsize=9)
        ax3.set_box_aspect((1, 1, 1))
        ax3.set_axis_off()
    fig.tight_layout()
    out = os.path.join(HERE, "sphere_staircase.png")
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
