"""Kinetic equation of the accelerated sphere model on the circle (docs/models.md §9): remap kernels
against references, exact characteristics, mass / positivity / energy identities, order 2
in time, the run (HDF5, resume, CLI errors) and agreement with particles."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import interrupt_and_resume
from scipy import special
from scipy.integrate import solve_ivp

import meanfield
from meanfield._kernels import kinetic as KK
from meanfield.errors import ParameterError
from meanfield.pde.kinetic import CircleKinetic, LineKinetic
from meanfield.schedules import make_schedule

pytestmark = pytest.mark.usefixtures("one_thread")

VM = {"law": "von_mises", "mu": [0.0, 2.5], "kappa": [2.0, 1.0], "weights": [0.6, 0.4],
      "momentum": "gaussian", "momentum_scale": 0.6}


def _lagrange(s, nodes):
    """Lagrange weights of the integer ``nodes`` at ``s``."""
    return np.array([np.prod([(s - b) / (a - b) for b in nodes if b != a]) for a in nodes])


def _reference_deposit(f, X, periodic, lo, dx, ghosts=4, pad=14, far=4.0):
    """Slow reference of the limited forward deposit: dense (parcel, cell) weight matrices on the line
    (bounded: ``ghosts`` parcels beyond each wall continue the end cells where the flow leaves, the
    line is padded with ``pad`` cells at each end, images are clamped ``far`` cells outside)."""
    n = f.size
    if not periodic:
        j = np.arange(-ghosts, n + ghosts)
        right = X[-1] + (j - n + 1) * (X[-1] - X[-2])
        left = X[0] + j * (X[1] - X[0])
        X = np.where(j >= n, right, np.where(j < 0, left, X[np.clip(j, 0, n - 1)]))
        centre = lo + (j + 0.5) * dx
        f = np.where(j >= n, np.where(X > centre, f[-1], 0.0),
                     np.where(j < 0, np.where(X < centre, f[0], 0.0), f[np.clip(j, 0, n - 1)]))
    w = n if periodic else n + 2 * pad
    low, corr = np.zeros((f.size, w)), np.zeros((f.size, w))
    for j in range(f.size):
        u = (X[j] - lo) / dx - 0.5
        if not periodic:
            u = min(max(u, -far), n - 1 + far) + pad
        i0 = int(np.floor(u))
        s = u - i0
        lin = np.array([0, 0, 1 - s, s, 0, 0])
        for t, wl, wq in zip(i0 + np.arange(-2, 4), lin, _lagrange(s, range(-2, 4))):
            low[j, t % w] += f[j] * wl
            corr[j, t % w] += f[j] * (wq - wl)
    L = low.sum(axis=0)
    neg = np.minimum(corr, 0.0).sum(axis=0)
    ratio = np.where(L >= -neg, 1.0, L / np.where(neg < 0, -neg, 1.0))
    theta = np.array([min([1.0] + [ratio[t] for t in range(w) if corr[j, t] < 0]) for j in range(f.size)])
    new = np.maximum(L + theta @ corr, 0.0)
    return new if periodic else new[pad:pad + n]


def _deposit(f, X, periodic, lo, dx):
    out = np.empty_like(f)
    width = KK.scratch_width(f.shape[1], periodic)
    KK.deposit_lines(f, X, periodic, lo, dx, np.empty((f.shape[0], width)), np.empty((f.shape[0], width)), out)
    return out


@pytest.mark.parametrize("periodic", [True, False])
def test_deposit_kernel_matches_reference_conserves_and_stays_positive(periodic):
    rng = np.random.default_rng(3)
    n, lo, dx = 40, -1.0, 0.05
    f = rng.random((3, n)) ** 3
    f[:, 10:14] = 0.0  # empty cells: the limiter keeps them and their neighbours non-negative
    f[:, 20] = 5.0  # and a spike
    centres = lo + dx * (np.arange(n) + 0.5)
    shifts = np.array([0.37, -2.3, 7.9]) * dx if periodic else np.array([0.37, -2.3, 0.9]) * dx
    # a smooth, periodic, increasing perturbation of a shift
    X = centres[None, :] + shifts[:, None] + 0.3 * dx * np.sin(2 * np.pi * (centres - lo) / (n * dx))[None, :]
    out = _deposit(f, X, periodic, lo, dx)
    for line in range(3):
        assert np.abs(out[line] - _reference_deposit(f[line], X[line], periodic, lo, dx)).max() < 1e-13
    assert out.min() >= 0.0
    if periodic:
        assert np.abs(out.sum(axis=1) - f.sum(axis=1)).max() < 1e-13
    # a shift by a whole number of cells is exact
    out = _deposit(f, centres[None, :].repeat(3, 0) + 3 * dx, periodic, lo, dx)
    expect = np.roll(f, 3, axis=1)
    if not periodic:
        expect[:, :3] = 0.0
    assert np.abs(out - expect).max() < 1e-13


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("a, b", [(1.0, 0.37), (1.0, -0.05), (0.93, 0.2), (1.08, -1.3), (0.5, 0.0)])
def test_deposit_moves_mass_and_first_moment_exactly_under_affine_maps(periodic, a, b):
    """Whatever the shape (spikes, empty cells, steep edges): sum x_i m_i -> a sum x_i m_i + b dx sum m_i."""
    rng = np.random.default_rng(11)
    n, dx = 64, 1.0
    f = np.zeros((4, n))
    f[0, 31] = 1.0  # a one-cell spike
    f[1, 28:34] = rng.random(6)  # a narrow, rough bump
    f[2, 20:44] = rng.random(24) ** 4  # rough, with near-empty cells
    f[3, 16:48] = np.exp(-0.5 * ((np.arange(16, 48) - 31.5) / 4.0) ** 2)  # smooth
    x = np.arange(n) + 0.5 - n / 2  # centres about 0: the maps stay inside the line
    X = np.broadcast_to(a * x + b, f.shape).copy()
    out = _deposit(f, X, periodic, -n / 2, dx)
    assert out.min() >= 0.0
    assert np.abs(out.sum(axis=1) - f.sum(axis=1)).max() < 1e-13
    assert np.abs(out @ x - (a * (f @ x) + b * f.sum(axis=1))).max() < 1e-12


@pytest.mark.parametrize("substeps", [1, 2, 7, 50, 400])
@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_a_one_cell_spike_under_a_constant_force_moves_at_its_true_speed(substeps, alpha):
    """A spike (the cold, monokinetic state) under a force a and damping alpha: its mean momentum is the
    exact solution of w' = a - alpha w for any number of substeps (the monotone primitive remap moved a
    fraction s^2 (3 - 2 s) of it per substep: 1.6% of the way in 400 substeps)."""
    K, P, a, T = 81, 4.0, 0.8, 1.0
    sol = CircleKinetic(1.0, 8, K, P)
    f = np.zeros((1, K))
    f[0, K // 2] = 1.0 / sol.domega
    out = np.empty_like(f)
    tau = T / substeps
    for _ in range(substeps):
        sol._omega_remap(f, np.array([a]), np.array([0.0]), -alpha, tau, out)
        f, out = out, f
    exact = a * T if alpha == 0 else a * (1 - np.exp(-alpha * T)) / alpha
    mass = f.sum() * sol.domega
    assert abs(mass - 1.0) < 1e-13 and f.min() >= 0.0
    assert abs((f[0] @ sol.omega) * sol.domega - exact) < 1e-12


@pytest.mark.parametrize("steps", [10, 40, 100])
def test_mass_leaves_through_the_momentum_wall_at_its_true_speed(steps):
    """A Gaussian two cells wide pushed until its centre is five cells past momentum_max keeps what the
    exact flow keeps, Phi(-2.5) = 0.62%, to 15% of it for any number of substeps (the monotone remap
    piled 25% up in the last cells)."""
    K, P = 80, 4.0
    sol = CircleKinetic(1.0, 8, K, P)
    sigma, start, T = 2 * sol.domega, 2.0, 1.0
    end = P + 5 * sol.domega
    f = (np.diff(special.ndtr((sol.omega_edges - start) / sigma)) / sol.domega)[None, :]
    out = np.empty_like(f)
    for _ in range(steps):
        sol._omega_remap(f, np.array([(end - start) / T]), np.array([0.0]), 0.0, T / steps, out)
        f, out = out, f
    kept = f.sum() * sol.domega
    assert abs(kept - special.ndtr(-2.5)) < 0.15 * special.ndtr(-2.5), kept


@pytest.mark.parametrize("shift", [0.3, 0.05])
def test_deposit_of_a_smooth_density_is_fifth_order_per_step(shift):
    """For a translation by s cells the deposit is the quintic Lagrange interpolant: error O(s dx^5) per
    step (the shift in cells grows as dx shrinks, so the measured slope is about 5)."""
    gl, gw = np.polynomial.legendre.leggauss(8)

    def averages(edges):  # exact cell averages of exp(cos)
        a, b = edges[:-1], edges[1:]
        pts = 0.5 * (a + b)[:, None] + 0.5 * (b - a)[:, None] * gl[None, :]
        return np.exp(np.cos(pts)) @ (0.5 * gw)

    err = {}
    for n in (128, 256):
        dx = 2 * np.pi / n
        edges = -np.pi + dx * np.arange(n + 1)
        out = _deposit(averages(edges)[None, :].copy(), (edges[:-1] + 0.5 * dx + shift)[None, :], True, -np.pi, dx)
        err[n] = np.abs(out[0] - averages(edges - shift)).max()
    assert np.log2(err[128] / err[256]) > 4.5, err


def test_theta_images_follow_the_characteristics_of_omega_over_z():
    sol = CircleKinetic(1.5, 64, 8, 4.0)
    f = sol.initial_density(VM)
    zc = sol.z_coef(sol.marginal(f))
    z_of = lambda th: float(np.real(zc[0] + 2 * np.sum(zc[1:-1] * np.exp(1j * sol.k[1:-1] * th))))
    tau = 0.3
    images = sol._x_images(zc, tau, np.empty((sol.K, sol.M)))
    for j in (0, 3, 6):
        for i in (0, 17, 40, 63):
            ahead = solve_ivp(lambda t, y, w=sol.omega[j]: [w / z_of(y[0])], (0, tau), [sol.theta[i]],
                              rtol=1e-12, atol=1e-12).y[0, -1]
            assert abs(images[j, i] - ahead) < 1e-6
    # at tau = 0 every centre is its own image exactly (no drift of O(dx^4) per substep)
    assert np.array_equal(sol._x_images(zc, 0.0, np.empty((sol.K, sol.M))), np.broadcast_to(sol.theta, (8, 64)))


@pytest.mark.parametrize("a, b, c", [(0.7, 0.3, -0.5), (0.7, -0.3, 0.0), (-0.4, 0.0, -1.0), (0.0, 0.0, -2.0)])
@pytest.mark.parametrize("t", [0.4, -0.4])
def test_momentum_flow_is_the_exact_riccati_flow(a, b, c, t):
    omega = np.linspace(-2.0, 2.0, 9)
    out = np.empty((1, 9))
    KK.momentum_flow(omega, np.array([a]), np.array([b]), c, t, out)
    for e, w in enumerate(omega):
        sol = solve_ivp(lambda s, y: [a + c * y[0] + b * y[0] ** 2], (0, t), [w], rtol=1e-12, atol=1e-12)
        if sol.status == 0:
            assert abs(out[0, e] - sol.y[0, -1]) < 1e-8


def test_momentum_flow_sends_characteristics_that_blow_up_beyond_the_box():
    """w' = w^2 from w = 2 reaches +infinity at t = 1/2: the image is +1e300 (no cell receives it)."""
    out = np.empty((1, 2))
    KK.momentum_flow(np.array([2.0, -2.0]), np.array([0.0]), np.array([1.0]), 0.0, 0.6, out)
    assert out[0, 0] == 1e300 and abs(out[0, 1] - (-2.0 / 2.2)) < 1e-12


