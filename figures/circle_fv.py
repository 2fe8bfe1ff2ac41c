"""Figure: the mean-field density on the circle through metastable clusters to one cluster.

Regenerate with::

    python figures/circle_fv.py            # writes figures/circle_fv.png (~1-2 min)
    python figures/circle_fv.py --quick    # fewer particles, shorter run (a smoke test)

Sphere model in d = 2 (tokens at angles theta), SA, beta = 3, Q = K = V = I;
initial law a von Mises mixture (mu = 0, 2.3; kappa = 4; weights 0.6, 0.4).
Left: the finite-volume density (M = 2048 cells, Heun = SSP-RK2 at 0.8 x the
CFL step) as a space-time image, log color scale: two clusters form by
t ~ 5, drift slowly towards each other (metastable), then merge into one.
Middle: the space-time histogram of N = 4000 particles (exact pairwise engine,
rk4, h = 0.2) drawn from the same law. Right: order parameter
|int e^{i theta} rho| of both, and the minimum of the density: the
finite-volume one stays >= 0; the spectral solver of the same equation
(M = 256) leaves positivity when the clusters get narrower than its grid and
stops (marked x).

A collapsed cluster is one or two cells wide; it moves only when its drift
beats its own attraction at the neighbouring interfaces (~dx / 2 for SA), so
slow metastable drifts are resolved at first order in dx: the merging time
here is 27, 25, 24.5 at M = 512, 1024, 2048.
"""

from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.integrate import solve_ivp
from scipy.special import i0

import meanfield
from meanfield.pde.finite_volume import CircleFV
from meanfield.pde.stepping import solve
from meanfield.reductions.circle_pde import CirclePDE

HERE = os.path.dirname(os.path.abspath(__file__))
BETA, M, M_SPEC, BINS, H = 3.0, 2048, 256, 128, 0.2
LAW = {"law": "von_mises", "mu": [0.0, 2.3], "kappa": 4.0, "weights": [0.6, 0.4]}
MODEL = {"name": "sphere", "dynamics": "first_order", "d": 2, "beta": BETA, "normalized": True}


def spectral_positivity(times):
    """Min density of the spectral solver at ``times`` until it fails (NaN after)."""
    p = CirclePDE(M_SPEC, BETA, True)
    th = p.theta
    f0 = sum(w * np.exp(LAW["kappa"] * np.cos(th - m)) for m, w in zip(LAW["mu"], LAW["weights"]))
    f0 /= 2 * np.pi * i0(LAW["kappa"])
    sol = solve_ivp(p.rhs, (times[0], times[-1]), f0, method="DOP853", rtol=1e-8, atol=1e-10, dense_output=True)
    mins = np.full(times.size, np.nan)
    ok = times <= sol.t[-1]
    mins[ok] = sol.sol(times[ok]).min(axis=0)
    return mins, sol.t[-1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    T, n = (20.0, 500) if a.quick else (40.0, 4000)
    times = np.arange(0.0, T + 1e-9, 1.0)
    s = CircleFV(MODEL, M)
    res = solve(s, s.initial_density(LAW), 0.0, T, method="heun", save=times)
    rho = res["density"]
    r_pde = [s.diagnostics(f)["order_parameter"] for f in rho]
    mass_err = max(abs(s.mass(f) - 1) for f in rho)

    cfg = {"model": MODEL, "integrator": {"name": "rk4", "h": H}, "initial": dict(LAW, n=n, seed=0),
           "run": {"t0": 0.0, "t1": T, "save_every": round(1.0 / H)}, "output": {"save": ["x"]}}
    x = meanfield.Run(cfg).simulate()["x"]
    th = np.mod(np.arctan2(x[..., 1], x[..., 0]), 2 * np.pi)
    hist = np.stack([np.histogram(t, bins=BINS, range=(0, 2 * np.pi))[0] * BINS / (2 * np.pi * n) for t in th])
    r_part = np.linalg.norm(x.mean(axis=1), axis=1)
    spec_min, spec_end = spectral_positivity(times)

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1, 1, 1.1]})
    ext = [0, 2 * np.pi, times[-1], times[0]]
    floor = 1e-3
    shown = rho.reshape(rho.shape[0], BINS, -1).mean(axis=2)  # cell averages over the histogram's bins
    for k, (img, title) in enumerate([(shown, f"finite volume, M = {M} ({BINS} bins shown)"),
                                      (hist, f"{n} particles (histogram)")]):
        im = ax[k].imshow(np.log10(np.maximum(img, floor)), aspect="auto", extent=ext, cmap="magma",
                          vmin=np.log10(floor), vmax=2.0, interpolation="nearest")
        ax[k].set(xlabel="theta", ylabel="t" if k == 0 else None, title=title)
        ax[k].invert_yaxis()
    fig.colorbar(im, ax=ax[:2], label="log10 density", shrink=0.9)
    ax[2].plot(times, r_pde, "k-", label="order parameter, pde")
    ax[2].plot(times, r_part, "C1--", label=f"order parameter, {n} particles")
    ax[2].plot(times, np.array(res["density"]).min(axis=1), "C0-", label="min density, finite volume")
    ax[2].plot(times, spec_min, "C3-", label=f"min density, spectral (M = {M_SPEC})")
    if spec_end < T:
        ax[2].plot([spec_end], [-0.27], "C3x", ms=10)  # where it stopped (its minimum is far below)
    ax[2].axhline(0.0, color="0.6", lw=0.5)
    ax[2].set(xlabel="t", ylim=(-0.3, 1.05), title=f"beta = {BETA}, SA; mass error {mass_err:.0e}")
    ax[2].legend(fontsize=8, loc="center right")
    out = os.path.join(HERE, "circle_fv.png")
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(f"wrote {out}; fv steps {res['steps']}, min density {res['min_density']:.2e}, mass error "
          f"{mass_err:.1e}; spectral solver stopped at t = {spec_end:.2f}; order parameter at t = "
          f"{times[-1]:g}: pde {r_pde[-1]:.4f}, particles {r_part[-1]:.4f}")


if __name__ == "__main__":
    main()
