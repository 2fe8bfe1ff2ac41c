"""GPT-2-style networks from weight files (meanfield.models.network, weights, convert_hf).

Tier 1: an independent NumPy transcription of the block (loops over heads and
tokens, written here from the GPT-2 definition) to 1e-12 relative; bad weight
files give one line naming the file and the array. Tier 3 (when
``transformers`` is installed): a random-weight GPT2Model in float64.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from meanfield.errors import ParameterError
from meanfield.models import make_model
from meanfield.models.weights import LAYER_ARRAYS, load_weights, save_weights

L, H, DH, HID = 2, 4, 6, 40
D = H * DH


def random_weights(rng, L=L, H=H, dh=DH, hid=HID, vocab=50, ctx=16):
    """Random arrays of the schema; every bias and LN gain/bias nonzero (scaled so logits are O(1))."""
    d = H * dh
    s = 1.0 / math.sqrt(d)
    w = {
        "ln1_g": 1 + 0.3 * rng.standard_normal((L, d)), "ln1_b": 0.2 * rng.standard_normal((L, d)),
        "W_q": s * rng.standard_normal((L, H, dh, d)), "W_k": s * rng.standard_normal((L, H, dh, d)),
        "W_v": s * rng.standard_normal((L, H, dh, d)),
        "b_q": 0.3 * rng.standard_normal((L, H, dh)), "b_k": 0.3 * rng.standard_normal((L, H, dh)),
        "b_v": 0.3 * rng.standard_normal((L, H, dh)),
        "W_o": s * rng.standard_normal((L, d, H, dh)), "b_o": 0.2 * rng.standard_normal((L, d)),
        "ln2_g": 1 + 0.3 * rng.standard_normal((L, d)), "ln2_b": 0.2 * rng.standard_normal((L, d)),
        "W1": s * rng.standard_normal((L, hid, d)), "b1": 0.2 * rng.standard_normal((L, hid)),
        "W2": rng.standard_normal((L, d, hid)) / math.sqrt(hid), "b2": 0.2 * rng.standard_normal((L, d)),
        "ln_f_g": 1 + 0.3 * rng.standard_normal(d), "ln_f_b": 0.2 * rng.standard_normal(d),
        "wte": rng.standard_normal((vocab, d)), "wpe": 0.5 * rng.standard_normal((ctx, d)),
    }
    return w


def naive_ln(u, g, b, eps):
    out = np.empty_like(u)
    for i in range(u.shape[0]):
        mu = sum(u[i]) / len(u[i])
        var = sum((u[i] - mu) ** 2) / len(u[i])
        out[i] = g * (u[i] - mu) / math.sqrt(var + eps) + b
    return out


def naive_block(w, l, x, causal=True, eps=1e-5, post=False, mid=None):
    """One pre-LN GPT-2 block (post: a post-LN block), token by token and head by head (plain loops).

    ``mid``: a list that receives the state after the attention sub-layer.
    """
    n, d = x.shape
    Hh, dh = w["W_q"].shape[1:3]
    u = x if post else naive_ln(x, w["ln1_g"][l], w["ln1_b"][l], eps)
    attn = np.tile(w["b_o"][l], (n, 1))
    for h in range(Hh):
        q = [w["W_q"][l, h] @ u[i] + w["b_q"][l, h] for i in range(n)]
        k = [w["W_k"][l, h] @ u[j] + w["b_k"][l, h] for j in range(n)]
        v = [w["W_v"][l, h] @ u[j] + w["b_v"][l, h] for j in range(n)]
        for i in range(n):
            js = range(i + 1) if causal else range(n)
            logits = np.array([q[i] @ k[j] / math.sqrt(dh) for j in js])
            p = np.exp(logits - logits.max())
            p /= p.sum()
            head = sum(pj * v[j] for pj, j in zip(p, js))
            attn[i] += w["W_o"][l][:, h, :] @ head
    x = x + attn
    if post:
        x = naive_ln(x, w["ln1_g"][l], w["ln1_b"][l], eps)
    if mid is not None:
        mid.append(x)
    u = x if post else naive_ln(x, w["ln2_g"][l], w["ln2_b"][l], eps)
    out = x.copy()
    for i in range(n):
        a = w["W1"][l] @ u[i] + w["b1"][l]
        g = 0.5 * a * (1 + np.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a**3)))
        out[i] += w["W2"][l] @ g + w["b2"][l]
    return naive_ln(out, w["ln2_g"][l], w["ln2_b"][l], eps) if post else out


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture
def weights_file(tmp_path):
    rng = np.random.default_rng(7)
    w = random_weights(rng)
    path = tmp_path / "net.npz"
    save_weights(str(path), w)
    return w, path


def network(path, **kw):
    p = {"name": "softmax", "dynamics": "first_order", "weights": str(path), "heads": H, **kw}
    return make_model(p)


@pytest.mark.parametrize("causal", [True, False])
def test_block_matches_naive_transcription(weights_file, causal):
    w, path = weights_file
    model = network(path, causal=causal)
    x = np.random.default_rng(1).standard_normal((10, D))
    ref = x
    got = x
    for l in range(L):
        ref = naive_block(w, l, ref, causal)
        got = model.block(got, l)
        assert rel(got, ref) < 1e-12
    fin = naive_ln(ref, w["ln_f_g"], w["ln_f_b"], 1e-5)
    assert rel(model.readout(got), fin) < 1e-12


def test_post_ln_block_matches_naive_transcription(weights_file):
    """layer_norm = "post": x <- LN1(x + Attn(x)), x <- LN2(x + MLP(x)), every layer to 1e-12."""
    w, path = weights_file
    model = network(path, layer_norm="post")
    x = np.random.default_rng(12).standard_normal((9, D))
    ref = got = x
    for l in range(L):
        ref = naive_block(w, l, ref, post=True)
        got = model.block(got, l)
        assert rel(got, ref) < 1e-12


def _run_network(path, x0, model=None, save=("x",), integrator="euler", damping=None, **run):
    from meanfield.run import Run

    np.save(path.parent / "x0.npy", x0)
    cfg = {"model": {"name": "softmax", "weights": str(path), "heads": H, **(model or {})},
           "integrator": {"name": integrator, "h": run.pop("h", 1.0)},
           "initial": {"law": "file", "path": str(path.parent / "x0.npy")},
           "run": {"layers": True, **run}, "output": {"save": list(save)}}
    if damping:
        cfg["damping"] = damping
    return Run(cfg).simulate()


@pytest.mark.parametrize("ln", ["pre", "post"])
def test_run_saves_mid_states_and_readouts(weights_file, ln):
    """output.save = ["x", "x_mid"]: /tasks/x_mid[l + 1] is the state after block l's attention
    sub-layer (x_mid[0] = x[0]); /tasks/readout[l] = LN_f(x[l]), its last row the network's output."""
    w, path = weights_file
    x0 = np.random.default_rng(13).standard_normal((7, D))
    res = _run_network(path, x0, {"layer_norm": ln}, save=("x", "x_mid"))
    xs, mids, outs = (np.asarray(res[k]) for k in ("x", "x_mid", "readout"))
    assert xs.shape == mids.shape == outs.shape == (L + 1, 7, D)
    np.testing.assert_array_equal(mids[0], x0)
    ref, mid = x0, []
    for l in range(L):
        ref = naive_block(w, l, ref, post=ln == "post", mid=mid)
        assert rel(xs[l + 1], ref) < 1e-12 and rel(mids[l + 1], mid[-1]) < 1e-12
        assert rel(outs[l + 1], naive_ln(ref, w["ln_f_g"], w["ln_f_b"], 1e-5)) < 1e-12
    assert "x_mid" not in _run_network(path, x0).tasks