def _evolve(sol, f, schedule, h, T):
    """Strang steps to time T; returns the density and H(T) - H(0) + int 2 alpha K (trapezoid)."""
    f = f.copy()
    w = np.empty_like(f)
    H0, Kp, diss, t = sol.energies(f)["energy"], sol.kinetic(f), 0.0, 0.0
    Hs = [H0]
    for _ in range(round(T / h)):
        f, w = sol.step(f, schedule, t, h, w)
        Kn = sol.kinetic(f)
        diss += h * (schedule.alpha(t) * Kp + schedule.alpha(t + h) * Kn)
        t, Kp = t + h, Kn
        Hs.append(sol.energies(f)["energy"])
    return f, Hs[-1] - H0 + diss, np.array(Hs)


def test_mass_positivity_and_energy_decrease_under_damping():
    sol = CircleKinetic(2.0, 64, 96, 6.0)
    f0 = sol.initial_density(VM)
    f, resid, H = _evolve(sol, f0, make_schedule("constant", 0.0, a=1.0), 0.05, 1.0)
    assert abs(f.sum() * sol.cell_volume - 1.0) < 1e-13
    assert f.min() >= 0.0
    assert np.all(np.diff(H) < 0)
    assert H[0] - H[-1] > 0.05  # it did dissipate
    # dH/dt = -alpha int int omega^2 / z f: the residual is the scheme's error; the remaps keep each
    # parcel's second moment where the limiter is idle, so it is the splitting's, O(h^2)
    assert abs(resid) < 2e-4
    half = _evolve(sol, f0, make_schedule("constant", 0.0, a=1.0), 0.025, 1.0)[1]
    assert abs(half) < abs(resid) / 3


