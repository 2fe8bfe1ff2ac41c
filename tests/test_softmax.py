"""Softmax model (docs/models.md §3, §6): kernels vs the naive N x N references, Hamilton's
equations, dissipation, thread independence, float32, stability and overflow, runs."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from naive_softmax import energy, hamiltonian_field, sa, usa, z

import meanfield
from meanfield._kernels import pairwise as PK
from meanfield._kernels.fastexp import fast_exp
from meanfield.errors import ParameterError, SimulationError
from meanfield.models import make_model
from meanfield.models.softmax import Softmax

RTOL = 1e-12  # float64 kernels vs the references
F32_RTOL = 2e-5  # float32 state vs float64, max abs error relative to max |field| (asserted below)


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(b).max(), 1e-300))


def problem(N, d, seed=0, scale=0.6):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d)) * scale
    Y = rng.standard_normal((N, d)) * 0.4
    A = rng.standard_normal((d, d)) * 0.4 / np.sqrt(d)
    As = 0.5 * (A + A.T) + 0.3 * np.eye(d)
    G = rng.standard_normal((d, d)) / np.sqrt(d)
    B = np.eye(d) + 0.2 * G @ G.T
    V = rng.standard_normal((d, d))
    Q = np.diag(np.linspace(0.5, 1.5, d))
    m = rng.standard_normal(d) * 0.3
    return X, Y, A, As, B, V, Q, m


def first_model(d, A, V=None, normalized=True, causal=False, dtype=np.float64, B=None, Q=None, m=None):
    p = {"name": "softmax", "dynamics": "first_order", "d": d, "A": A.tolist(),
         "normalized": normalized, "causal": causal}
    if V is not None:
        p["V"] = V.tolist()
    if B is not None:
        p["B"] = B.tolist()
    if Q is not None:
        p["Q"] = Q.tolist()
        p["m"] = m.tolist()
    return make_model(p, dtype=dtype)


def acc_model(d, As, B, Q=None, m=None, causal=False, dtype=np.float64):
    p = {"name": "softmax", "dynamics": "accelerated", "d": d, "A": As.tolist(), "B": B.tolist(),
         "causal": causal}
    if Q is not None:
        p["Q"] = Q.tolist()
        p["m"] = m.tolist()
    return make_model(p, dtype=dtype)


# ------------------------------------------------------------------ fast exp


def test_fast_exp_float64_within_2ulp():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-708.39, 709.78, 400_000), rng.uniform(-3, 3, 200_000),
                        [0.0, -708.39, 709.78, 1e-300, -1e-300]])
    y, ref = fast_exp(x), np.exp(x)
    assert np.all(np.abs(y - ref) <= 2 * np.spacing(ref))
    special = fast_exp(np.array([-np.inf, -800.0, 800.0, np.inf, np.nan]))
    assert special[0] == 0 and special[1] == 0 and np.isinf(special[2]) and np.isinf(special[3])
    assert np.isnan(special[4])


def test_fast_exp_float32_within_2ulp():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-87.33, 88.72, 400_000), rng.uniform(-3, 3, 200_000)]).astype(np.float32)
    y = fast_exp(x).astype(np.float64)
    ref = np.exp(x.astype(np.float64)).astype(np.float32)  # correctly rounded exp in float32
    assert np.all(np.abs(y - ref) <= 2 * np.spacing(ref))
    assert fast_exp(np.array([-np.inf, 100.0], np.float32)).tolist() == [0.0, np.inf]


@pytest.mark.parametrize("dtype,lo", [(np.float64, -708.39), (np.float32, -87.33)])
def test_fast_exp_bounded_variant_equals_the_tile_variant_on_its_range(dtype, lo):
    """fexp_bounded (the symmetric passes' exp, no clamps) is fexp_tile bit for bit on [lo, 0]."""
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(lo, 0.0, 400_000), rng.uniform(-1e-3, 0.0, 1000), [lo, -1e-300, 0.0]])
    x = x.astype(dtype)
    y = fast_exp(x, bounded=True)
    assert np.array_equal(y, fast_exp(x, tile=True))
    ref = np.exp(x.astype(np.float64)).astype(dtype).astype(np.float64)
    assert np.all(np.abs(y.astype(np.float64) - ref) <= np.spacing(ref.astype(dtype)).astype(np.float64))


