"""Transformer blocks: attention followed by a token-wise MLP sub-step (docs/mlp-block.md).

References here are independent NumPy transcriptions: a GPT block (causal
softmax attention with W_Q, W_K, W_V, W_O, then the MLP), the SympFormer
code's default Nesterov MLP sub-step (LayerNorms as the identity), and the
exact-erf GELU written with math.erf.
"""

import math
import os
import textwrap

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from meanfield_cli.main import cli

import meanfield
from meanfield.integrators.controllers import ConstantStep
from meanfield.resume import resume_run
from meanfield.systems import ParticleSystem, particle_system

_erf = np.vectorize(math.erf)
ACT = {
    "gelu": lambda u: 0.5 * u * (1.0 + _erf(u / math.sqrt(2.0))),
    "relu": lambda u: np.where(u > 0, u, 0.0),
    "tanh": lambda u: np.array([[math.tanh(a) for a in row] for row in u]),
}


def _mlp_weights(rng, d, h, L=None, scale=1.0):
    lead = () if L is None else (L,)
    return {"W1": scale * rng.normal(size=lead + (h, d)) / math.sqrt(d),
            "b1": 0.1 * rng.normal(size=lead + (h,)),
            "W2": scale * rng.normal(size=lead + (d, h)) / math.sqrt(h),
            "b2": 0.1 * rng.normal(size=lead + (d,))}


def _mlp(w, x, act, layer=None):
    """MLP(x) = W2 act(W1 x + b1) + b2, token by token as in PyTorch's nn.Linear (x W^T + b)."""
    g = (lambda k: w[k]) if layer is None else (lambda k: w[k][layer])
    return ACT[act](x @ g("W1").T + g("b1")) @ g("W2").T + g("b2")


def _gpt_block(x, Wq, Wk, Wv, Wo, w, act, layer=None):
    """x += CausalAttn(x); x += MLP(x) (one head, LayerNorm = identity, no biases in attention)."""
    d = x.shape[1]
    q, k, v = x @ Wq.T, x @ Wk.T, x @ Wv.T
    s = q @ k.T / math.sqrt(d)
    s[np.triu_indices(len(x), 1)] = -np.inf
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    x = x + (p @ v) @ Wo.T
    return x + _mlp(w, x, act, layer)


def _gaussian(d, n, seed=0):
    return {"law": "gaussian", "n": n, "mean": [0.0] * d, "cov": np.eye(d).tolist(), "seed": seed}


@pytest.mark.parametrize("d,act", [(4, "gelu"), (5, "relu"), (3, "tanh"), (768, "gelu")])
def test_first_order_step_with_h_1_is_a_gpt_block(tmp_path, d, act):
    rng = np.random.default_rng(d)
    h_mlp = 4 * d if d < 100 else 3072
    n = 24 if d < 100 else 16
    Wq, Wk, Wv, Wo = (rng.normal(size=(d, d)) / math.sqrt(d) for _ in range(4))
    w = _mlp_weights(rng, d, h_mlp)
    np.savez(tmp_path / "mlp.npz", **w)
    A, V = Wq.T @ Wk / math.sqrt(d), Wo @ Wv
    initial = _gaussian(d, n)
    if d > 100:  # a trained layer's matrices and tokens come from files (no d x d lists in the config)
        np.save(tmp_path / "A.npy", A)
        np.save(tmp_path / "V.npy", V)
        np.save(tmp_path / "x0.npy", rng.normal(size=(n, d)))
        A, V, initial = str(tmp_path / "A.npy"), str(tmp_path / "V.npy"), {"law": "file",
                                                                          "path": str(tmp_path / "x0.npy")}
    else:
        A, V = A.tolist(), V.tolist()
    cfg = {"model": {"name": "softmax", "dynamics": "first_order", "d": d, "causal": True, "A": A, "V": V,
                     "mlp": str(tmp_path / "mlp.npz"), "mlp_activation": act},
           "integrator": {"name": "euler", "h": 1.0}, "run": {"steps": 1}, "initial": initial}
    run = meanfield.Run(cfg)
    x0 = run.x0.copy()
    res = run.simulate()
    ref = _gpt_block(x0, Wq, Wk, Wv, Wo, w, act)
    err = np.abs(res.x - ref).max() / np.abs(ref).max()
    assert err < 1e-12, err
    assert res.scales["mlp_calls"].tolist() == [0, 1] and res.scales["oracle_calls"].tolist() == [0, 1]


