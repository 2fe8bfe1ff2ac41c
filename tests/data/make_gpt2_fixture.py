"""Write the tier-2 fixture of tests/test_network.py: a tiny random GPT-2 and what transformers computed.

``gpt2_tiny.safetensors`` holds the weights in meanfield's schema (converted by
meanfield.convert_hf); ``gpt2_tiny_hidden.npz`` the token ids, every hidden
state transformers produced (``hidden`` (L + 1, N, d): embeddings, then after
each block), and the final LayerNorm output (``last``), in float64. Run once
with transformers and torch installed (CPU, no network access needed):

    HF_HUB_OFFLINE=1 python tests/data/make_gpt2_fixture.py
"""

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    import torch
    import transformers

    from meanfield.convert_hf import gpt2_to_schema
    from meanfield.models.weights import save_weights

    torch.manual_seed(27)
    cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=16, n_inner=48, vocab_size=23,
                                  n_positions=12, initializer_range=0.3, attn_implementation="eager",
                                  bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2Model(cfg).to(torch.float64).eval()
    with torch.no_grad():
        for name, prm in hf.named_parameters():
            if name.endswith("bias") or "ln_" in name:  # zero biases / unit gains would hide transposes
                prm.add_(0.2 * torch.randn_like(prm))
    ids = torch.tensor([[3, 14, 0, 22, 7, 7, 11, 5, 19, 2]])
    pre_final = {}
    hf.ln_f.register_forward_hook(lambda mod, inp, out: pre_final.update(x=inp[0].clone()))
    with torch.no_grad():
        out = hf(ids, output_hidden_states=True)
    hidden = [h[0].numpy() for h in out.hidden_states[: cfg.n_layer]] + [pre_final["x"][0].numpy()]
    save_weights(os.path.join(HERE, "gpt2_tiny.safetensors"),
                 {k: v.astype(np.float64) for k, v in gpt2_to_schema(hf).items()})
    np.savez_compressed(os.path.join(HERE, "gpt2_tiny_hidden.npz"), ids=ids[0].numpy(),
                        hidden=np.stack(hidden), last=out.last_hidden_state[0].numpy(),
                        versions=np.array([transformers.__version__, torch.__version__]))
    print("wrote gpt2_tiny.safetensors, gpt2_tiny_hidden.npz")


if __name__ == "__main__":
    main()
