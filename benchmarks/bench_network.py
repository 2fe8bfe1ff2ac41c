"""A GPT-2-small-shape forward pass: meanfield's run against NumPy BLAS and PyTorch (issue 27's targets).

One command, re-runnable::

    python benchmarks/bench_network.py            # d = 768, 12 heads, 12 layers, N = 1024; writes results/network.json
    python benchmarks/bench_network.py --quick    # d = 64, 4 heads, 2 layers, N = 128 (seconds); network_quick.json
    python benchmarks/bench_network.py --markdown benchmarks/results/network.json  # docs/performance.md's table

In one process, for float64 and float32, the same random-weight network
(GPT-2's pre-LN blocks, causal, gelu_tanh MLP with h = 4 d; arrays of
meanfield's schema written by ``save_weights``) and the same N tokens:

* **meanfield** -- the user's path: ``Run(config).simulate(file)`` with
  ``[run] layers = true`` and ``euler``, h = 1 (one step per block), a save
  per block with ``[diagnostics] network = false`` (the O(N d) diagnostics;
  ``meanfield_full_diagnostics_s``: the default, every per-head diagnostic at
  every save), timed by the file's ``/scales/wall_time`` at the last block
  (the loop's clock: numba compile time left out; a warm-up run first loads
  the kernels);
* **NumPy** -- the same blocks written with NumPy BLAS products, a
  straightforward transcription: every head's logits ``(H, N, N)`` by one
  batched product, the causal mask, the softmax, ``P V``, the projections and
  the MLP as matrix products;
* **torch** -- ``transformers.GPT2Model`` loaded with the same weights (zero
  position embeddings, ``inputs_embeds`` = the tokens), ``torch.no_grad()``,
  ``torch.set_num_threads`` = numba's thread count, CPU; "not installed" when
  torch or transformers is missing.

Each is timed ``--repeats`` times, the three interleaved (median and min, and
the ratios of both; the machine may be shared: the load average before and
after is recorded). The three final-LayerNorm
read-outs must agree (relative max difference printed). The ratios
meanfield / NumPy and meanfield / torch are the issue's targets (<= 1.2 and
<= 1.5). The large-gemm rates of NumPy's and torch's BLAS (the MLP's product
``(N, d) @ (d, 4 d)``) are printed beside, since different BLAS libraries set
what the same products cost.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse
import json
import math
import statistics
import sys
import tempfile
import time

import numpy as np
from _common import RESULTS, cpu_info, cpu_label, load_average, machine, print_table, timeit

import meanfield
from meanfield.models.weights import save_weights

FULL = {"d": 768, "heads": 12, "layers": 12, "n": 1024}
QUICK = {"d": 64, "heads": 4, "layers": 2, "n": 128}
TARGET_NUMPY, TARGET_TORCH = 1.2, 1.5
LN_EPS = 1e-5


# ----------------------------------------------------------------------------- the network
def random_weights(d: int, heads: int, layers: int, seed: int = 0) -> dict:
    """Schema arrays of a random GPT-2-shape network (h = 4 d; logits O(1), every bias and LN nonzero)."""
    rng = np.random.default_rng(seed)
    L, H, dh, hid = layers, heads, d // heads, 4 * d
    s = 1.0 / math.sqrt(d)
    return {
        "ln1_g": 1 + 0.1 * rng.standard_normal((L, d)), "ln1_b": 0.1 * rng.standard_normal((L, d)),
        "W_q": s * rng.standard_normal((L, H, dh, d)), "W_k": s * rng.standard_normal((L, H, dh, d)),
        "W_v": s * rng.standard_normal((L, H, dh, d)),
        "b_q": 0.1 * rng.standard_normal((L, H, dh)), "b_k": 0.1 * rng.standard_normal((L, H, dh)),
        "b_v": 0.1 * rng.standard_normal((L, H, dh)),
        "W_o": 0.5 * s * rng.standard_normal((L, d, H, dh)), "b_o": 0.1 * rng.standard_normal((L, d)),
        "ln2_g": 1 + 0.1 * rng.standard_normal((L, d)), "ln2_b": 0.1 * rng.standard_normal((L, d)),
        "W1": s * rng.standard_normal((L, hid, d)), "b1": 0.1 * rng.standard_normal((L, hid)),
        "W2": 0.5 * rng.standard_normal((L, d, hid)) / math.sqrt(hid), "b2": 0.1 * rng.standard_normal((L, d)),
        "ln_f_g": 1 + 0.1 * rng.standard_normal(d), "ln_f_b": 0.1 * rng.standard_normal(d),
    }


# ----------------------------------------------------------------------------- meanfield
def meanfield_config(weights_path: str, x0_path: str, heads: int, dtype: str, full_diagnostics=False) -> dict:
    """A run of one forward pass, a save per block; ``[diagnostics] network = false`` (the O(N d)
    diagnostics only) unless ``full_diagnostics`` (per-head clusters and energies at every save)."""
    return {"model": {"name": "softmax", "weights": weights_path, "heads": heads, "causal": True},
            "integrator": {"name": "euler", "h": 1.0},
            "initial": {"law": "file", "path": x0_path},
            "run": {"layers": True, "save_every": 1, "dtype": dtype},
            "diagnostics": {"network": bool(full_diagnostics)}}


def meanfield_pass(cfg: dict, out_path: str) -> tuple[float, np.ndarray]:
    """One forward pass the user's way: ``(wall_time of the last block from the file, final LN read-out)``."""
    run = meanfield.Run(cfg)
    res = run.simulate(out_path, overwrite=True)
    tr = meanfield.load(out_path)
    wall = float(np.asarray(tr.scales["wall_time"])[-1])
    return wall, np.asarray(run.model.readout(np.asarray(res.x)), dtype=np.float64)