def test_a_stack_of_per_layer_blocks_is_a_gpt_network(tmp_path):
    """(L, d, d) files for A and V and (L, ...) MLP weights; run.layers = true stops after L layers."""
    d, L, n = 4, 3, 20
    rng = np.random.default_rng(7)
    Wq, Wk, Wv, Wo = (rng.normal(size=(L, d, d)) / math.sqrt(d) for _ in range(4))
    w = _mlp_weights(rng, d, 8, L)
    np.savez(tmp_path / "mlp.npz", **w)
    np.save(tmp_path / "A.npy", np.einsum("lji,ljk->lik", Wq, Wk) / math.sqrt(d))
    np.savez(tmp_path / "V.npz", V=np.einsum("lij,ljk->lik", Wo, Wv))
    toml = textwrap.dedent(f"""\
        [model]
        name = "softmax"
        dynamics = "first_order"
        d = {d}
        causal = true
        A = "A.npy"
        V = "V.npz"
        mlp = "mlp.npz"
        [integrator]
        name = "euler"
        h = 1.0
        [run]
        layers = true
        [initial]
        law = "gaussian"
        n = {n}
        mean = [0.0, 0.0, 0.0, 0.0]
        cov = 1.0
        seed = 3
        [output]
        save = ["x"]
        """).replace("cov = 1.0", f"cov = {np.eye(d).tolist()}")
    (tmp_path / "p.toml").write_text(toml)
    run = meanfield.Run(str(tmp_path / "p.toml"))
    x = run.x0.copy()
    res = run.simulate()
    assert res.scales["iteration"][-1] == L
    for layer in range(L):
        x = _gpt_block(x, Wq[layer], Wk[layer], Wv[layer], Wo[layer], w, "gelu", layer)
        assert np.abs(res.tasks["x"][layer + 1] - x).max() < 1e-12 * np.abs(x).max()
    assert res.config["model"]["mlp"] == str(tmp_path / "mlp.npz")  # absolute: a resume finds it
    again = meanfield.Run(res.config).simulate()  # the stored parameters give the same run
    assert np.array_equal(again.x, res.x)
    cfg = {**res.config, "model": {k: v for k, v in res.config["model"].items() if k != "V"}}
    default_v = meanfield.Run(cfg).simulate()  # V = B A in every layer: stored as such
    assert "V" not in default_v.config["model"]
    assert np.array_equal(meanfield.Run(default_v.config).simulate().x, default_v.x)


def _paper_mlp_substep(x, v, w, mu, beta, gamma):
    """The SympFormer code's default MLP sub-step with its LayerNorms taken as the identity."""
    x_in = x + mu * v
    dx = _mlp(w, x_in, "gelu")
    v = beta * v + gamma * dx
    return x + v, v


@pytest.mark.parametrize("integrator,nesterov", [("exp_euler", {}),
                                                 ("tao2", {"mlp_mu": 0.5, "mlp_beta": 0.8, "mlp_gamma": 0.3})])
