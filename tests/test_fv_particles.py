"""Particles of the sphere model (d = 2) against the finite-volume density on the circle.

The same [model] and [initial] sections drive a particle run (meanfield.Run,
exact pairwise engine) and the pde solver; through cluster formation the order
parameter |int e^{i theta} rho| agrees within a few 1/sqrt(N), and the
Wasserstein-1 distance on the circle decays like N^{-1/2}
(benchmarks/bench_fv_particles.py goes to larger N).
"""

from __future__ import annotations

import numpy as np
import pytest

import meanfield
from meanfield.pde.finite_volume import CircleFV
from meanfield.pde.stepping import solve

VM2 = {"law": "von_mises", "mu": [0.0, 2.5], "kappa": 2.0, "weights": [0.65, 0.35]}
BETA = 1.0

pytestmark = pytest.mark.usefixtures("one_thread")


def model(normalized):
    return {"name": "sphere", "dynamics": "first_order", "d": 2, "beta": BETA, "normalized": normalized}


def particles(normalized, n, seed, T, saves=1, h=0.2):
    """Particle positions at ``saves`` equispaced times after t = 0, ``(saves + 1, n, 2)``."""
    steps = round(T / h)
    cfg = {"model": model(normalized), "integrator": {"name": "rk4", "h": h},
           "initial": dict(VM2, n=n, seed=seed),
           "run": {"t0": 0.0, "t1": T, "save_every": steps // saves}, "output": {"save": ["x"]}}
    return meanfield.Run(cfg).simulate()["x"]


def pde(normalized, times, M=256):
    s = CircleFV(model(normalized), M)
    return s, solve(s, s.initial_density(VM2), 0.0, times[-1], method="ssprk3", save=times)["density"]


@pytest.mark.slow
@pytest.mark.parametrize("normalized", [True, False])
def test_order_parameter_of_particles_and_pde_through_clustering(normalized):
    T, saves, n = (8.0, 4, 2000) if normalized else (6.0, 5, 2000)  # h = 0.2: steps divisible by saves
    times = np.linspace(0.0, T, saves + 1)
    s, rho = pde(normalized, times)
    r_pde = np.array([s.diagnostics(f)["order_parameter"] for f in rho])
    assert r_pde[0] < 0.4 and r_pde[-1] > 0.98  # the tokens cluster
    for seed in (0, 1):
        x = particles(normalized, n, seed, T, saves=saves)
        r = np.linalg.norm(x.mean(axis=1), axis=1)
        assert np.abs(r - r_pde).max() < 3.0 / np.sqrt(n), (r, r_pde)


@pytest.mark.slow
def test_w1_particles_to_pde_decreases_like_n_to_minus_half():
    T, Ns, seeds = 3.0, (125, 500, 2000), 6
    s, rho = pde(True, [0.0, T])
    means = []
    for n in Ns:
        w = []
        for seed in range(seeds):
            x = particles(True, n, seed, T)[-1]
            w.append(s.w1(np.arctan2(x[:, 1], x[:, 0]), rho[-1]))
        means.append(np.mean(w))
    slope = np.polyfit(np.log(Ns), np.log(means), 1)[0]
    assert -0.75 < slope < -0.3, (slope, means)
    x0 = particles(True, 2000, 0, 0.2, h=0.2)[0]
    assert s.w1(np.arctan2(x0[:, 1], x0[:, 0]), rho[-1]) > 5 * means[-1]  # the law moved much farther
