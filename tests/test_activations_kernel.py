"""Token-wise kernels against their formulas: the fused bias + gelu_tanh (meanfield._kernels.activations),
the row reductions (meanfield._kernels.lanes), LayerNorm (meanfield._kernels.layernorm)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meanfield._kernels.activations import bias_gelu_tanh


def gelu_tanh_reference(a):
    """GPT-2's gelu_new as written, in float64 (``1 + tanh`` evaluated as ``2 / (1 + exp(-2z))`` where it
    cancels would hide a wrong kernel: this is the literal formula)."""
    a = np.asarray(a, dtype=np.float64)
    return 0.5 * a * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (a + 0.044715 * a**3)))


@pytest.mark.parametrize("dtype, tol", [(np.float64, 2e-16), (np.float32, 1e-7)])
def test_bias_gelu_tanh_matches_formula(dtype, tol):
    rng = np.random.default_rng(0)
    U = (4 * rng.standard_normal((37, 19))).astype(dtype)
    b = rng.standard_normal(19).astype(dtype)
    W = U.copy()
    bias_gelu_tanh(W, b)
    a = U + b  # the bias added in U's dtype
    ref = gelu_tanh_reference(a)
    assert W.dtype == dtype
    assert np.abs(W - ref).max() / np.abs(ref).max() < tol
    # entrywise, where 1 + tanh does not cancel (a > -1): a few ulp of the value
    keep = a.astype(np.float64) > -1
    assert np.max(np.abs(W - ref)[keep] / np.abs(ref)[keep].clip(1e-300)) < 20 * np.finfo(dtype).eps


def test_bias_gelu_tanh_extremes():
    U = np.array([[0.0, -0.0, 50.0, -50.0, 1e6, -1e6, np.inf, np.nan]])
    W = U.copy()
    bias_gelu_tanh(W, np.zeros(8))
    assert W[0, 0] == 0.0 and W[0, 2] == 50.0 and W[0, 4] == 1e6 and W[0, 6] == np.inf
    assert abs(W[0, 3]) < 1e-300 and abs(W[0, 5]) < 1e-300  # a / (1 + exp(-2z)) with exp -> inf
    assert np.isnan(W[0, 7])


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-14), (np.float32, 1e-6)])
def test_layer_norm_rows_matches_formula(dtype, tol):
    from meanfield._kernels.layernorm import layer_norm_rows

    rng = np.random.default_rng(5)
    X = (3 + 2 * rng.standard_normal((9, 13))).astype(dtype)
    g, b = rng.standard_normal(13).astype(dtype), rng.standard_normal(13).astype(dtype)
    out = np.empty_like(X)
    layer_norm_rows(X, g, b, 1e-5, out)
    x = X.astype(np.float64)
    ref = np.empty_like(x)
    for i in range(9):  # the definition, row by row
        mu = math.fsum(x[i]) / 13
        var = math.fsum((x[i] - mu) ** 2) / 13
        ref[i] = g * (x[i] - mu) / math.sqrt(var + 1e-5) + b
    assert out.dtype == dtype
    assert np.abs(out - ref).max() / np.abs(ref).max() < tol


@pytest.mark.parametrize("n", [1, 7, 8, 9, 45])
def test_lane_reductions(n):
    from meanfield._kernels.lanes import lane_dot, lane_dot3, lane_max, lane_sum, lane_sum_sq

    x = np.random.default_rng(n).standard_normal(n + 3)  # entries past n are not read
    y, w = np.random.default_rng(n + 1).standard_normal((2, n + 3))
    assert abs(lane_sum(x, n) - math.fsum(x[:n])) < 1e-14
    assert abs(lane_sum_sq(x, 0.3, n) - math.fsum((x[:n] - 0.3) ** 2)) < 1e-14
    assert abs(lane_dot(x, y, n) - math.fsum(x[:n] * y[:n])) < 1e-14
    assert abs(lane_dot3(w, x, y, n) - math.fsum(w[:n] * x[:n] * y[:n])) < 1e-14
    assert lane_max(x, n) == x[:n].max()
    y = x.copy()
    y[n // 2] = np.nan
    assert lane_max(y, n) == (np.nanmax(y[:n]) if n > 1 else -np.inf)


@pytest.mark.parametrize("name", ["activations._bias_gelu_tanh_range", "layernorm._layer_norm_range"])
def test_token_wise_loops_vectorize(name):
    """The float32 row loops compile to vector instructions. The gelu loop did not once it left
    prange (numba's check of each float division for a zero divisor kept it scalar: 6 times slower)."""
    import importlib
    import re

    import numba

    mod, fn = name.split(".")
    kernel = getattr(importlib.import_module(f"meanfield._kernels.{mod}"), fn)
    options = {k: v for k, v in kernel.targetoptions.items() if k != "nopython"}
    fresh = numba.njit(**dict(options, cache=False))(kernel.py_func)  # its IR is inspectable
    X = np.ones((3, 64), np.float32)
    v = np.ones(64, np.float32)
    if mod == "activations":
        fresh(X, v, 0, 3)
    else:
        fresh(X, v, v, 1e-5, np.empty_like(X), 0, 3, np.empty(2, np.float32))
    (ir,) = fresh.inspect_llvm().values()
    assert re.search(r"<(8|16) x float>", ir)