def test_accelerated_mlp_substep_is_the_sympformer_default(tmp_path, integrator, nesterov):
    d, n, steps = 3, 16, 4
    rng = np.random.default_rng(11)
    w = _mlp_weights(rng, d, 12, scale=0.5)
    np.savez(tmp_path / "mlp.npz", **w)
    base = {"model": {"name": "softmax", "dynamics": "accelerated", "d": d, "A": 0.5},
            "damping": {"schedule": "nesterov"}, "integrator": {"name": integrator, "h": 0.1},
            "run": {"t0": 1.0, "steps": steps}, "initial": {**_gaussian(d, n), "momentum": "gaussian"},
            "output": {"save": ["x", "y", "v"]}}
    block = {**base, "model": {**base["model"], "mlp": str(tmp_path / "mlp.npz"), **nesterov}}
    res = meanfield.Run(block).simulate()
    ref = meanfield.Run(base)  # attention alone, stepped by hand, then the paper's MLP sub-step
    p = {"mu": 0.9, "beta": 0.9, "gamma": 1.0, **{k[4:]: v for k, v in nesterov.items()}}
    x, y, v = ref.x0.copy(), ref.y0.copy(), np.zeros_like(ref.x0)
    for k in range(steps):
        t = ConstantStep(ref.horizon.t0, ref.horizon.h).time_of(k)  # the loop's grid
        x, y = ref.integrator.step(ref.model, ref.schedule, t, 0.1, x, y)
        x, v = _paper_mlp_substep(x, v, w, **p)
        assert np.abs(res.tasks["x"][k + 1] - x).max() < 1e-12 * np.abs(x).max()
        assert np.abs(res.tasks["v"][k + 1] - v).max() < 1e-12 * np.abs(v).max()
        assert np.abs(res.tasks["y"][k + 1] - y).max() < 1e-12 * np.abs(y).max()
    assert res.scales["mlp_calls"][-1] == steps
    assert res.scales["oracle_calls"][-1] == steps * ref.integrator.oracle_calls


def test_without_mlp_the_loop_advances_a_plain_particle_system():
    run = meanfield.Run({"model": {"name": "softmax", "d": 2, "dynamics": "first_order"},
                         "integrator": {"h": 0.1}, "run": {"steps": 2}, "initial": _gaussian(2, 8)})
    assert type(run.make_system()) is ParticleSystem
    res = run.simulate()
    assert "mlp_calls" not in res.scales


def _sphere_cfg(tmp_path, normalization, dynamics="first_order", integrator="euler"):
    d = 3
    w = _mlp_weights(np.random.default_rng(5), d, 6)
    np.savez(tmp_path / "mlp.npz", **w)
    cfg = {"model": {"name": "sphere", "d": d, "beta": 2.0, "dynamics": dynamics,
                     "normalization": normalization, "mlp": str(tmp_path / "mlp.npz")},
           "integrator": {"name": integrator, "h": 0.1}, "run": {"steps": 1},
           "initial": {"law": "sphere_uniform", "n": 12, "seed": 2}}
    return cfg, w


def test_sphere_post_ln_projects_the_mlp_and_pre_ln_adds_it_to_the_residual_stream(tmp_path):
    cfg, w = _sphere_cfg(tmp_path, "pre_ln")
    run = meanfield.Run(cfg)
    x0 = run.x0.copy()
    res = run.simulate()
    plain = {**cfg, "model": {k: v for k, v in cfg["model"].items() if k != "mlp"}}
    x1 = meanfield.Run(plain).simulate().x  # the attention step alone
    theta = x1 / np.linalg.norm(x1, axis=1, keepdims=True)
    ref = x1 + 0.1 * _mlp(w, theta, "gelu")
    assert np.abs(res.x - ref).max() < 1e-13
    assert np.abs(x0 - run.x0).max() == 0.0

    cfg, w = _sphere_cfg(tmp_path, "post_ln")
    res = meanfield.Run(cfg).simulate()
    x1 = meanfield.Run({**cfg, "model": {k: v for k, v in cfg["model"].items() if k != "mlp"}}).simulate().x
    m = _mlp(w, x1 / np.linalg.norm(x1, axis=1, keepdims=True), "gelu")
    m -= np.sum(m * x1, axis=1, keepdims=True) * x1 / np.sum(x1 * x1, axis=1, keepdims=True)
    ref = x1 + 0.1 * m
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    assert np.abs(res.x - ref).max() < 1e-13
    assert np.abs(np.linalg.norm(res.x, axis=1) - 1.0).max() < 1e-14