def test_order_two_in_time_and_energy_conserved_without_damping():
    # a box of 8 momentum scales: what leaves it by t = 1 (the undamped flow accelerates the tail)
    # is ~1e-8 of the mass
    sol = CircleKinetic(1.0, 64, 128, 8.0)
    f0 = sol.initial_density({"law": "von_mises", "mu": [0.0], "kappa": [1.0], "momentum": "gaussian",
                              "momentum_scale": 1.0})
    none = make_schedule("none", 0.0)
    runs = {h: _evolve(sol, f0, none, h, 1.0) for h in (0.2, 0.1, 0.05, 0.025)}
    # the theta marginal: the phase-space density's max norm also sees where the limiter switches
    # on and off in the far tails, which is not smooth in h
    rho = {h: sol.marginal(r[0]) for h, r in runs.items()}
    e1 = np.abs(rho[0.1] - rho[0.05]).max()
    e2 = np.abs(rho[0.05] - rho[0.025]).max()
    slope = np.log2(e1 / e2)
    assert 1.8 < slope < 2.4, slope
    assert e1 > 1e-6  # the solution moved at these steps: the test can see an error
    # H conserved to the scheme's order: |H(1) - H(0)| shrinks at least like h^2
    drift = {h: abs(r[1]) for h, r in runs.items()}
    assert drift[0.2] < 3e-4 and drift[0.1] < drift[0.2] / 3.5 and drift[0.05] < drift[0.1] / 3.5
    assert drift[0.025] < drift[0.05] / 3.5
    for f, _, _ in runs.values():
        assert abs(f.sum() * sol.cell_volume - 1.0) < 1e-7 and f.min() >= 0.0


