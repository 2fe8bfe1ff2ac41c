"""The pure attention layer (integrator ``mean_shift``): exact checks, bookkeeping, bad input.

Exact checks: equiangular tokens follow the closed-form one-layer map
``one_layer_inner`` (and its iterates) to round-off; beta -> 0 sends every
token to the normalized mean at rate O(beta); symmetric and clustered
configurations are fixed points (or move by the predicted amount); an
independent NumPy transcription of one layer (random Q, K, V, causal mask)
agrees to round-off.
"""

import math
import os

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from meanfield_cli.main import cli

import meanfield
from meanfield.diagnostics.clustering import time_to_clustering
from meanfield.errors import ParameterError
from meanfield.reductions.equiangular import one_layer_inner
from meanfield.resume import resume_run

pytestmark = pytest.mark.usefixtures("one_thread")


def sphere_cfg(d=3, n=40, beta=2.0, layers=5, law="sphere_uniform", h=1.0, **model):
    return {
        "model": {"name": "sphere", "dynamics": "first_order", "d": d, "beta": beta, **model},
        "integrator": {"name": "mean_shift", "h": h},
        "initial": {"law": law, "n": n, "seed": 3},
        "run": {"t0": 0.0, "steps": layers, "save_every": 1},
        "output": {"save": ["x"]},
    }


def layers_of(cfg, x0=None):
    """Run ``cfg`` (optionally from the state ``x0``); returns the RunResult."""
    run = meanfield.Run(cfg)
    if x0 is not None:
        run.x0 = np.ascontiguousarray(x0, dtype=np.float64)
    return run.simulate()


def offdiag(G):
    return G[~np.eye(G.shape[0], dtype=bool)]


# --------------------------------------------------------------- exact checks
@pytest.mark.parametrize("n", [3, 8, 17, 64])
@pytest.mark.parametrize("rho,beta", [(0.3, 1.0), (-0.02, 4.0), (0.7, 9.0), (0.5, 0.05)])
def test_equiangular_one_layer_is_the_closed_form_map(n, rho, beta):
    lo = -1.0 / (n - 1)
    rho = max(rho, 0.5 * lo)  # rho >= -1/(n-1)
    cfg = sphere_cfg(d=64, n=n, beta=beta, layers=4, law="equiangular")
    cfg["initial"]["rho"] = rho
    res = layers_of(cfg)
    expect = rho
    for k in range(1, 5):
        expect = one_layer_inner(expect, beta, n)  # k-fold iterate
        X = res["x"][k]
        g = offdiag(X @ X.T)
        assert np.abs(g - expect).max() < 1e-14, (k, np.abs(g - expect).max())
        assert np.abs(np.linalg.norm(X, axis=1) - 1).max() < 1e-15 * 4
    # the layer moved the tokens (not a trivially fixed configuration)
    assert abs(one_layer_inner(rho, beta, n) - rho) > 1e-4


@pytest.mark.parametrize("beta", [1e-4, 1e-6])
def test_small_beta_sends_every_token_to_the_normalized_mean(beta):
    cfg = sphere_cfg(d=4, n=30, beta=beta, layers=1)
    res = layers_of(cfg)
    x0 = res["x"][0]
    m = x0.mean(axis=0)
    m /= np.linalg.norm(m)
    err = np.abs(res.x - m).max()
    # a_i = mean + O(beta): the error scales with beta (and is not round-off)
    assert 0.01 * beta < err < 10 * beta, err


def test_cross_polytope_is_a_fixed_point_for_every_beta():
    d = 5
    X = np.vstack([np.eye(d), -np.eye(d)])
    for beta in (0.1, 3.0, 40.0):
        res = layers_of(sphere_cfg(d=d, n=2 * d, beta=beta, layers=3), X)
        # a_i = 2 sinh(beta) e_k / Z is short at small beta (|a_i| ~ 0.02 at beta = 0.1), so the
        # normalization a_i / |a_i| magnifies the round-off of the sums: measured 3e-14 after 3 layers
        assert np.abs(res.x - X).max() < 1e-13
        assert list(res["n_clusters"]) == [2 * d] * 4