def test_accelerated_sphere_block_stays_on_the_constraint_manifold(tmp_path):
    cfg, _ = _sphere_cfg(tmp_path, "post_ln", "accelerated", "tao2")
    cfg["run"] = {"t0": 1.0, "steps": 20}
    cfg["damping"] = {"schedule": "nesterov"}
    cfg["initial"]["momentum"] = "gaussian"
    res = meanfield.Run(cfg).simulate()
    x, y, v = res.x, res.y, res.state["v"]
    assert np.abs(np.linalg.norm(x, axis=1) - 1.0).max() < 1e-14
    assert np.abs(np.sum(x * y, axis=1)).max() < 1e-14 and np.abs(np.sum(x * v, axis=1)).max() < 1e-14


def _order(tmp_path, splitting):
    d = 2
    w = _mlp_weights(np.random.default_rng(9), d, 6)
    np.savez(tmp_path / "mlp.npz", **w)
    cfg = {"model": {"name": "softmax", "d": d, "dynamics": "first_order", "A": 0.5,
                     "mlp": str(tmp_path / "mlp.npz"), "mlp_splitting": splitting},
           "integrator": {"name": "heun", "h": 0.1}, "run": {"t1": 0.8}, "initial": _gaussian(d, 8)}

    def final(h):
        return meanfield.Run(cfg, [f"integrator.h={h}"]).simulate().x

    exact = final(0.1 / 64)
    errs = [np.abs(final(h) - exact).max() for h in (0.1, 0.05, 0.025)]
    return np.polyfit(np.log([0.1, 0.05, 0.025]), np.log(errs), 1)[0]


def test_lie_splitting_is_first_order_and_strang_second_order(tmp_path):
    from meanfield.integrators.mlp_substep import LieMLP, StrangMLP

    lie, strang = _order(tmp_path, "lie"), _order(tmp_path, "strang")
    assert abs(lie - LieMLP.order) < 0.2, lie
    assert abs(strang - StrangMLP.order) < 0.25, strang


def test_resume_of_an_accelerated_block_is_bit_identical(tmp_path):
    d = 3
    np.savez(tmp_path / "mlp.npz", **_mlp_weights(np.random.default_rng(1), d, 6, L=2))
    cfg = {"model": {"name": "softmax", "dynamics": "accelerated", "d": d, "A": 0.2,
                     "mlp": str(tmp_path / "mlp.npz"), "mlp_gamma": 0.1},
           "damping": {"schedule": "constant", "a": 1.0}, "integrator": {"name": "exp_euler", "h": 0.1},
           "run": {"steps": 7}, "initial": {**_gaussian(d, 10), "momentum": "gaussian"},
           "output": {"save": ["x", "y", "v"]}}
    full = meanfield.Run(cfg).simulate(str(tmp_path / "full.h5"))
    meanfield.Run(cfg, ["run.steps=3"]).simulate(str(tmp_path / "part.h5"))
    with h5py.File(tmp_path / "part.h5") as f:
        assert "v" in f["checkpoint"]
    res = resume_run(str(tmp_path / "part.h5"), ["run.steps=7"])
    for k in ("x", "y", "v"):
        assert np.array_equal(res.state[k], full.state[k]), k
    tr = meanfield.load(str(tmp_path / "part.h5"))
    assert tr.scales["mlp_calls"].tolist() == list(range(8))
    assert np.array_equal(tr.tasks["v"][-1], full.tasks["v"][-1])


