"""Kinetic equation of the accelerated sphere model on the circle (docs/models.md §9): remap kernels
against references, exact characteristics, mass / positivity / energy identities, order 2
in time, the run (HDF5, resume, CLI errors) and agreement with particles."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import interrupt_and_resume
from scipy.integrate import solve_ivp

import meanfield
from meanfield._kernels import kinetic as KK
from meanfield.errors import ParameterError
from meanfield.pde.kinetic import CircleKinetic, LineKinetic
from meanfield.schedules import make_schedule

pytestmark = pytest.mark.usefixtures("one_thread")

VM = {"law": "von_mises", "mu": [0.0, 2.5], "kappa": [2.0, 1.0], "weights": [0.6, 0.4],
      "momentum": "gaussian", "momentum_scale": 0.6}


def _reference_remap(f, feet, periodic, lo, dx):
    """Slow reference: the monotone Hermite primitive evaluated pointwise, differenced at the feet."""
    n = f.size

    def cell(c):
        if periodic:
            return f[c % n]
        return f[c] if 0 <= c < n else 0.0

    m = np.array([min(max((7 * (cell(e - 1) + cell(e)) - cell(e - 2) - cell(e + 1)) / 12, 0.0),
                      3 * min(cell(e - 1), cell(e))) for e in range(n + 1)])
    total = f.sum() * dx

    def F(X):
        u = (X - lo) / dx
        if not periodic:
            u = min(max(u, 0.0), float(n))
        c = int(np.floor(u))
        wraps, k = divmod(c, n) if periodic else (0, c)
        if not periodic and k == n:
            return total
        t = u - c
        base = wraps * total + f[:k].sum() * dx
        h01, h10, h11 = 3 * t * t - 2 * t ** 3, t ** 3 - 2 * t * t + t, t ** 3 - t * t
        return base + dx * (f[k] * h01 + m[k] * h10 + m[k + 1] * h11)

    return np.array([(F(feet[i + 1]) - F(feet[i])) / dx for i in range(n)])


@pytest.mark.parametrize("periodic", [True, False])
def test_remap_kernel_matches_reference_conserves_and_stays_positive(periodic):
    rng = np.random.default_rng(3)
    n, lo, dx = 40, -1.0, 0.05
    f = rng.random((3, n)) ** 3
    f[:, 10:14] = 0.0  # empty cells: the limiter keeps them and their neighbours non-negative
    edges = lo + dx * np.arange(n + 1)
    shifts = np.array([0.37, -2.3, 7.9]) * dx if periodic else np.array([0.37, -2.3, 0.9]) * dx
    # a smooth, periodic, increasing perturbation of a shift
    feet = edges[None, :] + shifts[:, None] + 0.3 * dx * np.sin(2 * np.pi * (edges - lo) / (n * dx))[None, :]
    out = np.empty_like(f)
    KK.remap_lines(f, feet, periodic, lo, dx, np.empty((3, n + 1)), out)
    for line in range(3):
        ref = _reference_remap(f[line], feet[line], periodic, lo, dx)
        assert np.abs(out[line] - ref).max() < 1e-13
    assert out.min() >= 0.0
    if periodic:
        assert np.abs(out.sum(axis=1) - f.sum(axis=1)).max() < 1e-13
    # a shift by a whole number of cells is exact
    KK.remap_lines(f, edges[None, :].repeat(3, 0) - 3 * dx, periodic, lo, dx, np.empty((3, n + 1)), out)
    expect = np.roll(f, 3, axis=1)
    if not periodic:
        expect[:, :3] = 0.0
    assert np.abs(out - expect).max() < 1e-13


@pytest.mark.parametrize("shift", [0.3, 0.05])
def test_remap_of_a_smooth_density_is_third_order_per_step(shift):
    gl, gw = np.polynomial.legendre.leggauss(8)

    def averages(edges):  # exact cell averages of exp(cos)
        a, b = edges[:-1], edges[1:]
        pts = 0.5 * (a + b)[:, None] + 0.5 * (b - a)[:, None] * gl[None, :]
        return np.exp(np.cos(pts)) @ (0.5 * gw)

    err = {}
    for n in (64, 256):
        dx = 2 * np.pi / n
        edges = -np.pi + dx * np.arange(n + 1)
        f = averages(edges)[None, :].copy()
        out = np.empty_like(f)
        KK.remap_lines(f, (edges - shift)[None, :], True, -np.pi, dx, np.empty((1, n + 1)), out)
        err[n] = np.abs(out[0] - averages(edges - shift)).max()
    assert np.log2(err[64] / err[256]) / 2 > 2.5, err


def test_theta_feet_follow_the_characteristics_of_omega_over_z():
    sol = CircleKinetic(1.5, 64, 8, 4.0)
    f = sol.initial_density(VM)
    zc = sol.z_coef(sol.marginal(f))
    z_of = lambda th: float(np.real(zc[0] + 2 * np.sum(zc[1:-1] * np.exp(1j * sol.k[1:-1] * th))))
    out = np.empty_like(f)
    tau = 0.3
    sol._theta_remap(f, zc, tau, out)
    feet = sol._feetT
    for j in (0, 3, 6):
        for e in (0, 17, 40):
            back = solve_ivp(lambda t, y, w=sol.omega[j]: [-w / z_of(y[0])], (0, tau), [sol.theta_edges[e]],
                             rtol=1e-12, atol=1e-12).y[0, -1]
            assert abs(feet[j, e] - back) < 1e-6


@pytest.mark.parametrize("a, b, c", [(0.7, 0.3, -0.5), (0.7, -0.3, 0.0), (-0.4, 0.0, -1.0), (0.0, 0.0, -2.0)])
def test_momentum_feet_are_the_exact_riccati_flow(a, b, c):
    edges = np.linspace(-2.0, 2.0, 9)
    out = np.empty((1, 9))
    tau = 0.4
    KK.momentum_feet(edges, np.array([a]), np.array([b]), c, tau, out)
    for e, w in enumerate(edges):
        back = solve_ivp(lambda t, y: [-(a + c * y[0] + b * y[0] ** 2)], (0, tau), [w],
                         rtol=1e-12, atol=1e-12).y[0, -1]
        assert abs(out[0, e] - back) < 1e-8


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
    # dH/dt = -alpha int int omega^2 / z f: the residual is the scheme's error, and shrinks with the grid
    assert abs(resid) < 1e-3
    fine = CircleKinetic(2.0, 64, 192, 6.0)
    resid_fine = _evolve(fine, fine.initial_density(VM), make_schedule("constant", 0.0, a=1.0), 0.05, 1.0)[1]
    assert abs(resid_fine) < abs(resid) / 2


def test_order_two_in_time_and_energy_conserved_without_damping():
    # a box of 8 momentum scales: what leaves it by t = 1 (the undamped flow accelerates the tail)
    # is ~1e-8 of the mass
    sol = CircleKinetic(1.0, 64, 128, 8.0)
    f0 = sol.initial_density({"law": "von_mises", "mu": [0.0], "kappa": [1.0], "momentum": "gaussian",
                              "momentum_scale": 1.0})
    none = make_schedule("none", 0.0)
    runs = {h: _evolve(sol, f0, none, h, 1.0) for h in (0.2, 0.1, 0.05)}
    e1 = np.abs(runs[0.2][0] - runs[0.1][0]).max()
    e2 = np.abs(runs[0.1][0] - runs[0.05][0]).max()
    slope = np.log2(e1 / e2)
    assert 1.8 < slope < 2.3, slope
    assert e1 > 1e-6  # the solution moved at these steps: the test can see an error
    # H conserved to the scheme's order: |H(1) - H(0)| shrinks at least like h^2
    drift = {h: abs(r[1]) for h, r in runs.items()}
    assert drift[0.2] < 3e-4 and drift[0.1] < drift[0.2] / 3.5 and drift[0.05] < drift[0.1] / 3.5
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


def test_line_feet_follow_the_characteristics_of_b_y_over_z():
    sol = LineKinetic(0.5, 1.3, 1.0, 0.0, -4.0, 4.0, 64, 8, 4.0)
    rho = sol.marginal(sol.initial_density(LINE))
    z_of = lambda x: float(np.sum(np.exp(0.5 * x * sol.x) * rho) * sol.dx)  # the midpoint sum
    tau = 0.3
    field = sol.x_field(rho)
    sol._x_feet(field, tau, sol._feetT)
    for j in (0, 3, 6):
        for e in (0, 17, 40, 64):
            back = solve_ivp(lambda t, y, w=sol.omega[j]: [-1.3 * w / z_of(y[0])], (0, tau), [sol.x_edges[e]],
                             rtol=1e-12, atol=1e-12).y[0, -1]
            if sol.x_edges[0] <= back <= sol.x_edges[-1]:
                assert abs(sol._feetT[j, e] - back) < 1e-6
            else:  # came from outside the box: no mass enters
                assert sol._feetT[j, e] < sol.x_edges[0] or sol._feetT[j, e] > sol.x_edges[-1]


def test_line_mass_positivity_and_energy_decrease_under_damping():
    sol = _line(64, 64)
    f0 = sol.initial_density(LINE)
    damp = make_schedule("constant", 0.0, a=1.0)
    f, resid, H = _evolve(sol, f0, damp, 0.05, 1.0)
    assert abs(f.sum() - f0.sum()) * sol.cell_volume < 1e-13
    assert f.min() >= 0.0
    assert np.all(np.diff(H) < 0) and H[0] - H[-1] > 0.1
    # dH/dt = -alpha int int B y^2 / z f: the residual is the scheme's error and shrinks with the momentum grid
    assert abs(resid) < 2e-3
    fine = _line(64, 128)
    assert abs(_evolve(fine, fine.initial_density(LINE), damp, 0.05, 1.0)[1]) < abs(resid) / 2


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
    assert np.abs(tr["mass"] - tr["mass"][0]).max() < 1e-13 and tr["boundary_mass"].max() < 1e-8
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
