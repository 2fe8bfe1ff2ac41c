"""Particles converge to the mean-field PDE on the circle

The same parameter file, run once with particles and once with
``[solver] kind = "pde"``, gives the two sides of the mean-field limit: N
tokens on the circle (the sphere model in d = 2, SA, beta = 3, drawn from a
two-bump von Mises law) and the continuity equation
d_t rho + d_theta(rho u[rho]) = 0 for their density, solved by the
positivity-preserving finite-volume scheme. The particles use the Fourier
(NUFFT) summation, O(N) per oracle call.

Left: the density at the final time, PDE (black) and histograms of N
particles. Right: the Wasserstein-1 distance on the circle between the
particles' empirical law and the PDE's density at the final time against N,
with the N^{-1/2} line of the law of large numbers. One seed per N: the
points scatter around the line; the PDE's own discretization error (the
grid's cell width) is the floor they approach at large N.
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import meanfield
import meanfield.plotting

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {"small": ([100, 1000], 256, 1.0), "default": ([100, 300, 1000, 3000, 10000], 1024, 1.5),
         "large": ([100, 1000, 10000, 100000, 1000000], 4096, 3.0)}  # N, cells, t1
LAW = {"law": "von_mises", "mu": [0.0, 2.3], "kappa": 4.0, "weights": [0.6, 0.4]}
MODEL = {"name": "sphere", "dynamics": "first_order", "d": 2, "beta": 3.0}


def w1_circle(theta, centres, rho):
    """W1 on the circle between the points ``theta`` and the density ``rho`` on cells ``centres``."""
    dx = centres[1] - centres[0]
    edges = centres[0] - dx / 2 + dx * np.arange(len(centres) + 1)
    F = np.searchsorted(np.sort(np.mod(theta - edges[0], 2 * np.pi)), edges - edges[0]) / len(theta)
    G = np.concatenate([[0.0], np.cumsum(rho) * dx])
    D = F - G
    return float(np.sum(np.abs(D - np.median(D))[:-1]) * dx)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SIZES), default="default")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "gallery", "circle_particles_to_pde.png"))
    args = ap.parse_args(argv)
    meanfield.plotting.check_script_outputs(ap.prog, out=args.out)  # before computing
    ns, cells, t1 = SIZES[args.size]
    pde_cfg = {"model": MODEL, "solver": {"kind": "pde", "grid": cells},
               "integrator": {"name": "heun", "h": 0.5 * 2 * np.pi / cells}, "initial": LAW,
               "run": {"t0": 0.0, "t1": t1, "save_every": 1000000}}
    pde = meanfield.Run(pde_cfg).simulate()
    theta, rho = pde.grid["theta"], pde["density"][-1]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax.plot(theta, rho, "k-", lw=2, label=f"PDE (finite volume, {cells} cells)", zorder=5)
    w1 = []
    for c, n in enumerate(ns):
        cfg = {"model": dict(MODEL, summation="fourier"), "integrator": {"name": "rk4", "h": 0.1},
               "initial": dict(LAW, n=n, seed=c), "run": {"t0": 0.0, "t1": t1, "save_every": 1000000},
               "output": {"save": ["x"]}}
        x = meanfield.Run(cfg).simulate()["x"][-1]
        th = np.arctan2(x[:, 1], x[:, 0])
        w1.append(w1_circle(th, theta, rho))
        print(f"N = {n}: W1(particles, PDE) at t = {t1:g}: {w1[-1]:.3e}")
        if n <= 10**5:
            ax.hist(np.mod(th, 2 * np.pi), bins=min(128, max(16, n // 20)), range=(0, 2 * np.pi),
                    density=True, histtype="step", color=f"C{c}", label=f"N = {n}")
    ax.set(xlabel="theta", ylabel="density", title=f"t = {t1:g}: two clusters forming")
    ax.legend(fontsize=8)
    ns = np.array(ns, dtype=float)
    ax2.loglog(ns, w1, "o-", label="W1(particles, PDE)")
    ax2.loglog(ns, w1[0] * np.sqrt(ns[0] / ns), "k--", lw=0.8, label="N^{-1/2}")
    slope = np.polyfit(np.log(ns), np.log(w1), 1)[0]
    ax2.set(xlabel="N", ylabel="W1 on the circle", title=f"fitted slope {slope:.2f}")
    ax2.legend(fontsize=8)
    ax2.grid(True, which="both", alpha=0.3)
    fig.suptitle("sphere model on the circle, SA, beta = 3: particles (rk4, Fourier summation) vs "
                 "the mean-field PDE")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}; fitted W1 slope {slope:.2f}")


if __name__ == "__main__":
    main()
