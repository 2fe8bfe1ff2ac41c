"""Monokinetic start on the circle: the kinetic solution follows the particles through crossing.

    python figures/kinetic_monokinetic.py [-o figures/kinetic_monokinetic.png] [--n 2000]

Sphere model, d = 2, beta = 2, no damping, positions ~ von Mises(0, kappa = 1),
all momenta zero: f starts on the graph omega = 0 and stays on a graph
omega = W(t, theta) until trajectories cross (the bump focuses through its
centre). The kinetic equation (strang, 256 x 561 cells, |omega| <= 14,
h = 0.02) is drawn in phase space at four times with N particles (rk4, same
h, saved every 5 steps) overlaid.
Crossing is measured two ways and printed:

* particles: the first save at which the Lagrangian map theta0 -> theta(t)
  stops being monotone (two particles, adjacent in theta0, swap order);
* kinetic solution: the first step at which some theta column (holding at
  least 1% of the largest marginal) has two separate momentum peaks (local
  maxima above 10% of the column's maximum): several streams over one theta.
  ``momentum_spread`` = sqrt(int rho Var(omega | theta)) is drawn too; it
  grows as the graph steepens, before any crossing, so it is not the
  criterion.
"""

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from meanfield.integrators import make_integrator
from meanfield.models import make_model
from meanfield.pde.kinetic import CircleKinetic
from meanfield.schedules import make_schedule
from meanfield.simulate import Horizon, Recorder, simulate

BETA, KAPPA, T1, H = 2.0, 1.0, 3.0, 0.02
LAW = {"law": "von_mises", "mu": [0.0], "kappa": [KAPPA], "momentum": "zero"}


SAVE_EVERY = 5


def streams(f, sol):
    """Largest number of separate momentum peaks over the theta columns that hold mass."""
    rho = sol.marginal(f)
    cols = f[rho > 0.01 * rho.max()]
    top = cols.max(axis=1, keepdims=True)
    peak = (cols[:, 1:-1] > cols[:, :-2]) & (cols[:, 1:-1] >= cols[:, 2:]) & (cols[:, 1:-1] > 0.1 * top)
    return int(peak.sum(axis=1).max())


def particles(n, seed=0):
    rng = np.random.default_rng(seed)
    th0 = np.sort(rng.vonmises(0.0, KAPPA, n))
    x = np.ascontiguousarray(np.stack([np.cos(th0), np.sin(th0)], 1))
    y = np.zeros_like(x)
    model = make_model({"name": "sphere", "dynamics": "accelerated", "d": 2, "beta": BETA})
    rec = Recorder()
    simulate(model, make_schedule("none", 0.0), make_integrator("rk4", "accelerated"), x, y,
             Horizon(t0=0.0, h=H, t1=T1), save_every=SAVE_EVERY, save_fields=("x", "y"), observers=[rec])
    scales, tasks = rec.arrays()
    X, Y = tasks["x"], tasks["y"]
    th = np.arctan2(X[..., 1], X[..., 0])
    # unwrap in time so that theta(t) - theta0 is continuous
    th = th0 + np.cumsum(np.concatenate([np.zeros((1, n)), np.angle(np.exp(1j * np.diff(th, axis=0)))]), axis=0)
    om = -X[..., 1] * Y[..., 0] + X[..., 0] * Y[..., 1]
    return scales["sim_time"], th, om


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", default="figures/kinetic_monokinetic.png")
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    tp, th, om = particles(args.n)
    print(f"particles N = {args.n}: {time.perf_counter() - t0:.1f} s")
    crossed = np.nonzero(np.any(np.diff(th, axis=1) < 0, axis=1))[0]
    t_cross_particles = tp[crossed[0]] if crossed.size else None
    t0 = time.perf_counter()
    sol = CircleKinetic(BETA, 256, 561, 14.0)
    f = sol.initial_density(LAW)
    w = np.empty_like(f)
    sch = make_schedule("none", 0.0)
    nsteps = round(T1 / H)
    snaps_at = [round(s / H) for s in (0.8, 1.6, 2.2, 3.0)]
    snaps, spread, ts, nstreams = {}, [], [], []
    for k in range(1, nsteps + 1):
        f, w = sol.step(f, sch, (k - 1) * H, H, w)
        ts.append(k * H)
        spread.append(sol.momentum_spread(f))
        nstreams.append(streams(f, sol))
        if k in snaps_at:
            snaps[k] = f.copy()
    spread, ts = np.array(spread), np.array(ts)
    print(f"kinetic 256 x 561: {time.perf_counter() - t0:.1f} s, mass lost {1 - f.sum() * sol.cell_volume:.2e}")
    multi = np.nonzero(np.array(nstreams) >= 2)[0]
    t_cross_pde = ts[multi[0]] if multi.size else None
    print(f"crossing: particles (Lagrangian map no longer monotone, saves every {SAVE_EVERY * H:g}) "
          f"t = {t_cross_particles}; kinetic (two momentum peaks over one theta) t = {t_cross_pde}")

    fig, axes = plt.subplots(1, 5, figsize=(20, 4))
    for ax, k in zip(axes, snaps_at):
        ax.pcolormesh(sol.theta, sol.omega, snaps[k].T, shading="nearest", cmap="magma")
        wrap = np.mod(th[k // SAVE_EVERY] + np.pi, 2 * np.pi) - np.pi
        ax.plot(wrap[::2], om[k // SAVE_EVERY][::2], ".", ms=1.0, color="cyan", alpha=0.6)
        ax.set_title(f"t = {k * H:.2f}")
        ax.set_xlabel("theta")
        ax.set_ylim(-10.0, 10.0)
    axes[0].set_ylabel("omega")
    ax = axes[-1]
    ax.semilogy(ts, spread, label="kinetic: momentum_spread")
    if t_cross_particles is not None:
        ax.axvline(t_cross_particles, color="k", ls="--", label="particles: first crossing")
    if t_cross_pde is not None:
        ax.axvline(t_cross_pde, color="C3", ls=":", label="kinetic: two momentum peaks")
    ax.set_xlabel("t")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.suptitle(f"monokinetic start (at rest), beta = {BETA:g}, no damping: kinetic solution (image) "
                 f"and {args.n} particles (dots)")
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print("wrote", args.output)


if __name__ == "__main__":
    main()