def test_symmetric_pass_exponents_stay_in_the_bounded_range():
    """4 mu_max, the most negative exponent a symmetric pass forms, is inside fexp_bounded's range."""
    from meanfield._kernels import pairwise as PK
    assert 4 * PK.MU_MAX < 708.39 and 4 * PK.MU_MAX_F32 < 87.33


@pytest.mark.parametrize("dtype,lo,top,hi", [(np.float64, -708.39, 709.43, 709.78),
                                             (np.float32, -87.33, 88.37, 88.72)])
def test_fast_exp_tile_variant(dtype, lo, top, hi):
    """The kernels' exp: within 2 ulp on [lo, top] (top = (emax + 1/2) ln 2), inf above, tiny below."""
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(lo, top, 400_000), rng.uniform(-3, 3, 200_000), [lo, 0.0, top]])
    x = x.astype(dtype)
    y = fast_exp(x, tile=True).astype(np.float64)
    ref = np.exp(x.astype(np.float64)).astype(dtype)
    assert np.all(np.abs(y - ref) <= 2 * np.spacing(ref))
    assert np.array_equal(y, fast_exp(x).astype(np.float64))  # same polynomial as fexp in range
    above = fast_exp(np.array([hi + 1, 1e4, np.inf], dtype), tile=True)
    assert np.all(np.isinf(above)) and np.all(above > 0)
    below = fast_exp(np.array([lo - 1, -1e4, -np.inf], dtype), tile=True)
    assert np.all(below == below[0]) and 0 < below[0] <= 1.01 * np.finfo(dtype).tiny
    assert np.isnan(fast_exp(np.array([np.nan], dtype), tile=True)[0])


# ------------------------------------------------------- kernels vs reference

# N not a multiple of the target block (32), of the group of 4 targets nor of the
# source tile; d below (1, 3), at and above (8, 16, 40) the 4-row sweeps and with
# a remainder row (5); N larger than one tile for every d but N = 333
CASES = [(1100, 1), (1100, 3), (600, 5), (600, 16), (333, 8), (600, 40)]


@pytest.mark.parametrize("N,d", CASES)
@pytest.mark.parametrize("causal", [False, True])
def test_first_order_matches_reference(N, d, causal):
    X, _, A, _, B, V, Q, m = problem(N, d, seed=N + d)
    assert N > PK.tile_width(d, 8) or N == 333
    for normalized, ref in ((True, sa), (False, usa)):
        f = first_model(d, A, V, normalized, causal).first_order(X.copy(), 0.0)
        assert rel(f, ref(X, A, V, causal)) < RTOL
        f = first_model(d, A, V, normalized, causal, B=B, Q=Q, m=m).first_order(X.copy(), 0.0)
        assert rel(f, ref(X, A, V, causal, B, Q, m)) < RTOL
    # V defaults to B A
    f = first_model(d, A, None, True, causal).first_order(X.copy(), 0.0)
    assert rel(f, sa(X, A, np.eye(d) @ A, causal)) < RTOL


@pytest.mark.parametrize("N,d", CASES)
@pytest.mark.parametrize("causal", [False, True])
def test_hamiltonian_field_and_energy_match_reference(N, d, causal):
    X, Y, _, As, B, _, Q, m = problem(N, d, seed=2 * N + d)
    model = acc_model(d, As, B, Q, m, causal)
    F, G = model.hamiltonian_field(X.copy(), Y.copy(), 0.0)
    Fr, Gr = hamiltonian_field(X, Y, As, B, Q, m, causal)
    assert rel(F, Fr) < RTOL and rel(G, Gr) < RTOL
    assert rel(model.z(X), z(X, As, causal)) < RTOL
    e = model.energies(X, Y)
    assert e["energy"] == pytest.approx(energy(X, Y, As, B, Q, m, causal), rel=RTOL)
    assert e["first_order_energy"] == pytest.approx(energy(X, None, As, B, Q, m, causal), rel=RTOL)
    # each term against the reference on its own (a sum of the model's own terms proves nothing)
    K_ref = float(np.mean(np.einsum("ik,kl,il->i", Y, B, Y) / (2.0 * z(X, As, causal))))
    assert e["kinetic"] == pytest.approx(K_ref, rel=RTOL)
    assert e["potential"] == pytest.approx(energy(X, None, As, B, Q, m, causal), rel=RTOL)
    assert model.kinetic(X, Y) == pytest.approx(K_ref, rel=RTOL)