def test_the_mlp_is_evaluated_by_blas_for_all_tokens_at_once():
    from meanfield.models.mlp import TokenMLP

    rng = np.random.default_rng(0)
    w = _mlp_weights(rng, 5, 7, L=2)
    mlp = TokenMLP(w["W1"], w["b1"], w["W2"], w["b2"], "tanh")
    x = rng.normal(size=(30, 5))
    out = np.empty_like(x)
    for layer in (0, 1):
        assert np.abs(mlp(x, layer, out) - _mlp(w, x, "tanh", layer)).max() < 1e-14
    out32 = np.empty((30, 5), np.float32)
    assert mlp(x.astype(np.float32), 1, out32).dtype == np.float32
    assert np.abs(out32 - _mlp(w, x, "tanh", 1)).max() < 1e-5


# ----------------------------------------------------------------- bad input

TOML = textwrap.dedent("""\
    [model]
    name = "softmax"
    dynamics = "first_order"
    d = 2
    mlp = "w.npz"
    [integrator]
    h = 0.1
    [run]
    steps = 2
    [initial]
    law = "gaussian"
    n = 8
    mean = [0.0, 0.0]
    cov = [[1.0, 0.0], [0.0, 1.0]]
    """)


def _good():
    return _mlp_weights(np.random.default_rng(0), 2, 3)


BAD = [
    ("wrong shape", lambda w: {**w, "W2": np.ones((3, 2))}, "", "W2"),
    ("missing array", lambda w: {k: v for k, v in w.items() if k != "b1"}, "", "b1"),
    ("NaN weights", lambda w: {**w, "W1": np.full((3, 2), np.nan)}, "", "W1"),
    ("layer counts", lambda w: {**w, "W1": np.ones((2, 3, 2))}, "", "b1"),
    ("activation", lambda w: w, 'mlp_activation = "swish"\n', "mlp_activation"),
    ("bilinear", lambda w: w, None, "model.mlp"),
    ("strang accelerated", lambda w: w, 'mlp_splitting = "strang"\n', "mlp_splitting"),
    ("layers without layers", lambda w: w, "", "run.layers"),
    ("control", lambda w: w, "", None),
]


@pytest.mark.parametrize("what,change,extra,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_weights_exit_2_with_one_line_naming_file_and_array(tmp_path, monkeypatch, what, change,
                                                                 extra, needle):
    monkeypatch.chdir(tmp_path)
    np.savez("w.npz", **change(_good()))
    text = TOML
    if extra is None:
        text = text.replace('"softmax"', '"bilinear"').replace('"first_order"', '"accelerated"')
    elif extra:
        text = text.replace('mlp = "w.npz"\n', 'mlp = "w.npz"\n' + extra)
        if "strang" in extra:
            text = text.replace('"first_order"', '"accelerated"')
    if what == "layers without layers":
        text = text.replace("steps = 2", "layers = true")
    with open("p.toml", "w") as fh:
        fh.write(text)
    res = CliRunner().invoke(cli, ["run", "p.toml", "-o", "o.h5"])
    if needle is None:
        assert res.exit_code == 0, res.output
        return
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    assert "p.toml" in lines[0] and needle in lines[0], lines[0]
    if what in ("wrong shape", "missing array", "NaN weights", "layer counts"):
        assert os.path.join(str(tmp_path), "w.npz") in lines[0] and f"array {needle}" in lines[0], lines[0]
    assert not os.path.exists("o.h5")


def test_bad_per_layer_matrix_files(tmp_path):
    np.save(tmp_path / "A.npy", np.ones((2, 3, 3)))
    cfg = {"model": {"name": "softmax", "dynamics": "first_order", "d": 2, "A": str(tmp_path / "A.npy")},
           "integrator": {"h": 0.1}, "run": {"steps": 1}, "initial": _gaussian(2, 4)}
    with pytest.raises(meanfield.ParameterError, match=r"model\.A = .*A\.npy', array A\] expected shape \(2, 2\) or \(L, 2, 2\), found 'shape \(2, 3, 3\)'"):
        meanfield.Run(cfg)
    np.save(tmp_path / "A.npy", np.stack([np.eye(2), [[0.0, 1.0], [0.0, 0.0]]]))
    cfg["model"]["dynamics"] = "accelerated"
    with pytest.raises(meanfield.ParameterError, match="layer 1 is not symmetric"):
        meanfield.Run(cfg)
    cfg["model"].update(dynamics="first_order", V=str(tmp_path / "V.npy"))
    np.save(tmp_path / "V.npy", np.ones((3, 2, 2)))
    with pytest.raises(meanfield.ParameterError, match="2 layers"):
        meanfield.Run(cfg)
    cfg["model"] = {"name": "sphere", "d": 2, "Q": str(tmp_path / "A.npy")}
    with pytest.raises(meanfield.ParameterError, match="model.Q"):
        meanfield.Run(cfg)