def kinetic_config(**solver):
    return {"model": {"name": "sphere", "dynamics": "accelerated", "d": 2, "beta": 2.0},
            "integrator": {"name": "strang", "h": 0.05},
            "damping": {"schedule": "constant", "a": 1.0},
            "initial": {**VM, "n": 10},
            "run": {"t0": 0.0, "steps": 12, "save_every": 5},
            "solver": {"kind": "pde", "grid": [64, 80], "momentum_max": 5.0, **solver}}


def test_kinetic_run_hdf5_and_resume_bit_identical(tmp_path):
    cfg = kinetic_config()
    full = meanfield.Run(cfg).simulate(str(tmp_path / "full.h5"))
    tr = meanfield.load(full.path)
    assert tr["density"].shape == (4, 64, 80)
    assert tr.grid["theta"].shape == (64,) and tr.grid["momentum"].shape == (80,)
    for name in ("energy", "kinetic", "potential", "mass", "order_parameter", "dissipation_residual"):
        assert tr[name].shape == (4,)
    assert np.abs(tr["mass"] - 1.0).max() < 1e-13
    assert np.abs(tr["dissipation_residual"]).max() < 1e-3
    res = interrupt_and_resume(cfg, str(tmp_path / "cut.h5"), at=7)
    assert np.array_equal(res.state["density"], full.state["density"])


def test_oracle_calls_are_counted_truthfully_and_budget_a_kinetic_run():
    cfg = kinetic_config()
    cfg["run"] = {"t0": 0.0, "oracle_calls": 75, "save_every": 5}
    run = meanfield.Run(cfg)
    assert run.integrator.oracle_calls == 7
    res = run.simulate()
    # 75 calls buy 10 strang steps of 7 moment evaluations each, and the solver made exactly those
    assert res.scales["iteration"][-1] == 10
    assert res.oracle_calls == 70 and res.scales["oracle_calls"][-1] == 70
    assert res.attrs["oracle_calls_per_step"] == 7


@pytest.mark.parametrize("change, key", [
    ({"integrator": {"name": "tao2", "h": 0.05}}, "integrator.name"),
    ({"solver": {"kind": "pde", "grid": [16, 80], "momentum_max": 5.0}}, "solver.grid"),
    ({"solver": {"kind": "pde", "grid": 64}}, "solver.grid"),
    ({"solver": {"kind": "pde", "grid": [64, 80], "momentum_max": 2.0}}, "solver.momentum_max"),
    ({"model": {"name": "sphere", "dynamics": "accelerated", "d": 3, "beta": 2.0}}, "solver.kind"),
    ({"model": {"name": "sphere", "dynamics": "accelerated", "d": 2, "beta": 40.0}}, "solver.grid"),
    ({"model": {"name": "sphere", "dynamics": "accelerated", "d": 2, "beta": 2.0, "Q": [[1.0, 0.0], [0.0, 2.0]]}},
     "model.Q"),
    ({"run": {"t0": 0.0, "oracle_calls": 6}}, "run.oracle_calls"),  # less than one step (7 calls)
    ({"initial": {"law": "gaussian", "n": 10, "momentum": "gaussian", "momentum_scale": 0.6}}, "initial.law"),
    ({"initial": {"law": "sphere_uniform", "n": 10, "momentum": "affine"}}, "initial.momentum"),
    ({"initial": {**VM, "n": 10, "momentum_scale": 0.0}}, "initial.momentum_scale"),
    ({"initial": {"law": "sphere_uniform", "n": 10, "momentum": "zero"}}, "solver.grid"),  # even K
])
def test_bad_kinetic_input_names_the_key(change, key):
    cfg = kinetic_config()
    cfg.update(change)
    with pytest.raises(ParameterError) as err:
        meanfield.Run(cfg)
    assert err.value.key == key