# ----------------------------------------------------------------------------- NumPy
class NumpyNetwork:
    """The same pre-LN blocks as NumPy BLAS products (heads batched), in one dtype."""

    def __init__(self, w: dict, dtype):
        t = np.dtype(dtype)
        L, H, dh, d = w["W_q"].shape
        self.H, self.dh, self.L = H, dh, L
        cat = lambda names: np.concatenate([w[n].reshape(L, H * dh, d) for n in names], axis=1)
        self.WqkvT = np.ascontiguousarray(np.swapaxes(cat(("W_q", "W_k", "W_v")), 1, 2), dtype=t)
        self.bqkv = np.concatenate([w[n].reshape(L, H * dh) for n in ("b_q", "b_k", "b_v")], axis=1).astype(t)
        self.WoT = np.ascontiguousarray(np.swapaxes(w["W_o"].reshape(L, d, H * dh), 1, 2), dtype=t)
        self.W1T = np.ascontiguousarray(np.swapaxes(w["W1"], 1, 2), dtype=t)
        self.W2T = np.ascontiguousarray(np.swapaxes(w["W2"], 1, 2), dtype=t)
        self.a = {k: w[k].astype(t) for k in ("b_o", "b1", "b2", "ln1_g", "ln1_b", "ln2_g", "ln2_b",
                                               "ln_f_g", "ln_f_b")}
        self.scale = t.type(1.0 / math.sqrt(dh))
        self.t = t

    @staticmethod
    def ln(x, g, b):
        mu = x.mean(axis=1, keepdims=True)
        xc = x - mu
        var = (xc * xc).mean(axis=1, keepdims=True)
        return xc / np.sqrt(var + LN_EPS) * g + b

    def forward(self, x0: np.ndarray) -> np.ndarray:
        """The final LN read-out after every block, ``(N, d)``."""
        x = x0.astype(self.t)
        n = x.shape[0]
        H, dh, a = self.H, self.dh, self.a
        mask = np.triu(np.ones((n, n), bool), 1)
        c = self.t.type(math.sqrt(2.0 / math.pi))
        for l in range(self.L):
            u = self.ln(x, a["ln1_g"][l], a["ln1_b"][l])
            qkv = u @ self.WqkvT[l] + self.bqkv[l]
            q, k, v = (qkv[:, i * H * dh:(i + 1) * H * dh].reshape(n, H, dh).transpose(1, 0, 2) for i in range(3))
            s = (q @ k.transpose(0, 2, 1)) * self.scale  # (H, N, N)
            s[:, mask] = -np.inf
            s -= s.max(axis=2, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(axis=2, keepdims=True)
            heads = (s @ v).transpose(1, 0, 2).reshape(n, H * dh)
            x = x + (heads @ self.WoT[l] + a["b_o"][l])
            u = self.ln(x, a["ln2_g"][l], a["ln2_b"][l])
            hdn = u @ self.W1T[l] + a["b1"][l]
            hdn = 0.5 * hdn * (1 + np.tanh(c * (hdn + self.t.type(0.044715) * hdn**3)))
            x = x + (hdn @ self.W2T[l] + a["b2"][l])
        return self.ln(x, a["ln_f_g"], a["ln_f_b"])


# ----------------------------------------------------------------------------- torch
def torch_model(w: dict, n: int, dtype: str, threads: int):
    """``(forward(x0) -> final LN read-out, description)``, or ``(None, reason)`` without torch."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        return None, f"not installed ({exc.name})"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(threads)
    L, H, dh, d = w["W_q"].shape
    cfg = transformers.GPT2Config(n_embd=d, n_head=H, n_layer=L, n_inner=w["W1"].shape[1], n_positions=n,
                                  vocab_size=8, bos_token_id=0, eos_token_id=0, layer_norm_epsilon=LN_EPS,
                                  activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    tdt = {"float64": torch.float64, "float32": torch.float32}[dtype]
    model = transformers.GPT2Model(cfg).to(tdt).eval()
    T = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=tdt)
    with torch.no_grad():
        model.wpe.weight.zero_()
        for l, blk in enumerate(model.h):
            # Conv1D stores (in, out): the schema's matrices transposed, heads side by side
            qkv = np.concatenate([w[k][l].reshape(H * dh, d) for k in ("W_q", "W_k", "W_v")])
            blk.attn.c_attn.weight.copy_(T(qkv.T))
            blk.attn.c_attn.bias.copy_(T(np.concatenate([w[k][l].ravel() for k in ("b_q", "b_k", "b_v")])))
            blk.attn.c_proj.weight.copy_(T(w["W_o"][l].reshape(d, H * dh).T))
            blk.attn.c_proj.bias.copy_(T(w["b_o"][l]))
            blk.mlp.c_fc.weight.copy_(T(w["W1"][l].T))
            blk.mlp.c_fc.bias.copy_(T(w["b1"][l]))
            blk.mlp.c_proj.weight.copy_(T(w["W2"][l].T))
            blk.mlp.c_proj.bias.copy_(T(w["b2"][l]))
            for ours, theirs in (("ln1", blk.ln_1), ("ln2", blk.ln_2)):
                theirs.weight.copy_(T(w[ours + "_g"][l]))
                theirs.bias.copy_(T(w[ours + "_b"][l]))
        model.ln_f.weight.copy_(T(w["ln_f_g"]))
        model.ln_f.bias.copy_(T(w["ln_f_b"]))

    def forward(x0):
        with _openmp_not_nested(), torch.no_grad():
            out = model(inputs_embeds=T(x0)[None]).last_hidden_state[0]
        return out.numpy().astype(np.float64)

    impl = getattr(model.config, "_attn_implementation", None)
    return forward, f"torch {torch.__version__}, transformers {transformers.__version__}, attention {impl}"


class _openmp_not_nested:
    """Context manager: OpenMP's max-active-levels at 1 inside, as in a process without numba.

    numba's OpenMP threading layer, once launched, sets libgomp's max-active-levels to 255
    (nested regions); torch shares that libgomp, and its nested regions then oversubscribe the
    cores: its GPT-2-small float32 forward took 1.5-1.7 s instead of 0.73-0.79 s on 2 threads.
    The torch passes run with the level torch would have alone; meanfield's with numba's.
    """

    def __enter__(self):
        import ctypes

        try:
            self._gomp = ctypes.CDLL("libgomp.so.1")
            self._old = self._gomp.omp_get_max_active_levels()
            self._gomp.omp_set_max_active_levels(1)
        except (OSError, AttributeError):
            self._gomp = None
        return self

    def __exit__(self, *exc):
        if self._gomp is not None:
            self._gomp.omp_set_max_active_levels(self._old)
        return False


def torch_blas() -> str | None:
    """torch's BLAS and its own CPU kernels, from its build configuration (None without torch)."""
    try:
        import torch
    except ImportError:
        return None
    cfg = torch.__config__.show()
    blas = [part.strip() for ln in cfg.splitlines() for part in ln.split(",") if "BLAS_INFO" in part]
    blas += [ln.strip(" -") for ln in cfg.splitlines() if "MKL-DNN" in ln or "oneDNN" in ln or "Math Kernel" in ln]
    return "; ".join(blas)


def numpy_blas() -> str:
    from threadpoolctl import threadpool_info

    return "; ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
                     f"{i.get('num_threads')} threads)" for i in threadpool_info() if i.get("user_api") == "blas"
                     and "numpy" in i.get("filepath", ""))


