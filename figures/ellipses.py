"""Figure: covariance ellipses of the first-order vs the accelerated bilinear flow.

Regenerate with::

    python figures/ellipses.py            # writes figures/ellipses.png

Both runs start from the same Gaussian cloud (N = 4000, d = 2) and use the
same model (A = I, W(x) = 1/2 x^T Q x); the accelerated run uses nesterov
damping and affine initial momentum y = S x. Solid ellipses: particle
covariance at equal times; dashed: the exact moment ODE of docs/models.md §2. The law
stays Gaussian (elliptical) in both flows -- only its mean and covariance move.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import meanfield
from meanfield.plotting import _ellipse

HERE = os.path.dirname(os.path.abspath(__file__))


def config(dynamics):
    cfg = {
        "model": {"name": "bilinear", "dynamics": dynamics, "d": 2, "A": "identity",
                  "Q": [[1.0, 0.0], [0.0, 0.25]], "m": [0.0, 0.0]},
        "damping": {"schedule": "nesterov", "r": 3.0} if dynamics == "accelerated" else {"schedule": "none"},
        "integrator": {"name": "rk4", "h": 0.01},
        "initial": {"law": "gaussian", "n": 4000, "mean": [1.0, 0.5], "cov": [[1.0, 0.6], [0.6, 0.5]],
                    "seed": 0},
        "run": {"t0": 1.0, "t1": 31.0, "save_every": 50},
        "output": {"save": []},
        "diagnostics": {"moment_ode": True},
    }
    if dynamics == "accelerated":
        cfg["initial"].update(momentum="affine", S=[[0.0, 0.0], [0.0, 0.0]], b=[0.0, 0.0])
    return cfg


def main(path=os.path.join(HERE, "ellipses.png")):
    runs = {dyn: meanfield.Run(config(dyn)).simulate() for dyn in ("first_order", "accelerated")}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6))
    times = [1.0, 2.0, 4.0, 8.0, 16.0, 31.0]
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(times)))
    for ax, (dyn, res) in zip(axes[:2], runs.items()):
        for c, tt in zip(colors, times):
            k = int(np.argmin(np.abs(res.t - tt)))
            ax.add_patch(_ellipse(res["mean"][k], res["cov"][k], color=c, lw=2, label=f"t = {res.t[k]:.0f}"))
            ax.add_patch(_ellipse(res["ode_mean"][k], res["ode_cov"][k], color="k", lw=0.8, ls="--"))
            ax.plot(*res["mean"][k], "o", color=c, ms=3)
        ax.set_xlim(-1.2, 3.2)
        ax.set_ylim(-1.3, 2.3)
        ax.set_aspect("equal")
        ax.set_title({"first_order": "first-order (classical linear attention)",
                      "accelerated": "accelerated (nesterov, r = 3)"}[dyn])
        ax.legend(fontsize=8, loc="upper right")
    ax = axes[2]
    for dyn, res in runs.items():
        E = res["energy"]
        ax.loglog(res.t, E, label=f"energy, {dyn.replace('_', '-')}")
        ax.loglog(res.t[1:], res["ode_rel_error_cov"][1:], ls=":", label=f"cov error vs ODE, {dyn.replace('_', '-')}")
    ax.set_xlabel("t")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("energy (E* = 0) and relative cov error vs ODE")
    fig.suptitle("Bilinear model, W = x^T Q x / 2, Q = diag(1, 1/4), rk4 h = 0.01: Gaussian clouds stay "
                 "Gaussian. Solid: particles (N = 4000); dashed: moment ODE", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
