"""Python threads for the network's token-wise and head passes (meanfield._kernels.workers).

A network's forward pass alternates BLAS products on OpenBLAS's threads with
numba passes. A numba prange leaves its OpenMP workers spinning after the
region (3.5 ms of CPU per call here), which took a core from the next
product; these passes now run on Python threads that wait on a queue.
"""

from __future__ import annotations

import time

import numba
import numpy as np
import pytest

from meanfield._kernels.workers import in_workers, split


def _heads():
    from meanfield._kernels.heads import attention_heads

    rng = np.random.default_rng(7)
    n, H, dh = 64, 2, 4
    qkv, bias = rng.standard_normal((n, 3 * H * dh)), rng.standard_normal(3 * H * dh)
    out = np.empty((n, H, dh))
    return lambda: attention_heads(qkv, bias, H, 0.5, True, out)


def _layer_norm():
    from meanfield._kernels.layernorm import layer_norm_rows

    X = np.random.default_rng(8).standard_normal((64, 16))
    g, out = np.ones(16), np.empty_like(X)
    return lambda: layer_norm_rows(X, g, g, 1e-5, out)


def _gelu():
    from meanfield._kernels.activations import bias_gelu_tanh

    U = np.random.default_rng(9).standard_normal((64, 16))
    return lambda: bias_gelu_tanh(U, np.zeros(16))


@pytest.mark.parametrize("make", [_heads, _layer_norm, _gelu], ids=["heads", "layer_norm", "gelu"])
def test_passes_leave_no_thread_spinning(make):
    """After the pass (on two threads) no thread burns a core while the process sleeps (median of 5)."""
    assert numba.config.NUMBA_NUM_THREADS >= 2, "needs two threads (a one-thread run proves nothing)"
    run = make()
    old = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        run()
        time.sleep(0.2)  # BLAS threads of earlier tests stop polling
        spent = []
        for _ in range(5):
            run()
            c = time.process_time()
            time.sleep(0.05)
            spent.append(time.process_time() - c)
    finally:
        numba.set_num_threads(old)
    assert sorted(spent)[2] < 1e-3, spent  # the median: a spinning worker took 3.5 ms


def test_in_workers_runs_every_range_once_and_reraises():
    seen = []
    in_workers(3, lambda g, k: seen.append((g, k, split(g, k, 10))))
    assert sorted(seen) == [(0, 3, (0, 3)), (1, 3, (3, 6)), (2, 3, (6, 10))]

    def fail(g, k):
        if g == 1:
            raise ValueError("worker 1")

    with pytest.raises(ValueError, match="worker 1"):
        in_workers(2, fail)
    one = []
    in_workers(1, lambda g, k: one.append((g, k)))
    assert one == [(0, 1)]
