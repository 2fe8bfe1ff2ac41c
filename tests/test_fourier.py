"""Fourier summation (summation = "fourier"): fields against the exact kernels, error control,
validation, reproducibility, diagnostics and whole runs."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

import meanfield
from meanfield.diagnostics.clustering import pair_statistics, pair_statistics_fast
from meanfield.errors import ParameterError, SimulationError
from meanfield.models import make_model
from meanfield.models._fourier import (FourierSums, circle_coefficients, kernel_grid,
                                       sphere_coefficients)
from scipy.special import eval_legendre
from conftest import interrupt_and_resume


def unit(x):
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1)[:, None])


def configurations(d, n, rng, sphere):
    """Uniform, clustered (five near-delta clusters) and mixed token sets."""
    uni = rng.standard_normal((n, d))
    centers = rng.standard_normal((5, d)) * (1.0 if sphere else 1.5)
    clu = centers[rng.integers(0, 5, n)] + 1e-8 * rng.standard_normal((n, d))
    mix = np.vstack([uni[: n // 2], clu[: n - n // 2]])
    out = {"uniform": uni, "clustered": clu, "mixed": mix}
    return {k: unit(v) if sphere else np.ascontiguousarray(v) for k, v in out.items()}


def pair(p, dtype=np.float64):
    return make_model(p, dtype), make_model(dict(p, summation="fourier"), dtype)


def tangent(rng, x, sphere):
    y = rng.standard_normal(x.shape)
    if sphere:
        y -= np.einsum("ij,ij->i", x, y)[:, None] * x
    return np.ascontiguousarray(y)


def check_close(exact, fourier, scale, tol, what):
    err = float(np.max(np.abs(np.asarray(exact, float) - np.asarray(fourier, float))))
    assert err <= tol * scale, f"{what}: error {err:.3g} > {tol:g} x {scale:.3g}"


CASES = [
    # (label, [model] section, sphere geometry)
    ("S1", {"name": "sphere", "d": 2, "beta": 6.0}, True),
    ("S2", {"name": "sphere", "d": 3, "beta": 9.0}, True),
    ("R1", {"name": "softmax", "d": 1, "A": 0.7, "Q": 0.3}, False),
    ("R2", {"name": "softmax", "d": 2, "A": [[0.8, 0.3], [0.3, 0.5]], "Q": 0.2}, False),
    ("R3", {"name": "softmax", "d": 3, "A": [[0.5, 0.1, 0.0], [0.1, 0.4, 0.1], [0.0, 0.1, 0.3]]},
     False),
    ("R3 rank 1", {"name": "softmax", "d": 3, "A": [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0, 0, 0]]},
     False),
]


@pytest.mark.parametrize("tol", [1e-6, 1e-10])
@pytest.mark.parametrize("label,p,sphere", CASES, ids=[c[0] for c in CASES])
def test_fields_and_z_match_exact_to_summation_tol(label, p, sphere, tol):
    rng = np.random.default_rng(3)
    for kind, x in configurations(p["d"], 300, rng, sphere).items():
        xs = np.abs(x).max()
        for normalized in (True, False):
            me, mf = pair(dict(p, dynamics="first_order", normalized=normalized, summation_tol=tol))
            fe, ff = me.first_order(x, 0.0), mf.first_order(x, 0.0)
            soft = me.attention if sphere else me
            z = soft.z(x)
            # SA: the attention vector to tol in units of |V| max|x|; USA: relative to z_i |V| max|x|
            scale = 4 * xs * (1.0 if normalized else z.max()) * max(1.0, np.abs(soft.V).max())
            check_close(fe, ff, scale, tol, f"{label} {kind} first_order normalized={normalized}")
        zf = (mf.attention if sphere else mf).z(x)
        assert np.all(np.abs(zf - z) <= tol * z), f"{label} {kind} z_i"
        assert (mf.attention if sphere else mf)._fourier.last["path"] == PATHS.get(label, "nufft")
        # accelerated: z_i pass + force pass
        me, mf = pair(dict(p, dynamics="accelerated", summation_tol=tol))
        y = tangent(rng, x, sphere)
        (Fe, Ge), (Ff, Gf) = me.hamiltonian_field(x, y, 0.0), mf.hamiltonian_field(x, y, 0.0)
        s = np.einsum("ij,ij->i", y, y) / z**2
        gscale = 4 * xs * z.max() * (s.max() + 2) * max(1.0, np.abs(soft.A).max()) + 1.0
        check_close(Fe, Ff, 4 * np.abs(Fe).max(), tol, f"{label} {kind} accelerated F")
        check_close(Ge, Gf, gscale, tol, f"{label} {kind} accelerated G")
        ee, ef = me.energies(x, y), mf.energies(x, y)
        for key in ee:
            assert abs(ee[key] - ef[key]) <= 2 * tol * (abs(ee[key]) + z.max()), (label, kind, key)


PATHS = {"S1": "circle", "S2": "harmonics"}


@pytest.mark.parametrize("tol", [1e-6, 1e-10])
@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("normalization", ["post_ln", "pre_ln", "peri_ln"])
def test_residual_stream_normalizations(normalization, d, tol):
    rng = np.random.default_rng(5)
    x = unit(rng.standard_normal((200, d))) * rng.uniform(0.5, 2.0, (200, 1))
    V = np.array([[1.0, 0.2, 0.0], [0.0, 0.8, 0.1], [0.3, 0.0, 1.1]])[:d, :d]
    for normalized in (True, False):
        me, mf = pair({"name": "sphere", "d": d, "beta": 4.0, "dynamics": "first_order",
                       "normalization": normalization, "V": V.tolist(), "normalized": normalized,
                       "summation_tol": tol})
        z = me.attention.z(unit(x)).max()
        check_close(me.first_order(x, 0.0), mf.first_order(x, 0.0),
                    10.0 * (1.0 if normalized else z), tol, f"{normalization} d={d}")
        assert mf.attention._fourier.last["path"] == PATHS[f"S{d - 1}"]


@pytest.mark.parametrize("beta", [0.5, 4.0, 30.0, 200.0])
def test_circle_truncation_bound(beta):
    """sum_{|k|<=n} I_k(beta) e^{-beta} e^{ikt} against exp(beta (cos t - 1)): error within the bound."""
    for e in (1e-6, 1e-12):
        g, bound = circle_coefficients(beta, e)
        n = (len(g) - 1) // 2
        t = np.linspace(-np.pi, np.pi, 2001)
        series = (g[None, :] * np.cos(np.outer(t, np.arange(-n, n + 1)))).sum(axis=1)
        err = np.abs(series - np.exp(beta * (np.cos(t) - 1.0))).max()
        assert bound <= e and err <= bound + 1e-15
        # one mode fewer breaks the budget: the bound is not wildly loose
        g2 = g[1:-1]
        series2 = (g2[None, :] * np.cos(np.outer(t, np.arange(-n + 1, n)))).sum(axis=1)
        assert np.abs(series2 - np.exp(beta * (np.cos(t) - 1.0))).max() > e / 50


@pytest.mark.parametrize("beta", [0.5, 4.0, 30.0])
def test_sphere_legendre_truncation_bound(beta):
    for e in (1e-6, 1e-12):
        ihat, L, bound = sphere_coefficients(beta, e)
        t = np.linspace(-1.0, 1.0, 2001)
        series = sum((2 * l + 1) * ihat[l] * eval_legendre(l, t) for l in range(L + 1))
        err = np.abs(series - np.exp(beta * (t - 1.0))).max()
        assert bound <= e and err <= bound + 1e-15
        short = series - (2 * L + 1) * ihat[L] * eval_legendre(L, t)
        assert np.abs(short - np.exp(beta * (t - 1.0))).max() > e / 50


def test_kappa_bound_is_an_upper_bound():
    """The a-priori kappa (from cell totals) is at least the true W / min_i l_i, on every path."""
    rng = np.random.default_rng(9)
    for label, p, sphere in CASES:
        for kind, x in configurations(p["d"], 400, rng, sphere).items():
            m = make_model(dict(p, dynamics="first_order", summation="fourier"))
            m.first_order(x, 0.0)
            fs = (m.attention if sphere else m)._fourier
            soft = make_model(dict(p, dynamics="first_order"))
            soft = soft.attention if sphere else soft
            z = soft.z(x)
            # true kappa from the exact z_i = (1/N) sum_j E_ij: W / min_i l_i, l_i = N z_i exp(-m_i)
            true = fs.W / float(np.min(len(x) * z * np.exp(-(fs.mu + fs.M))))
            assert fs._kappa_bound() >= true * (1 - 1e-9), (label, kind)
            assert fs.last["kappa"] == pytest.approx(true, rel=1e-6), (label, kind)


def test_large_beta_on_s2_falls_back_to_the_nufft():
    rng = np.random.default_rng(10)
    x = configurations(3, 300, rng, True)["mixed"]
    me, mf = pair({"name": "sphere", "d": 3, "beta": 60.0, "dynamics": "first_order",
                   "summation_tol": 1e-8})
    check_close(me.first_order(x, 0.0), mf.first_order(x, 0.0), 4.0, 1e-8, "beta 60")
    assert mf.attention._fourier.last["path"] == "nufft"


def test_the_error_tracks_summation_tol():
    """A loose tolerance is used, not silently replaced by a tight one (the test can fail both ways)."""
    rng = np.random.default_rng(0)
    x = unit(rng.standard_normal((400, 3)))
    p = {"name": "sphere", "d": 3, "beta": 4.0, "dynamics": "first_order"}
    fe = make_model(p).first_order(x, 0.0)
    errs = {}
    for tol in (1e-4, 1e-10):
        mf = make_model(dict(p, summation="fourier", summation_tol=tol))
        errs[tol] = np.abs(mf.first_order(x, 0.0) - fe).max()
        facts = mf.attention._fourier.last
        assert facts["bound"] <= tol
    assert errs[1e-10] < 1e-10 < errs[1e-4] < 1e-4


def test_kernel_grid_meets_its_budget():
    span = np.array([3.0, 0.5])
    P, K, e = kernel_grid(span, 1e-12)
    assert np.all(K % 2 == 1) and e <= 1e-12
    # the truncated periodic series against the Gaussian on the span
    for Pk, Kk, Dk in zip(P, K, span):
        v = np.linspace(-Dk, Dk, 101)
        n = np.arange(Kk) - (Kk - 1) // 2
        gh = math.sqrt(2 * math.pi) / Pk * np.exp(-0.5 * (2 * math.pi * n / Pk) ** 2)
        series = (gh[None, :] * np.cos(2 * math.pi * np.outer(v, n) / Pk)).sum(axis=1)
        assert np.abs(series - np.exp(-0.5 * v**2)).max() <= e


def test_isolated_token_unresolvable_bound_is_an_error_not_a_wrong_field():
    """A token far from all others: its sum is ~N times below the total (kappa ~ N)."""
    rng = np.random.default_rng(1)
    n = 6000
    north = unit(np.array([0, 0, 1.0]) + 1e-3 * rng.standard_normal((n, 3)))
    x = np.ascontiguousarray(np.vstack([north, [[0.0, 0.0, -1.0]]]))
    p = {"name": "sphere", "d": 3, "beta": 30.0, "dynamics": "first_order", "summation": "fourier"}
    with pytest.raises(SimulationError, match="summation_tol") as err:
        make_model(p).first_order(x, 1.5)
    assert err.value.t == 1.5 and "kappa" in str(err.value)
    # a tolerance the bound can meet: accepted, and the isolated token's field is right to it
    mf = make_model(dict(p, summation_tol=1e-6))
    ff = mf.first_order(x, 0.0)
    assert mf.attention._fourier.last["kappa"] > 1000
    fe = make_model(dict(p, summation="exact")).first_order(x, 0.0)
    check_close(fe, ff, 4.0, 1e-6, "isolated token")


def test_points_far_beyond_the_kernel_width_are_an_error():
    x = np.ascontiguousarray(np.random.default_rng(0).uniform(-1, 1, (100, 3)))
    m = make_model({"name": "softmax", "d": 3, "A": 400.0, "dynamics": "first_order",
                    "summation": "fourier"})
    with pytest.raises(SimulationError, match="modes|tolerance"):
        m.first_order(x, 0.0)


@pytest.mark.parametrize("p,key", [
    ({"name": "softmax", "d": 2, "causal": True}, "model.summation"),
    ({"name": "sphere", "d": 3, "causal": True}, "model.summation"),
    ({"name": "softmax", "d": 4}, "model.d"),
    ({"name": "sphere", "d": 4}, "model.d"),
    ({"name": "softmax", "d": 2, "A": [[1.0, 0.0], [0.0, -0.5]]}, "model.A"),
    ({"name": "softmax", "d": 2, "A": [[1.0, 0.5], [0.0, 1.0]], "dynamics": "first_order"}, "model.A"),
    ({"name": "sphere", "d": 3, "Q": 2.0}, "model.Q"),
    ({"name": "bilinear", "d": 2}, "model.summation"),
    ({"name": "softmax", "d": 2, "summation": "fast"}, "model.summation"),
    ({"name": "softmax", "d": 2, "summation_tol": 0.0}, "model.summation_tol"),
    ({"name": "softmax", "d": 2, "summation_tol": True}, "model.summation_tol"),
])
def test_unsupported_cases_are_input_errors_naming_the_key(p, key):
    p = {"summation": "fourier", **p}
    with pytest.raises(ParameterError) as err:
        make_model(p)
    assert err.value.key == key


@pytest.mark.parametrize("p,path", [
    ({"name": "sphere", "d": 3, "beta": 4.0}, "harmonics"),
    ({"name": "sphere", "d": 2, "beta": 4.0}, "circle"),
    ({"name": "softmax", "d": 3, "A": 0.5}, "nufft"),
])
def test_float32_states(p, path):
    rng = np.random.default_rng(2)
    sphere = p["name"] == "sphere"
    x64 = configurations(p["d"], 500, rng, sphere)["mixed"]
    x32 = x64.astype(np.float32)
    p = dict(p, dynamics="first_order")
    fe = make_model(p).first_order(x32.astype(np.float64), 0.0)
    # the NUFFTs run in single precision when the tolerance allows; the harmonic sums in double
    single = "float64" if path == "harmonics" else "complex64"
    for tol, precision in ((1e-3, single), (1e-10, "float64" if path == "harmonics" else "complex128")):
        mf = make_model(dict(p, summation="fourier", summation_tol=tol), np.float32)
        ff = mf.first_order(x32, 0.0)
        facts = (mf.attention if sphere else mf)._fourier.last
        assert facts["precision"] == precision and facts["path"] == path
        assert ff.dtype == np.float32
        check_close(fe, ff, 4.0 * np.abs(fe).max(), max(tol, 1e-6), f"float32 tol={tol}")


def test_bit_reproducible_at_fixed_threads():
    """Above SERIAL_BELOW tokens FINUFFT uses every thread; repeated calls and fresh models agree bitwise."""
    rng = np.random.default_rng(4)
    x = unit(rng.standard_normal((60000, 3)))
    p = {"name": "sphere", "d": 3, "beta": 4.0, "dynamics": "first_order", "summation": "fourier"}
    m = make_model(p)
    a = m.first_order(x, 0.0).copy()
    b = m.first_order(x, 0.0).copy()
    c = make_model(p).first_order(x, 0.0)
    assert numba.get_num_threads() >= 1
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_fast_diagnostics_are_exact():
    rng = np.random.default_rng(6)
    for d in (2, 3):
        for x in configurations(d, 400, rng, True).values():
            for tol in (1e-3, 5e-2, 0.5):
                ref = pair_statistics(x, 2.0, tol)
                fast = pair_statistics_fast(x, tol)
                assert fast["n_clusters"] == ref["n_clusters"]
                assert abs(fast["min_inner"] - ref["min_inner"]) <= 1e-12
                assert abs(fast["mean_inner"] - ref["mean_inner"]) <= 1e-12
    assert pair_statistics_fast(x[:1])["min_inner"] == 1.0


def sphere_run(summation, dynamics="first_order", integrator="rk4", steps=20, **model):
    cfg = {"model": {"name": "sphere", "dynamics": dynamics, "d": 3, "beta": 5.0,
                     "summation": summation, **model},
           "integrator": {"name": integrator, "h": 0.05},
           "initial": {"law": "sphere_uniform", "n": 150, "seed": 3},
           "run": {"t0": 0.0, "steps": steps, "save_every": 5}, "output": {"save": ["x"]}}
    if dynamics == "accelerated":
        cfg["initial"].update(momentum="gaussian", momentum_scale=0.3)
        cfg["damping"] = {"schedule": "constant", "a": 1.0}
    return cfg


@pytest.mark.parametrize("dynamics,integrator", [("first_order", "rk4"), ("accelerated", "tao2")])
def test_whole_runs_agree_with_exact(dynamics, integrator):
    e = meanfield.Run(sphere_run("exact", dynamics, integrator)).simulate()
    f = meanfield.Run(sphere_run("fourier", dynamics, integrator)).simulate()
    # fields agree to ~1e-11; over 20 steps the dynamics amplify that to ~1e-8 (accelerated),
    # far below the integrators' own error at h = 0.05 (~1e-3 for tao2, ~1e-7 for rk4)
    assert np.abs(e.x - f.x).max() < 1e-7
    for key in ("energy", "E_beta", "min_inner", "mean_inner"):
        assert np.allclose(e[key], f[key], rtol=1e-8, atol=1e-10), key
    assert np.array_equal(e["n_clusters"], f["n_clusters"])
    assert f.config["model"]["summation"] == "fourier"


def test_resume_is_bit_identical(tmp_path):
    cfg = sphere_run("fourier", "accelerated", "exp_euler", steps=30)
    full = meanfield.Run(cfg).simulate(str(tmp_path / "full.h5"))
    res = interrupt_and_resume(cfg, str(tmp_path / "cut.h5"), at=12)
    assert np.array_equal(res.x, full.x) and np.array_equal(res.y, full.y)


def test_backend_reports_its_bound():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((200, 2))
    fs = FourierSums(np.array([[0.5, 0.1], [0.1, 0.3]]), 1e-9)
    fs.set_points(x)
    acc, m, l = np.empty((200, 2)), np.empty(200), np.empty(200)
    fs.softmax_pass(acc, m, l)
    last = fs.last
    assert last["bound"] <= 1e-9 and last["kappa"] >= 1.0 and all(k % 2 == 1 for k in last["modes"])


def test_one_save_computes_z_once_and_a_changed_state_recomputes(monkeypatch):
    rng = np.random.default_rng(8)
    x = unit(rng.standard_normal((300, 3)))
    m = make_model({"name": "sphere", "d": 3, "beta": 3.0, "dynamics": "first_order",
                    "summation": "fourier"})
    fs = m.attention._fourier
    calls = []
    run = fs._run
    monkeypatch.setattr(fs, "_run", lambda *a, **k: (calls.append(1), run(*a, **k)))
    e = m.energies(x, None)
    diag = m.diagnostics(x, None)
    assert len(calls) == 1
    assert abs(diag["E_beta"] + e["potential"] / 3.0) <= 1e-14 * abs(e["potential"])
    x2 = x.copy()
    x2[0, 0] = np.nextafter(x2[0, 0], 2.0)
    m.energies(x2, None)
    assert len(calls) == 2
