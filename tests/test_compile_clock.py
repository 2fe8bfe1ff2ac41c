"""Numba's compilation stays out of the loop's clock (``/scales/wall_time``).

A kernel's first call compiles it (seconds on a cold cache); the loop counts
that apart, as the file attribute ``compile_time``, so that ``wall_time``
measures the computation and a first run's timings compare with later ones.
"""

import os
import subprocess
import sys
import time

import h5py
import numba
import numpy as np
import pytest

import meanfield


def _fresh_kernel():
    """A numba function never compiled before (a new object each call): its first call compiles."""

    @numba.njit(cache=False)
    def kernel(x):
        s = 0.0
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                s += np.sin(x[i, j]) * np.cos(x[i, j]) + np.exp(-abs(x[i, j]))
        return s

    return kernel


def test_a_kernel_compiled_inside_the_loop_is_counted_as_compile_time(tmp_path, make_config):
    cfg = make_config("accelerated", "exp_euler", n=40, steps=20, save_every=5)
    meanfield.Run(cfg).simulate()  # the model's own kernels: compiled (or loaded) before
    run = meanfield.Run(cfg)
    kernel, seconds = _fresh_kernel(), []

    def probe(t, x, y, tasks):
        start = time.perf_counter()
        value = kernel(x)
        seconds.append(time.perf_counter() - start)
        return {"probe": value}

    run.probes.append(lambda _run: probe)
    res = run.simulate(str(tmp_path / "c.h5"))
    compiled = seconds[0]  # the first call, at the initial save
    assert compiled > 20 * max(seconds[1:])
    assert res["wall_time"][0] < 0.5 * compiled  # the initial save's clock left it out
    assert res.attrs["compile_time"] >= 0.9 * compiled
    with h5py.File(res.path, "r") as f:
        assert f.attrs["compile_time"] == res.attrs["compile_time"]
        assert np.array_equal(f["scales/wall_time"][...], res["wall_time"])


PARAMS = """\
[model]
name = "bilinear"
dynamics = "first_order"
d = 2
[integrator]
name = "euler"
h = 0.05
[initial]
law = "gaussian"
n = 20
[run]
steps = 10
save_every = 5
"""


@pytest.mark.slow
def test_a_first_run_on_a_cold_cache_times_like_a_warm_one(tmp_path):
    (tmp_path / "p.toml").write_text(PARAMS)
    # a fresh numba cache: the first process compiles every kernel of the run (seconds)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    files = {}
    for which in ("cold", "warm"):
        files[which] = str(tmp_path / f"{which}.h5")
        proc = subprocess.run([sys.executable, "-m", "meanfield_cli.main", "run", "p.toml", "-o",
                               files[which], "--threads", "1", "--no-progress"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    with h5py.File(files["cold"], "r") as cold, h5py.File(files["warm"], "r") as warm:
        compiled = cold.attrs["compile_time"]
        assert compiled > 1.0 and compiled > 3 * warm.attrs["compile_time"]
        # loose, for a loaded machine: the cold run's clock is not the compiler's (before: 2-8 s)
        assert cold["scales/wall_time"][-1] < 0.2 * compiled
        assert cold["scales/wall_time"][-1] < 10 * warm["scales/wall_time"][-1] + 0.5
