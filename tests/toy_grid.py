"""A tiny grid solver for testing the grid plumbing: transport at constant speed on the circle.

d_t rho + c d_theta rho = 0, first-order upwind finite volumes (c > 0). With
h = cell / c one forward Euler step is an exact shift by one cell, so after k
steps the density is ``np.roll(rho0, k)`` up to round-off. It follows the
solver contract of :mod:`meanfield.pde.grid` and is registered for the
sphere model in d = 2 by the tests that use it (not part of the package).
"""

import numpy as np


class UpwindCircle:
    order = 1
    kind = "pde"
    grid_names = ("theta",)

    def __init__(self, model_params, grid, domain=None):
        self.speed = float(model_params.get("beta", 1.0))
        self.M = int(grid)
        self.cell_volume = 2 * np.pi / self.M
        self.grid = {"theta": -np.pi + (np.arange(self.M) + 0.5) * self.cell_volume}
        self.oracle_calls = 0

    def initial_density(self, section):
        kappa = float(section.get("kappa", 2.0))
        rho = np.exp(kappa * np.cos(self.grid["theta"] - float(section.get("mu", 0.0))))
        return rho / (rho.sum() * self.cell_volume)

    def rhs(self, rho, t, out):
        self.oracle_calls += 1
        np.subtract(rho, np.roll(rho, 1), out=out)
        out *= -self.speed / self.cell_volume
        return out

    def max_stable_step(self, rho):
        return self.cell_volume / self.speed

    def energies(self, rho):
        e = float(np.sum(np.cos(self.grid["theta"]) * rho) * self.cell_volume)
        return {"energy": e, "potential": e}

    def diagnostics(self, rho):
        th = self.grid["theta"]
        mass = float(rho.sum() * self.cell_volume)
        mean = np.array([np.sum(np.cos(th) * rho), np.sum(np.sin(th) * rho)]) * self.cell_volume
        return {"mass": mass, "mean": mean, "min_density": float(rho.min())}