def test_fold_mode_equals_affine_mode(weights_file):
    """ln_mode = "fold": the stream is P x of the affine stream (P = I - 11^T/d) and every read-out is
    the same, to round-off; the tokens stay centred and LN1 maps them onto the sqrt(d) sphere (eps -> 0)."""
    w, path = weights_file
    x0 = np.random.default_rng(14).standard_normal((8, D)) + 3.0  # not centred: fold centres it
    aff = _run_network(path, x0)
    fold = _run_network(path, x0, {"ln_mode": "fold"})
    xa, xf = np.asarray(aff["x"]), np.asarray(fold["x"])
    P = np.eye(D) - 1.0 / D
    for l in range(L + 1):
        assert rel(xf[l], xa[l] @ P) < 1e-12, l
    assert np.abs(xf.mean(axis=2)).max() < 1e-13 * np.abs(xf).max()
    assert rel(np.asarray(fold["readout"]), np.asarray(aff["readout"])) < 1e-12
    assert fold.config["model"]["ln_mode"] == "fold"
    from meanfield.models.network import radial_norm

    u = radial_norm(xf[-1], 0.0, np.empty_like(xf[-1]))
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), math.sqrt(D), rtol=1e-14)


def test_fold_needs_pre_ln(weights_file):
    _, path = weights_file
    with pytest.raises(ParameterError, match="model.ln_mode.*fold needs pre-LN"):
        network(path, layer_norm="post", ln_mode="fold")


