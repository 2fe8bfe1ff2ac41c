"""Bilinear model: kernels vs references, Hamilton's equations, energy identity, moment ODE."""

import naive
import numba
import numpy as np
import pytest

import meanfield
from meanfield._kernels import moments as K
from meanfield._kernels._config import chunk_bounds
from meanfield.models import Bilinear, BilinearParams
from meanfield.reductions import bilinear_moment_ode


@pytest.fixture(params=[np.float64, np.float32], ids=["f64", "f32"])
def dtype(request):
    return request.param


def _tol(dtype):
    return 1e-12 if dtype == np.float64 else 2e-5


def _problem(n=37, d=4, seed=0, sym_A=False):
    rng = np.random.default_rng(seed)
    A = np.eye(d) + 0.3 * rng.standard_normal((d, d))
    if sym_A:
        A = 0.5 * (A + A.T)
    R = rng.standard_normal((d, d))
    Q = np.eye(d) + 0.2 * (R + R.T)
    m = rng.standard_normal(d)
    X = rng.standard_normal((n, d))
    Y = rng.standard_normal((n, d))
    return A, Q, m, X, Y


# ---------------------------------------------------------------- kernels
@pytest.mark.parametrize("n", [1, 5, 1000, 4099])
def test_cross_moment_and_mean_match_numpy(n, dtype):
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, 5)).astype(dtype)
    Y = rng.standard_normal((n, 5)).astype(dtype)
    b = chunk_bounds(n)
    out = np.empty((5, 5), dtype)
    K.cross_moment(X, Y, b, np.empty((len(b) - 1, 5, 5), dtype), out)
    ref = X.astype(float).T @ Y.astype(float) / n
    assert np.allclose(out, ref, rtol=0, atol=_tol(dtype) * 10)
    mu = np.empty(5, dtype)
    K.column_mean(X, b, np.empty((len(b) - 1, 5), dtype), mu)
    assert np.allclose(mu, X.astype(float).mean(0), atol=_tol(dtype) * 10)


def test_affine_kernels_match_numpy_and_allow_aliasing(dtype):
    rng = np.random.default_rng(1)
    n, d = 1031, 6
    X = rng.standard_normal((n, d)).astype(dtype)
    Y = rng.standard_normal((n, d)).astype(dtype)
    P1, P2, P3 = (rng.standard_normal((d, d)).astype(dtype) for _ in range(3))
    c = rng.standard_normal(d).astype(dtype)
    b = chunk_bounds(n)
    out = np.empty_like(X)
    K.affine_map(X, P1.T.copy(), c, b, out)
    assert np.allclose(out, X @ P1.T + c, atol=_tol(dtype) * 10)
    OX, OY = np.empty_like(X), np.empty_like(Y)
    K.affine_pair_map(X, Y, P1.T.copy(), P2.T.copy(), P3.T.copy(), c, b, OX, OY)
    assert np.allclose(OX, X @ P1.T, atol=_tol(dtype) * 10)
    assert np.allclose(OY, X @ P2.T + Y @ P3.T + c, atol=_tol(dtype) * 10)
    X2, Y2 = X.copy(), Y.copy()
    K.affine_pair_map(X2, Y2, P1.T.copy(), P2.T.copy(), P3.T.copy(), c, b, X2, Y2)  # in place
    assert np.array_equal(X2, OX) and np.array_equal(Y2, OY)


def test_quadratic_mean_matches_numpy():
    A, Q, m, X, Y = _problem(n=2001)
    val = K.quadratic_mean(X, Q, m, chunk_bounds(2001), np.empty(len(chunk_bounds(2001)) - 1))
    ref = 0.5 * np.einsum("ik,kl,il->i", X - m, Q, X - m).mean()
    assert val == pytest.approx(ref, rel=1e-13)


# ----------------------------------------------------------------- fields
def _model(A, Q, m, dynamics, dtype=np.float64):
    return Bilinear(BilinearParams(d=A.shape[0], A=A, Q=Q, m=m), dynamics, dtype)


def test_first_order_matches_pairwise_reference(dtype):
    A, Q, m, X, Y = _problem()
    model = _model(A, Q, m, "first_order", dtype)
    f = model.first_order(X.astype(dtype), 0.0)
    ref = naive.bilinear_first_order(X, A, Q, m)
    assert np.allclose(f, ref, rtol=0, atol=_tol(dtype) * 10 * np.abs(ref).max())
    assert model.oracle_calls == 1