def gemm_rates(n: int, d: int, dtype: str, threads: int, repeats: int) -> dict:
    """GFLOP/s of the MLP's ``(N, d) @ (d, 4 d)`` through NumPy and through torch (median time)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, d)).astype(dtype)
    b = rng.standard_normal((d, 4 * d)).astype(dtype)
    flops = 2.0 * n * d * 4 * d
    out = {"numpy": flops / timeit(lambda: a @ b, repeat=repeats) / 1e9}
    try:
        import torch

        torch.set_num_threads(threads)
        ta, tb = torch.as_tensor(a), torch.as_tensor(b)
        out["torch"] = flops / timeit(lambda: ta @ tb, repeat=repeats) / 1e9
    except ImportError:
        out["torch"] = None
    return out


def rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


# ----------------------------------------------------------------------------- one dtype
def bench_dtype(shape: dict, dtype: str, repeats: int, folder: str, w: dict, wpath: str, x0path: str) -> dict:
    """One dtype: the three passes interleaved (a load change on a shared machine hits them alike)."""
    import numba

    threads = numba.get_num_threads()
    x0 = np.load(x0path)
    cfg = meanfield_config(wpath, x0path, shape["heads"], dtype)
    out_path = os.path.join(folder, f"run_{dtype}.h5")
    net = NumpyNetwork(w, dtype)
    fwd, desc = torch_model(w, shape["n"], dtype, threads)

    def numpy_pass():
        t = time.perf_counter()
        y = net.forward(x0)
        return time.perf_counter() - t, y

    def torch_pass():
        t = time.perf_counter()
        y = fwd(x0)
        return time.perf_counter() - t, y

    cfg_full = meanfield_config(wpath, x0path, shape["heads"], dtype, full_diagnostics=True)
    passes = {"meanfield": lambda: meanfield_pass(cfg, out_path), "numpy": numpy_pass,
              "meanfield_full_diagnostics": lambda: meanfield_pass(cfg_full, out_path)}
    if fwd is not None:
        passes["torch"] = torch_pass
    times = {k: [] for k in passes}
    outs = {}
    for rep in range(repeats + 1):  # the first round warms up (meanfield: loads or compiles the kernels)
        for k, p in passes.items():
            t, outs[k] = p()
            if rep:
                times[k].append(t)
    row = {"dtype": dtype, "threads": threads, "torch": desc}
    for k in ("meanfield", "numpy", "torch", "meanfield_full_diagnostics"):
        ts = times.get(k)
        row[f"{k}_s"] = statistics.median(ts) if ts else None
        row[f"{k}_min_s"] = min(ts) if ts else None
        row[f"{k}_all_s"] = ts
    row["rel_diff_numpy"] = rel(outs["meanfield"], outs["numpy"].astype(np.float64))
    row["rel_diff_torch"] = rel(outs["meanfield"], outs["torch"]) if fwd is not None else None
    row["ratio_numpy"] = row["meanfield_s"] / row["numpy_s"]
    row["ratio_torch"] = None if fwd is None else row["meanfield_s"] / row["torch_s"]
    row["ratio_torch_min"] = None if fwd is None else row["meanfield_min_s"] / row["torch_min_s"]
    row["ratio_numpy_min"] = row["meanfield_min_s"] / row["numpy_min_s"]
    row["gemm_gflops"] = gemm_rates(shape["n"], shape["d"], dtype, threads, repeats)
    return row


def markdown(result: dict) -> str:
    s = result["shape"]
    head = (f"GPT-2-small shape: d = {s['d']}, {s['heads']} heads, {s['layers']} layers, N = {s['n']} tokens, "
            f"causal; {result['cpu_label']}; load average {result['load_average_before']} before, "
            f"{result['load_average_after']} after.")
    columns = ("| dtype | meanfield (s) | NumPy (s) | torch (s) | meanfield / NumPy | meanfield / torch "
               "| rel. diff NumPy | rel. diff torch |")
    lines = [head, "", columns, "|---|---|---|---|---|---|---|---|"]

    def f(v, p=3):
        return "n/a" if v is None else f"{v:.{p}g}"

    for r in result["rows"]:
        lines.append(f"| {r['dtype']} | {f(r['meanfield_s'])} | {f(r['numpy_s'])} | "
                     f"{f(r['torch_s']) if r['torch_s'] is not None else r['torch']} | {f(r['ratio_numpy'])} | "
                     f"{f(r['ratio_torch'])} | {f(r['rel_diff_numpy'], 2)} | {f(r['rel_diff_torch'], 2)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="d = 64, 4 heads, 2 layers, N = 128 (seconds)")
    ap.add_argument("--repeats", type=int, default=None, help="timed passes of each (default 5; 2 with --quick)")
    ap.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    ap.add_argument("--out", default=None, help="JSON path (default results/network.json, "
                                                 "network_quick.json with --quick)")
    ap.add_argument("--markdown", metavar="JSON", help="print docs/performance.md's table from a result file")
    args = ap.parse_args(argv)
    if args.markdown:
        with open(args.markdown) as fh:
            print(markdown(json.load(fh)))
        return 0
    shape = QUICK if args.quick else FULL
    repeats = args.repeats or (2 if args.quick else 5)
    label = cpu_label(cpu_info())
    result = {"shape": shape, "cpu_label": label, "load_average_before": load_average(),
              "numpy_blas": numpy_blas(), "torch_blas": torch_blas(), "repeats": repeats,
              "targets": {"ratio_numpy": TARGET_NUMPY, "ratio_torch": TARGET_TORCH}}
    print(f"CPU: {label}; load average {result['load_average_before']}")
    print(f"NumPy BLAS: {result['numpy_blas']}\ntorch BLAS: {result['torch_blas']}")
    w = random_weights(shape["d"], shape["heads"], shape["layers"])
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        wpath, x0path = os.path.join(folder, "net.npz"), os.path.join(folder, "x0.npy")
        save_weights(wpath, w)
        np.save(x0path, np.random.default_rng(2).standard_normal((shape["n"], shape["d"])))
        for dtype in args.dtypes:
            rows.append(bench_dtype(shape, dtype, repeats, folder, w, wpath, x0path))
    result["rows"] = rows
    result["load_average_after"] = load_average()
    print(f"\n{shape['layers']}-block forward pass, d = {shape['d']}, H = {shape['heads']}, N = {shape['n']}, "
          f"causal; seconds, median of {repeats} (min in the JSON)")
    print_table(rows, ["dtype", "threads", "meanfield_s", "numpy_s", "torch_s", "ratio_numpy", "ratio_torch",
                       "ratio_numpy_min", "ratio_torch_min", "rel_diff_numpy", "rel_diff_torch",
                       "meanfield_full_diagnostics_s"])
    print("gemm (N, d) @ (d, 4 d) GFLOP/s: " + "; ".join(
        f"{r['dtype']}: NumPy {r['gemm_gflops']['numpy']:.1f}, torch "
        + ("n/a" if r["gemm_gflops"]["torch"] is None else f"{r['gemm_gflops']['torch']:.1f}") for r in rows))
    print(f"load average after: {result['load_average_after']}")
    path = args.out or os.path.join(RESULTS, "network_quick.json" if args.quick else "network.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump({"machine": machine(), **result}, fh, indent=2)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
