"""The multi-head attention kernels (meanfield._kernels.heads) against a slow NumPy reference.

The reference loops over heads and targets and takes each target's softmax
over the sources it sees; the kernel blocks the targets (several blocks and a
short last one here), adds the biases itself and calls BLAS from its threads.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from meanfield._kernels.heads import (
    blas_single_threaded,
    block_rows,
    multi_head_attention,
    softmax_rows,
)


def reference(qkv, bias, H, scale, causal):
    n = qkv.shape[0]
    dh = qkv.shape[1] // (3 * H)
    x = qkv.astype(np.float64) + bias
    out = np.zeros((n, H, dh))
    for h in range(H):
        q, k, v = (x[:, (c * H + h) * dh: (c * H + h + 1) * dh] for c in range(3))
        for i in range(n):
            m = i + 1 if causal else n
            logits = np.array([scale * float(q[i] @ k[j]) for j in range(m)])
            p = np.exp(logits - logits.max())
            out[i, h] = (p / p.sum()) @ v[:m]
    return out


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-13), (np.float32, 1e-5)])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("rows, workers", [(4, 2), (7, 3), (23, 1), (5, 40)])
def test_multi_head_attention_matches_reference(dtype, tol, causal, rows, workers):
    rng = np.random.default_rng(3)
    n, H, dh = 23, 3, 5
    qkv = rng.standard_normal((n, 3 * H * dh)).astype(dtype)
    bias = rng.standard_normal(3 * H * dh).astype(dtype)
    scale = 1.0 / math.sqrt(dh)
    out = np.full((n, H, dh), np.nan, dtype)
    with blas_single_threaded():
        multi_head_attention(qkv, bias, H, dtype(scale), causal, rows, workers, out)
    ref = reference(qkv, bias.astype(np.float64), H, scale, causal)
    assert out.dtype == dtype
    assert np.abs(out - ref).max() / np.abs(ref).max() < tol


def test_softmax_rows_masks_and_normalizes():
    rng = np.random.default_rng(4)
    S = rng.standard_normal((3, 6))
    logits = S.copy()
    inv = np.empty(3)
    softmax_rows(S, 2, 0.5, True, inv)  # rows are targets 2, 3, 4: they see 3, 4, 5 sources
    for a in range(3):
        m = a + 3
        p = np.exp(0.5 * logits[a, :m] - 0.5 * logits[a, :m].max())
        np.testing.assert_allclose(S[a, :m], p, rtol=1e-15)
        assert np.all(S[a, m:] == 0.0)
        assert abs(inv[a] * p.sum() - 1.0) < 1e-15


def test_block_rows_bounds_the_block():
    assert block_rows(10) == 10
    assert block_rows(1024) == 128  # causal blocks of GPT-2's 1024 tokens: 12% more products than the triangle
    assert block_rows(10**6) == 16  # at least 16 rows, even past the block's budget


def test_softmax_rows_nan_propagates_and_far_tails_are_zero():
    S = np.array([[0.0, np.nan, 1.0], [0.0, -800.0, 1.0]])
    inv = np.empty(2)
    softmax_rows(S, 0, 1.0, False, inv)
    assert np.isnan(inv[0])  # a diverged state is not silently renormalized
    assert S[1, 1] == 0.0 and S[1, 2] == 1.0 and abs(inv[1] * (1 + math.exp(-1)) - 1) < 1e-15


def test_single_head_blocks_are_interleaved():
    from meanfield._kernels.heads import _block_order

    assert list(_block_order(5, True)) == [0, 4, 1, 3, 2]
    assert list(_block_order(4, False)) == [0, 1, 2, 3]


def test_softmax_rows_float32_takes_float32_exponentials():
    """float32 logits: the exponential's argument (logit times scale less the shift) is float32, so
    fexp runs in float32, twice as many per vector; it was float64 (the shift came from lane_max,
    which returns float64) and each weight was rounded back."""
    import numba

    fn = numba.njit(softmax_rows.py_func)  # a fresh compilation: its inferred types are inspectable
    S = np.random.default_rng(6).uniform(-6, 6, (4, 64)).astype(np.float32)
    inv = np.empty(4, np.float32)
    fn(S, 0, np.float32(0.5), False, inv)
    (overload,) = fn.overloads.values()
    subtractions = {k: v for k, v in overload.type_annotation.typemap.items() if k.startswith("$binop_sub")}
    assert subtractions and all(v == numba.float32 for v in subtractions.values()), subtractions
    assert np.all(S > 0) and np.all(inv > 0)