def test_hamiltonian_field_matches_pairwise_reference(dtype):
    A, Q, m, X, Y = _problem()
    model = _model(A, Q, m, "accelerated", dtype)
    F, G = model.hamiltonian_field(X.astype(dtype), Y.astype(dtype), 0.0)
    Fr, Gr = naive.bilinear_hamiltonian_field(X, Y, A, Q, m)
    assert np.allclose(F, Fr, atol=_tol(dtype) * 10 * np.abs(Fr).max())
    assert np.allclose(G, Gr, atol=_tol(dtype) * 10 * np.abs(Gr).max())


def test_hamilton_equations_against_finite_differences_of_H():
    """F = N dH/dy_i and G = -N dH/dx_i, with H evaluated independently (pairwise)."""
    A, Q, m, X, Y = _problem(n=7, d=3, seed=4)
    N = X.shape[0]
    model = _model(A, Q, m, "accelerated")
    F, G = model.hamiltonian_field(X, Y, 0.0)
    dHdY = naive.finite_difference_grad(lambda Z: naive.bilinear_H(X, Z, A, Q, m), Y)
    dHdX = naive.finite_difference_grad(lambda Z: naive.bilinear_H(Z, Y, A, Q, m), X)
    assert np.allclose(F, N * dHdY, atol=1e-8)
    assert np.allclose(G, -N * dHdX, atol=1e-8)
    # the model's own energy is the same H
    assert model.energies(X, Y)["energy"] == pytest.approx(naive.bilinear_H(X, Y, A, Q, m), rel=1e-13)


def test_nonsymmetric_A_only_its_symmetric_part_enters_the_hamiltonian():
    A, Q, m, X, Y = _problem()
    assert np.abs(A - A.T).max() > 0.1
    F1, G1 = _model(A, Q, m, "accelerated").hamiltonian_field(X, Y, 0.0)
    F2, G2 = _model(0.5 * (A + A.T), Q, m, "accelerated").hamiltonian_field(X, Y, 0.0)
    assert np.allclose(F1, F2, atol=1e-14) and np.allclose(G1, G2, atol=1e-14)
    # ...whereas the first-order flow uses A itself
    f1 = _model(A, Q, m, "first_order").first_order(X, 0.0)
    f2 = _model(0.5 * (A + A.T), Q, m, "first_order").first_order(X, 0.0)
    assert np.abs(f1 - f2).max() > 1e-3


def test_combine_forms_equal_plain_fields_and_alias_safely():
    A, Q, m, X, Y = _problem(n=300)
    model = _model(A, Q, m, "accelerated")
    F, G = model.hamiltonian_field(X, Y, 0.0)
    X2, Y2 = X.copy(), Y.copy()
    model.combine_hamiltonian(X2, Y2, 0.0, 0.7, 0.1, 0.9, 0.2, out_x=X2, out_y=Y2)
    assert np.allclose(X2, 0.7 * X + 0.1 * F, atol=1e-14)
    assert np.allclose(Y2, 0.9 * Y + 0.2 * G, atol=1e-14)
    fo = _model(A, Q, m, "first_order")
    f = fo.first_order(X, 0.0)
    X3 = X.copy()
    fo.combine_first_order(X3, 0.0, 1.0, 0.05, out=X3)
    assert np.allclose(X3, X + 0.05 * f, atol=1e-14)


def test_parallel_equals_serial():
    A, Q, m, X, Y = _problem(n=20000, d=5)
    model = _model(A, Q, m, "accelerated")
    F2, G2 = model.hamiltonian_field(X, Y, 0.0)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        F1, G1 = model.hamiltonian_field(X, Y, 0.0)
    finally:
        numba.set_num_threads(old)
    assert np.array_equal(F1, F2) and np.array_equal(G1, G2)


# ----------------------------------------------------- identities of runs
def test_energy_identity_and_monotone_decay(make_config):
    """dH/dt = -2 alpha K: the recorded residual is at rk4 accuracy, H decreases (As PSD)."""
    cfg = make_config("accelerated", "rk4", n=40, t1=3.0, save_every=10)
    cfg["model"]["A"] = "identity"
    res = meanfield.Run(cfg).simulate()
    H = res["energy"]
    assert np.all(np.diff(H) <= 1e-12)
    assert np.abs(res["dissipation_residual"]).max() < 1e-8 * abs(H[0])


def test_first_order_energy_decreases(make_config):
    cfg = make_config("first_order", "rk4", t1=3.0)
    cfg["model"]["A"] = "identity"
    res = meanfield.Run(cfg).simulate()
    assert np.all(np.diff(res["energy"]) <= 1e-12)