KINETIC_TOML = """
[model]
name = "sphere"
dynamics = "accelerated"
d = 2
beta = 2.0
[integrator]
name = "strang"
h = 0.05
[damping]
schedule = "constant"
a = 1.0
[initial]
law = "von_mises"
mu = [0.0]
kappa = 2.0
momentum = "gaussian"
momentum_scale = 0.6
[run]
t0 = 0.0
steps = 4
[solver]
kind = "pde"
grid = [64, 80]
momentum_max = MOMENTUM_MAX
"""


@pytest.mark.parametrize("momentum_max", ["5.0", "2.0"])
def test_cli_kinetic_run_and_clipping_box_exits_2_with_one_line(tmp_path, momentum_max):
    from click.testing import CliRunner

    from meanfield_cli.main import cli

    path = tmp_path / "k.toml"
    path.write_text(KINETIC_TOML.replace("MOMENTUM_MAX", momentum_max))
    out = CliRunner().invoke(cli, ["run", str(path), "-o", str(tmp_path / "k.h5")])
    if momentum_max == "5.0":
        assert out.exit_code == 0, out.output
        return
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and "solver.momentum_max" in lines[0] and "Traceback" not in out.output


def test_circle_mass_that_leaves_the_momentum_box_is_recorded_and_warned(tmp_path):
    """Undamped at beta = 4 the tokens outrun momentum_max = 3.5: the file records boundary_mass and the
    lost mass, and stderr says which key to raise (it was silent, exit 0, after losing 38%)."""
    from click.testing import CliRunner

    from meanfield_cli.main import cli

    toml = KINETIC_TOML.replace("beta = 2.0", "beta = 4.0").replace('schedule = "constant"\na = 1.0',
                                                                   'schedule = "none"')
    toml = toml.replace("steps = 4", "steps = 40\nsave_every = 10").replace("MOMENTUM_MAX", "3.5")
    path = tmp_path / "k.toml"
    path.write_text(toml)
    out = CliRunner().invoke(cli, ["run", str(path), "-o", str(tmp_path / "k.h5")])
    assert out.exit_code == 0, out.output
    assert "has left it: raise [solver] momentum_max" in out.stderr and "Traceback" not in out.output
    tr = meanfield.load(str(tmp_path / "k.h5"))
    assert tr["boundary_mass"][0] < 1e-6 and tr["boundary_mass"].max() > 1e-3 and tr["mass"][-1] < 0.9


def w1_circle_grid(angles, sol, rho, L=4096):
    """W1 on the circle between the empirical law of ``angles`` and the grid marginal ``rho`` (M,).

    W1 = min_c int |F_emp - F - c| dtheta, on L points (F piecewise linear between edges).
    """
    th = -np.pi + 2 * np.pi * (np.arange(L) + 0.5) / L
    F = np.interp(th, sol.theta_edges, np.concatenate([[0.0], np.cumsum(rho) * sol.dtheta]))
    s = np.sort(np.mod(np.asarray(angles) + np.pi, 2 * np.pi) - np.pi)
    D = np.searchsorted(s, th, side="right") / s.size - F / F[-1]
    return float(np.mean(np.abs(D - np.median(D))) * 2 * np.pi)


def particles_on_the_circle(n, beta, alpha, h, T, seed=0):
    """The accelerated sphere model (d = 2, rk4) from angles ~ the VM mixture, omega ~ N(0, s^2)."""
    from meanfield.integrators import make_integrator
    from meanfield.models import make_model
    from meanfield.simulate import Horizon, simulate

    rng = np.random.default_rng(seed)
    comp = rng.random(n) < VM["weights"][0]
    th = np.where(comp, rng.vonmises(VM["mu"][0], VM["kappa"][0], n), rng.vonmises(VM["mu"][1], VM["kappa"][1], n))
    om = VM["momentum_scale"] * rng.standard_normal(n)
    e_th = np.stack([-np.sin(th), np.cos(th)], 1)
    x = np.ascontiguousarray(np.stack([np.cos(th), np.sin(th)], 1))
    y = np.ascontiguousarray(om[:, None] * e_th)
    model = make_model({"name": "sphere", "dynamics": "accelerated", "d": 2, "beta": beta})
    res = simulate(model, make_schedule("constant", 0.0, a=alpha), make_integrator("rk4", "accelerated"), x, y,
                   Horizon(t0=0.0, h=h, t1=T), save_every=10**6, save_fields=())
    return model, res.x, res.y