def test_layer_is_chosen_by_time(weights_file):
    """h = 1/2 with layers = true: 2 L steps to t = L; layer l acts for t in [l, l + 1)."""
    _, path = weights_file
    x0 = np.random.default_rng(15).standard_normal((6, D))
    res = _run_network(path, x0, h=0.5, save_every=2)
    model = network(path)
    x, f = x0.copy(), np.empty_like(x0)
    for l in range(L):
        for _ in range(2):
            x = x + 0.5 * model.attention(x, f, l)
            x = x + 0.5 * model.mlp_field(x, x, l, f)
    xs = np.asarray(res["x"])
    assert xs.shape[0] == L + 1 and float(np.asarray(res["sim_time"])[-1]) == L
    assert rel(xs[-1], x) < 1e-13


def test_causal_first_token_sees_itself_only(weights_file):
    _, path = weights_file
    model = network(path)
    x = np.random.default_rng(2).standard_normal((8, D))
    f = model.first_order(x, 0.0)
    x2 = x.copy()
    x2[3:] += np.random.default_rng(3).standard_normal((5, D))  # later tokens change: earlier fields must not
    f2 = model.first_order(x2, 0.0)
    np.testing.assert_array_equal(f[:3], f2[:3])
    assert np.abs(f[3:] - f2[3:]).max() > 1e-3


def test_safetensors_equals_npz(weights_file, tmp_path):
    pytest.importorskip("safetensors")
    w, path = weights_file
    st = tmp_path / "net.safetensors"
    save_weights(str(st), w)
    x = np.random.default_rng(3).standard_normal((9, D))
    np.testing.assert_array_equal(network(path).block(x, 1), network(st).block(x, 1))


def test_run_of_euler_h1_is_the_network(weights_file):
    """A run with [run] layers = true, euler, h = 1: each save is one block (x_mid-free Lie sub-step)."""
    from meanfield.run import Run

    w, path = weights_file
    x0 = np.random.default_rng(4).standard_normal((12, D))
    np.save(path.parent / "x0.npy", x0)
    cfg = {"model": {"name": "softmax", "dynamics": "first_order", "d": D, "heads": H, "causal": True,
                     "weights": str(path)},
           "integrator": {"name": "euler", "h": 1.0}, "initial": {"law": "file", "path": str(path.parent / "x0.npy")},
           "run": {"layers": True, "save_every": 1}}
    res = Run(cfg).simulate()
    xs = np.asarray(res["x"])
    ref = x0
    for l in range(L):
        ref = naive_block(w, l, ref)
        assert rel(xs[l + 1], ref) < 1e-12


def test_single_head_equals_softmax_model():
    """H = 1 with W_o = I, d_h = d, no LN, no biases: the attention field is the softmax model's with
    A = W_q^T W_k / sqrt(d), V = W_v, normalized, causal."""
    rng = np.random.default_rng(5)
    d = 6
    w = random_weights(rng, L=2, H=1, dh=d, hid=8)
    for k in ("b_q", "b_k", "b_v", "b_o"):
        w[k][:] = 0.0
    w["W_o"][:] = np.eye(d)[None, :, None, :]
    import tempfile, os

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "one.npz")
        save_weights(path, w)
        net = make_model({"name": "softmax", "dynamics": "first_order", "weights": path, "layer_norm": "none"})
    A = w["W_q"][0, 0].T @ w["W_k"][0, 0] / math.sqrt(d)
    V = w["W_v"][0, 0]
    soft = make_model({"name": "softmax", "dynamics": "first_order", "d": d, "A": A.tolist(),
                       "V": V.tolist(), "causal": True, "normalized": True})
    x = rng.standard_normal((9, d))
    assert rel(net.first_order(x, 0.0), soft.first_order(x, 0.0)) < 1e-12