def test_combine_aliases_inputs_in_place():
    N, d = 300, 4
    X, Y, A, As, B, V, Q, m = problem(N, d, seed=5)
    model = acc_model(d, As, B, Q, m)
    F, G = model.hamiltonian_field(X.copy(), Y.copy(), 0.0)
    x, y = X.copy(), Y.copy()
    model.combine_hamiltonian(x, y, 0.0, 1.0, 0.1, 0.9, 0.2, out_x=x, out_y=y)
    assert rel(x, X + 0.1 * F) < 1e-15 and rel(y, 0.9 * Y + 0.2 * G) < 1e-15
    fm = first_model(d, A, V)
    f = fm.first_order(X.copy(), 0.0)
    x = X.copy()
    fm.combine_first_order(x, 0.0, 1.0, 0.05, out=x)
    assert rel(x, X + 0.05 * f) < 1e-15
    assert model.oracle_calls == 2 and fm.oracle_calls == 2


# ---------------------------------------------------- Hamiltonian structure


def test_hamilton_equations_vs_finite_differences():
    N, d = 7, 3
    X, Y, _, As, B, _, Q, m = problem(N, d, seed=11)
    F, G = acc_model(d, As, B, Q, m).hamiltonian_field(X.copy(), Y.copy(), 0.0)
    eps = 1e-6
    dHdx = np.zeros_like(X)
    dHdy = np.zeros_like(Y)
    for i in range(N):
        for k in range(d):
            for arr, out in ((X, dHdx), (Y, dHdy)):
                p, q = arr.copy(), arr.copy()
                p[i, k] += eps
                q[i, k] -= eps
                if arr is X:
                    Hp, Hm = energy(p, Y, As, B, Q, m), energy(q, Y, As, B, Q, m)
                else:
                    Hp, Hm = energy(X, p, As, B, Q, m), energy(X, q, As, B, Q, m)
                out[i, k] = (Hp - Hm) / (2 * eps)
    assert rel(F, N * dHdy) < 1e-7
    assert rel(G, -N * dHdx) < 1e-7


def test_dH_dt_equals_minus_alpha_mobility_kinetic_along_rk4():
    """Along a damped run, dH/dt = -alpha (1/N) sum_i y_i^T B y_i / z_i (docs/models.md §3)."""
    N, d, alpha, h = 60, 3, 0.7, 0.01
    X, Y, _, As, B, _, Q, m = problem(N, d, seed=3)
    model = acc_model(d, As, B, Q, m)
    x, y = X.copy(), Y.copy()

    def field(x, y):
        F, G = model.hamiltonian_field(x, y, 0.0)
        return F, G - alpha * y

    def rate(x, y):
        zz = model.z(x)
        return -alpha * np.mean(np.einsum("ik,kl,il->i", y, B, y) / zz)

    H = [model.energies(x, y)["energy"]]
    rates = [rate(x, y)]
    for _ in range(10):
        k1 = field(x, y)
        k2 = field(x + 0.5 * h * k1[0], y + 0.5 * h * k1[1])
        k3 = field(x + 0.5 * h * k2[0], y + 0.5 * h * k2[1])
        k4 = field(x + h * k3[0], y + h * k3[1])
        x = x + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        y = y + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
        H.append(model.energies(x, y)["energy"])
        rates.append(rate(x, y))
    dH = np.diff(H)
    trap = 0.5 * h * (np.array(rates[1:]) + np.array(rates[:-1]))
    assert np.all(dH < 0)
    assert np.abs(dH - trap).max() < 1e-4 * np.abs(trap).max()