def test_kinetic_solution_matches_particles_within_a_few_over_sqrt_n():
    n, beta, alpha, h, T = 2000, 2.0, 1.0, 0.05, 1.0
    sol = CircleKinetic(beta, 64, 80, 5.0)
    f = _evolve(sol, sol.initial_density(VM), make_schedule("constant", 0.0, a=alpha), h, T)[0]
    e_pde, d_pde = sol.energies(f), sol.diagnostics(f)
    model, x, y = particles_on_the_circle(n, beta, alpha, 2 * h, T)  # rk4: its time error is ~1e-6
    e_par = model.energies(x, y)
    op_par = float(np.hypot(*x.mean(axis=0)))
    tol = 3.0 / np.sqrt(n)
    for name in ("energy", "kinetic", "potential"):
        assert abs(e_pde[name] - e_par[name]) < tol * max(1.0, abs(e_pde[name])), name
    assert abs(d_pde["order_parameter"] - op_par) < tol
    assert w1_circle_grid(np.arctan2(x[:, 1], x[:, 0]), sol, sol.marginal(f)) < tol
    # the comparison can fail: the initial state is far from the final one in these quantities
    f0 = sol.initial_density(VM)
    assert abs(sol.energies(f0)["energy"] - e_par["energy"]) > tol


def test_momentum_spread_of_a_graph_and_of_a_gaussian():
    sol = CircleKinetic(2.0, 32, 41, 3.0)
    at_rest = sol.initial_density({"law": "von_mises", "mu": [0.5], "kappa": [1.0], "momentum": "zero"})
    assert sol.momentum_spread(at_rest) == 0.0  # all mass in the cell centred at omega = 0
    assert abs(sol.diagnostics(at_rest)["mass"] - 1.0) < 1e-13
    gauss = CircleKinetic(2.0, 32, 120, 6.0)
    f = gauss.initial_density({"law": "sphere_uniform", "momentum": "gaussian", "momentum_scale": 0.7})
    # the midpoint moments of cell averages add domega^2 / 12 to the variance (Sheppard)
    assert abs(gauss.momentum_spread(f) - np.sqrt(0.49 + gauss.domega ** 2 / 12)) < 1e-6


# ---------------------------------------------------------------- the line x R (softmax, d = 1)
LINE = {"law": "gaussian", "mean": [0.3], "cov": [[0.3]], "momentum": "gaussian", "momentum_scale": 0.5}


def _line(M, K, A=0.5, B=1.0, m=0.0):
    return LineKinetic(A, B, 1.0, m, -4.0, 4.0, M, K, 4.0)


def test_line_images_follow_the_characteristics_of_b_y_over_z():
    sol = LineKinetic(0.5, 1.3, 1.0, 0.0, -4.0, 4.0, 64, 8, 4.0)
    rho = sol.marginal(sol.initial_density(LINE))
    z_of = lambda x: float(np.sum(np.exp(0.5 * x * sol.x) * rho) * sol.dx)  # the midpoint sum
    tau = 0.3
    images = sol._x_images(sol.x_field(rho), tau, np.empty((sol.K, sol.M)))
    for j in (0, 3, 6):
        for i in (0, 17, 40, 63):
            ahead = solve_ivp(lambda t, y, w=sol.omega[j]: [1.3 * w / z_of(y[0])], (0, tau), [sol.x[i]],
                              rtol=1e-12, atol=1e-12).y[0, -1]
            if sol.x_edges[0] <= ahead <= sol.x_edges[-1]:
                assert abs(images[j, i] - ahead) < 1e-6
            else:  # leaves the box: its mass is deposited outside
                assert images[j, i] < sol.x_edges[0] or images[j, i] > sol.x_edges[-1]


def test_line_mass_positivity_and_energy_decrease_under_damping():
    sol = _line(64, 64)
    f0 = sol.initial_density(LINE)
    damp = make_schedule("constant", 0.0, a=1.0)
    f, resid, H = _evolve(sol, f0, damp, 0.05, 1.0)
    # what crosses x = 4 (the position law's tail beyond it holds 7e-12 of the mass) leaves
    assert abs(f.sum() - f0.sum()) * sol.cell_volume < 2e-11
    assert f.min() >= 0.0
    assert np.all(np.diff(H) < 0) and H[0] - H[-1] > 0.1
    # dH/dt = -alpha int int B y^2 / z f: the residual is the scheme's error, the splitting's O(h^2)
    assert abs(resid) < 5e-4
    assert abs(_evolve(sol, f0, damp, 0.025, 1.0)[1]) < abs(resid) / 3


