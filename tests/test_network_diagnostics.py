"""Network diagnostics (meanfield.diagnostics.network) against slow references written from their definitions.

Every reference forms the full N x N matrix or loops over pairs; the module
under test visits pairs in blocks and selects quantiles by histogram passes, so
the tests also shrink its block and histogram sizes to run those paths at small N.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from meanfield.diagnostics import network as ND
from meanfield.diagnostics.clustering import n_clusters as ref_clusters

from test_network import H, L, naive_ln, random_weights


def naive_cosines(x):
    """Every c_ij, i != j (ordered pairs), from the full matrix; zero tokens have cosine 0."""
    x = np.asarray(x, float)
    n = x.shape[0]
    c = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            ni, nj = np.linalg.norm(x[i]), np.linalg.norm(x[j])
            if ni > 0 and nj > 0:
                c[i, j] = sum(x[i] * x[j]) / (ni * nj)
    return np.clip(c[~np.eye(n, dtype=bool)], -1, 1)


def check_against_naive(x, got, tol=1e-13):
    ref = naive_cosines(x)
    assert abs(got["mean"] - ref.mean()) < tol
    assert abs(got["min"] - ref.min()) < tol and abs(got["max"] - ref.max()) < tol
    np.testing.assert_allclose(got["quantiles"], np.quantile(ref, ND.QUANTILES), rtol=0, atol=tol)


def tokens(seed=0, n=41, d=7):
    x = np.random.default_rng(seed).standard_normal((n, d)) + 0.7  # a common direction: a skewed distribution
    x[5] = x[9]  # repeated tokens: ties at cosine 1
    x[12] = 0.0  # a zero token: cosine 0 with everyone
    return x


def test_cosine_statistics_equal_the_full_matrix():
    x = tokens()
    check_against_naive(x, ND.cosine_statistics(x))
    check_against_naive(ND.centred(x), ND.cosine_statistics(ND.centred(x)))


@pytest.mark.parametrize("bins, cap, block", [(8, 40, 64), (3, 5, 7), (4096, 1 << 18, 10)])
def test_cosine_quantiles_exact_through_several_passes_and_blocks(monkeypatch, bins, cap, block):
    """Few bins, a small collect cap and small blocks force several histogram passes and many blocks."""
    monkeypatch.setattr(ND, "BINS", bins)
    monkeypatch.setattr(ND, "COLLECT_CAP", cap)
    monkeypatch.setattr(ND, "BLOCK_VALUES", block)
    x = tokens(1, n=37)
    check_against_naive(x, ND.cosine_statistics(x))


def test_cosine_quantiles_of_nearly_collapsed_tokens(monkeypatch):
    """Tokens within 1e-7 of one direction: cosines within 1e-14 of 1; the search narrows to ulps."""
    monkeypatch.setattr(ND, "COLLECT_CAP", 16)
    monkeypatch.setattr(ND, "BINS", 16)
    rng = np.random.default_rng(2)
    x = np.ones((30, 5)) + 1e-7 * rng.standard_normal((30, 5))
    check_against_naive(x, ND.cosine_statistics(x), tol=4e-16)


def test_select_ranks_equals_sort():
    rng = np.random.default_rng(3)
    vals = np.round(rng.standard_normal(5000), 2)  # many ties
    chunks = np.array_split(vals, 13)
    ranks = [0, 1, 17, 2500, 4998, 4999]
    import meanfield.diagnostics.network as mod

    old = mod.COLLECT_CAP
    mod.COLLECT_CAP = 30
    try:
        got = mod.select_ranks(lambda: iter(chunks), vals.size, ranks, -10.0, 10.0)
    finally:
        mod.COLLECT_CAP = old
    np.testing.assert_array_equal(got, np.sort(vals)[ranks])


def test_cosine_subsample_above_max_exact():
    x = tokens(4, n=30)
    got = ND.cosine_statistics(x, max_exact=10)
    keep = np.unique(np.round(np.linspace(0, 29, 10)).astype(int))
    sub = ND.cosine_statistics(x[keep])
    assert got["min"] == sub["min"] and got["max"] == sub["max"]
    np.testing.assert_array_equal(got["quantiles"], sub["quantiles"])
    assert abs(got["mean"] - naive_cosines(x).mean()) < 1e-13  # the mean stays over all pairs


def test_cosine_statistics_of_one_token_are_nan():
    got = ND.cosine_statistics(np.ones((1, 3)))
    assert math.isnan(got["mean"]) and np.isnan(got["quantiles"]).all() and got["quantiles"].shape == (5,)


def test_rank_collapse_analytic():
    c = np.array([1.0, -2.0, 0.5])
    assert ND.rank_collapse(np.tile(c, (6, 1))) == 0.0  # every token the mean token
    x = np.random.default_rng(5).standard_normal((8, 3))
    x -= x.mean(axis=0)
    assert abs(ND.rank_collapse(x) - 1.0) < 1e-15  # mean token zero
    y = x + c  # ||X - 1 c^T||^2 = ||X||^2 - N |c|^2 when the centred part has zero mean
    assert abs(ND.rank_collapse(y) - math.sqrt(np.sum(x * x) / (np.sum(x * x) + 8 * c @ c))) < 1e-15
    assert ND.rank_collapse(np.zeros((4, 2))) == 0.0


def test_effective_rank_analytic():
    s = np.array([3.0, 2.0, 1.0, 0.0])
    U, _ = np.linalg.qr(np.random.default_rng(6).standard_normal((7, 4)))
    V, _ = np.linalg.qr(np.random.default_rng(7).standard_normal((4, 4)))
    x = U @ np.diag(s) @ V.T  # singular values 3, 2, 1, 0
    p = s[:3] / 6
    assert abs(ND.effective_rank(x) - math.exp(-np.sum(p * np.log(p)))) < 1e-13
    assert abs(ND.effective_rank(np.outer(np.arange(1.0, 6.0), [1.0, 2.0, -1.0])) - 1.0) < 1e-12
    assert abs(ND.effective_rank(np.eye(5)) - 5.0) < 1e-13
    assert ND.effective_rank(np.zeros((3, 3))) == 0.0


def naive_heads(q, k, v, causal):
    n, heads, dh = q.shape
    E = np.zeros(heads)
    out = np.zeros(v.shape)
    for h in range(heads):
        for i in range(n):
            logits = [sum(q[i, h] * k[j, h]) / math.sqrt(dh) for j in range(n)]
            E[h] += sum(math.exp(z) for z in logits)
            js = range(i + 1) if causal else range(n)
            w = np.array([math.exp(logits[j]) for j in js])
            out[i, h] = sum(wj * v[j, h] for wj, j in zip(w / w.sum(), js))
    return E / (2 * n * n), out


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("block", [1 << 20, 9])
def test_head_statistics_equal_loops(monkeypatch, causal, block):
    monkeypatch.setattr(ND, "BLOCK_VALUES", block)
    rng = np.random.default_rng(8)
    n, heads, dh = 13, 3, 4
    q, k, v = (rng.standard_normal((n, heads, dh)) for _ in range(3))
    v[:, 1] = v[0, 1]  # head 1: every value the same -> every output the same: one cluster
    q[:, 2] *= 30.0  # head 2: sharp attention (each token picks one source): several clusters
    got = ND.head_statistics(q, k, v, causal, tol=1e-3)
    E, out = naive_heads(q, k, v, causal)
    np.testing.assert_allclose(got["E_beta"], E, rtol=1e-13)
    ref = [ref_clusters(out[:, h], 1e-3) for h in range(heads)]
    np.testing.assert_array_equal(got["n_clusters"], ref)
    assert got["n_clusters"].dtype == np.int64 and got["n_clusters"][1] == 1 and got["n_clusters"][2] > 1


def test_head_energy_beyond_float64_is_inf_not_an_error():
    q = np.full((3, 1, 2), 40.0)
    got = ND.head_statistics(q, q, q, True)
    assert got["E_beta"][0] == math.inf


def test_count_clusters_zero_rows_are_one_cluster():
    x = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert ND.count_clusters(x, 1e-3) == 3
    assert ND.count_clusters(np.zeros((3, 2)), 1e-3) == 1


# ------------------------------------------------------------------ Network.diagnostics


@pytest.fixture
def net(tmp_path):
    from meanfield.models import make_model
    from meanfield.models.weights import save_weights

    w = random_weights(np.random.default_rng(7))
    path = tmp_path / "net.npz"
    save_weights(str(path), w)
    return w, make_model({"name": "softmax", "weights": str(path), "heads": H})


def test_network_diagnostics_from_the_definitions(net):
    """Every recorded key from naive LN1 and per-head loops, at the layer the model last used."""
    w, model = net
    x = np.random.default_rng(9).standard_normal((11, H * 6)) + 0.5
    for layer in (0, 1):
        model.use_layer(layer)
        got = model.diagnostics(x, None)
        u = naive_ln(x, w["ln1_g"][layer], w["ln1_b"][layer], 1e-5)
        proj = [np.stack([u @ w["W_" + n][layer, h].T + w["b_" + n][layer, h] for h in range(H)], axis=1)
                for n in ("q", "k", "v")]
        E, out = naive_heads(*proj, causal=True)
        np.testing.assert_allclose(got["E_beta_heads"], E, rtol=1e-12)
        np.testing.assert_array_equal(got["n_clusters_heads"], [ref_clusters(out[:, h], 1e-3) for h in range(H)])
    xc = x - x.mean(axis=0)
    for name, y in (("cos", x), ("cos_centred", xc)):
        c = naive_cosines(y)
        assert abs(got[name + "_mean"] - c.mean()) < 1e-13
        assert abs(got[name + "_min"] - c.min()) < 1e-13 and abs(got[name + "_max"] - c.max()) < 1e-13
        np.testing.assert_allclose(got[name + "_quantiles"], np.quantile(c, ND.QUANTILES), atol=1e-13)
    assert abs(got["rank_collapse"] - np.linalg.norm(xc) / np.linalg.norm(x)) < 1e-14
    for name, y in (("effective_rank", x), ("effective_rank_centred", xc)):
        s = np.linalg.svd(y, compute_uv=False)
        assert abs(got[name] - math.exp(-np.sum(s / s.sum() * np.log(s / s.sum())))) < 1e-12
    ln_dirs = x - x.mean(axis=1, keepdims=True)
    assert got["n_clusters"] == ref_clusters(ln_dirs, 1e-3)


def test_network_run_records_every_diagnostic_per_layer(net, tmp_path):
    from meanfield.run import Run

    _, model = net
    cfg = {"model": {"name": "softmax", "weights": str(tmp_path / "net.npz"), "heads": H},
           "integrator": {"name": "euler", "h": 1.0}, "initial": {"law": "tokens", "ids": [3, 1, 4, 1, 5, 9, 2]},
           "run": {"layers": True, "save_every": 1}}
    res = Run(cfg).simulate()
    shapes = {"cos_quantiles": (L + 1, 5), "cos_centred_quantiles": (L + 1, 5), "E_beta_heads": (L + 1, H),
              "n_clusters_heads": (L + 1, H), "n_clusters": (L + 1,), "effective_rank": (L + 1,),
              "effective_rank_centred": (L + 1,), "rank_collapse": (L + 1,), "cos_mean": (L + 1,),
              "cos_min": (L + 1,), "cos_max": (L + 1,), "cos_centred_mean": (L + 1,)}
    for name, shape in shapes.items():
        assert np.asarray(res[name]).shape == shape, name
    xs = np.asarray(res["x"])
    model.use_layer(L - 1)  # the last save: the state after the last layer, its heads
    np.testing.assert_array_equal(res["E_beta_heads"][-1], model.diagnostics(xs[-1], None)["E_beta_heads"])


def test_diagnostics_network_false_records_the_cheap_ones(net, tmp_path):
    """[diagnostics] network = false: only cos_mean (O(N d), equal to the full pass's mean over pairs)
    and rank_collapse; cluster_tol is a network's key too; network is refused for other models."""
    from meanfield.errors import ParameterError
    from meanfield.run import Run

    cfg = {"model": {"name": "softmax", "weights": str(tmp_path / "net.npz"), "heads": H},
           "integrator": {"name": "euler", "h": 1.0}, "initial": {"law": "tokens", "ids": [3, 1, 4, 1, 5, 9, 2]},
           "run": {"layers": True}}
    full = Run({**cfg, "diagnostics": {"cluster_tol": 0.01}}).simulate()
    cheap = Run({**cfg, "diagnostics": {"network": False}}).simulate()
    assert full.config["diagnostics"]["cluster_tol"] == 0.01
    assert "E_beta_heads" in full.tasks and "E_beta_heads" not in cheap.tasks and "effective_rank" not in cheap.tasks
    np.testing.assert_allclose(cheap["cos_mean"], full["cos_mean"], rtol=1e-12)
    np.testing.assert_array_equal(cheap["rank_collapse"], full["rank_collapse"])
    with pytest.raises(ParameterError, match=r"\[diagnostics.network\] expected true or false"):
        Run({**cfg, "diagnostics": {"network": 1}})
    with pytest.raises(ParameterError, match=r"\[diagnostics.network\] expected a network from weights"):
        Run({"model": {"name": "sphere", "d": 3}, "integrator": {"name": "euler", "h": 0.1},
             "initial": {"law": "sphere_uniform", "n": 5}, "run": {"steps": 1}, "diagnostics": {"network": False}})


def test_mean_cosine_with_zero_rows():
    x = tokens()
    x[3] = 0.0
    ref = naive_cosines(x)
    assert abs(ND.mean_cosine(x) - ref.mean()) < 1e-14


# ------------------------------------------------------------------ meanfield plot --kind layers


def test_cli_plot_layers(tmp_path):
    """The tiny GPT-2 fixture through `meanfield run` (layers = true), then `plot --kind layers`; a run
    without network diagnostics is one line, exit 2."""
    import os

    from click.testing import CliRunner

    from meanfield_cli.main import cli

    pytest.importorskip("safetensors")
    weights = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "gpt2_tiny.safetensors")
    (tmp_path / "p.toml").write_text(
        f'[model]\nname = "softmax"\nweights = "{weights}"\n[integrator]\nname = "euler"\nh = 1.0\n'
        '[initial]\nlaw = "tokens"\nids = [5, 17, 3, 20, 20, 2, 11]\n[run]\nlayers = true\n')
    runner = CliRunner()
    res = runner.invoke(cli, ["run", str(tmp_path / "p.toml"), "-o", str(tmp_path / "net.h5")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["plot", str(tmp_path / "net.h5"), "--kind", "layers"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "net-layers.png").stat().st_size > 10_000
    (tmp_path / "s.toml").write_text('[model]\nname = "sphere"\ndynamics = "first_order"\nd = 3\n[integrator]\nname = "euler"\nh = 0.1\n'
                                     '[initial]\nlaw = "sphere_uniform"\nn = 8\n[run]\nsteps = 2\n')
    res = runner.invoke(cli, ["run", str(tmp_path / "s.toml"), "-o", str(tmp_path / "s.h5")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["plot", str(tmp_path / "s.h5"), "--kind", "layers", "-o", str(tmp_path / "s.png")])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "model.weights" in lines[0] and "E_beta_heads" in lines[0] and not (tmp_path / "s.png").exists()


def test_head_diagnostics_see_what_the_heads_read(net, tmp_path):
    """Fold mode: the heads read the same LN output as in affine mode, so E_beta_heads and the clusters
    agree to round-off; post-LN: the heads read the stream itself (no LN before them)."""
    from meanfield.models import make_model

    w, affine = net
    path = str(tmp_path / "net.npz")
    fold = make_model({"name": "softmax", "weights": path, "heads": H, "ln_mode": "fold"})
    post = make_model({"name": "softmax", "weights": path, "heads": H, "layer_norm": "post"})
    x = np.random.default_rng(10).standard_normal((9, H * 6)) + 0.5
    xf = x - x.mean(axis=1, keepdims=True)  # the folded stream: P x
    for layer in (0, 1):
        for m in (affine, fold, post):
            m.use_layer(layer)
        a, f = affine.diagnostics(x, None), fold.diagnostics(xf, None)
        np.testing.assert_allclose(f["E_beta_heads"], a["E_beta_heads"], rtol=1e-12)
        np.testing.assert_array_equal(f["n_clusters_heads"], a["n_clusters_heads"])
        assert f["n_clusters"] == a["n_clusters"]
        proj = [np.stack([x @ w["W_" + n][layer, h].T + w["b_" + n][layer, h] for h in range(H)], axis=1)
                for n in ("q", "k", "v")]
        E, _ = naive_heads(*proj, causal=True)
        np.testing.assert_allclose(post.diagnostics(x, None)["E_beta_heads"], E, rtol=1e-12)


def test_head_outputs_when_the_visible_logits_underflow():
    """Causal: token 0 sees only itself at logit -400 while its logits to later tokens are +400; shifted
    by the max over every source, its softmax weights underflow (exp(-800) = 0): outputs still exact."""
    n = 5
    q = np.ones((n, 1, 1))
    k = np.full((n, 1, 1), 400.0)
    k[0] = -400.0
    q[3] = -1.0  # token 3 sees +400 at j = 0 and -400 at j = 1..3
    v = np.random.default_rng(11).standard_normal((n, 1, 2))
    log_sum, out = ND.head_pass(q[:, 0], k[:, 0], v[:, 0], True)
    E, ref = naive_heads(q, k, v, True)
    np.testing.assert_allclose(out, ref[:, 0], rtol=1e-13, atol=1e-15)
    assert abs(log_sum - math.log(E[0] * 2 * n * n)) < 1e-13 * abs(log_sum)
    np.testing.assert_allclose(ND.head_statistics(q, k, v, True)["E_beta"], E, rtol=1e-13)


def test_cosine_quantiles_of_equal_tokens_are_exact(monkeypatch):
    """Every token the same: the cosines differ by round-off only (a few ulps below 1); with more pairs
    than the collect cap the search narrows onto those floats and returns the exact order statistics
    of the values it streams."""
    monkeypatch.setattr(ND, "COLLECT_CAP", 10)
    x = np.tile(np.random.default_rng(12).standard_normal(6), (20, 1))
    x[::3] *= 1.7  # rows equal in direction, not in norm: the normalizations round differently
    vals = np.clip(np.concatenate(list(ND._upper_pairs(ND.unit_rows(x)))), -1, 1)
    ordered = np.concatenate([vals, vals])  # each unordered pair twice: the pairs i != j
    got = ND.cosine_statistics(x)
    assert got["min"] == ordered.min() and got["max"] == ordered.max(), (got, ordered.min(), ordered.max())
    np.testing.assert_array_equal(got["quantiles"], np.quantile(ordered, ND.QUANTILES))


@pytest.mark.parametrize("bins", [3, 4096])
def test_select_ranks_of_values_ulps_apart(monkeypatch, bins):
    """Values a few ulps apart, many more than the collect cap: exact order statistics (not an edge of
    the last interval)."""
    monkeypatch.setattr(ND, "COLLECT_CAP", 10)
    monkeypatch.setattr(ND, "BINS", bins)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        base = rng.uniform(-0.9, 0.9)
        vals = base + np.spacing(base) * rng.integers(0, 6, 500)
        ranks = [0, 1, 100, 250, 499]
        got = ND.select_ranks(lambda: iter(np.array_split(vals, 7)), vals.size, ranks, -1.0, 1.0)
        np.testing.assert_array_equal(got, np.sort(vals)[ranks])
