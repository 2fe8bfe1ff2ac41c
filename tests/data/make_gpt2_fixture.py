"""Write the tier-2 fixture of tests/test_network.py: a tiny random GPT-2 and what transformers computed.

``gpt2_tiny.safetensors`` holds the weights in meanfield's schema (converted by
meanfield.convert_hf); ``gpt2_tiny_hidden.npz`` the token ids, every hidden
state transformers produced (``hidden`` (L + 1, N, d): embeddings, then after
each block, the last before the final LayerNorm) and the final LayerNorm output
(``last``), in float64. Run once with transformers and torch installed (CPU, no
network access needed):

    HF_HUB_OFFLINE=1 python tests/data/make_gpt2_fixture.py
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from test_network import gpt2_reference, random_gpt2  # noqa: E402


def main():
    import torch
    import transformers

    from meanfield.convert_hf import gpt2_to_schema
    from meanfield.models.weights import save_weights

    hf = random_gpt2(27, n_layer=2, n_head=2, n_embd=16, n_inner=48, vocab_size=23, n_positions=12,
                     initializer_range=0.3)
    ids = np.array([3, 14, 0, 22, 7, 7, 11, 5, 19, 2])
    hidden, last = gpt2_reference(hf, ids)
    save_weights(os.path.join(HERE, "gpt2_tiny.safetensors"), gpt2_to_schema(hf))
    np.savez_compressed(os.path.join(HERE, "gpt2_tiny_hidden.npz"), ids=ids, hidden=hidden, last=last,
                        versions=np.array([transformers.__version__, torch.__version__]))
    print("wrote gpt2_tiny.safetensors, gpt2_tiny_hidden.npz")


if __name__ == "__main__":
    main()
