"""Kinetic (semi-Lagrangian) solution of the accelerated sphere model on the circle vs particles.

    python benchmarks/kinetic_vs_particles.py [N ...]

Prints, at t = 1 (beta = 2, constant damping alpha = 1, angles ~ a von Mises
mixture, omega ~ N(0, 0.6^2)), the differences in energy, kinetic, potential,
order parameter and the W1 distance of the theta marginals, next to 1/sqrt(N).
"""

import sys
import time

import numpy as np

sys.path.insert(0, "tests")
from test_kinetic import VM, _evolve, particles_on_the_circle, w1_circle_grid

from meanfield.pde.kinetic import CircleKinetic
from meanfield.schedules import make_schedule

beta, alpha, h, T = 2.0, 1.0, 0.05, 1.0
t0 = time.perf_counter()
sol = CircleKinetic(beta, 128, 160, 5.0)
f = _evolve(sol, sol.initial_density(VM), make_schedule("constant", 0.0, a=alpha), h / 2, T)[0]
e_pde, d_pde = sol.energies(f), sol.diagnostics(f)
print(f"pde 128 x 160, h = {h / 2}: {time.perf_counter() - t0:.1f} s; H = {e_pde['energy']:.6f}, "
      f"K = {e_pde['kinetic']:.6f}, U = {e_pde['potential']:.6f}, |mean| = {d_pde['order_parameter']:.6f}")
for n in [int(a) for a in sys.argv[1:]] or [10000]:
    for seed in range(2):
        t0 = time.perf_counter()
        model, x, y = particles_on_the_circle(n, beta, alpha, 2 * h, T, seed=seed)
        e = model.energies(x, y)
        op = float(np.hypot(*x.mean(axis=0)))
        w1 = w1_circle_grid(np.arctan2(x[:, 1], x[:, 0]), sol, sol.marginal(f))
        print(f"N = {n} seed {seed} ({time.perf_counter() - t0:.1f} s): 1/sqrt(N) = {n ** -0.5:.4f}; "
              f"dH = {e['energy'] - e_pde['energy']:+.4f}, dK = {e['kinetic'] - e_pde['kinetic']:+.4f}, "
              f"dU = {e['potential'] - e_pde['potential']:+.4f}, d|mean| = {op - d_pde['order_parameter']:+.4f}, "
              f"W1 = {w1:.4f}")
