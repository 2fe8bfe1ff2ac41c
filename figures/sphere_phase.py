"""Figure: phase diagram of the clustering time against beta (and the dimension d).

Regenerate with::

    python figures/sphere_phase.py           # writes figures/sphere_phase.png (~15 min, mostly capped runs)

N = 32 tokens uniform on S^{d-1}, first-order SA (Q = K = V = I), rk4 with
h = min(0.2, 2 / beta); the clustering time is the first time all pairwise
inner products exceed 1 - 1e-3 (one eps-cluster, eps = 1e-3), found by
stopping the run at the first save (every 0.2-1 time units) where it holds,
and capped at t = 10^4 (runs still in several metastable clusters then are
drawn at the cap, hollow markers). Left: the median over 4 seeds against
beta for each d (bars: min..max). Right: the same medians as a (beta, d) map.
Small beta: attention is nearly uniform, every token moves towards the
common mean direction and the clustering time hardly depends on beta; from
beta ~ 2 on, tokens first form local clusters that merge only after
metastable waits growing roughly exponentially in beta, longest in d = 2.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import meanfield

HERE = os.path.dirname(os.path.abspath(__file__))
N, EPS, T_MAX, SEEDS = 32, 1e-3, 1.0e4, 4
DIMS = (2, 3, 4, 8)
BETAS = np.array([0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0])


class _Clustered(Exception):
    pass


class StopWhenClustered:
    """Observer: remember the first save time with 1 - min_inner <= EPS, then stop the run."""

    def __init__(self):
        self.t = None

    def save(self, record):
        if 1.0 - record["tasks"]["min_inner"] <= EPS:
            self.t = record["scales"]["sim_time"]
            raise _Clustered


def clustering_time(d, beta, seed):
    h = min(0.2, 2.0 / beta)
    cfg = {"model": {"name": "sphere", "dynamics": "first_order", "d": d, "beta": float(beta)},
           "integrator": {"name": "rk4", "h": h},
           "initial": {"law": "sphere_uniform", "n": N, "seed": seed},
           "run": {"t0": 0.0, "t1": T_MAX, "save_every": max(1, round(min(1.0, 0.05 * (1 + beta)) / h))},  # ~1% resolution
           "output": {"save": []}}
    stop = StopWhenClustered()
    try:
        meanfield.Run(cfg).simulate(observers=[stop])
    except _Clustered:
        return stop.t
    return np.inf


def main():
    T = np.array([[[clustering_time(d, b, s) for s in range(SEEDS)] for b in BETAS] for d in DIMS])
    med = np.median(np.minimum(T, T_MAX), axis=2)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.3, 1]})
    for k, d in enumerate(DIMS):
        lo, hi = np.minimum(T[k], T_MAX).min(1), np.minimum(T[k], T_MAX).max(1)
        c = plt.cm.viridis(k / (len(DIMS) - 1))
        capped = np.median(T[k], axis=1) >= T_MAX
        ax.errorbar(BETAS, med[k], yerr=[med[k] - lo, hi - med[k]], color=c, lw=1.2, capsize=2,
                    label=f"d = {d}")
        ax.plot(BETAS[~capped], med[k][~capped], "o", color=c, ms=5)
        ax.plot(BETAS[capped], med[k][capped], "o", mfc="none", color=c, ms=7)
    ax.axhline(T_MAX, color="0.5", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(BETAS[[0, 2, 3, 5, 7, 9, 11, 13]], [f"{b:g}" for b in BETAS[[0, 2, 3, 5, 7, 9, 11, 13]]])
    ax.set_xlabel("beta")
    ax.set_ylabel(f"time to one {EPS:g}-cluster")
    ax.set_title(f"clustering time, N = {N}, SA, median of {SEEDS} seeds (hollow: not clustered by t = {T_MAX:g})",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    im = ax2.pcolormesh(np.arange(len(BETAS) + 1) - 0.5, np.arange(len(DIMS) + 1) - 0.5, np.log10(med),
                        cmap="magma", shading="flat")
    ax2.set_yticks(range(len(DIMS)), [str(d) for d in DIMS])
    ax2.set_xticks(range(len(BETAS)), [f"{b:g}" for b in BETAS], fontsize=7)
    ax2.set_xlabel("beta")
    ax2.set_ylabel("d")
    ax2.set_title("log10 median clustering time", fontsize=9)
    fig.colorbar(im, ax=ax2)
    fig.tight_layout()
    out = os.path.join(HERE, "sphere_phase.png")
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
