"""The test session compiles numba kernels into its own fresh cache directory (see conftest.py)."""

import os

import numpy as np


def test_session_uses_a_fresh_numba_cache():
    import numba

    from meanfield._kernels import _config, checks

    cache = os.environ["NUMBA_CACHE_DIR"]
    assert os.path.basename(cache).startswith("meanfield-numba-cache-")
    assert numba.config.CACHE_DIR == cache
    x = np.ones((3, 2))
    checks.max_abs_or_nan(x, _config.chunk_bounds(3), np.empty(1))
    # the kernel's cache index was written to the session's directory
    found = [f for _, _, files in os.walk(cache) for f in files if f.startswith("checks.max_abs_or_nan")]
    assert found, f"no cache entry of max_abs_or_nan under {cache}"