@pytest.mark.parametrize("beta", [2.0, 8.0, 30.0])
def test_point_clusters_move_by_the_predicted_amount(beta):
    """m tokens on each of e_1, e_2, e_3 (d = 4): one layer tilts cluster k to
    (e^beta e_k + sum_{l != k} e_l) / |.|, so <x_i', e_k> = 1 / sqrt(1 + 2 e^{-2 beta})."""
    d, m = 4, 5
    X = np.repeat(np.eye(d)[:3], m, axis=0)
    res = layers_of(sphere_cfg(d=d, n=3 * m, beta=beta, layers=1), X)
    expect = 1.0 / math.sqrt(1.0 + 2.0 * math.exp(-2.0 * beta))
    got = np.sum(res.x * X, axis=1)
    assert np.abs(got - expect).max() < 4e-16
    # clusters stay tight (every token of a cluster moves identically) and distinct
    assert res["n_clusters"][-1] == 3
    assert np.abs(res.x[:m] - res.x[0]).max() == 0.0


def test_tight_separated_clusters_at_large_beta_contract_and_stay_put():
    rng = np.random.default_rng(0)
    d, m, width, beta = 3, 20, 1e-3, 60.0
    centers = np.array([[0, 0, 1.0], [1.0, 0, 0], [0, -1.0, 0], [-0.6, 0.8, 0]])
    X = np.repeat(centers, m, axis=0) + width * rng.standard_normal((4 * m, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    res = layers_of(sphere_cfg(d=d, n=4 * m, beta=beta, layers=1), X)
    for k in range(4):
        blk0, blk1 = res["x"][0][k * m:(k + 1) * m], res.x[k * m:(k + 1) * m]
        c = blk0.mean(axis=0)
        c /= np.linalg.norm(c)
        # each token jumps to (nearly) its cluster's attention-weighted mean: the width collapses
        spread0 = np.abs(blk0 - c).max()
        spread1 = np.abs(blk1 - blk1.mean(axis=0)).max()
        assert spread1 < 0.2 * spread0, (spread0, spread1)
        # and the cluster does not move: other clusters weigh e^{-beta (1 - <c_k, c_l>)} <= e^{-beta/5}
        assert np.abs(blk1.mean(axis=0) / np.linalg.norm(blk1.mean(axis=0)) - c).max() < 10 * width**2 + 1e-5
    assert res["n_clusters"][-1] == 4


def numpy_layer(X, beta, Q, K, V, causal, normalized):
    """One attention layer written from docs/models.md §4 in plain NumPy: a_i / |a_i|."""
    n = X.shape[0]
    L = beta * (X @ Q.T) @ (X @ K.T).T
    if causal:
        L = np.where(np.tril(np.ones((n, n), bool)), L, -np.inf)
    W = np.exp(L - L.max(axis=1, keepdims=True))
    if normalized:
        W /= W.sum(axis=1, keepdims=True)
    A = W @ (X @ V.T)
    return A / np.linalg.norm(A, axis=1, keepdims=True)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("normalized", [True, False])
def test_sphere_layer_matches_a_numpy_transcription(causal, normalized):
    rng = np.random.default_rng(5)
    d, n, beta = 5, 37, 1.7
    Q, K, V = (np.eye(d) + 0.5 * rng.standard_normal((d, d)) for _ in range(3))
    cfg = sphere_cfg(d=d, n=n, beta=beta, layers=3, Q=Q.tolist(), K=K.tolist(), V=V.tolist(),
                     causal=causal, normalized=normalized)
    res = layers_of(cfg)
    X = res["x"][0]
    for k in range(1, 4):
        X = numpy_layer(X, beta, Q, K, V, causal, normalized)
        assert np.abs(res["x"][k] - X).max() < 1e-13
    assert res.oracle_calls == 3


@pytest.mark.parametrize("causal", [False, True])
def test_softmax_layer_matches_a_numpy_transcription_and_records_spread(causal):
    rng = np.random.default_rng(6)
    d, n = 4, 33
    A = 0.3 * rng.standard_normal((d, d))
    V = np.eye(d) + 0.3 * rng.standard_normal((d, d))
    cfg = {"model": {"name": "softmax", "dynamics": "first_order", "d": d, "A": A.tolist(),
                     "V": V.tolist(), "causal": causal},
           "integrator": {"name": "mean_shift", "h": 0.1},
           "initial": {"law": "gaussian", "n": n, "mean": [0.0] * d, "cov": np.eye(d).tolist(), "seed": 2},
           "run": {"t0": 0.0, "steps": 3, "save_every": 1}, "output": {"save": ["x"]}}
    res = meanfield.Run(cfg).simulate()
    X = res["x"][0]
    for k in range(1, 4):
        L = X @ A @ X.T
        if causal:
            L = np.where(np.tril(np.ones((n, n), bool)), L, -np.inf)
        W = np.exp(L - L.max(axis=1, keepdims=True))
        X = (W / W.sum(axis=1, keepdims=True)) @ X @ V.T
        assert np.abs(res["x"][k] - X).max() < 1e-13 * max(1.0, np.abs(X).max())
    for k in range(4):
        assert res["spread"][k] == pytest.approx(np.trace(np.cov(res["x"][k].T, bias=True)), rel=1e-12)


# ----------------------------------------------------------- bookkeeping
def test_h_is_ignored_and_one_layer_is_one_oracle_call():
    a = layers_of(sphere_cfg(h=1.0, layers=6))
    b = layers_of(sphere_cfg(h=0.01, layers=6))
    assert np.array_equal(a.x, b.x)
    assert a.oracle_calls == 6 and list(a["oracle_calls"]) == list(range(7))
    assert list(a["iteration"]) == list(range(7))


def test_layer_of_epsilon_clustering_and_cluster_counts_are_recorded():
    res = layers_of(sphere_cfg(d=3, n=60, beta=2.0, layers=12))
    k = time_to_clustering(res, eps=1e-6, x="iteration")
    assert 1 <= k <= 12
    assert res["min_inner"][int(k)] >= 1 - 1e-6 > res["min_inner"][int(k) - 1]
    assert res["n_clusters"][0] > 1 and res["n_clusters"][-1] == 1
    assert np.all(np.diff(res["mean_inner"]) >= -1e-12)  # mean shift on S^2 at beta = 2 only gathers


def test_resume_after_interrupt_is_bit_identical(tmp_path):
    import signal

    cfg = sphere_cfg(d=3, n=50, beta=1.0, layers=30)
    cfg["run"]["save_every"] = 4
    full = meanfield.Run(cfg).simulate(str(tmp_path / "full.h5"))

    def interrupt(done, total):
        if done == 13:
            os.kill(os.getpid(), signal.SIGINT)

    path = str(tmp_path / "cut.h5")
    with pytest.raises(KeyboardInterrupt):
        meanfield.Run(cfg).simulate(path, progress=interrupt)
    with h5py.File(path) as f:
        assert f["checkpoint"].attrs["iteration"] == 13
        assert "integrator_order" not in f.attrs
    res = resume_run(path)
    assert np.array_equal(res.x, full.x)
    tr = meanfield.load(path)
    assert tr.attrs["status"] == "finished"
    assert tr.scales["oracle_calls"][-1] == full["oracle_calls"][-1] == 30


# ------------------------------------------------------------- bad input
BAD_MODELS = [
    ({"name": "bilinear", "dynamics": "first_order", "d": 3}, "linear attention"),
    ({"name": "bilinear", "dynamics": "accelerated", "d": 3}, "accelerated"),
    ({"name": "sphere", "dynamics": "accelerated", "d": 3}, "accelerated"),
    ({"name": "softmax", "dynamics": "accelerated", "d": 3}, "accelerated"),
    ({"name": "softmax", "dynamics": "first_order", "d": 3, "normalized": False}, "USA"),
    ({"name": "softmax", "dynamics": "first_order", "d": 3, "Q": 1.0}, "confining W"),
    ({"name": "sphere", "dynamics": "first_order", "d": 3, "normalization": "peri_ln"}, "post_ln"),
]


@pytest.mark.parametrize("model,why", BAD_MODELS, ids=[f"{m['name']}-{m['dynamics']}-{w}" for m, w in BAD_MODELS])
def test_unsupported_models_are_parameter_errors(model, why):
    cfg = sphere_cfg()
    cfg["model"] = model
    cfg["initial"] = {"law": "gaussian", "n": 10, "mean": [0.0] * 3, "cov": np.eye(3).tolist()}
    with pytest.raises(ParameterError, match="integrator.name") as info:
        meanfield.Run(cfg)
    msg = str(info.value)
    assert "mean_shift" in msg and (why in msg or why == "linear attention")


@pytest.mark.parametrize("model,dynamics", [("bilinear", "first_order"), ("bilinear", "accelerated"),
                                            ("sphere", "accelerated")])
def test_cli_exits_2_with_one_line(tmp_path, monkeypatch, model, dynamics):
    monkeypatch.chdir(tmp_path)
    text = (f'[model]\nname = "{model}"\ndynamics = "{dynamics}"\nd = 3\n'
            '[integrator]\nname = "mean_shift"\nh = 1.0\n'
            '[initial]\nlaw = "sphere_uniform"\nn = 10\n[run]\nt0 = 0.0\nsteps = 3\n')
    (tmp_path / "p.toml").write_text(text)
    res = CliRunner().invoke(cli, ["run", "p.toml", "-o", "out.h5", "--no-progress"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "p.toml" in lines[0] and "integrator.name" in lines[0]
    assert "mean_shift" in lines[0] and "Traceback" not in res.output
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.slow
def test_sweep_over_blocks_and_compare(tmp_path):
    """A sweep switches euler <-> mean_shift by name alone; compare reads both files."""
    pytest.importorskip("distributed")
    base = ('[model]\nname = "sphere"\ndynamics = "first_order"\nd = 3\nbeta = 1.0\n'
            '[integrator]\nname = "euler"\nh = 0.5\n[initial]\nlaw = "sphere_uniform"\nn = 32\nseed = 0\n'
            '[run]\nt0 = 0.0\noracle_calls = 30\nsave_every = 1\n[output]\nsave = []\n')
    (tmp_path / "base.toml").write_text(base)
    (tmp_path / "grid.toml").write_text('base = "base.toml"\n[grid]\n"integrator.name" = ["euler", "mean_shift"]\n'
                                        '[output]\ndir = "out"\n')
    runner = CliRunner()
    r = runner.invoke(cli, ["sweep", str(tmp_path / "grid.toml"), "--workers", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "out").glob("*.h5"))
    assert [f.name.split("-")[0] for f in files] == ["euler", "mean_shift"]
    for f in files:
        tr = meanfield.load(str(f))
        assert tr.attrs["status"] == "finished" and tr.scales["oracle_calls"][-1] == 30
    layers = {f.name.split("-")[0]: time_to_clustering(meanfield.load(str(f)), 1e-3, x="oracle_calls")
              for f in files}
    assert layers["mean_shift"] < layers["euler"]  # the pure layer clusters in fewer layers at beta = 1
    r = runner.invoke(cli, ["compare", *map(str, files)])
    assert r.exit_code == 0, r.output
    assert "mean_shift" in r.output and "euler" in r.output
