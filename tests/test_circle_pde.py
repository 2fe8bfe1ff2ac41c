"""Mean-field PDE on the circle (d = 2 sphere model): FFT interaction vs quadrature, mass
conservation, spectral convergence, W1 on the circle, and particles -> PDE like N^{-1/2}."""

from __future__ import annotations

import numpy as np
import pytest

from meanfield.integrators import make_integrator
from meanfield.models import make_model
from meanfield.reductions.circle_pde import CirclePDE, sample_trig_density, trig_density, w1_circle
from meanfield.schedules import make_schedule
from meanfield.simulate import Horizon, simulate

A, B = (0.5, 0.2), (0.3,)  # initial density (1 + 0.5 cos + 0.2 cos 2 + 0.3 sin) / (2 pi)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("normalized", [True, False])
def test_fft_velocity_equals_direct_quadrature_and_particle_field(normalized):
    beta = 1.5
    pde = CirclePDE(128, beta, normalized)
    th = pde.theta
    f = trig_density(A, B, th)
    K1 = np.exp(beta * np.cos(th[None, :] - th[:, None])) * np.sin(th[None, :] - th[:, None])
    K0 = np.exp(beta * np.cos(th[None, :] - th[:, None]))
    direct = (K1 @ f) / (K0 @ f) if normalized else pde.dtheta * (K1 @ f)
    assert np.abs(pde.velocity(f) - direct).max() < 1e-13
    # the PDE velocity at a uniform density is the particle field of tokens at the nodes (weights f_k)
    g = np.full(128, 1.0 / (2 * np.pi))
    X = np.ascontiguousarray(np.stack([np.cos(th), np.sin(th)], 1))
    m = make_model({"name": "sphere", "dynamics": "first_order", "d": 2, "beta": beta, "normalized": normalized})
    F = m.first_order(X, 0.0)
    dth = -F[:, 0] * np.sin(th) + F[:, 1] * np.cos(th)
    assert np.abs(pde.velocity(g) - dth).max() < 1e-13


@pytest.mark.parametrize("normalized", [True, False])
def test_mass_conserved_and_spectral_convergence(normalized):
    beta, T = 1.0, 1.5
    sols = {}
    for M in (32, 64, 128, 512):
        pde = CirclePDE(M, beta, normalized)
        f = pde.solve(trig_density(A, B, pde.theta), [0.0, 0.5, T], rtol=1e-12, atol=1e-14)
        assert max(abs(pde.mass(fk) - 1.0) for fk in f) < 1e-13
        sols[M] = f[-1]
    err = {M: np.abs(sols[M] - sols[512][:: 512 // M]).max() for M in (32, 64, 128)}
    assert err[128] < 1e-9
    if not normalized:  # USA concentrates faster: the coarse grids show the spectral decay
        assert err[64] < 1e-2 * err[32] and err[128] < 1e-3 * err[64]
    assert np.abs(sols[512] - trig_density(A, B, CirclePDE(512, beta).theta)).max() > 0.05  # it moved


def test_w1_on_the_circle():
    pde = CirclePDE(64, 1.0)
    uniform = np.full(64, 1.0 / (2 * np.pi))
    # a point mass against the uniform law: the mean geodesic distance pi / 2, wherever the point
    for a in (0.0, 1.0, 4.0):
        assert abs(w1_circle([a], pde, uniform) - np.pi / 2) < 1e-6
    # two equal point masses at 0 and pi: mean distance pi / 4
    assert abs(w1_circle([0.0, np.pi], pde, uniform) - np.pi / 4) < 1e-6
    # large samples of the density itself are close to it, and W1 is rotation-consistent
    f = trig_density(A, B, pde.theta)
    s = sample_trig_density(A, B, 100000, np.random.default_rng(0))
    assert w1_circle(s, pde, f) < 0.02
    assert w1_circle(s + 0.3, pde, f) > 0.05


def _particles(theta, beta, normalized, T, h=0.1):
    x = np.ascontiguousarray(np.stack([np.cos(theta), np.sin(theta)], 1))
    m = make_model({"name": "sphere", "dynamics": "first_order", "d": 2, "beta": beta, "normalized": normalized})
    simulate(m, make_schedule("none", 0.0), make_integrator("rk4", "first_order"), x, None,
             Horizon(t0=0.0, h=h, t1=T), save_every=10**6)
    return np.arctan2(x[:, 1], x[:, 0])


@pytest.mark.slow
@pytest.mark.parametrize("normalized", [True, False])
def test_particles_converge_to_the_pde_like_n_to_minus_half(normalized):
    beta, T = 1.0, 1.5
    pde = CirclePDE(128, beta, normalized)
    f0 = trig_density(A, B, pde.theta)
    fT = pde.solve(f0, [0.0, T])[-1]
    Ns, seeds = (100, 400, 1600), 10
    means = []
    for n in Ns:
        w = [w1_circle(_particles(sample_trig_density(A, B, n, np.random.default_rng(s)), beta, normalized, T),
                       pde, fT) for s in range(seeds)]
        means.append(np.mean(w))
    slope = np.polyfit(np.log(Ns), np.log(means), 1)[0]
    assert -0.7 < slope < -0.3, (slope, means)
    # not vacuous: the law moved much farther than the particle error
    s = sample_trig_density(A, B, 1600, np.random.default_rng(0))
    assert w1_circle(s, pde, fT) > 5 * means[-1]