@pytest.mark.parametrize("name, change, phrase", [
    ("W_k", lambda w: w.pop("W_k"), "no array W_k"),
    ("b_v", lambda w: w.__setitem__("b_v", w["b_v"][:, :, :-1]), "shape"),
    ("W1", lambda w: w.__setitem__("W1", w["W1"].copy()) or w["W1"].__setitem__((0, 1, 2), np.nan),
     "finite"),
    ("W2", lambda w: w.__setitem__("W2", w["W2"].astype(np.float16)), "float16"),
    ("ln2_g", lambda w: w.__setitem__("ln2_g", w["ln2_g"].astype(np.int64)), "int64"),
    ("W_q", lambda w: w.__setitem__("W_q", w["W_q"].reshape(L, H, DH * D)[:, :, : (DH - 1) * D]
                                    .reshape(L, H, DH - 1, D)), "does not divide"),
])
@pytest.mark.parametrize("ext", [".npz", ".safetensors"])
def test_bad_weight_files_name_file_and_array(tmp_path, name, change, phrase, ext):
    if ext == ".safetensors":
        pytest.importorskip("safetensors")
    w = random_weights(np.random.default_rng(6))
    change(w)
    path = tmp_path / ("bad" + ext)
    save_weights(str(path), w)
    with pytest.raises(ParameterError) as err:
        network(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and f"array {name}" in msg and phrase in msg, msg


@pytest.mark.parametrize("cut", [3, 20, 200])
def test_truncated_safetensors_is_one_line(tmp_path, cut):
    pytest.importorskip("safetensors")
    path = tmp_path / "cut.safetensors"
    save_weights(str(path), random_weights(np.random.default_rng(8)))
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(ParameterError) as err:
        load_weights(str(path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "model.weights" in msg, msg


def test_cli_bad_weights_exit_2(tmp_path):
    from click.testing import CliRunner

    from meanfield_cli.main import cli

    w = random_weights(np.random.default_rng(9))
    w.pop("ln1_b")
    save_weights(str(tmp_path / "net.npz"), w)
    (tmp_path / "p.toml").write_text(
        '[model]\nname = "softmax"\ndynamics = "first_order"\nweights = "net.npz"\n'
        '[integrator]\nname = "euler"\nh = 1.0\n[initial]\nlaw = "gaussian"\nn = 4\n[run]\nlayers = true\n')
    res = CliRunner().invoke(cli, ["run", str(tmp_path / "p.toml"), "-o", str(tmp_path / "o.h5")])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "array ln1_b" in lines[0] and "net.npz" in lines[0], res.output


def test_schema_is_complete():
    assert set(LAYER_ARRAYS) <= set(random_weights(np.random.default_rng(0)))


def random_gpt2(seed, **config):
    """A random-weight transformers GPT2Model in float64 (eager attention), LN gains/biases and every
    bias perturbed (zero biases and unit gains would hide a transposed or misplaced array)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(attn_implementation="eager", bos_token_id=0, eos_token_id=0, **config)
    hf = transformers.GPT2Model(cfg).to(torch.float64).eval()
    with torch.no_grad():
        for name, prm in hf.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                prm.add_(0.2 * torch.randn_like(prm))
    return hf


def gpt2_reference(hf, ids):
    """What transformers computes for token ``ids``: ``(hidden (L + 1, N, d), last (N, d))``.

    ``hidden`` = embeddings, then the residual stream after each block (the last one before the
    final LayerNorm, captured by a hook); ``last`` = the final LayerNorm output.
    """
    import torch

    pre_final = {}
    # a forward hook that returns a value replaces the module's output: this one returns None
    hook = hf.ln_f.register_forward_hook(lambda mod, inp, out: pre_final.update(x=inp[0].clone()))
    with torch.no_grad():
        out = hf(torch.as_tensor(np.asarray(ids))[None], output_hidden_states=True)
    hook.remove()
    L = hf.config.n_layer
    hidden = [h[0].numpy() for h in out.hidden_states[:L]] + [pre_final["x"][0].numpy()]
    return np.stack(hidden), out.last_hidden_state[0].numpy()


def check_layers_against(weights, ids, hidden, last):
    """A run of ``weights`` on token ``ids`` (layers = true, euler, h = 1): every saved layer equals
    ``hidden (L + 1, N, d)`` and /tasks/readout's last row (the network's output) ``last``, to 1e-12."""
    from meanfield.run import Run

    res = Run({"model": {"name": "softmax", "weights": weights}, "integrator": {"name": "euler", "h": 1.0},
               "initial": {"law": "tokens", "ids": ids}, "run": {"layers": True, "save_every": 1}}).simulate()
    xs = np.asarray(res["x"])
    assert xs.shape == hidden.shape
    for l in range(hidden.shape[0]):
        assert rel(xs[l], hidden[l]) < 1e-12, l
    assert rel(np.asarray(res["readout"])[-1], last) < 1e-12  # /tasks/readout: the network's output


def test_gpt2_from_transformers_matches_every_layer(tmp_path, monkeypatch):
    """Tier 3: a random-weight GPT2Model in float64 (LN gains/biases and all biases perturbed),
    converted by meanfield.convert_hf: the embeddings, every hidden state (the last one before the
    final LN) and the final LN output to 1e-12 relative, through a run (euler, h = 1, run.layers)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from meanfield.convert_hf import gpt2_to_schema

    hf = random_gpt2(0, n_layer=2, n_head=4, n_embd=64, vocab_size=97, n_positions=32, initializer_range=0.1)
    ids = [5, 17, 3, 96, 40, 40, 2, 11, 64, 8, 0]
    hidden, last = gpt2_reference(hf, ids)
    path = tmp_path / "gpt2.safetensors"
    save_weights(str(path), gpt2_to_schema(hf))
    check_layers_against(str(path), ids, hidden, last)


def test_tokens_law_embeds_ids(weights_file, tmp_path):
    """[initial] law = "tokens": x_i(0) = wte[ids[i]] + wpe[i], from a list or an .npy of ids."""
    from meanfield.run import Run

    w, path = weights_file
    ids = [3, 0, 49, 7, 7]
    np.save(tmp_path / "ids.npy", np.array(ids))
    for initial in ({"law": "tokens", "ids": ids}, {"law": "tokens", "ids_path": "ids.npy"}):
        cfg = {"model": {"name": "softmax", "dynamics": "first_order", "weights": str(path)},
               "integrator": {"name": "euler", "h": 1.0}, "initial": initial, "run": {"layers": True}}
        run = Run(cfg, base_dir=str(tmp_path))
        np.testing.assert_array_equal(run.x0, w["wte"][ids] + w["wpe"][:5])


@pytest.mark.parametrize("initial, key, phrase", [
    ({"law": "tokens", "ids": [1, 50]}, "initial.ids", "[0, 50)"),
    ({"law": "tokens", "ids": [1.5]}, "initial.ids", "integer"),
    ({"law": "tokens"}, "initial.ids", "ids or ids_path"),
    ({"law": "tokens", "ids": list(range(17))}, "initial.ids", "at most 16"),
])
def test_tokens_law_bad_ids(weights_file, initial, key, phrase):
    from meanfield.run import Run

    _, path = weights_file
    cfg = {"model": {"name": "softmax", "dynamics": "first_order", "weights": str(path)},
           "integrator": {"name": "euler", "h": 1.0}, "initial": initial, "run": {"layers": True}}
    with pytest.raises(ParameterError) as err:
        Run(cfg)
    assert f"[{key}]" in str(err.value) and phrase in str(err.value), str(err.value)


def test_tokens_law_needs_a_network():
    from meanfield.run import Run

    cfg = {"model": {"name": "softmax", "dynamics": "first_order", "d": 2},
           "integrator": {"name": "euler", "h": 0.1}, "initial": {"law": "tokens", "ids": [1, 2]},
           "run": {"steps": 1}}
    with pytest.raises(ParameterError, match=r"\[initial.law\].*model.weights"):
        Run(cfg)


def test_dynamics_defaults_to_first_order(weights_file):
    _, path = weights_file
    model = make_model({"name": "softmax", "weights": str(path)})  # as INTERFACE.md's example: no dynamics
    assert model.dynamics == "first_order"
    with pytest.raises(ParameterError) as err:  # the Nesterov MLP parameters belong to accelerated blocks
        make_model({"name": "softmax", "weights": str(path), "mlp_mu": 0.5})
    assert "[model.mlp_mu]" in str(err.value) and "\n" not in str(err.value)


def test_accelerated_field_is_the_flat_damped_flow(weights_file):
    """dynamics = "accelerated": (F, G) = (y, Attn(LN1(x))); rk4 on x'' + alpha x' = Attn(LN1(x)) (one
    layer, no MLP) converges at order 4 to scipy's solution."""
    from scipy.integrate import solve_ivp

    from meanfield.integrators import make_integrator
    from meanfield.schedules import make_schedule

    _, path = weights_file
    model = network(path, dynamics="accelerated")
    rng = np.random.default_rng(16)
    x0, y0 = rng.standard_normal((6, D)), 0.3 * rng.standard_normal((6, D))
    F, G = model.hamiltonian_field(x0, y0, 0.0)
    np.testing.assert_array_equal(F, y0)
    np.testing.assert_array_equal(G, model.attention(x0, np.empty_like(x0), 0))
    alpha, T = 0.7, 1.0

    def rhs(t, z):
        x, y = z[: x0.size].reshape(x0.shape), z[x0.size:].reshape(x0.shape)
        return np.concatenate([y.ravel(), (-alpha * y + model.attention(x, np.empty_like(x), 0)).ravel()])

    ref = solve_ivp(rhs, (0, T), np.concatenate([x0.ravel(), y0.ravel()]), method="DOP853", rtol=1e-13,
                    atol=1e-13).y[: x0.size, -1].reshape(x0.shape)
    rk4, sched = make_integrator("rk4", "accelerated"), make_schedule("constant", 0.0, a=alpha)
    errs = []
    for n in (4, 8, 16):
        x, y = x0.copy(), y0.copy()
        for k in range(n):
            x, y = rk4.step(model, sched, k * T / n, T / n, x, y)
        errs.append(np.abs(x - ref).max())
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(3.6 < o < 4.4 for o in orders), (errs, orders)


def test_accelerated_run_is_attention_step_then_nesterov_mlp(weights_file):
    """An accelerated network run (layers = true, heavy_ball, h = 1): each step is the integrator's
    attention step with layer l, then SympFormer's MLP sub-step x_in = x + mu v, v <- beta v + gamma
    MLP(LN2(x_in)), x <- x + v; the same oracle calls as the first-order pass (one per layer)."""
    from meanfield.integrators import make_integrator
    from meanfield.schedules import make_schedule

    _, path = weights_file
    x0 = np.random.default_rng(17).standard_normal((7, D))
    mu, beta, gamma = 0.8, 0.7, 0.9
    res = _run_network(path, x0, {"dynamics": "accelerated", "mlp_mu": mu, "mlp_beta": beta,
                                  "mlp_gamma": gamma}, save=("x", "y", "v"), integrator="heavy_ball",
                       damping={"schedule": "constant", "a": 0.5})
    model = network(path, dynamics="accelerated")
    hb, sched = make_integrator("heavy_ball", "accelerated"), make_schedule("constant", 0.0, a=0.5)
    x, y, v, f = x0.copy(), np.zeros_like(x0), np.zeros_like(x0), np.empty_like(x0)
    for l in range(L):
        model.use_layer(l)
        x, y = hb.step(model, sched, float(l), 1.0, x, y)
        xin = x + mu * v
        v = beta * v + gamma * model.mlp_field(xin, x, l, f)
        x = x + v
        for name, ref in (("x", x), ("y", y), ("v", v)):
            assert rel(np.asarray(res[name])[l + 1], ref) < 1e-12, (l, name)
    assert res.oracle_calls == L and "kinetic" in res.tasks


def test_fold_keeps_accelerated_velocities_centred(weights_file):
    _, path = weights_file
    x0 = np.random.default_rng(18).standard_normal((5, D))
    res = _run_network(path, x0, {"dynamics": "accelerated", "ln_mode": "fold"}, save=("x", "y", "v"),
                       integrator="heavy_ball", damping={"schedule": "constant", "a": 0.5})
    for name in ("x", "y", "v"):
        a = np.asarray(res[name])
        assert np.abs(a.mean(axis=2)).max() < 1e-13 * max(1.0, np.abs(a).max()), name


def _symmetric_heads(tmp_path, H_=3, seed=19, L_=2):
    """Weights with W_k = W_q (symmetric heads) and no q/k biases, saved; returns (w, path)."""
    w = random_weights(np.random.default_rng(seed), L=L_, H=H_, dh=D // H_)
    w["W_k"] = w["W_q"].copy()
    w["b_q"][:] = 0.0
    w["b_k"][:] = 0.0
    path = tmp_path / f"sym{H_}.npz"
    save_weights(str(path), w)
    return w, path


def test_mobility_single_head_is_the_softmax_hamiltonian_bit_for_bit(tmp_path):
    """metric = "mobility", H = 1: field and energies are the accelerated softmax model's with
    A = W_q^T W_k / sqrt(d_h), bit for bit (the same exact pair passes)."""
    w, path = _symmetric_heads(tmp_path, H_=1)
    from meanfield.models.mobility_heads import head_matrices

    for causal in (True, False):
        net = make_model({"name": "softmax", "weights": str(path), "heads": 1, "dynamics": "accelerated",
                          "metric": "mobility", "layer_norm": "none", "causal": causal})
        A = head_matrices(load_weights(str(path)))[0, 0]
        np.testing.assert_allclose(A, w["W_q"][0, 0].T @ w["W_k"][0, 0] / math.sqrt(D), rtol=1e-13, atol=1e-15)
        soft = make_model({"name": "softmax", "dynamics": "accelerated", "d": D, "A": A.tolist(), "causal": causal})
        _same_hamiltonian(net, soft)


def _same_hamiltonian(net, soft):
    rng = np.random.default_rng(20)
    x, y = 0.5 * rng.standard_normal((11, D)), 0.5 * rng.standard_normal((11, D))
    for a, b in zip(net.hamiltonian_field(x, y, 0.0), soft.hamiltonian_field(x, y, 0.0)):
        np.testing.assert_array_equal(a, b)
    e_net, e_soft = net.energies(x, y), soft.energies(x, y)
    for k in ("energy", "kinetic", "interaction"):
        assert e_net[k] == e_soft[k], k


def test_mobility_heads_conserve_their_hamiltonian(tmp_path):
    """H = 3 symmetric heads: H = sum_h H_h is conserved along (F, G) = (N dH/dy, -N dH/dx) (central
    differences, alpha = 0), and F = y sum_h 1/z_i^h."""
    w, path = _symmetric_heads(tmp_path, H_=3)
    net = make_model({"name": "softmax", "weights": str(path), "heads": 3, "dynamics": "accelerated",
                      "metric": "mobility", "layer_norm": "none", "causal": False})  # masks break it (§6)
    net.use_layer(1)
    rng = np.random.default_rng(21)
    x, y = 0.5 * rng.standard_normal((9, D)), 0.5 * rng.standard_normal((9, D))
    F, G = net.hamiltonian_field(x, y, 0.0)
    eps = 1e-6
    dH = (net.energies(x + eps * F, y + eps * G)["energy"] - net.energies(x - eps * F, y - eps * G)["energy"])
    assert abs(dH / (2 * eps)) < 1e-7 * np.abs(F).max() * np.abs(G).max(), dH
    inv_z = sum(1.0 / m.z(x) for m in net._mobility.models)
    assert rel(F, y * inv_z[:, None]) < 1e-12
    dHdy = (net.energies(x, y + eps * G)["energy"] - net.energies(x, y - eps * G)["energy"]) / (2 * eps)
    assert abs(dHdy - float(np.sum(F * G)) / 9) < 1e-7 * abs(dHdy)  # N dH/dy = F


@pytest.mark.parametrize("change, model, phrase", [
    (lambda w: w.__setitem__("W_k", w["W_k"] + 0.1), {}, "layer 0, head 0 is not"),
    (lambda w: w["b_k"].__setitem__((1, 2, 0), 0.5), {}, "array b_k is nonzero in layer 1, head 2"),
    (lambda w: None, {"layer_norm": "pre"}, "layer_norm"),
    (lambda w: None, {"dynamics": "first_order"}, "layer_norm"),
])
def test_mobility_refuses_what_has_no_hamiltonian(tmp_path, change, model, phrase):
    w, path = _symmetric_heads(tmp_path)
    change(w)
    save_weights(str(path), w)
    p = {"name": "softmax", "weights": str(path), "heads": 3, "dynamics": "accelerated", "metric": "mobility",
         "layer_norm": "none", **model}
    with pytest.raises(ParameterError) as err:
        make_model(p)
    msg = str(err.value)
    assert "[model.metric]" in msg and phrase in msg and "\n" not in msg, msg


def test_mobility_run_records_the_hamiltonian(tmp_path):
    _, path = _symmetric_heads(tmp_path)
    x0 = 0.3 * np.random.default_rng(22).standard_normal((6, D))
    res = _run_network(path, x0, {"heads": 3, "dynamics": "accelerated", "metric": "mobility",
                                  "layer_norm": "none", "causal": False, "mlp_gamma": 0.0},
                       integrator="tao2", h=0.05, damping={"schedule": "constant", "a": 1.0}, save_every=1)
    assert res.oracle_calls == 4 * 20 * L and res.config["model"]["metric"] == "mobility"
    e, k, u = (np.asarray(res[n]) for n in ("energy", "kinetic", "interaction"))
    np.testing.assert_allclose(e, k + u, rtol=1e-13)
    # no MLP force (mlp_gamma = 0): the damped flow dissipates each layer's H (saves 0-20 are
    # computed with layer 0's heads, 21-40 with layer 1's: H changes with the layer at t = 1)
    assert k[0] == 0.0 and k[-1] > 0.0
    assert np.all(np.diff(e[:21]) < 0) and np.all(np.diff(e[21:]) < 0), e


def test_float32_block_within_float32_round_off(weights_file):
    w, path = weights_file
    x = np.random.default_rng(10).standard_normal((10, D))
    m64 = network(path)
    m32 = make_model({"name": "softmax", "dynamics": "first_order", "weights": str(path)}, dtype=np.float32)
    y64, y32 = x, x.astype(np.float32)
    for l in range(L):
        y64, y32 = m64.block(y64, l), m32.block(y32, l)
    assert y32.dtype == np.float32
    err = rel(y32.astype(np.float64), y64)
    assert err < 1e-5, err


def test_general_h_is_first_order_in_h(weights_file):
    """Small h: the Lie splitting of x' = Attn(LN1(x)), x' = MLP(LN2(x)) by Euler converges at order 1
    to the ODE's flow of one layer (reference: h / 16 twice, Richardson-free ratio of errors ~ 2)."""
    _, path = weights_file
    model = network(path)
    x0 = np.random.default_rng(11).standard_normal((8, D))

    def flow(h, T=0.5):
        x = x0.copy()
        f = np.empty_like(x)
        for _ in range(int(round(T / h))):
            x = x + h * model.attention(x, f, 0)
            x = x + h * model.mlp_field(x, x, 0, f)
        return x

    ref = flow(2.0**-12)
    errs = [np.abs(flow(h) - ref).max() for h in (2.0**-4, 2.0**-5, 2.0**-6)]
    ratios = [errs[i] / errs[i + 1] for i in range(2)]
    assert all(1.7 < r < 2.3 for r in ratios), (errs, ratios)


def test_resume_is_bit_identical(weights_file, tmp_path):
    """2 blocks, then a resume to 4 (layers 0, 1, 0, 1) equals 4 blocks in one run, bit for bit."""
    import h5py
    from click.testing import CliRunner

    from meanfield_cli.main import cli

    _, path = weights_file
    toml = tmp_path / "p.toml"
    toml.write_text(f'[model]\nname = "softmax"\nweights = "{path.name}"\nheads = {H}\n'
                    '[integrator]\nname = "euler"\nh = 1.0\n[initial]\nlaw = "tokens"\nids = [4, 20, 7, 7, 1]\n'
                    '[run]\nsteps = 2\n')
    run = CliRunner()
    for args in (["-o", str(tmp_path / "a.h5")], ["-o", str(tmp_path / "a.h5"), "--resume", "--set", "run.steps=4"],
                 ["-o", str(tmp_path / "b.h5"), "--set", "run.steps=4"]):
        res = run.invoke(cli, ["run", str(toml), *args])
        assert res.exit_code == 0, res.output
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        np.testing.assert_array_equal(a["tasks/x"][-1], b["tasks/x"][-1])
        assert a["tasks/x"].shape == b["tasks/x"].shape


def test_committed_gpt2_fixture_matches_transformers():
    """Tier 2 (no torch needed): tests/data/gpt2_tiny.safetensors and the hidden states transformers
    computed for it (tests/data/make_gpt2_fixture.py), through a run from token ids."""
    pytest.importorskip("safetensors")
    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    with np.load(os.path.join(data, "gpt2_tiny_hidden.npz")) as ref:
        ids, hidden, last = ref["ids"], ref["hidden"], ref["last"]
    check_layers_against(os.path.join(data, "gpt2_tiny.safetensors"), ids.tolist(), hidden, last)


def test_convert_hf_refuses_what_it_cannot_convert_in_one_line(tmp_path):
    from click.testing import CliRunner

    from meanfield_cli.main import cli

    runner = CliRunner()
    res = runner.invoke(cli, ["convert-hf", str(tmp_path), "-o", str(tmp_path / "w.safetensors")])
    assert res.exit_code == 2 and "config.json" in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    (tmp_path / "config.json").write_text("{}")
    res = runner.invoke(cli, ["convert-hf", str(tmp_path), "-o", str(tmp_path / "w.h5")])
    assert res.exit_code == 2 and ".safetensors or .npz" in res.output


def test_convert_hf_writes_the_schema(tmp_path):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from click.testing import CliRunner

    from meanfield.convert_hf import gpt2_to_schema
    from meanfield.models.weights import load_weights
    from meanfield_cli.main import cli

    cfg = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=32, n_positions=16, vocab_size=50)
    model = transformers.GPT2Model(cfg).double()
    model.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "w.safetensors"
    res = CliRunner().invoke(cli, ["convert-hf", str(tmp_path / "ckpt"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "2 layers, 4 heads of 8, d = 32" in res.output
    want = gpt2_to_schema(model)
    got = load_weights(str(out))
    for name, arr in want.items():
        assert np.array_equal(got[name], arr), name


def test_first_order_step_allocates_no_token_array(weights_file):
    """An Euler step's combination ``a x + b Attn(LN1(x))`` reuses the model's buffers: no (N, d)
    temporary (``b * f`` was one: 3 MB per step at GPT-2-small size in float32), and the bits of
    ``a x + (b f)``."""
    import tracemalloc

    _, path = weights_file
    model = network(path)
    x = np.random.default_rng(21).standard_normal((400, D))
    out, f = np.empty_like(x), np.empty_like(x)
    model.use_layer(1)
    ref = x + 0.3 * model.attention(x, f, 1)
    field = f.copy()

    def attention(x, out, layer=None):  # the field without the heads kernel's own work arrays
        out[...] = field
        return out

    model.attention = attention
    model._combine_first_order(x, 0.0, 1.0, 0.3, out)  # buffers made
    tracemalloc.start()
    try:
        model._combine_first_order(x, 0.0, 1.0, 0.3, out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes // 2, peak
    np.testing.assert_array_equal(out, ref)
