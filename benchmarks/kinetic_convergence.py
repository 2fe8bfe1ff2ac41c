"""The kinetic solver against theory and against low-noise particles, under refinement.

Usage::

    python benchmarks/kinetic_convergence.py [--quick]

1. Cold start (docs/models.md §9): the relative error of mode k = 2 (beta = 2,
   alpha = 1, momenta at rest) against eps'' + alpha eps' = k^2 I_k / I_0 eps over
   a growth by e^3, refining the momentum grid K, the step h, and both.
2. Nonlinear warm start (two von Mises bumps, omega ~ N(0, 0.6^2), beta = 2,
   alpha = 1, t = 2): the exact circle W1 of the theta marginal to particles at
   the quantiles of the initial law (800 x 100; --quick: 400 x 40 to t = 1),
   refining M, K and h separately and together.

Prints the tables, names the CPU, writes benchmarks/results/kinetic_convergence.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from _common import cpu_info, cpu_label, print_table, save_json
from scipy import special

import meanfield
from meanfield.initial import von_mises_params
from meanfield.pde.densities import von_mises_pdf
from meanfield.pde.kinetic import CircleKinetic
from meanfield.reductions.circle_pde import w1_circle_cdf
from meanfield.schedules import make_schedule

WARM = {"law": "von_mises", "mu": [0.0, 2.5], "kappa": [2.0, 1.0], "weights": [0.6, 0.4],
        "momentum": "gaussian", "momentum_scale": 0.6}


def mode(sol, f, k):
    """eps of the theta marginal (1 + eps cos k theta) / 2 pi, the cell averaging undone."""
    c = 2.0 * abs(np.sum(sol.marginal(f) * np.exp(-1j * k * sol.theta)) * sol.dtheta)
    return c / np.sinc(k * sol.dtheta / (2 * np.pi))


def cold_error(M, K, h, beta=2.0, k=2, alpha=1.0, eps=1e-6):
    sol = CircleKinetic(beta, M, K, 4.0)
    a, b = sol.theta_edges[:-1], sol.theta_edges[1:]
    rho = (1.0 + eps * (np.sin(k * b) - np.sin(k * a)) / (k * sol.dtheta)) / (2 * np.pi)
    law = np.zeros(K)
    law[K // 2] = 1.0 / sol.domega
    f, work = np.ascontiguousarray(rho[:, None] * law[None, :]), np.empty((M, K))
    lam = k * k * special.iv(k, beta) / special.iv(0, beta)
    r1, r2 = (-alpha + np.sqrt(alpha ** 2 + 4 * lam)) / 2, (-alpha - np.sqrt(alpha ** 2 + 4 * lam)) / 2
    damping, t, err = make_schedule("constant", 0.0, a=alpha), 0.0, 0.0
    for _ in range(round(3.0 / r1 / h)):
        f, work = sol.step(f, damping, t, h, work)
        t += h
        theory = eps * (r2 * np.exp(r1 * t) - r1 * np.exp(r2 * t)) / (r2 - r1)
        err = max(err, abs(mode(sol, f, k) / theory - 1.0))
    return err


def quantile_angles(n_theta, n_omega, T, h):
    """Final angles of quantile-placed particles (rk4, Fourier summation)."""
    th = np.linspace(-np.pi, np.pi, 100001)
    pdf = von_mises_pdf(th, *von_mises_params(WARM, 2))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(th))])
    theta = np.interp((np.arange(n_theta) + 0.5) / n_theta, cdf / cdf[-1], th)
    omega = WARM["momentum_scale"] * special.ndtri((np.arange(n_omega) + 0.5) / n_omega)
    TH, OM = (a.ravel() for a in np.meshgrid(theta, omega, indexing="ij"))
    x = np.stack([np.cos(TH), np.sin(TH)], 1)
    y = OM[:, None] * np.stack([-x[:, 1], x[:, 0]], 1)
    with tempfile.TemporaryDirectory() as tmp:  # through files, as a user would
        np.save(f"{tmp}/x.npy", x)
        np.save(f"{tmp}/y.npy", y)
        cfg = {"model": {"name": "sphere", "dynamics": "accelerated", "d": 2, "beta": 2.0,
                         "summation": "fourier", "summation_tol": 1e-11},
               "integrator": {"name": "rk4", "h": h}, "damping": {"schedule": "constant", "a": 1.0},
               "initial": {"law": "file", "path": f"{tmp}/x.npy", "momentum": "file",
                           "momentum_path": f"{tmp}/y.npy"},
               "run": {"t0": 0.0, "t1": T, "save_every": 10 ** 6}, "output": {"save": ["x"]}}
        res = meanfield.Run(cfg).simulate()
    return np.arctan2(res.state["x"][:, 1], res.state["x"][:, 0])


def warm_w1(angles, M, K, h, T):
    sol = CircleKinetic(2.0, M, K, 5.0)
    f = sol.initial_density(WARM)
    work, damping = np.empty_like(f), make_schedule("constant", 0.0, a=1.0)
    for n in range(round(T / h)):
        f, work = sol.step(f, damping, n * h, h, work)
    F = np.concatenate([[0.0], np.cumsum(sol.marginal(f)) * sol.dtheta])
    return w1_circle_cdf(angles + np.pi, sol.theta_edges + np.pi, F)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    quick = ap.parse_args(argv).quick
    info = cpu_info()
    print(f"CPU: {cpu_label(info)}")
    cold = [{"K": K, "h": h, "rel_error": cold_error(64, K, h)}
            for K, h in ((81, 0.05), (161, 0.05), (81, 0.0125), (161, 0.025), (321, 0.0125))]
    print("cold start, k = 2, beta = 2, alpha = 1, M = 64 (relative error of the mode against theory)")
    print_table(cold, ["K", "h", "rel_error"])
    n_theta, n_omega, T = (400, 40, 1.0) if quick else (800, 100, 2.0)
    t0 = time.perf_counter()
    angles = quantile_angles(n_theta, n_omega, T, 0.02)
    print(f"{n_theta * n_omega} quantile particles to t = {T:g}: {time.perf_counter() - t0:.0f} s")
    sweeps = {"M": [(M, 320, 0.0125) for M in (32, 64, 128, 256)],
              "K": [(256, K, 0.0125) for K in (40, 80, 160, 320)],
              "h": [(256, 320, h) for h in (0.1, 0.05, 0.025, 0.0125)],
              "together": [(32, 40, 0.1), (64, 80, 0.05), (128, 160, 0.025)]}
    if quick:
        sweeps = {"together": sweeps["together"]}
    warm = []
    for name, cases in sweeps.items():
        for M, K, h in cases:
            warm.append({"refined": name, "M": M, "K": K, "h": h, "W1": warm_w1(angles, M, K, h, T)})
    print("warm start: W1 of the theta marginals to the quantile particles")
    print_table(warm, ["refined", "M", "K", "h", "W1"])
    path = save_json("kinetic_convergence" + ("_quick" if quick else "") + ".json",
                     {"cold": cold, "warm": warm, "particles": [n_theta, n_omega], "T": T})
    print("wrote", path)


if __name__ == "__main__":
    main()
