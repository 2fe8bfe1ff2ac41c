"""Cosine similarity and effective rank through a random GPT-2-shape network

A GPT-2-shape network (pre-LN blocks, H causal heads, a gelu_tanh MLP; d = 64,
H = 4, L = 12 at the default size) with random weights, run by meanfield as a
particle system: N tokens x_i(0) = wte[id_i] + wpe[i], one Euler step with
h = 1 per block (``[run] layers = true``), so save l is the residual stream
after l blocks. Three initializations of the same shapes: GPT-2's (weights
N(0, 0.02^2), the two projections that write to the stream scaled by
1/sqrt(2 L)), the same without that scaling, and every weight N(0, 1/d).

Left: the distribution of the pairwise cosine similarities of the tokens
against depth (mean, 25-75% and 5-95% bands; Ethayarajh 2019 measured the
same on trained GPT-2); middle: the entropy effective rank of X (Roy &
Vetterli 2007); right: the rank collapse ||X - 1 xbar^T||_F / ||X||_F (Dong,
Cordonnier & Loukas 2021). What to look for: random attention averages the
tokens, so they align and lose rank with depth; GPT-2's 1/sqrt(2 L) scaling of
the residual branches keeps the stream nearly isotropic over its 12 layers,
while the unscaled branches make the tokens markedly anisotropic (default size:
mean cosine 0.002 -> 0.05 over 12 layers against 0.45 and 0.54, effective
rank 51 -> 45 against 31). Dashed: the first network's weights run as
accelerated (SympFormer) blocks at the same oracle calls (one attention
evaluation per layer): ``dynamics = "accelerated"``, every block a heavy-ball
attention step (beta = 0.9) on x'' + alpha x' = Attn(LN1(x)) and SympFormer's
Nesterov MLP sub-step on its own velocity (docs/models.md): at 12 oracle calls
each, the inertia makes the tokens lose rank faster (effective rank 51 -> 38
against 45) at nearly the same mean cosine (0.043 against 0.049). ``--weights FILE``
runs a network of your own (a weight file of docs/models.md with wte and wpe)
instead.
"""

import argparse
import math
import os
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import meanfield
import meanfield.plotting
from meanfield.errors import ParameterError
from meanfield.models.weights import load_weights, save_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {"small": (32, 2, 4, 16), "default": (64, 4, 12, 64), "large": (768, 12, 12, 256)}  # d, H, L, N
VOCAB = 512


def gpt2_weights(rng, d, heads, layers, n, std, resid_std):
    """Random arrays of the weight schema: N(0, std^2), the stream-writing W_o and W2 N(0, resid_std^2),
    zero biases and unit LayerNorm gains (Hugging Face's GPT-2 initialization for std = 0.02)."""
    dh, hid = d // heads, 4 * d

    def normal(*shape, sd=std):
        return sd * rng.standard_normal(shape)

    def zeros(*shape):
        return np.zeros(shape)

    return {"ln1_g": np.ones((layers, d)), "ln1_b": zeros(layers, d), "ln2_g": np.ones((layers, d)),
            "ln2_b": zeros(layers, d), "W_q": normal(layers, heads, dh, d), "W_k": normal(layers, heads, dh, d),
            "W_v": normal(layers, heads, dh, d), "b_q": zeros(layers, heads, dh), "b_k": zeros(layers, heads, dh),
            "b_v": zeros(layers, heads, dh), "W_o": normal(layers, d, heads, dh, sd=resid_std),
            "b_o": zeros(layers, d), "W1": normal(layers, hid, d), "b1": zeros(layers, hid),
            "W2": normal(layers, d, hid, sd=resid_std), "b2": zeros(layers, d),
            "ln_f_g": np.ones(d), "ln_f_b": zeros(d), "wte": normal(VOCAB, d), "wpe": normal(n, d, sd=0.01)}


#: The accelerated blocks: heavy_ball with h = 1 and alpha = 0.1 (beta = 1 - h alpha = 0.9), the
#: Nesterov MLP sub-step's defaults (mu = beta = 0.9, gamma = 1).
ACCELERATED = {"model": {"dynamics": "accelerated"}, "integrator": {"name": "heavy_ball", "h": 1.0},
               "damping": {"schedule": "constant", "a": 0.1}}


