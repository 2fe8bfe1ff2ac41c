"""Shared fixtures; also gives the whole test session a fresh numba cache.

numba's ``cache=True`` keys a cached kernel on its own source file only: a
kernel whose helper (defined in another file, e.g. ``fastexp.py``) changed is
loaded stale from the cache, so a broken helper could pass with a warm cache.
``NUMBA_CACHE_DIR`` is therefore set to a new temporary directory before numba
is first imported (conftest.py is imported before any test module), and every
process of the session (CLI subprocesses inherit the environment) compiles
from source once, then shares that cache. It is removed when the session ends.
"""

import atexit
import os
import shutil
import tempfile

_NUMBA_CACHE = tempfile.mkdtemp(prefix="meanfield-numba-cache-")
os.environ["NUMBA_CACHE_DIR"] = _NUMBA_CACHE
atexit.register(shutil.rmtree, _NUMBA_CACHE, ignore_errors=True)

import copy  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def bilinear_config(dynamics="accelerated", integrator=None, n=50, d=3, **run):
    """A small, non-trivial bilinear problem as a config dict."""
    rng = np.random.default_rng(7)
    A = np.eye(d) + 0.2 * rng.standard_normal((d, d))
    B = rng.standard_normal((d, d))
    Q = np.eye(d) + 0.1 * (B + B.T)
    cfg = {
        "model": {"name": "bilinear", "dynamics": dynamics, "d": d, "A": A.tolist(),
                  "Q": Q.tolist(), "m": np.linspace(0.3, -0.2, d).tolist()},
        "damping": {"schedule": "nesterov", "r": 3.0} if dynamics == "accelerated" else {"schedule": "none"},
        "integrator": {"name": integrator or ("exp_euler" if dynamics == "accelerated" else "euler"), "h": 0.01},
        "initial": {"law": "gaussian", "n": n, "mean": np.linspace(0.5, 0.0, d).tolist(),
                    "cov": np.eye(d).tolist(), "momentum": "gaussian", "momentum_scale": 0.3, "seed": 1},
        "run": {"t0": 1.0, "steps": 20, "save_every": 5},
        "output": {"save": ["x", "y"]},
    }
    cfg["run"].update(run)
    if "t1" in run or "oracle_calls" in run:
        cfg["run"].pop("steps")
    return copy.deepcopy(cfg)


@pytest.fixture
def make_config():
    return bilinear_config


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's numba kernels on one thread.

    The problems in these modules are tiny (N <= a few hundred): waking the
    thread pool costs more than the work, and on a loaded 2-core machine it
    made runs ~30x slower.
    """
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(old)


def interrupt_and_resume(cfg, path, at):
    """Run ``cfg`` into ``path``, Ctrl-C after step ``at``, then resume; returns the resumed RunResult."""
    import os
    import signal

    import meanfield
    from meanfield.resume import resume_run

    def interrupt(done, total):
        if done == at:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        meanfield.Run(cfg).simulate(path, progress=interrupt)
    return resume_run(path)
