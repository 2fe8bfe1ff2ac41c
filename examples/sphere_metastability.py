"""Clustering and metastability on S^2

Self-attention on the sphere (the sphere model, SA, Q = K = V = I, post-LN)
drives tokens into clusters. At a large inverse temperature beta the tokens
first gather into several clusters within a short time, and these clusters
then sit almost still for a long time -- metastable states -- before merging
one pair at a time into a single cluster: the number of clusters falls like a
staircase over a logarithmic time axis, and the interaction energy E_beta
climbs by one step at every merger.

Top: the tokens on S^2 (orthographic view, grey: the back hemisphere) at
four times. Bottom: the number of clusters (components of
<x_i, x_j> > 1 - 1e-3), 1 - mean <x_i, x_j> and E_beta against time.
``--gif movie.gif`` also writes the motion as an animation
(``meanfield.animation.write_animation``, the function behind
``meanfield animate``).
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import meanfield
import meanfield.plotting
from meanfield.animation import orthographic, write_animation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {"small": (32, 20.0), "default": (128, 400.0), "large": (1024, 2000.0)}  # N, t1
BETA, H = 9.0, 0.1


def config(n, t1):
    return {"model": {"name": "sphere", "dynamics": "first_order", "d": 3, "beta": BETA},
            "integrator": {"name": "rk4", "h": H},
            "initial": {"law": "sphere_uniform", "n": n, "seed": 4},
            "run": {"t0": 0.0, "t1": t1, "save_every": 5},
            "output": {"save": ["x"]}}


def draw_sphere(ax, x, view):
    """Tokens x (N, 3) seen along ``view`` (grey: the back hemisphere)."""
    proj, front = orthographic(x, view)
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="0.6"))
    ax.scatter(*proj[~front].T, s=8, color="0.75")
    ax.scatter(*proj[front].T, s=14, color="C0")
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_aspect("equal")
    ax.set_axis_off()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SIZES), default="default")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "gallery", "sphere_metastability.png"))
    ap.add_argument("--gif", default=None, help="also write an animation (.gif) of the run")
    args = ap.parse_args(argv)
    meanfield.plotting.check_script_outputs(ap.prog, out=args.out, gif=args.gif)  # before computing
    n, t1 = SIZES[args.size]
    res = meanfield.Run(config(n, t1)).simulate()
    t, x, k = res.t, res["x"], res["n_clusters"]
    fig = plt.figure(figsize=(13, 7))
    gs = fig.add_gridspec(2, 4, height_ratios=[1, 1.1])
    view = np.array([0.3, 0.5, 0.81])
    shown = np.unique(np.geomspace(1, len(t) - 1, 4).astype(int))
    shown[0] = 0
    for col, s in enumerate(shown):
        ax = fig.add_subplot(gs[0, col])
        draw_sphere(ax, x[s], view)
        ax.set_title(f"t = {t[s]:.3g}: {k[s]} cluster(s)", fontsize=10)
    ax = fig.add_subplot(gs[1, :2])
    ax.step(np.maximum(t, H), k, where="post", color="k")
    ax.set_xscale("log")
    meanfield.plotting.count_axis(ax, k)  # plain integer ticks (log only over a decade or more)
    ax.set(xlabel="t", ylabel="number of clusters", title="the staircase of metastable states")
    ax.grid(True, which="both", alpha=0.3)
    ax = fig.add_subplot(gs[1, 2:])
    spread = 1 - res["mean_inner"]
    ax.plot(np.maximum(t, H), spread, label="1 - mean <x_i, x_j>")
    ax.set_xscale("log")
    if spread.max() >= 10 * max(spread.min(), 1e-300):  # a log axis only over a decade or more
        ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="center left", fontsize=8)
    ax2 = ax.twinx()
    ax2.semilogx(np.maximum(t, H), res["E_beta"], color="C3")
    ax2.set_ylabel("E_beta (red)")
    fig.suptitle(f"S^2, beta = {BETA:g}, N = {n} uniform tokens, SA post-LN, rk4 h = {H:g}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}; clusters over time: {sorted(set(k.tolist()), reverse=True)}")
    if args.gif:
        log_frames = np.unique(np.geomspace(1, len(t), 90).astype(int) - 1)  # the staircase is in log t
        frames = write_animation(res, args.gif, fps=8, frames=log_frames, dpi=60)
        print(f"wrote {args.gif} ({frames} frames)")


if __name__ == "__main__":
    main()