def run(path, n, accelerated=False):
    """The network of weight file ``path`` on n random tokens (at most its positions), one save per layer.

    ``accelerated``: the same weights as SympFormer blocks (:data:`ACCELERATED`), same oracle calls.
    """
    w = load_weights(path)
    if w.get("wte") is None or w.get("wpe") is None:
        raise ParameterError("--weights", "a weight file with wte and wpe (token embeddings)", path)
    ids = np.random.default_rng(1).integers(0, w["wte"].shape[0], min(n, w["wpe"].shape[0])).tolist()
    cfg = {"model": {"name": "softmax", "weights": path}, "integrator": {"name": "euler", "h": 1.0},
           "initial": {"law": "tokens", "ids": ids}, "run": {"layers": True}}
    if accelerated:
        cfg["model"].update(ACCELERATED["model"])
        cfg.update(integrator=ACCELERATED["integrator"], damping=ACCELERATED["damping"])
    return meanfield.Run(cfg).simulate()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SIZES), default="default")
    ap.add_argument("--weights", default=None, help="a weight file (.npz/.safetensors) with wte, wpe to run instead")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "gallery", "gpt2_layers.png"))
    args = ap.parse_args(argv)
    meanfield.plotting.check_script_outputs(ap.prog, out=args.out)  # before computing
    d, heads, layers, n = SIZES[args.size]
    results = {}
    if args.weights:
        try:
            results[os.path.basename(args.weights)] = run(args.weights, n)
            accelerated = run(args.weights, n, accelerated=True)
        except ParameterError as exc:
            print(f"{ap.prog}: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    else:
        inits = {"GPT-2 init (0.02, branches / sqrt(2L))": (0.02, 0.02 / math.sqrt(2 * layers)),
                 "0.02, unscaled branches": (0.02, 0.02),
                 "N(0, 1/d)": (1 / math.sqrt(d), 1 / math.sqrt(d))}
        with tempfile.TemporaryDirectory() as tmp:
            for k, (name, (std, resid)) in enumerate(inits.items()):
                path = os.path.join(tmp, f"w{k}.npz")
                save_weights(path, gpt2_weights(np.random.default_rng(0), d, heads, layers, n, std, resid))
                results[name] = run(path, n)
                if k == 0:
                    accelerated = run(path, n, accelerated=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for c, (name, res) in enumerate(results.items()):
        depth = np.asarray(res["iteration"], float)
        meanfield.plotting.cosine_band(axes[0], depth, np.asarray(res["cos_mean"]), np.asarray(res["cos_quantiles"]),
                                       f"C{c}", name)
        axes[1].plot(depth, res["effective_rank"], "-o", ms=3, color=f"C{c}", label=name)
        axes[2].plot(depth, res["rank_collapse"], "-o", ms=3, color=f"C{c}", label=name)
        print(f"{name}: cos mean {res['cos_mean'][0]:.3f} -> {res['cos_mean'][-1]:.3f}, effective rank "
              f"{res['effective_rank'][0]:.1f} -> {res['effective_rank'][-1]:.1f}, {res.oracle_calls} oracle calls")
    first = next(iter(results))
    depth = np.asarray(accelerated["iteration"], float)
    axes[0].plot(depth, accelerated["cos_mean"], "--", color="C0", label=f"{first}: accelerated blocks")
    axes[1].plot(depth, accelerated["effective_rank"], "--", color="C0", label=f"{first}: accelerated blocks")
    axes[2].plot(depth, accelerated["rank_collapse"], "--", color="C0",
                 label="same weights, accelerated (SympFormer) blocks")
    print(f"{first}, accelerated blocks: cos mean {accelerated['cos_mean'][0]:.3f} -> "
          f"{accelerated['cos_mean'][-1]:.3f}, effective rank {accelerated['effective_rank'][0]:.1f} -> "
          f"{accelerated['effective_rank'][-1]:.1f}, {accelerated.oracle_calls} oracle calls")
    axes[0].set_ylabel("cosine similarity of tokens, pairs i != j")
    axes[0].set_title("line: mean; bands: 25-75% and 5-95% of the pairs", fontsize=9)
    axes[1].set_ylabel("effective rank of X (Roy & Vetterli)")
    axes[2].set_ylabel("rank collapse |X - 1 xbar^T|_F / |X|_F")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("depth (blocks applied)")
        ax.grid(True, alpha=0.3)
    n = len(next(iter(results.values()))["x"][0])
    what = (os.path.basename(args.weights) if args.weights
            else f"random GPT-2-shape networks, d = {d}, H = {heads}, L = {layers}")
    fig.suptitle(f"{what}: N = {n} tokens, one Euler step (h = 1) per block; dashed: accelerated blocks, "
                 "equal oracle calls", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
