"""Sphere model (docs/models.md §4, §6): kernels vs naive references, geometry invariants, the
accelerated constrained scheme and its orders, diagnostics, initial laws, and the exact
checks (equiangular reduction, Kuramoto form, long-context limits, contraction rates)."""

from __future__ import annotations

import math

import naive_sphere as NS
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import meanfield
from meanfield.diagnostics.clustering import (
    cluster_labels,
    clustering_time_from_min_inner,
    pair_statistics,
    time_to_clustering,
)
from meanfield.diagnostics.rates import fit_exponential, fit_power_law
from meanfield.errors import ParameterError
from meanfield.integrators import INTEGRATORS
from meanfield.models import make_model
from meanfield.reductions.equiangular import long_context_limit, one_layer_inner, solve_equiangular

pytestmark = pytest.mark.usefixtures("one_thread")


def unit(rng, N, d):
    x = rng.standard_normal((N, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def model(d, dynamics="first_order", dtype=np.float64, **kw):
    return make_model({"name": "sphere", "dynamics": dynamics, "d": d, **kw}, dtype=dtype)


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(b).max(), 1e-300))


def config(dynamics="first_order", integrator="rk4", h=0.05, d=3, n=12, beta=1.0, law="sphere_uniform",
           **run):
    init = {"law": law, "n": n, "seed": 2}
    cfg = {"model": {"name": "sphere", "dynamics": dynamics, "d": d, "beta": beta},
           "integrator": {"name": integrator, "h": h}, "initial": init,
           "run": {"t0": 0.0, "t1": 1.0, "save_every": 1, **run}, "output": {"save": ["x", "y"]}}
    if dynamics == "accelerated":
        init.update(momentum="gaussian", momentum_scale=0.5)
        cfg["damping"] = {"schedule": "constant", "a": 1.0}
    if "steps" in run or "oracle_calls" in run:
        cfg["run"].pop("t1")
    return cfg


# ------------------------------------------------------------- fields