def test_blocks_refuse_mean_shift_and_pde_runs(tmp_path):
    np.savez(tmp_path / "w.npz", **_mlp_weights(np.random.default_rng(0), 1, 3))
    cfg = {"model": {"name": "softmax", "dynamics": "first_order", "d": 1, "mlp": str(tmp_path / "w.npz")},
           "integrator": {"name": "mean_shift", "h": 0.1}, "run": {"steps": 1}, "initial": _gaussian(1, 4)}
    with pytest.raises(meanfield.ParameterError, match=r"integrator\.name.*mean_shift ignores h"):
        meanfield.Run(cfg)
    cfg["integrator"]["name"] = "euler"
    cfg["solver"] = {"kind": "pde"}
    with pytest.raises(meanfield.ParameterError, match=r"solver\.kind"):
        meanfield.Run(cfg)
    cfg.pop("solver")
    cfg["model"]["mlp_beta"] = float("nan")
    with pytest.raises(meanfield.ParameterError, match=r"model\.mlp_beta"):
        meanfield.Run(cfg)


def test_accelerated_block_with_scaled_parameters_discretizes_the_augmented_flow(tmp_path):
    """beta = 1 - a h, gamma = c h^2, mu = beta: first order in h for
    x' = F(x, y) + w, y' = -alpha y + G(x, y), w' = -a w + c MLP(x) (docs/mlp-block.md)."""
    d, a, c, T = 2, 2.0, 1.5, 0.4
    w = _mlp_weights(np.random.default_rng(4), d, 5, scale=0.5)
    np.savez(tmp_path / "mlp.npz", **w)
    base = {"model": {"name": "softmax", "dynamics": "accelerated", "d": d, "A": 0.3,
                      "mlp": str(tmp_path / "mlp.npz")},
            "damping": {"schedule": "constant", "a": 1.0}, "integrator": {"name": "exp_euler", "h": 0.1},
            "run": {"t1": T}, "initial": {**_gaussian(d, 6), "momentum": "gaussian"}}

    def block(h):
        beta = 1.0 - a * h
        return meanfield.Run(base, [f"integrator.h={h}", f"model.mlp_beta={beta}", f"model.mlp_mu={beta}",
                                    f"model.mlp_gamma={c * h * h}"]).simulate().x

    run = meanfield.Run(base)
    model = run.model

    def rhs(t, z):
        x, y, v = z
        F, G = model.hamiltonian_field(np.ascontiguousarray(x), np.ascontiguousarray(y), t)
        return np.stack([F + v, G - 1.0 * y, -a * v + c * _mlp(w, x, "gelu")])

    z, t, k = np.stack([run.x0, run.y0, np.zeros_like(run.x0)]), 0.0, 1e-3
    for _ in range(int(round(T / k))):  # rk4 with a tiny step: the reference solution
        k1 = rhs(t, z)
        k2 = rhs(t + k / 2, z + k / 2 * k1)
        k3 = rhs(t + k / 2, z + k / 2 * k2)
        k4 = rhs(t + k, z + k * k3)
        z, t = z + k / 6 * (k1 + 2 * k2 + 2 * k3 + k4), t + k
    hs = [0.04, 0.02, 0.01]
    errs = [np.abs(block(h) - z[0]).max() for h in hs]
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert 0.85 < slope < 1.2, (slope, errs)
