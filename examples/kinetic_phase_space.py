"""The kinetic picture of accelerated attention

The accelerated (damped Hamiltonian) sphere model gives every token a
momentum; its mean-field limit on the circle is a kinetic equation for the
density f(t, theta, omega) of positions and tangent momenta,
d_t f + d_theta(f omega / z) + d_omega(f (G - alpha omega)) = 0, solved by
``[solver] kind = "pde"`` with the conservative semi-Lagrangian strang
splitting. Started at rest (all momenta zero) from a two-bump von Mises law,
the mass falls into the bumps, overshoots, and the phase-space density
winds into spirals that the damping (constant alpha = 1) contracts onto
omega = 0: two clusters, which later merge.

Top: f(theta, omega) at four times. Bottom: the order parameter
|int e^{i theta} f| of the kinetic solution next to the first-order
mean-field equation of the same law (the continuity equation of SA,
finite volumes), and the energy of the kinetic run. ``--gif movie.gif``
also writes the phase-space motion (``meanfield.animation.write_animation``,
the function behind ``meanfield animate``).
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
SIZES = {"small": ([48, 61], 0.1, 1.0), "default": ([128, 161], 0.05, 8.0),
         "large": ([256, 321], 0.025, 12.0)}  # phase-space cells, h, t1
BETA = 2.0
LAW = {"law": "von_mises", "mu": [0.0, 2.5], "kappa": [2.0, 1.0], "weights": [0.6, 0.4]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SIZES), default="default")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "gallery", "kinetic_phase_space.png"))
    ap.add_argument("--gif", default=None, help="also write an animation (.gif) of the phase-space density")
    args = ap.parse_args(argv)
    meanfield.plotting.check_script_outputs(ap.prog, out=args.out, gif=args.gif)  # before computing
    cells, h, t1 = SIZES[args.size]
    saves = max(1, round(t1 / h / 80))
    kin = meanfield.Run({
        "model": {"name": "sphere", "dynamics": "accelerated", "d": 2, "beta": BETA},
        "damping": {"schedule": "constant", "a": 1.0},
        "solver": {"kind": "pde", "grid": cells, "momentum_max": 8.0},
        "integrator": {"name": "strang", "h": h},
        "initial": dict(LAW, momentum="zero"),
        "run": {"t0": 0.0, "t1": t1, "save_every": saves}}).simulate()
    first = meanfield.Run({
        "model": {"name": "sphere", "dynamics": "first_order", "d": 2, "beta": BETA},
        "solver": {"kind": "pde", "grid": cells[0]},
        "integrator": {"name": "heun", "h": 0.5 * 2 * np.pi / cells[0] / np.exp(BETA)},
        "initial": LAW,
        "run": {"t0": 0.0, "t1": t1, "save_every": 10}}).simulate()
    theta, omega, f = kin.grid["theta"], kin.grid["momentum"], kin["density"]
    fig = plt.figure(figsize=(13, 7.2))
    gs = fig.add_gridspec(2, 4, height_ratios=[1, 0.9])
    ext = [theta[0], theta[-1], omega[0], omega[-1]]
    for col, s in enumerate(np.linspace(0, len(kin.t) - 1, 4).astype(int)):
        ax = fig.add_subplot(gs[0, col])
        ax.imshow(f[s].T, origin="lower", extent=ext, aspect="auto", cmap="magma",
                  vmax=np.percentile(f[s], 99.5))
        ax.set(title=f"f(theta, omega) at t = {kin.t[s]:.3g}", xlabel="theta",
               ylabel="omega" if col == 0 else None)
    ax = fig.add_subplot(gs[1, :2])
    ax.plot(kin.t, kin["order_parameter"], label="accelerated (kinetic), alpha = 1")
    ax.plot(first.t, first["order_parameter"], "k--", label="first order (SA, finite volume)")
    ax.set(xlabel="t", ylabel="order parameter |int e^{i theta} rho|")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    ax = fig.add_subplot(gs[1, 2:])
    ax.plot(kin.t, kin["energy"], label="H = K + U (kinetic run)")
    ax.plot(kin.t, kin["kinetic"], label="kinetic energy K")
    ax.set(xlabel="t", ylabel="energy")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.suptitle(f"circle, beta = {BETA:g}: kinetic mean-field equation of accelerated attention "
                 f"({cells[0]} x {cells[1]} cells, strang h = {h:g})")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}; mass lost {1 - kin['mass'][-1]:.1e}; order parameter at t = {t1:g}: "
          f"kinetic {kin['order_parameter'][-1]:.3f}, first order {first['order_parameter'][-1]:.3f}")
    if args.gif:
        from meanfield.animation import write_animation

        frames = write_animation(kin, args.gif, fps=8, every=2, dpi=60)
        print(f"wrote {args.gif} ({frames} frames)")


if __name__ == "__main__":
    main()
