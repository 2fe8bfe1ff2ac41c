"""The softmax model's mobility at work

Self-attention (SA) and its unnormalized variant (USA) of the softmax model
are gradient flows of the same energy, -1/(2N^2) sum_ij exp(x_i^T A x_j) +
(1/N) sum_i W(x_i), in two metrics: USA moves token i by the plain gradient
(1/N) sum_j E_ij V x_j - grad W(x_i) (with V = A), SA by the same vector
divided by z_i = (1/N) sum_j exp(x_i^T A x_j), the mobility 1/z_i. For a
centred cloud and a positive definite A, z_i is largest for the tokens far
out along the directions A favours: SA slows exactly those down, USA lets
them rush in first.

Left and middle: the distance |x_i(t)| of each token of the same Gaussian
cloud (d = 2, A = V = 0.3 I, W(x) = |x|^2 / 2) under SA and USA, coloured by
log z_i at the start. Right: the speed |dx_i/dt| of each token over the
first step against z_i, and the ratio USA / SA, which is z_i itself (up to
the step's O(h)).
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

import meanfield
import meanfield.plotting

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {"small": (100, 1.0), "default": (600, 3.0), "large": (5000, 8.0)}  # N, t1
H = 0.01
A = [[0.3, 0.0], [0.0, 0.3]]


def config(normalized, n, t1):
    return {"model": {"name": "softmax", "dynamics": "first_order", "d": 2, "A": A,
                      "V": A, "Q": [[1.0, 0.0], [0.0, 1.0]], "m": [0.0, 0.0], "normalized": normalized},
            "integrator": {"name": "rk4", "h": H},
            "initial": {"law": "gaussian", "n": n, "mean": [0.0, 0.0], "cov": [[1.0, 0.0], [0.0, 1.0]],
                        "seed": 1},
            "run": {"t0": 0.0, "t1": t1, "save_every": 1},
            "output": {"save": ["x"]}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SIZES), default="default")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "gallery", "softmax_mobility.png"))
    args = ap.parse_args(argv)
    meanfield.plotting.check_script_outputs(ap.prog, out=args.out)  # before computing
    n, t1 = SIZES[args.size]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    speeds = {}
    panels = ((axes[0], True, "SA (mobility 1/z_i)"), (axes[1], False, "USA (no mobility)"))
    for ax, normalized, name in panels:
        res = meanfield.Run(config(normalized, n, t1)).simulate()
        x = res["x"]
        x0 = x[0]
        z = np.exp(x0 @ np.array(A) @ x0.T).mean(axis=1)
        colors = plt.cm.viridis((np.log(z) - np.log(z).min()) / np.ptp(np.log(z)))
        for i in range(0, n, max(1, n // 100)):  # at most ~100 curves
            ax.semilogy(res.t, np.linalg.norm(x[:, i], axis=1), color=colors[i], lw=0.6)
        ax.set(xlabel="t", ylabel="|x_i(t)|", ylim=(1e-3, None))
        ax.set_title(f"{name}: distance to the centre (colour: log z_i at t = 0)", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        speeds[normalized] = np.linalg.norm(x[1] - x[0], axis=1) / H
        axes[2].loglog(z, speeds[normalized], ".", ms=3, label=f"speed, {name}")
    ratio = speeds[False] / speeds[True]
    axes[2].loglog(z, ratio, "k.", ms=2, label="speed USA / speed SA")
    axes[2].loglog(np.sort(z), np.sort(z), "r-", lw=0.8, label="z_i")
    print(f"max |speed USA / speed SA / z_i - 1| over the first step: {np.abs(ratio / z - 1).max():.2e}")
    axes[2].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[2].set_xlabel("z_i = (1/N) sum_j exp(x_i^T A x_j) at t = 0")
    axes[2].set_ylabel("speed |dx_i/dt| over the first step")
    axes[2].set_title("the mobility: USA / SA = z_i", fontsize=9)
    axes[2].legend(fontsize=8)
    axes[2].grid(True, which="both", alpha=0.3)
    fig.suptitle(f"softmax model, d = 2, N = {n}, A = V = 0.3 I, W = |x|^2 / 2, rk4 h = {H:g}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)  # many curves: a smaller file
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