def base_config(dynamics, n=200, d=3, steps=20, **model):
    cfg = {
        "model": {"name": "softmax", "dynamics": dynamics, "d": d, "A": 0.5, **model},
        "integrator": {"name": "exp_euler" if dynamics == "accelerated" else "euler", "h": 0.02},
        "initial": {"law": "gaussian", "n": n, "mean": [0.3] + [0.0] * (d - 1),
                    "cov": np.eye(d).tolist(), "seed": 1},
        "run": {"t0": 0.0, "steps": steps, "save_every": 1},
        "output": {"save": []},
    }
    if dynamics == "accelerated":
        cfg["initial"]["momentum"] = "gaussian"
        cfg["damping"] = {"schedule": "constant", "a": 1.0}
    return cfg


def test_energy_non_increasing_under_damping_run():
    cfg = base_config("accelerated", Q=[[1.0, 0, 0], [0, 0.5, 0], [0, 0, 2.0]], m=[0.2, 0.0, -0.1])
    cfg["integrator"]["h"] = 0.002
    res = meanfield.Run(cfg).simulate()
    H = res["energy"]
    assert res.status == "finished" and np.all(np.isfinite(H))
    assert np.all(np.diff(H) <= 1e-12 * np.abs(H).max())
    assert res.oracle_calls == 20
    assert {"kinetic", "potential", "first_order_energy", "mean", "cov"} <= set(res.tasks)


def test_first_order_run_euler_end_to_end():
    res = meanfield.Run(base_config("first_order", normalized=True)).simulate()
    assert res.status == "finished" and res.oracle_calls == 20
    assert np.all(np.isfinite(res.x)) and res["mean"].shape == (21, 3) and res["cov"].shape == (21, 3, 3)
    cfg = base_config("first_order", normalized=False, causal=True)
    cfg["model"]["A"] = 0.1
    res_c = meanfield.Run(cfg).simulate()
    assert np.all(np.isfinite(res_c.x))


@pytest.mark.parametrize("normalized", [True, False])
def test_first_order_energy_decreases_with_V_equal_BA(normalized):
    """V = B A, symmetric A, B positive definite: SA/USA descend Ecal (+ W)."""
    cfg = base_config("first_order", normalized=normalized, B=[[1.0, 0.2, 0], [0.2, 1.0, 0], [0, 0, 0.5]],
                      Q=[[1.0, 0, 0], [0, 0.5, 0], [0, 0, 2.0]], m=[0.2, 0.0, -0.1])
    cfg["integrator"]["h"] = 0.002
    cfg["model"]["A"] = 0.2  # USA with large A blows up in finite time (self-interaction exp(x^T A x))
    res = meanfield.Run(cfg).simulate()
    E = res["energy"]
    assert np.all(np.isfinite(E)) and np.all(np.diff(E) < 0)


def test_template_parses_and_runs(tmp_path):
    from meanfield_cli.templates import TEMPLATES

    path = tmp_path / "softmax.toml"
    path.write_text(TEMPLATES["softmax"])
    run = meanfield.Run(str(path), overrides=["initial.n=64", "run.t1=0.03", "run.save_every=1"])
    res = run.simulate()
    assert res.status == "finished" and np.all(np.isfinite(res["energy"]))


# --------------------------------------------------- threads and precision


def _indefinite(As):
    """``As`` shifted to be indefinite for d > 1 (so |A| differs from A)."""
    d = As.shape[0]
    lam = np.linalg.eigvalsh(As)
    As = As - 0.5 * (lam.min() + lam.max()) * np.eye(d)
    assert d == 1 or np.linalg.eigvalsh(As).min() < 0 < np.linalg.eigvalsh(As).max()
    return As


def _fields(X, Y, As, B, V, Q, m, dtype, symmetric):
    """SA, USA (both with a confining term), accelerated F, G and z of one state; asserts which pass ran."""
    d = X.shape[1]
    out = []
    for normalized in (True, False):
        fm = first_model(d, As, V, normalized, dtype=dtype, B=B, Q=Q, m=m)
        fm.symmetric_pairs = symmetric
        out.append(fm.first_order(X.astype(dtype), 0.0))
        assert fm._sym == symmetric
    am = acc_model(d, As, B, Q, m, dtype=dtype)
    am.symmetric_pairs = symmetric
    out.extend(am.hamiltonian_field(X.astype(dtype), Y.astype(dtype), 0.0))
    assert am._sym == symmetric
    out.append(am.z(X.astype(dtype)))
    return out


