"""Initial laws with a density: cell masses for pde runs (meanfield.pde.densities) and the
von_mises law of particle runs (meanfield.initial), validated alike and drawn from the same law."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import meanfield
from meanfield.errors import ParameterError
from meanfield.initial import initial_state
from meanfield.pde.densities import cell_masses
from meanfield.pde.finite_volume import CircleFV, LineFV

TWO_PI = 2.0 * np.pi
VM = {"law": "von_mises", "mu": [0.5, 3.0], "kappa": [2.0, 8.0], "weights": [0.7, 0.3]}


def test_von_mises_cell_masses_match_scipy_cdf():
    edges = np.linspace(0.0, TWO_PI, 129)
    masses, outside, width = cell_masses(VM, 2, edges, True)
    want = sum(w * np.diff(stats.vonmises.cdf(edges, k, loc=m)) for m, k, w in zip(VM["mu"], VM["kappa"],
                                                                                  VM["weights"]))
    assert np.abs(masses - want).max() < 1e-10
    assert abs(masses.sum() - 1.0) < 1e-13 and outside == 0.0
    assert width == pytest.approx(8.0 ** -0.5)


def test_sphere_uniform_and_gaussian_cell_masses():
    edges = np.linspace(0.0, TWO_PI, 65)
    masses, _, _ = cell_masses({"law": "sphere_uniform"}, 2, edges, True)
    assert np.abs(masses - 1 / 64).max() < 1e-15
    edges = np.linspace(-2.0, 3.0, 51)
    masses, outside, width = cell_masses({"law": "gaussian", "mean": 0.4, "cov": 0.49}, 1, edges, False)
    want = np.diff(stats.norm.cdf(edges, 0.4, 0.7))
    assert np.abs(masses - want).max() < 1e-15
    assert outside == pytest.approx(stats.norm.cdf(-2, 0.4, 0.7) + stats.norm.sf(3, 0.4, 0.7), rel=1e-12)
    assert abs(masses.sum() + outside - 1.0) < 1e-14 and width == pytest.approx(0.7)


def test_pde_densities_have_unit_mass():
    s = CircleFV({"name": "sphere", "d": 2, "beta": 2.0}, 96)
    rho = s.initial_density(VM)
    assert abs(rho.sum() * s.cell_volume - 1.0) < 1e-14 and rho.min() > 0
    ln = LineFV({"name": "softmax", "d": 1, "A": 0.2}, 200, [-5.0, 5.0])
    rho = ln.initial_density({"law": "gaussian", "mean": 0.3, "cov": 0.5})
    assert abs(rho.sum() * ln.cell_volume - 1.0) < 1e-14


def test_von_mises_particles_follow_the_density():
    x, y = initial_state(dict(VM, n=200000, seed=3), 2, False)
    assert y is None and x.shape == (200000, 2)
    assert np.abs(np.linalg.norm(x, axis=1) - 1).max() < 1e-15
    th = np.mod(np.arctan2(x[:, 1], x[:, 0]), TWO_PI)
    cdf = lambda t: sum(w * (stats.vonmises.cdf(t, k, loc=m) - stats.vonmises.cdf(0.0, k, loc=m))  # noqa: E731
                        for m, k, w in zip(VM["mu"], VM["kappa"], VM["weights"]))
    assert stats.kstest(th, cdf).pvalue > 1e-3
    # and not any law: a shifted mixture is rejected
    assert stats.kstest(np.mod(th + 0.05, TWO_PI), cdf).pvalue < 1e-6
    # the comparable pair: W1 between the sample and the pde's cell averages ~ 1/sqrt(n)
    s = CircleFV({"name": "sphere", "d": 2, "beta": 2.0}, 256)
    assert s.w1(th, s.initial_density(VM)) < 0.01


def test_von_mises_in_a_particle_run():
    cfg = {"model": {"name": "sphere", "dynamics": "first_order", "d": 2, "beta": 1.0},
           "integrator": {"name": "rk4", "h": 0.1}, "initial": dict(VM, n=64, seed=0),
           "run": {"t0": 0.0, "steps": 2, "save_every": 1}, "output": {"save": ["x"]}}
    res = meanfield.Run(cfg).simulate()
    assert np.abs(np.linalg.norm(res["x"], axis=2) - 1).max() < 1e-12


@pytest.mark.parametrize("section, d, key", [
    ({"law": "von_mises", "mu": [0.0, 1.0], "weights": [0.5, 0.6]}, 2, "initial.weights"),
    ({"law": "von_mises", "mu": [0.0, 1.0], "weights": [1.0]}, 2, "initial.weights"),
    ({"law": "von_mises", "mu": [0.0, 1.0], "kappa": [1.0, -1.0]}, 2, "initial.kappa"),
    ({"law": "von_mises", "mu": [0.0, 1.0], "kappa": [1.0, 2.0, 3.0]}, 2, "initial.kappa"),
    ({"law": "von_mises", "mu": ["a"]}, 2, "initial.mu"),
    ({"law": "von_mises", "mu": 0.0}, 3, "initial.law"),
    ({"law": "von_mises", "mu": 0.0, "cov": 1.0}, 2, "initial.cov"),
])
def test_von_mises_bad_input_for_particles_and_grids(section, d, key):
    with pytest.raises(ParameterError) as err:
        initial_state(dict(section, n=10), d, False)
    assert err.value.key == key
    if d == 2:
        with pytest.raises(ParameterError) as err:
            cell_masses(section, d, np.linspace(0, TWO_PI, 33), True)
        assert err.value.key == key


@pytest.mark.parametrize("section, d, periodic, key", [
    ({"law": "student_t"}, 1, False, "initial.law"),
    ({"law": "sphere_uniform"}, 1, False, "initial.law"),
    ({"law": "gaussian"}, 2, True, "initial.law"),
    ({"law": "gaussian", "cov": 0.0}, 1, False, "initial.cov"),
])
def test_laws_without_a_density_on_the_geometry(section, d, periodic, key):
    edges = np.linspace(0, TWO_PI, 33) if periodic else np.linspace(-3, 3, 33)
    with pytest.raises(ParameterError) as err:
        cell_masses(section, d, edges, periodic)
    assert err.value.key == key
