"""Hugging Face GPT-2 checkpoints -> meanfield's weight schema (an edge module: needs transformers, torch).

GPT-2 stores its projections as ``Conv1D`` layers, ``y = x W + b`` with ``W
(in, out)``: the schema's matrices are their transposes, and the fused
``c_attn`` (d, 3 d) splits into queries, keys and values, each into H heads
of d_h columns (:mod:`meanfield.models.weights` has the schema).
"""

from __future__ import annotations

import numpy as np


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def gpt2_to_schema(model) -> dict:
    """The arrays of the weight schema from a ``transformers`` GPT2Model (or GPT2LMHeadModel).

    Parameters
    ----------
    model : transformers.GPT2Model or GPT2LMHeadModel
        Any float dtype; the arrays are returned as float64.

    Returns
    -------
    dict
        ``{name: array}``: ``W_q, W_k, W_v (L, H, d_h, d)``, ``W_o (L, d, H, d_h)``,
        ``W1 (L, h, d)``, ... and ``ln_f_g, ln_f_b (d,)``, ``wte (V, d)``, ``wpe (P, d)``.
    """
    tr = getattr(model, "transformer", model)  # an LM head model wraps the GPT2Model
    cfg = tr.config
    act = getattr(cfg, "activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"activation_function {act!r}: meanfield's networks use gelu_tanh (gelu_new)")
    d, H = cfg.n_embd, cfg.n_head
    dh = d // H
    per_layer: dict[str, list] = {}

    def put(name, arr):
        per_layer.setdefault(name, []).append(arr)

    for blk in tr.h:
        Wc, bc = _np(blk.attn.c_attn.weight), _np(blk.attn.c_attn.bias)  # (d, 3d), (3d,)
        for part, name in enumerate("qkv"):
            W = Wc[:, part * d:(part + 1) * d]  # (d, H d_h): column h d_h + c is head h, entry c
            put(f"W_{name}", W.T.reshape(H, dh, d))
            put(f"b_{name}", bc[part * d:(part + 1) * d].reshape(H, dh))
        put("W_o", _np(blk.attn.c_proj.weight).T.reshape(d, H, dh))
        put("b_o", _np(blk.attn.c_proj.bias))
        put("ln1_g", _np(blk.ln_1.weight))
        put("ln1_b", _np(blk.ln_1.bias))
        put("ln2_g", _np(blk.ln_2.weight))
        put("ln2_b", _np(blk.ln_2.bias))
        put("W1", _np(blk.mlp.c_fc.weight).T)
        put("b1", _np(blk.mlp.c_fc.bias))
        put("W2", _np(blk.mlp.c_proj.weight).T)
        put("b2", _np(blk.mlp.c_proj.bias))
    out = {k: np.ascontiguousarray(np.stack(v)) for k, v in per_layer.items()}
    out.update(ln_f_g=_np(tr.ln_f.weight), ln_f_b=_np(tr.ln_f.bias), wte=_np(tr.wte.weight),
               wpe=_np(tr.wpe.weight))
    return out


def convert_checkpoint(checkpoint_dir: str, output: str) -> dict:
    """Convert a local Hugging Face GPT-2 checkpoint folder to ``output`` (.safetensors or .npz).

    Reads only local files (no download). Returns the arrays written.
    """
    from transformers import GPT2Model

    from .models.weights import save_weights

    model = GPT2Model.from_pretrained(checkpoint_dir, local_files_only=True)
    arrays = gpt2_to_schema(model)
    save_weights(output, arrays)
    return arrays


__all__ = ["convert_checkpoint", "gpt2_to_schema"]