@pytest.mark.parametrize("normalization", ["post_ln", "pre_ln", "peri_ln"])
@pytest.mark.parametrize("normalized", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_first_order_field_matches_reference(normalization, normalized, causal):
    rng = np.random.default_rng(1)
    N, d, beta = 37, 4, 2.5
    X = unit(rng, N, d)
    if normalization != "post_ln":
        X *= rng.uniform(0.5, 2.0, (N, 1))  # residual stream: any radii
    Q, K, V = (np.eye(d) + 0.3 * rng.standard_normal((d, d)) for _ in range(3))
    m = model(d, beta=beta, Q=Q.tolist(), K=K.tolist(), V=V.tolist(), normalized=normalized,
              causal=causal, normalization=normalization)
    f = m.first_order(X, 0.0)
    ref = NS.first_order(X, beta, Q, K, V, normalized, causal, normalization)
    assert rel(f, ref) < 1e-12
    out = X.copy()
    m.combine_first_order(out, 0.0, 1.0, 0.1, out=out)  # aliasing: in-place step
    assert rel(out, X + 0.1 * ref) < 1e-12


def test_float32_field_within_tolerance():
    rng = np.random.default_rng(3)
    X = unit(rng, 50, 3)
    m64, m32 = model(3, beta=4.0), model(3, beta=4.0, dtype=np.float32)
    assert rel(m32.first_order(X.astype(np.float32), 0.0), m64.first_order(X, 0.0)) < 2e-5


def test_constrained_hamiltonian_field_matches_reference_and_conserves_H():
    rng = np.random.default_rng(4)
    N, d, beta = 23, 3, 1.7
    X = unit(rng, N, d)
    Y = rng.standard_normal((N, d)) * 0.6
    Y -= np.sum(X * Y, 1)[:, None] * X
    m = model(d, "accelerated", beta=beta)
    F, G = m.hamiltonian_field(X, Y, 0.0)
    Fr, Gr = NS.hamiltonian_field(X, Y, beta)
    assert rel(F, Fr) < 1e-12 and rel(G, Gr) < 1e-12
    # the field is tangent to the constraint set: d/dt |x|^2 = 0 and d/dt (x . y) = 0
    assert np.abs(np.sum(X * F, 1)).max() < 1e-14
    assert np.abs(np.sum(F * Y, 1) + np.sum(X * G, 1)).max() < 1e-13
    # and the constraint forces do no work: the directional derivative of H along (F, G) vanishes
    eps = 1e-5
    dH = (NS.hamiltonian(X + eps * F, Y + eps * G, beta) - NS.hamiltonian(X - eps * F, Y - eps * G, beta)) / (2 * eps)
    assert abs(dH) < 1e-9
    # Hamilton's equations on the tangent bundle: F = N dH/dy, P_x G = -N P_x dH/dx (finite differences)
    i, k = 5, 1
    e = np.zeros((N, d))
    e[i, k] = eps
    dHdy = (NS.hamiltonian(X, Y + e, beta) - NS.hamiltonian(X, Y - e, beta)) / (2 * eps)
    assert abs(N * dHdy - F[i, k]) < 1e-8
    grad = np.zeros(d)
    for kk in range(d):
        e = np.zeros((N, d))
        e[i, kk] = eps
        grad[kk] = (NS.hamiltonian(X + e, Y, beta) - NS.hamiltonian(X - e, Y, beta)) / (2 * eps)
    P = np.eye(d) - np.outer(X[i], X[i])
    assert np.abs(P @ (-N * grad) - P @ G[i]).max() < 1e-7
    # energies match the reference
    assert abs(m.energies(X, Y)["energy"] - NS.hamiltonian(X, Y, beta)) < 1e-13


def test_pair_statistics_match_scipy_connected_components():
    rng = np.random.default_rng(5)
    centers = unit(rng, 6, 4)
    X = np.repeat(centers, 20, axis=0) + 0.01 * rng.standard_normal((120, 4))
    X = X[rng.permutation(120)]
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    for tol in (1e-4, 1e-3, 2e-2, 1.5):
        st = pair_statistics(X, 3.0, tol)
        ref = NS.pair_statistics(X, 3.0, tol)
        assert st["n_clusters"] == ref["n_clusters"]
        for key in ("E_beta", "min_inner", "mean_inner"):
            assert abs(st[key] - ref[key]) <= 1e-12 * max(1.0, abs(ref[key])), key
        labels, k = cluster_labels(X, tol)
        # same partition as scipy's labelling
        pairs = {(a, b) for a, b in zip(labels, ref["labels"])}
        assert k == ref["n_clusters"] and len(pairs) == k
    assert pair_statistics(X, 3.0, 1e-3)["n_clusters"] == 6
    one = pair_statistics(X[:1], 2.0)
    assert one["n_clusters"] == 1 and one["min_inner"] == 1.0


# ----------------------------------------------------- geometry / orders


# adaptive methods choose their own steps (no fixed h to measure an order or a transcription by):
# tests/test_adaptive_methods.py and tests/test_long_time*.py cover them
@pytest.mark.parametrize("name", sorted(n for n, k in INTEGRATORS.items()
                                        if "first_order" in k and not k["first_order"].adaptive))
def test_first_order_integrators_keep_unit_norm(name):
    cfg = config(integrator=name, h=0.1, beta=2.0)
    if name == "nag":
        cfg["damping"] = {"schedule": "constant", "a": 2.0}
    res = meanfield.Run(cfg).simulate()
    X = res["x"]
    assert np.abs(np.linalg.norm(X, axis=2) - 1.0).max() < 1e-12
    assert res["n_clusters"].dtype.kind == "i"


def _acc_cfg(name, steps, T=2.0):
    cfg = config("accelerated", name, h=T / (steps - 0.4), n=8, beta=1.0, t0=1.0, t1=1.0 + T,
                 save_every=100000)
    cfg["damping"] = {"schedule": "nesterov", "r": 3.0}
    cfg["output"]["save"] = []
    return cfg


ACC = sorted(n for n, k in INTEGRATORS.items() if "accelerated" in k and not k["accelerated"].adaptive)


def test_accelerated_projection_scheme_orders_and_constraints():
    """Registered accelerated integrators + retraction/momentum projection keep their order."""
    ref = meanfield.Run(_acc_cfg("rk4", 2048)).simulate()
    steps = (16, 32, 64)
    for name in ACC:
        errs = []
        for s in steps:
            res = meanfield.Run(_acc_cfg(name, s)).simulate()
            errs.append(max(np.abs(res.x - ref.x).max(), np.abs(res.y - ref.y).max()))
            assert np.abs(np.linalg.norm(res.x, axis=1) - 1).max() < 1e-12
            assert np.abs(np.sum(res.x * res.y, 1)).max() < 1e-12
        slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
        order = INTEGRATORS[name]["accelerated"].order
        assert abs(slope - order) < 0.3, (name, slope, errs)


def test_accelerated_run_keeps_constraints_at_every_save_and_dissipates():
    cfg = config("accelerated", "tao2", h=0.05, n=16, beta=2.0, t1=3.0)
    res = meanfield.Run(cfg).simulate()
    X, Y = res["x"], res["y"]
    assert np.abs(np.linalg.norm(X, axis=2) - 1).max() < 1e-12
    assert np.abs(np.sum(X * Y, axis=2)).max() < 1e-12
    # damped: H decreases (up to the O(h^2) energy error of tao2)
    E = res["energy"]
    assert E[-1] < E[0] and np.all(np.diff(E) < 1e-3)
    # rk4 tracks dH/dt = -2 alpha K (alpha = 1) to its accuracy
    cfg = config("accelerated", "rk4", h=0.01, n=16, beta=2.0, t1=1.0)
    res = meanfield.Run(cfg).simulate()
    assert np.abs(res["dissipation_residual"]).max() < 1e-3 * np.abs(np.diff(res["energy"])).max() + 1e-10


def test_check_state_and_parameter_errors():
    with pytest.raises(ParameterError, match="initial.law"):
        meanfield.Run(config(law="gaussian"))
    with pytest.raises(ParameterError, match="model.normalization"):
        meanfield.Run({**config("accelerated"), "model": {"name": "sphere", "dynamics": "accelerated",
                                                         "d": 3, "normalization": "pre_ln"}})
    with pytest.raises(ParameterError, match="model.V"):
        model(3, "accelerated", V="identity")
    with pytest.raises(ParameterError, match="model.Q"):
        model(3, "accelerated", Q=[[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(ParameterError, match="model.beta"):
        model(3, beta=0.0)
    with pytest.raises(ParameterError, match="model.normalization"):
        model(3, normalization="layer")
    with pytest.raises(ParameterError, match="model.d"):
        model(1)
    # gaussian momenta are projected to the tangent spaces at the start
    run = meanfield.Run(config("accelerated"))
    assert np.abs(np.sum(run.x0 * run.y0, 1)).max() < 1e-15


# ------------------------------------------------------------- initial laws


def test_initial_laws_seeded_and_checked():
    from meanfield.initial import initial_state

    x, _ = initial_state({"law": "equiangular", "n": 7, "rho": 0.3, "seed": 4}, 9, False)
    G = x @ x.T
    assert np.abs(np.diag(G) - 1).max() < 1e-15
    assert np.abs(G[~np.eye(7, dtype=bool)] - 0.3).max() < 1e-14
    x2, _ = initial_state({"law": "equiangular", "n": 7, "rho": 0.3, "seed": 4}, 9, False)
    assert np.array_equal(x, x2)
    u, _ = initial_state({"law": "sphere_uniform", "n": 4000, "seed": 1}, 3, False)
    assert np.abs(np.linalg.norm(u, axis=1) - 1).max() < 1e-15 and np.abs(u.mean(0)).max() < 0.05
    with pytest.raises(ParameterError, match="initial.n"):
        initial_state({"law": "equiangular", "n": 5, "rho": 0.3}, 4, False)
    with pytest.raises(ParameterError, match="initial.rho"):
        initial_state({"law": "equiangular", "n": 5, "rho": -0.5}, 8, False)
    simplex, _ = initial_state({"law": "equiangular", "n": 4, "rho": -1 / 3}, 4, False)
    assert abs((simplex @ simplex.T)[0, 1] + 1 / 3) < 1e-14


# ------------------------------------------------------------ exact checks


def _particle_rho(res, n):
    X = np.asarray(res["x"])
    T = X / np.linalg.norm(X, axis=2, keepdims=True)
    G = np.einsum("tid,tjd->tij", T, T)
    return G[:, ~np.eye(n, dtype=bool)], np.linalg.norm(X, axis=2)


@pytest.mark.parametrize("normalized", [True, False])
@pytest.mark.parametrize("normalization", ["post_ln", "pre_ln", "peri_ln"])
def test_equiangular_tokens_follow_the_reduction_ode(normalized, normalization):
    n, d, beta, rho0 = 6, 8, 1.5, 0.2
    cfg = config(d=d, n=n, beta=beta, law="equiangular", h=0.01, t1=3.0, save_every=25)
    cfg["initial"]["rho"] = rho0
    cfg["model"].update(normalized=normalized, normalization=normalization)
    res = meanfield.Run(cfg).simulate()
    rho_p, r_p = _particle_rho(res, n)
    ref = solve_equiangular(rho0, res.t, beta, n, normalized, normalization)
    assert np.abs(rho_p - ref["rho"][:, None]).max() < 1e-8
    assert ref["rho"][-1] > rho0 + 0.1  # the check is not vacuous
    if normalization != "post_ln":
        assert np.abs(r_p - ref["r"][:, None]).max() < 1e-8


def test_usa_in_d2_is_the_kuramoto_model():
    rng = np.random.default_rng(6)
    N, beta = 40, 2.0
    th = rng.uniform(0, 2 * np.pi, N)
    X = np.stack([np.cos(th), np.sin(th)], 1)
    m = model(2, beta=beta, normalized=False)
    f = m.first_order(X, 0.0)
    dth = -f[:, 0] * np.sin(th) + f[:, 1] * np.cos(th)
    assert np.abs(dth - NS.kuramoto(th, beta)).max() < 1e-13
    assert np.abs(f[:, 0] * np.cos(th) + f[:, 1] * np.sin(th)).max() < 1e-14  # tangent
    # trajectories: rk4 particles vs the Kuramoto ODE
    cfg = config(d=2, n=N, beta=beta, h=0.01, t1=2.0, save_every=1000)
    cfg["model"]["normalized"] = False
    cfg["initial"] = {"law": "sphere_uniform", "n": N, "seed": 8}
    run = meanfield.Run(cfg)
    th0 = np.arctan2(run.x0[:, 1], run.x0[:, 0])
    res = run.simulate()
    sol = solve_ivp(lambda t, y: NS.kuramoto(y, beta), (0, 2), th0, method="DOP853", rtol=1e-12, atol=1e-13)
    thT = sol.y[:, -1]
    assert np.abs(res.x - np.stack([np.cos(thT), np.sin(thT)], 1)).max() < 1e-8


@pytest.mark.slow
def test_long_context_one_layer_limits():
    rho = 0.5  # critical gamma = 1 / (1 - rho) = 2
    for gamma in (1.0, 2.0, 3.0):
        limit = long_context_limit(rho, gamma)
        errs = []
        for n in (16, 64, 256):
            beta = gamma * math.log(n)
            x, _ = meanfield.initial.initial_state({"law": "equiangular", "n": n, "rho": rho, "seed": 1}, n, False)
            m = model(n, beta=beta, normalization="pre_ln")
            a = m.attention_vectors(x)
            a /= np.linalg.norm(a, axis=1, keepdims=True)
            G = a @ a.T
            off = G[~np.eye(n, dtype=bool)]
            exact = one_layer_inner(rho, beta, n)
            assert np.abs(off - exact).max() < 1e-10  # particles = the exact one-layer map
            errs.append(abs(off.mean() - limit))
        assert errs[0] > errs[1] > errs[2], (gamma, errs)
        # the exact map converges to the SPEC limits
        big = 2.0**40
        assert abs(one_layer_inner(rho, gamma * math.log(big), big) - limit) < 1e-3
    assert long_context_limit(rho, 2.0) == pytest.approx(4 * rho / (1 + 3 * rho))


def test_post_ln_vs_pre_ln_contraction_rates():
    n, d, beta, rho0 = 4, 4, 1.0, 0.3
    cfg = config(d=d, n=n, beta=beta, law="equiangular", h=0.05, t1=8.0, save_every=2)
    cfg["initial"]["rho"] = rho0
    res = meanfield.Run(cfg).simulate()
    eps = 1 - _particle_rho(res, n)[0].mean(1)
    rate = fit_exponential(res.t, eps, (3.0, 8.0))["rate"]
    assert abs(rate - 2.0) < 0.05  # 1 - rho ~ exp(-2 t)
    cfg = config(d=d, n=n, beta=beta, law="equiangular", h=0.25, t1=400.0, save_every=20)
    cfg["initial"]["rho"] = rho0
    cfg["model"]["normalization"] = "pre_ln"
    res = meanfield.Run(cfg).simulate()
    eps = 1 - _particle_rho(res, n)[0].mean(1)
    p = fit_power_law(res.t, eps, (50.0, 400.0))["exponent"]
    assert abs(p + 2.0) < 0.05  # 1 - rho ~ t^-2


# ------------------------------------------------------- post-processing / io


def test_clustering_time_post_processing_and_hdf5(tmp_path):
    cfg = config(d=2, n=10, beta=1.0, h=0.1, t1=12.0, save_every=5)
    res = meanfield.Run(cfg).simulate(output=str(tmp_path / "s.h5"))
    tr = meanfield.load(str(tmp_path / "s.h5"))
    for key in ("E_beta", "min_inner", "mean_inner", "n_clusters"):
        assert np.array_equal(np.asarray(tr[key]), res[key])
    assert np.all(np.diff(res["E_beta"]) > 0)  # SA with Q = K = V = I ascends E_beta
    t_eps = time_to_clustering(tr, 1e-3)
    hit = np.nonzero(1 - res["min_inner"] <= 1e-3)[0][0]
    assert t_eps == res.t[hit]
    assert time_to_clustering(tr, 1e-3, k=1) == t_eps
    assert time_to_clustering({"sim_time": res.t, "x": res["x"]}, 1e-3, k=1) == t_eps
    ti = clustering_time_from_min_inner(res.t, res["min_inner"], 1e-3)
    assert res.t[hit - 1] <= ti <= t_eps
    from meanfield.plotting import PLOTS

    fig = PLOTS["clusters"][0](tr)
    fig.savefig(str(tmp_path / "c.png"))


def test_template_parses_and_runs(tmp_path):
    from meanfield_cli.templates import TEMPLATES

    path = tmp_path / "sphere.toml"
    path.write_text(TEMPLATES["sphere"])
    res = meanfield.Run(str(path), overrides=["initial.n=32", "run.t1=0.5"]).simulate()
    assert res.status == "finished" and np.all(np.isfinite(res["energy"]))


def test_the_two_cluster_counts_agree():
    from meanfield._kernels.grid import count_components, count_components_dense

    rng = np.random.default_rng(3)
    for n, d in ((1, 3), (40, 2), (150, 3), (90, 4)):
        centres = rng.normal(size=(6, d))
        theta = centres[rng.integers(0, 6, n)] / np.linalg.norm(centres[rng.integers(0, 6, n)], axis=1)[:, None]
        theta = theta + 10.0 ** rng.uniform(-4, -1, (n, 1)) * rng.normal(size=(n, d))
        theta /= np.linalg.norm(theta, axis=1)[:, None]
        for tol in (1e-4, 1e-3, 1e-2, 0.3):
            assert count_components_dense(theta, tol) == count_components(theta, tol)