def test_line_order_two_in_time_and_energy_conserved_without_damping():
    # B != 1 and m != 0: a misplaced B in the force (b = B z' / 2 z^2, S = B int y^2 f / z^2) breaks H
    sol = _line(128, 128, B=1.5, m=0.2)
    f0 = sol.initial_density(LINE)
    none = make_schedule("none", 0.0)
    runs = {h: _evolve(sol, f0, none, h, 1.0) for h in (0.2, 0.1, 0.05)}
    e1 = np.abs(runs[0.2][0] - runs[0.1][0]).max()
    e2 = np.abs(runs[0.1][0] - runs[0.05][0]).max()
    assert 1.8 < np.log2(e1 / e2) < 2.3, np.log2(e1 / e2)
    assert e1 > 1e-5
    drift = {h: abs(r[1]) for h, r in runs.items()}
    # order 2 down to the grid's own (spatial) energy error (with b = z' / 2 z^2, B dropped, the drift
    # stays at 3.3e-3 for all three steps)
    assert drift[0.2] < 1e-3 and drift[0.1] < drift[0.2] / 3.5 and drift[0.05] < drift[0.1] / 2.5
    for f, _, _ in runs.values():  # ~7e-10 of the mass is pushed out of the momentum box by t = 1
        assert abs(f.sum() * sol.cell_volume - 1.0) < 1e-8 and f.min() >= 0.0


def test_line_space_order_on_the_exact_rotation_of_a_harmonic_trap():
    """A = 0: z = 1, G = -Q x, the flow rotates phase space; at t = pi / 2 (x, y) -> (y, -x) exactly."""
    from scipy import special

    def averages(edges, mean, std):
        return np.diff(special.ndtr((edges - mean) / std)) / np.diff(edges)

    T, steps, err = np.pi / 2, 80, {}
    for M in (32, 64):
        sol = _line(M, M, A=0.0)
        f, _, _ = _evolve(sol, sol.initial_density(LINE), make_schedule("none", 0.0), T / steps, T)
        exact = averages(sol.x_edges, 0.0, 0.5)[:, None] * averages(sol.omega_edges, -0.3, np.sqrt(0.3))[None, :]
        err[M] = np.abs(f - exact).sum() * sol.cell_volume
    assert err[64] < 1e-3 and np.log2(err[32] / err[64]) > 2.5, err


def test_line_kinetic_solution_matches_particles_within_a_few_over_sqrt_n():
    n = 1000
    cfg = line_config()
    cfg["run"] = {"t0": 0.0, "t1": 1.0, "save_every": 100}
    pde = meanfield.Run(cfg).simulate()
    par_cfg = {**cfg, "solver": {"kind": "particles"}, "integrator": {"name": "rk4", "h": 0.05},
               "initial": {**cfg["initial"], "n": n, "seed": 4}}
    par = meanfield.Run(par_cfg).simulate()
    tol = 3.0 / np.sqrt(n)
    for name in ("energy", "kinetic", "potential"):
        assert abs(pde.tasks[name][-1] - par.tasks[name][-1]) < tol, name
    assert abs(pde.tasks["mean"][-1, 0] - par.tasks["mean"][-1, 0]) < tol
    # W1 of the x-marginals: int |F_particles - F_grid| dx
    edges = np.linspace(-4.0, 4.0, 65)
    rho = pde.state["density"].sum(axis=1) * (8.0 / 64)
    xs = np.linspace(-4.0, 4.0, 4001)
    F = np.interp(xs, edges, np.concatenate([[0.0], np.cumsum(rho) * (8.0 / 64)]))
    Femp = np.searchsorted(np.sort(par.x[:, 0]), xs, side="right") / n
    assert np.trapezoid(np.abs(Femp - F), xs) < tol
    # the comparison can fail: the energy moved by more than the tolerance
    assert abs(pde.tasks["energy"][0] - pde.tasks["energy"][-1]) > tol


def line_config(**solver):
    return {"model": {"name": "softmax", "dynamics": "accelerated", "d": 1, "A": [[0.5]], "B": [[1.0]],
                      "Q": [[1.0]]},
            "integrator": {"name": "strang", "h": 0.05},
            "damping": {"schedule": "constant", "a": 1.0},
            "initial": {**LINE, "n": 10},
            "run": {"t0": 0.0, "steps": 12, "save_every": 5},
            "solver": {"kind": "pde", "grid": [64, 64], "domain": [-4.0, 4.0], "momentum_max": 4.0, **solver}}