@pytest.mark.parametrize("dynamics", ["accelerated", "first_order"])
def test_particles_follow_the_moment_ode(make_config, dynamics):
    """docs/models.md §2 closure: affine momentum, nesterov damping, rk4 h = 0.005 -> agreement ~1e-8."""
    cfg = make_config(dynamics, "rk4", n=200, d=3, t1=3.0, save_every=40)
    cfg["integrator"]["h"] = 0.005
    S = [[0.1, 0.05, 0.0], [0.05, -0.2, 0.0], [0.0, 0.0, 0.3]]
    cfg["initial"].update(momentum="affine", S=S, b=[0.1, 0.0, -0.1])
    cfg["initial"].pop("momentum_scale")
    run = meanfield.Run(cfg)
    res = run.simulate()
    x0 = run.x0
    ode = bilinear_moment_ode(run.model, run.schedule, x0.mean(0), x0.T @ x0 / len(x0), res.t,
                              np.array(S), np.array([0.1, 0.0, -0.1]))
    assert np.abs(res["mean"] - ode["mean"]).max() < 1e-8
    assert np.abs(res["cov"] - ode["cov"]).max() < 1e-8
    if dynamics == "accelerated":
        assert np.abs(res["Mxy"] - ode["Mxy"]).max() < 1e-8
        # momentum stays affine in position: y = S(t) x + b(t)
        assert np.abs(res.y - (res.x @ ode["S"][-1].T + ode["b"][-1])).max() < 1e-8
    assert np.abs(ode["cov"][-1] - ode["cov"][0]).max() > 0.05  # the moments really moved


# ----------------------------------------------------------- causal mask
@pytest.mark.parametrize("n", [7, pytest.param(1500, marks=pytest.mark.slow)])
def test_causal_fields_match_the_masked_pairwise_reference(n, dtype):
    """docs/models.md §6: sums over j <= i with factor 1/i; several chunks exercise the prefix offsets."""
    A, Q, m, X, Y = _problem(n=n, d=3, seed=5)
    X, Y = 0.5 * X, 0.5 * Y
    fo = Bilinear(BilinearParams(d=3, A=A, Q=Q, m=m), "first_order", dtype, causal=True)
    f = fo.first_order(X.astype(dtype), 0.0)
    ref = naive.bilinear_causal_first_order(X, A, Q, m)
    assert np.abs(f - ref).max() < _tol(dtype) * 100 * np.abs(ref).max()
    acc = Bilinear(BilinearParams(d=3, A=A, Q=Q, m=m), "accelerated", dtype, causal=True)
    F, G = acc.hamiltonian_field(X.astype(dtype), Y.astype(dtype), 0.0)
    Fr, Gr = naive.bilinear_causal_hamiltonian_field(X, Y, A, Q, m)
    assert np.abs(F - Fr).max() < _tol(dtype) * 100 * np.abs(Fr).max()
    assert np.abs(G - Gr).max() < _tol(dtype) * 100 * np.abs(Gr).max()
    # the last token sees everything: it matches the unmasked field there
    Fu, Gu = _model(A, Q, m, "accelerated").hamiltonian_field(X, Y, 0.0)
    assert np.allclose(F[-1], Fu[-1], atol=_tol(dtype) * 100) and np.allclose(G[-1], Gu[-1], atol=_tol(dtype) * 100)


def test_causal_combine_in_place_and_threads():
    A, Q, m, X, Y = _problem(n=9000, d=4, seed=6)
    acc = Bilinear(BilinearParams(d=4, A=A, Q=Q, m=m), "accelerated", np.float64, causal=True)
    F, G = acc.hamiltonian_field(X, Y, 0.0)
    X2, Y2 = X.copy(), Y.copy()
    acc.combine_hamiltonian(X2, Y2, 0.0, 1.0, 0.1, 0.9, 0.1, out_x=X2, out_y=Y2)
    assert np.allclose(X2, X + 0.1 * F, atol=1e-13) and np.allclose(Y2, 0.9 * Y + 0.1 * G, atol=1e-13)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        F1, G1 = acc.hamiltonian_field(X, Y, 0.0)
    finally:
        numba.set_num_threads(old)
    assert np.array_equal(F1, F) and np.array_equal(G1, G)


def test_causal_runs_end_to_end_and_reject_the_moment_ode(make_config):
    cfg = make_config("accelerated", "exp_euler")
    cfg["model"]["causal"] = True
    res = meanfield.Run(cfg).simulate()
    assert res.status == "finished" and np.all(np.isfinite(res["energy"]))
    assert "energy_infimum" not in res.attrs
    cfg["diagnostics"] = {"moment_ode": True}
    with pytest.raises(meanfield.ParameterError, match="causal"):
        meanfield.Run(cfg)