def _references(X, Y, As, B, V, Q, m):
    F, G = hamiltonian_field(X, Y, As, B, Q, m)
    return [sa(X, As, V, False, B, Q, m), usa(X, As, V, False, B, Q, m), F, G, z(X, As)]


def _tiles_problem(ntiles, d, dtype, seed):
    """A problem whose sources fill ``ntiles`` tiles (the last one partly; N not a multiple of 4)."""
    tj = PK.tile_width(d, np.dtype(dtype).itemsize)
    N = (ntiles - 1) * tj + 4 * (tj // 12) + 3
    assert PK.n_tiles(N, tj) == ntiles and N % 4 != 0
    X, Y, _, As, B, V, Q, m = problem(N, d, seed=seed)
    # inputs exactly representable in the state dtype, so the references see the same state
    return X.astype(dtype).astype(np.float64), Y.astype(dtype).astype(np.float64), _indefinite(As), B, V, Q, m


# tiles of sources: 1, 2 (even: the last round pairs each tile once), 3, 5 (odd), 6 (even);
# d below, at and above the 4-row sweeps of the tile kernels
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ntiles,d", [(1, 8), (2, 5), (3, 3), (5, 4), (6, 16), (3, 1)])
def test_symmetric_passes_match_reference_and_row_passes(ntiles, d, dtype):
    """Each unordered pair once (SA, USA, z, accelerated force) vs the N x N formulas and the row passes."""
    X, Y, As, B, V, Q, m = _tiles_problem(ntiles, d, dtype, seed=10 * ntiles + d)
    sym = _fields(X, Y, As, B, V, Q, m, dtype, True)
    row = _fields(X, Y, As, B, V, Q, m, dtype, False)
    tol = RTOL if dtype == np.float64 else F32_RTOL
    for a, b, ref in zip(sym, row, _references(X, Y, As, B, V, Q, m)):
        assert rel(a, ref) < tol and rel(b, ref) < tol
        assert rel(a, b) < (1e-13 if dtype == np.float64 else F32_RTOL)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_symmetric_passes_at_the_edge_of_their_range(dtype):
    """max mu_i just below the dtype's limit: the symmetric passes run, nothing underflows, stated accuracy holds.

    With mu_i = x_i^T |A| x_i / 2 every exponent lies in [-4 max mu, 0]: down to
    -680 in float64 and -80 in float32, inside both exps' ranges.
    """
    limit = PK.mu_max_for(dtype)
    X, Y, As, B, V, Q, m = _tiles_problem(3, 4, dtype, seed=7)
    As = 0.5 * np.eye(4)  # mu_i = |x_i|^2 / 4
    X[:, :] /= np.linalg.norm(X, axis=1, keepdims=True)
    X *= np.sqrt(4 * limit * np.linspace(0.2, 0.98, X.shape[0]))[:, None]  # mu_i up to 0.98 limit
    X = X.astype(dtype).astype(np.float64)
    mu = 0.25 * (X**2).sum(1)
    assert 0.97 * limit < mu.max() <= limit
    sym = _fields(X, Y, As, B, V, Q, m, dtype, True)
    # SA only: the unnormalized quantities reach exp(2 * 0.98 * 170) and are compared relatively
    ref = _references(X, Y, As, B, V, Q, m)
    tol = RTOL if dtype == np.float64 else F32_RTOL
    for a, r in zip(sym, ref):
        assert np.all(np.isfinite(a)) and rel(a, r) < tol


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_symmetric_passes_step_aside_beyond_their_range(dtype):
    """One particle with x^T |A| x / 2 above the dtype's limit: the row passes run, results still exact."""
    d = 4
    X, Y, _, _, B, V, Q, m = problem(700, d, seed=5)
    As = 0.5 * np.eye(d)
    X[0] *= np.sqrt(4.4 * PK.mu_max_for(dtype)) / np.linalg.norm(X[0])  # mu_0 = 1.1 limit
    X = X.astype(dtype).astype(np.float64)
    for normalized, ref in ((True, sa), (False, usa)):
        fm = first_model(d, As, V, normalized, dtype=dtype)
        assert fm.symmetric_pairs
        f = fm.first_order(X.astype(dtype), 0.0)
        assert not fm._sym
        assert rel(f, ref(X, As, V)) < (RTOL if dtype == np.float64 else F32_RTOL)
    am = acc_model(d, As, B, Q, m, dtype=dtype)
    F, G = am.hamiltonian_field(X.astype(dtype), Y.astype(dtype), 0.0)
    assert not am._sym
    with np.errstate(over="ignore"):  # float64: z_0^2 overflows, s_0 = 0 in both
        Fr, Gr = hamiltonian_field(X, Y, As, B, Q, m)
    tol = RTOL if dtype == np.float64 else F32_RTOL
    assert rel(F, Fr) < tol and rel(G, Gr) < tol


def test_symmetric_passes_only_for_symmetric_unmasked_A():
    d = 3
    _, _, _, As, B, _, _, _ = problem(10, d)
    assert first_model(d, As).symmetric_pairs and acc_model(d, As, B).symmetric_pairs
    assert acc_model(d, As, B, dtype=np.float32).symmetric_pairs
    assert not acc_model(d, As, B, causal=True).symmetric_pairs
    assert not first_model(d, As + 0.1 * np.triu(np.ones((d, d)), 1)).symmetric_pairs


# N above the models' serial threshold (1024), so the passes really run on two threads
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d,N", [(5, 2100), (16, 1500), (40, 1100)])
def test_parallel_equals_serial(causal, d, N):
    assert numba.config.NUMBA_NUM_THREADS >= 2, "this test needs 2 numba threads (NUMBA_NUM_THREADS)"
    assert N > Softmax.serial_below
    X, Y, A, As, B, V, Q, m = problem(N, d, seed=21)
    As = _indefinite(As)
    models = [first_model(d, A, V, True, causal), first_model(d, As, V, False, causal, B=B, Q=Q, m=m),
              acc_model(d, As, B, Q, m, causal), acc_model(d, As, B, Q, m, causal, np.float32)]
    before = numba.get_num_threads()
    out = {}
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            assert numba.get_num_threads() == threads
            res = []
            for model in models:
                x = X.astype(model.dtype)
                if model.accelerated:
                    res.extend(model.hamiltonian_field(x.copy(), Y.astype(model.dtype), 0.0))
                    res.append(model.energies(x, Y.astype(model.dtype))["energy"])
                else:
                    res.append(model.first_order(x.copy(), 0.0))
            out[threads] = res
    finally:
        numba.set_num_threads(before)
    assert models[1]._sym != causal and models[2]._sym != causal and models[3]._sym != causal
    for a, b in zip(out[1], out[2]):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("d", [16, 40])
def test_float32_within_stated_tolerance_of_float64(d):
    N = 700
    X, Y, A, As, B, V, Q, m = problem(N, d, seed=8)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    Xr, Yr = X32.astype(np.float64), Y32.astype(np.float64)  # same inputs, so only arithmetic differs
    for causal in (False, True):
        f64 = first_model(d, A, V, True, causal).first_order(Xr.copy(), 0.0)
        f32 = first_model(d, A, V, True, causal, np.float32).first_order(X32.copy(), 0.0)
        assert f32.dtype == np.float32 and rel(f32, f64) < F32_RTOL
        F64, G64 = acc_model(d, As, B, Q, m, causal).hamiltonian_field(Xr.copy(), Yr.copy(), 0.0)
        F32, G32 = acc_model(d, As, B, Q, m, causal, np.float32).hamiltonian_field(X32.copy(), Y32.copy(), 0.0)
        assert rel(F32, F64) < F32_RTOL and rel(G32, G64) < F32_RTOL


# ---------------------------------------------------- stability and errors


def _stable_sa(X, A):
    L = X @ A @ X.T
    W = np.exp(L - L.max(1, keepdims=True))
    return (W @ X) / W.sum(1)[:, None]


@pytest.mark.parametrize("case", ["max", "spread", "min"])
@pytest.mark.parametrize("d", [3, 5])
def test_sa_stable_at_logits_700(case, d):
    """SA with logits up to |700|: the online shift must neither overflow nor lose the weights.

    "max": unit vectors, A = 700 I (the self logit is the row maximum);
    "spread": norms in [0.2, 1], so most rows have logits up to ~500 above
    their self logit (where the loop kernels start their shift) and must
    re-shift mid-row; "min": every logit near -750 (plain exp underflows to 0/0).
    """
    rng = np.random.default_rng(4)
    N = 1100  # several source tiles
    U = rng.standard_normal((N, d))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    scale = 700.0
    if case == "spread":
        U *= np.concatenate([[1.0], rng.uniform(0.2, 1.0, N - 1)])[:, None]
    if case == "min":
        U = np.abs(U) * 0.05 + np.eye(d)[0]
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        scale = -750.0
    A = scale * np.eye(d)
    L = U @ A @ U.T
    assert 699.0 <= np.abs(L).max() <= 750.0 + 1e-9
    if case == "spread":
        assert np.median(L.max(1) - np.diag(L)) > 100.0
    for dtype in (np.float64, np.float32):
        f = first_model(d, A, np.eye(d), True, False, dtype).first_order(U.astype(dtype), 0.0)
        assert np.all(np.isfinite(f))
        ref = _stable_sa(U.astype(dtype).astype(np.float64), A)
        assert rel(f, ref) < (1e-10 if dtype == np.float64 else 1e-3)


def test_usa_overflow_raises_simulation_error():
    d = 2
    U = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    model = first_model(d, 800.0 * np.eye(d), normalized=False)
    with pytest.raises(SimulationError, match="overflow"):
        model.first_order(U.copy(), 1.5)
    sa_model = first_model(d, 800.0 * np.eye(d), normalized=True)
    assert np.all(np.isfinite(sa_model.first_order(U.copy(), 0.0)))  # SA is normalized: fine
    # the interaction energy -e^800 / 6 is beyond float64: reported as -inf, never raised
    assert sa_model.energies(U, None)["energy"] == -np.inf


def test_accelerated_overflow_raises_and_keeps_state():
    d = 2
    U = np.array([[30.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    model = acc_model(d, np.eye(d), np.eye(d))
    x, y = U.copy(), np.ones_like(U)
    with pytest.raises(SimulationError, match="overflow"):
        model.combine_hamiltonian(x, y, 0.0, 1.0, 0.1, 1.0, 0.1, out_x=x, out_y=y)
    assert np.array_equal(x, U) and np.all(y == 1.0)


def test_run_with_overflow_fails_with_simulation_error():
    cfg = base_config("first_order", normalized=False)
    cfg["model"]["A"] = 400.0
    cfg["initial"]["cov"] = (4.0 * np.eye(3)).tolist()
    with pytest.raises(SimulationError, match="overflow"):
        meanfield.Run(cfg).simulate()


def test_parameter_errors():
    d = 2
    nonsym = [[1.0, 0.5], [0.0, 1.0]]
    with pytest.raises(ParameterError, match="symmetric"):
        make_model({"name": "softmax", "dynamics": "accelerated", "d": d, "A": nonsym})
    with pytest.raises(ParameterError, match="model.B"):
        make_model({"name": "softmax", "dynamics": "accelerated", "d": d, "B": nonsym})
    with pytest.raises(ParameterError, match="model.V"):
        make_model({"name": "softmax", "dynamics": "accelerated", "d": d, "V": "identity"})
    with pytest.raises(ParameterError, match="model.causal"):
        make_model({"name": "softmax", "dynamics": "first_order", "d": d, "causal": "yes"})
    with pytest.raises(ParameterError, match="model.beta"):
        make_model({"name": "softmax", "dynamics": "first_order", "d": d, "beta": 1.0})
    model = make_model({"name": "softmax", "dynamics": "first_order", "d": d, "A": nonsym, "V": nonsym})
    assert isinstance(model, Softmax) and np.allclose(model.V, nonsym)
    with pytest.raises(ParameterError, match="model.A"):
        meanfield.Run({**base_config("accelerated", d=2), "model": {
            "name": "softmax", "dynamics": "accelerated", "d": 2, "A": nonsym}})


# ------------------------------------------- a save's pass reused by the next step


def _count_passes(monkeypatch):
    """Record the mode of every pass over pairs the softmax models make."""
    modes = []
    orig = Softmax._pairs

    def counted(self, mode, n, ST=None, cvec=None):
        modes.append(mode)
        return orig(self, mode, n, ST, cvec)

    monkeypatch.setattr(Softmax, "_pairs", counted)
    return modes


@pytest.mark.parametrize("causal", [False, True])
def test_first_order_step_reuses_the_saves_softmax_pass(monkeypatch, causal):
    X, Y, A, As, B, V, Q, m = problem(300, 3)
    fresh = first_model(3, As, V=V, causal=causal, Q=Q, m=m)
    want_E = fresh.energies(X, None)
    want = fresh.combine_first_order(X, 0.0, 1.0, 0.1)
    modes = _count_passes(monkeypatch)
    model = first_model(3, As, V=V, causal=causal, Q=Q, m=m)
    E = model.energies(X, None)
    got = model.combine_first_order(X.copy(), 0.0, 1.0, 0.1)  # equal content, another array
    assert modes == [PK.MODE_SOFTMAX]  # the save's pass, nothing in the step
    assert np.array_equal(got, want)
    assert E["energy"] == pytest.approx(want_E["energy"], rel=1e-14, abs=0)
    # a changed state is never served from the kept pass
    model.energies(X, None)
    X2 = X.copy()
    X2[7, 1] = np.nextafter(X2[7, 1], 1.0)
    assert np.array_equal(model.combine_first_order(X2, 0.0, 1.0, 0.1), fresh.combine_first_order(X2, 0.0, 1.0, 0.1))
    assert modes[-2:] == [PK.MODE_SOFTMAX, PK.MODE_SOFTMAX]
    # ... and the model stops running the softmax pass at saves once one went unused
    model.energies(X, None)
    assert modes[-1] == PK.MODE_Z


def test_accelerated_step_reuses_the_saves_z_pass(monkeypatch):
    X, Y, A, As, B, V, Q, m = problem(300, 3)
    fresh = acc_model(3, As, B, Q=Q, m=m)
    want = fresh.combine_hamiltonian(X, Y, 0.0, 1.0, 0.1, 0.9, 0.1)
    modes = _count_passes(monkeypatch)
    model = acc_model(3, As, B, Q=Q, m=m)
    model.energies(X, Y)
    got = model.combine_hamiltonian(X.copy(), Y, 0.0, 1.0, 0.1, 0.9, 0.1)
    assert modes == [PK.MODE_Z, PK.MODE_FORCE]
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    got2 = model.combine_hamiltonian(X, Y, 0.0, 1.0, 0.1, 0.9, 0.1)  # nothing kept any more: z pass again
    assert modes[2:] == [PK.MODE_Z, PK.MODE_FORCE]
    assert all(np.array_equal(g, w) for g, w in zip(got2, want))


@pytest.mark.parametrize("dynamics", ["first_order", "accelerated"])
def test_runs_make_one_fewer_pass_per_save(monkeypatch, dynamics):
    """Saves every 2 steps: a save's pass serves the next step (all but the last save)."""
    cfg = base_config(dynamics, steps=6)
    cfg["run"]["save_every"] = 2
    ref = meanfield.Run(cfg).simulate()
    modes = _count_passes(monkeypatch)
    res = meanfield.Run(cfg).simulate()
    assert np.array_equal(res.x, ref.x) and res.oracle_calls == 6
    per_step = 1 if dynamics == "first_order" else 2  # accelerated: z pass + force pass
    # 4 saves (t = 0, 2, 4, 6): each makes one pass; the first three spare one pass of the next step
    assert len(modes) == 6 * per_step + 4 - 3