def test_line_kinetic_run_records_the_particle_names_and_resumes(tmp_path):
    cfg = line_config()
    full = meanfield.Run(cfg).simulate(str(tmp_path / "full.h5"))
    tr = meanfield.load(full.path)
    assert tr["density"].shape == (4, 64, 64)
    assert tr.grid["x"].shape == (64,) and tr.grid["momentum"].shape == (64,)
    for name in ("energy", "kinetic", "potential", "interaction", "mass", "boundary_mass", "dissipation_residual"):
        assert tr[name].shape == (4,)
    # mass crosses x = 4 at its speed: the position law's tail beyond it holds 7e-12 of the mass
    assert np.abs(tr["mass"] - tr["mass"][0]).max() < 2e-11 and tr["boundary_mass"].max() < 1e-8
    assert np.abs(tr["dissipation_residual"]).max() < 1e-3
    res = interrupt_and_resume(cfg, str(tmp_path / "cut.h5"), at=7)
    assert np.array_equal(res.state["density"], full.state["density"])


def test_line_mass_that_leaves_the_box_is_shown_by_mass_and_warned_by_boundary_mass():
    # A = 1 is not confined by Q = 1 (exp(A x x') beats Q x^2 / 2): fast tokens escape
    cfg = line_config(grid=[96, 64], domain=[-4.0, 4.0])
    cfg["model"]["A"] = [[1.0]]
    cfg["run"] = {"t0": 0.0, "steps": 60, "save_every": 20}
    with pytest.warns(meanfield.pde.finite_volume.BoundaryMassWarning):
        res = meanfield.Run(cfg).simulate()
    lost = 1.0 - res.tasks["mass"]
    assert lost[0] < 1e-13 and lost[-1] > 1e-4
    first = np.argmax(res.tasks["boundary_mass"] > 1e-8)
    assert first > 0 and np.all(lost[:first] < 1e-12)  # the layer fills before anything leaves


@pytest.mark.parametrize("change, key", [
    ({"grid": [32, 64]}, "solver.grid"),  # too coarse for A on [-4, 4]
    ({"domain": [-2.0, 2.0]}, "solver.domain"),  # clips the initial law
    ({"momentum_max": 2.0}, "solver.momentum_max"),  # clips the momentum law
    ({"grid": [64, 8]}, "solver.grid"),  # momentum_scale over < 2 cells
    ({"grid": 64}, "solver.grid"),
    ({"grid": [5000, 64]}, "solver.grid"),  # dense moment matrices beyond LINE_CELLS_MAX
    ({"model": {"name": "softmax", "dynamics": "accelerated", "d": 1, "A": [[0.5]], "B": [[-1.0]]}}, "model.B"),
    ({"model": {"name": "softmax", "dynamics": "accelerated", "d": 2}}, "solver.kind"),
    ({"integrator": {"name": "tao2", "h": 0.05}}, "integrator.name"),
])
def test_bad_line_kinetic_input_names_the_key(change, key):
    cfg = line_config()
    for section in ("model", "integrator"):
        if section in change:
            cfg[section] = change.pop(section)
    cfg["solver"].update(change)
    with pytest.raises(ParameterError) as err:
        meanfield.Run(cfg)
    assert err.value.key == key


LINE_TOML = """
[model]
name = "softmax"
dynamics = "accelerated"
d = 1
A = [[0.5]]
Q = [[1.0]]
[integrator]
name = "strang"
h = 0.05
[initial]
law = "gaussian"
mean = [0.3]
cov = [[0.3]]
momentum = "gaussian"
momentum_scale = 0.5
[run]
t0 = 0.0
steps = 3
[solver]
kind = "pde"
grid = GRID
domain = [-4.0, 4.0]
"""


@pytest.mark.parametrize("grid, code", [("[64, 64]", 0), ("[32, 64]", 2)])
def test_cli_line_kinetic_run_and_too_coarse_grid_exits_2_with_one_line(tmp_path, grid, code):
    from click.testing import CliRunner

    from meanfield_cli.main import cli

    path = tmp_path / "line.toml"
    path.write_text(LINE_TOML.replace("GRID", grid))
    out = CliRunner().invoke(cli, ["run", str(path), "-o", str(tmp_path / "line.h5")])
    assert out.exit_code == code, out.output
    if code:
        lines = out.output.strip().splitlines()
        assert len(lines) == 1 and "solver.grid" in lines[0] and "at least 48 cells" in lines[0]
