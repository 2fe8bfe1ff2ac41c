"""Finite-volume solvers of the first-order mean-field equations (meanfield.pde.finite_volume).

Kernel against a slow NumPy reference; conservation and positivity (including a
step past the CFL bound that must break it); interaction integrals against
direct quadrature; the energy identities of docs/models.md §9 to the scheme's order;
the declared spatial order measured against a fine-grid reference; the
spectral solver losing positivity where the finite-volume one continues; bad
input.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from meanfield._kernels import fv as FK
from meanfield.errors import ParameterError
from meanfield.pde.finite_volume import LIMITER_THETA, BoundaryMassWarning, CircleFV, LineFV
from meanfield.pde.stepping import METHODS, solve, ssp_step
from meanfield.reductions.circle_pde import CirclePDE

TWO_PI = 2.0 * np.pi
VM3 = {"law": "von_mises", "mu": [0.0, 2.0, 4.0], "kappa": 1.0, "weights": [0.4, 0.3, 0.3]}
GAUSS = {"law": "gaussian", "mean": 0.0, "cov": 0.36}
SLOPE_TOL = 0.3


def circle(beta=1.0, normalized=True, M=128):
    return CircleFV({"name": "sphere", "d": 2, "beta": beta, "normalized": normalized}, M)


def line(normalized=True, M=160, domain=(-4.0, 4.0), **kw):
    p = {"name": "softmax", "d": 1, "A": 0.3, "B": 0.8, "Q": 1.0, "m": 0.3, "normalized": normalized}
    p.update(kw)
    return LineFV(p, M, list(domain))


# ------------------------------------------------------------------ reference kernel
def reference_rhs(rho, vel, dx, theta, periodic):
    """Carrillo-Chertock-Huang semi-discrete rhs, written with whole-array NumPy."""
    M = rho.size
    if periodic:
        rm, rp = np.roll(rho, 1), np.roll(rho, -1)
    else:
        rm, rp = np.r_[rho[0], rho[:-1]], np.r_[rho[1:], rho[-1]]
    a, b, c = theta * (rp - rho), 0.5 * (rp - rm), theta * (rho - rm)
    s = np.where((a > 0) & (b > 0) & (c > 0), np.minimum(np.minimum(a, b), c),
                 np.where((a < 0) & (b < 0) & (c < 0), np.maximum(np.maximum(a, b), c), 0.0))
    if not periodic:
        s[0] = s[-1] = 0.0
    east, west = rho + 0.5 * s, rho - 0.5 * s
    west_next = np.roll(west, -1)
    F = np.maximum(vel, 0) * east + np.minimum(vel, 0) * west_next
    if not periodic:
        F[-1] = 0.0
    F_left = np.roll(F, 1)
    if not periodic:
        F_left[0] = 0.0
    assert F.shape == (M,)
    return -(F - F_left) / dx


@pytest.mark.parametrize("periodic", [True, False])
def test_kernel_matches_numpy_reference_and_conserves(periodic):
    rng = np.random.default_rng(3)
    M, dx = 97, 0.1
    rho = rng.random(M) ** 3
    rho[rng.random(M) < 0.2] = 0.0  # vacuum next to mass: the limiter's hard case
    vel = rng.standard_normal(M)
    out, flux = np.empty(M), np.empty(M)
    FK.continuity_rhs(rho, vel, 1.0 / dx, LIMITER_THETA, periodic, flux, out)
    ref = reference_rhs(rho, vel, dx, LIMITER_THETA, periodic)
    assert np.abs(out - ref).max() < 1e-13 * np.abs(ref).max()
    assert abs(out.sum()) < 1e-13 * np.abs(out).max()  # telescoping fluxes (zero at the walls)


@pytest.mark.parametrize("periodic", [True, False])
def test_kernel_positivity_at_the_cfl_bound_and_not_beyond(periodic):
    rng = np.random.default_rng(5)
    M, dx = 200, 0.05
    worst_ok, worst_over = np.inf, np.inf
    out, flux = np.empty(M), np.empty(M)
    for _ in range(50):
        rho = rng.random(M) ** 4
        rho[rng.random(M) < 0.3] = 0.0
        vel = rng.standard_normal(M) * 3
        FK.continuity_rhs(rho, vel, 1.0 / dx, LIMITER_THETA, periodic, flux, out)
        h = 0.5 * dx / np.abs(vel).max()
        worst_ok = min(worst_ok, (rho + h * out).min())
        worst_over = min(worst_over, (rho + 3 * h * out).min())
    assert worst_ok >= -1e-15
    assert worst_over < -1e-3  # the bound is not vacuous: three times the step goes negative


# ------------------------------------------------------------------ interaction integrals
@pytest.mark.parametrize("normalized", [True, False])
def test_circle_velocity_is_the_exact_integral_of_the_piecewise_constant_density(normalized):
    beta, M = 2.0, 64
    s = circle(beta, normalized, M)
    rho = s.initial_density(VM3)
    # direct: 400 Gauss nodes per cell, at every interface theta_{k+1/2} = (k + 1) dx
    g, w = np.polynomial.legendre.leggauss(40)
    pts = (s.edges[:-1, None] + 0.5 * s.dx * (1 + g)).ravel()
    wts = np.tile(0.5 * s.dx * w, M) * np.repeat(rho, g.size)
    ti = s.edges[1:]
    p = pts[None, :] - ti[:, None]
    K0 = np.exp(beta * np.cos(p))
    u, z = (K0 * np.sin(p)) @ wts, K0 @ wts
    want = u / z if normalized else u
    assert np.abs(s.velocity(rho) - want).max() < 1e-12 * np.abs(want).max()


def test_circle_dense_products_equal_fft(monkeypatch):
    import meanfield.pde.finite_volume as fvmod

    s = circle(3.0, True, 128)
    rho = s.initial_density(VM3)
    assert not s.dense
    monkeypatch.setattr(fvmod, "FFT_BETA_MAX", 1.0)
    d = circle(3.0, True, 128)
    assert d.dense
    assert np.abs(d.velocity(rho) - s.velocity(rho)).max() < 1e-13
    assert abs(d.energies(rho)["energy"] - s.energies(rho)["energy"]) < 1e-13 * abs(s.energies(rho)["energy"])


@pytest.mark.parametrize("normalized", [True, False])
def test_line_velocity_matches_direct_quadrature(normalized):
    s = line(normalized, M=96)
    rho = s.initial_density(GAUSS)
    g, w = np.polynomial.legendre.leggauss(40)
    pts = (s.edges[:-1, None] + 0.5 * s.dx * (1 + g)).ravel()
    wts = np.tile(0.5 * s.dx * w, s.M) * np.repeat(rho, g.size)
    xi = s.edges[1:-1]
    E = np.exp(0.3 * xi[:, None] * pts[None, :])
    u, z = (E * (0.8 * 0.3) * pts) @ wts, E @ wts  # V = B A
    gW = 1.0 * (xi - 0.3)
    want = (u - 0.8 * gW) / z if normalized else u - 0.8 * gW
    got = s.velocity(rho)
    assert got[-1] == 0.0  # the right wall
    assert np.abs(got[:-1] - want).max() < 1e-9 * np.abs(want).max()


# ------------------------------------------------------------------ mass and positivity
@pytest.mark.parametrize("method", ["euler", "heun", "ssprk3"])
def test_circle_mass_and_positivity_through_clustering(method):
    s = circle(4.0, True, 128)
    rho0 = s.initial_density(VM3)
    r = solve(s, rho0, 0.0, 20.0, method=method, save=[0.0, 5.0, 20.0])
    masses = [s.mass(x) for x in r["density"]]
    assert max(abs(m - 1.0) for m in masses) < 1e-13
    assert r["min_density"] >= 0.0
    assert r["density"][-1].max() > 50 * rho0.max()  # clusters: the density concentrated
    assert s.oracle_calls >= r["steps"] * METHODS[method][0]  # one rhs per stage


def test_line_mass_positivity_and_zero_flux_walls():
    s = line(True, M=120, domain=(-3.0, 3.0), Q=0.0, m=0.0, A=-0.3)  # repulsive, no confinement
    rho0 = s.initial_density({"law": "gaussian", "mean": 0.0, "cov": 0.16})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = solve(s, rho0, 0.0, 40.0, save=[0.0, 40.0])
        d = s.diagnostics(r["density"][-1])
    assert r["min_density"] >= 0.0
    assert abs(d["mass"] - 1.0) < 1e-13
    assert d["boundary_mass"] > 1e-3  # mass piled up at the walls and stayed in the interval
    assert any(issubclass(c.category, BoundaryMassWarning) for c in caught)
    assert s.diagnostics(rho0)["boundary_mass"] < 1e-8


# ------------------------------------------------------------------ energy identities (docs/models.md §9)
def _rate_along_flow(energy, s, rho):
    """d E / dt along the semi-discrete flow: E is quadratic, so a central difference is exact."""
    r = s.rhs(rho, 0.0)
    return 0.5 * (energy(rho + r) - energy(rho - r))


@pytest.mark.parametrize("normalized", [True, False])
def test_circle_energy_identity_to_second_order(normalized):
    beta, errs = 1.5, []
    for M in (32, 64, 128, 256):
        s = circle(beta, normalized, M)
        rho = solve(s, s.initial_density(VM3), 0.0, 1.0, method="ssprk3")["density"][-1]
        rate = _rate_along_flow(lambda x: s.diagnostics(x)["E_beta"], s, rho)
        f = s.fields(rho)
        want = s.dx * np.sum(rho * f["u"] ** 2 / (f["z"] if normalized else 1.0))
        errs.append(abs(rate - want) / want)
    slope = np.polyfit(np.log([32, 64, 128, 256]), np.log(errs), 1)[0]
    assert errs[-1] < 2e-3 and slope < -2 + SLOPE_TOL, (errs, slope)


@pytest.mark.parametrize("normalized", [True, False])
def test_line_energy_identity_softmax_with_v_equal_b_a(normalized):
    errs, Ms = [], (80, 160, 320)
    for M in Ms:
        s = line(normalized, M=M)
        rho = solve(s, s.initial_density(GAUSS), 0.0, 0.3, method="ssprk3")["density"][-1]
        rate = _rate_along_flow(lambda x: s.energies(x)["energy"], s, rho)
        f = s.fields(rho)
        # phi' = -int E a x' rho + W' = -(u - B W') / B with V = B A
        grad_phi = -(f["u"] - s.b * f["grad_W"]) / s.b
        mob = 1.0 / f["z"] if normalized else 1.0
        want = -s.dx * np.sum(rho * s.b * grad_phi ** 2 * mob)
        errs.append(abs(rate - want) / abs(want))
    slope = np.polyfit(np.log(Ms), np.log(errs), 1)[0]
    assert errs[-1] < 2e-3 and slope < -2 + SLOPE_TOL, (errs, slope)


# ------------------------------------------------------------------ grid convergence order
def _l1_errors(make, section, T, Ms, M_ref):
    ref_s = make(M_ref)
    ref = solve(ref_s, ref_s.initial_density(section), 0.0, T, method="ssprk3")["density"][-1]
    errs = []
    for M in Ms:
        s = make(M)
        f = solve(s, s.initial_density(section), 0.0, T, method="ssprk3")["density"][-1]
        errs.append(np.abs(f - ref.reshape(M, -1).mean(axis=1)).sum() * s.dx)
    return errs


@pytest.mark.parametrize("normalized", [True, False])
def test_circle_grid_convergence_order(normalized):
    Ms = (64, 128, 256)
    errs = _l1_errors(lambda M: circle(1.0, normalized, M), VM3, 1.5, Ms, 2048)
    slope = -np.polyfit(np.log(Ms), np.log(errs), 1)[0]
    assert abs(slope - CircleFV.order) < SLOPE_TOL, (errs, slope)


@pytest.mark.slow
def test_line_grid_convergence_order():
    Ms = (80, 160, 320)
    errs = _l1_errors(lambda M: line(True, M=M), GAUSS, 0.5, Ms, 1280)
    slope = -np.polyfit(np.log(Ms), np.log(errs), 1)[0]
    assert abs(slope - LineFV.order) < SLOPE_TOL, (errs, slope)


def test_finite_volume_agrees_with_the_spectral_solver_on_smooth_data():
    beta, M, T = 1.0, 256, 1.5
    s = circle(beta, True, M)
    fv = solve(s, s.initial_density(VM3), 0.0, T, method="ssprk3")["density"][-1]
    p = CirclePDE(2048, beta, True)
    th = p.theta
    f0 = sum(w * np.exp(np.cos(th - m)) for m, w in zip(VM3["mu"], VM3["weights"]))
    f0 /= p.mass(f0)
    spec = p.solve(f0, [0.0, T])[-1]
    L = 1 << 14  # cell averages of the trigonometric interpolant: differences of its antiderivative
    _, F = p.cdf(spec, L)
    cells = np.diff(F[:: L // M]) / s.dx
    err = np.abs(fv - cells).sum() * s.dx
    moved = np.abs(fv - s.initial_density(VM3)).sum() * s.dx
    assert err < 1e-3 * moved and moved > 0.03, (err, moved)


# ------------------------------------------------------------------ past the spectral method
def test_spectral_solver_loses_positivity_where_finite_volume_continues():
    beta, M = 4.0, 128
    p = CirclePDE(M, beta, True)
    th = p.theta
    f0 = sum(w * np.exp(np.cos(th - m)) for m, w in zip(VM3["mu"], VM3["weights"]))
    f0 /= p.mass(f0)
    spec = p.solve(f0, [0.0, 4.0, 7.0], rtol=1e-8, atol=1e-10)
    assert spec[1].min() > 0 and spec[2].min() < -0.01  # clusters narrower than the grid: Gibbs
    s = circle(beta, True, M)
    r = solve(s, s.initial_density(VM3), 0.0, 30.0, save=[0.0, 7.0, 30.0])
    assert r["min_density"] >= 0.0
    assert max(abs(s.mass(x) - 1) for x in r["density"]) < 1e-13
    assert s.diagnostics(r["density"][-1])["order_parameter"] > 0.1  # clustered, not smeared out


# ------------------------------------------------------------------ stepping
def test_time_steppers_have_their_order_until_the_limiter_kinks():
    """euler and heun show orders 1 and 2; ssprk3 and rk4 are far more accurate at the same step but
    level off near 1e-10 here: minmod makes the rhs only piecewise smooth (a limiter switching branch
    inside a step costs more than h^3)."""
    s = circle(1.0, True, 64)
    rho0 = s.initial_density(VM3)
    ref = solve(s, rho0, 0.0, 0.5, h=0.0005, method="rk4")["density"][-1]
    hs = (0.04, 0.02, 0.01)
    errs = {m: [np.abs(solve(s, rho0, 0.0, 0.5, h=h, method=m)["density"][-1] - ref).max() for h in hs]
            for m in METHODS}
    for method in ("euler", "heun"):
        slope = np.log2(errs[method][0] / errs[method][-1]) / 2
        assert abs(slope - METHODS[method][0]) < SLOPE_TOL, (method, errs[method])
    for method in ("ssprk3", "rk4"):
        assert all(e < 0.1 * eh for e, eh in zip(errs[method], errs["heun"])), errs
    with pytest.raises(ParameterError, match="integrator.name"):
        ssp_step(s, rho0, 0.0, 0.1, "leapfrog")


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("params, grid, domain, key", [
    ({"name": "softmax", "d": 2, "beta": 1.0}, 64, None, "model.name"),
    ({"name": "sphere", "d": 3, "beta": 1.0}, 64, None, "model.d"),
    ({"name": "sphere", "d": 2, "beta": 1.0, "causal": True}, 64, None, "model.causal"),
    ({"name": "sphere", "d": 2, "beta": 1.0, "V": [[0, 1], [1, 0]]}, 64, None, "model.V"),
    ({"name": "sphere", "d": 2, "beta": 1.0, "dynamics": "accelerated"}, 64, None, "model.dynamics"),
    ({"name": "sphere", "d": 2, "beta": 100.0}, 64, None, "solver.grid"),
    ({"name": "sphere", "d": 2, "beta": 1.0}, 4, None, "solver.grid"),
    ({"name": "sphere", "d": 2, "beta": 1.0}, 64, [-1, 1], "solver.domain"),
])
def test_circle_bad_input(params, grid, domain, key):
    with pytest.raises(ParameterError) as err:
        CircleFV(params, grid, domain)
    assert err.value.key == key


@pytest.mark.parametrize("params, grid, domain, key", [
    ({"name": "softmax", "d": 2}, 64, None, "model.d"),
    ({"name": "softmax", "d": 1, "A": 2.0}, 64, [-6, 6], "solver.grid"),
    ({"name": "softmax", "d": 1, "A": 30.0}, 64, [-6, 6], "solver.domain"),
    ({"name": "softmax", "d": 1}, 64, [1, -1], "solver.domain"),
])
def test_line_bad_input(params, grid, domain, key):
    with pytest.raises(ParameterError) as err:
        LineFV(params, grid, domain)
    assert err.value.key == key


def test_initial_density_errors():
    s = line(True, M=160, domain=(-2.0, 2.0))
    with pytest.raises(ParameterError, match="clips") as err:
        s.initial_density({"law": "gaussian", "mean": 0.0, "cov": 0.36})
    assert err.value.key == "solver.domain"
    with pytest.raises(ParameterError) as err:
        s.initial_density({"law": "gaussian", "mean": 0.0, "cov": 1e-6})
    assert err.value.key == "solver.grid"
    with pytest.raises(ParameterError) as err:
        circle().initial_density({"law": "gaussian"})
    assert err.value.key == "initial.law"
