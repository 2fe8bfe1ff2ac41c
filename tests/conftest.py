"""Shared fixtures, the numba cache of test sessions, and the fast / full tiers.

numba cache
    numba's ``cache=True`` keys a cached kernel on its own source file only: a
    kernel whose helper (defined in another file, e.g. ``fastexp.py``) changed is
    loaded stale from the cache, so a broken helper once passed with a warm cache.
    ``NUMBA_CACHE_DIR`` is therefore set, before numba is first imported
    (conftest.py is imported before any test module), to a folder named by a hash
    of EVERY kernel source (all of meanfield/_kernels/ and any other package
    module that compiles numba functions) and of the Python, numba, llvmlite and
    numpy versions: ``.numba_cache/<hash>/`` in the checkout (git-ignored). A
    changed kernel gets a new, empty folder, so it never meets a stale cache;
    folders of other hashes unused for an hour are removed. Every process of the
    session (CLI subprocesses inherit the environment) shares the folder.
    ``MEANFIELD_FRESH_NUMBA_CACHE=1`` (set by .ci/run) gives the session a new
    temporary folder instead, removed when it ends: everything compiles from source.

tiers
    ``python -m pytest`` runs the fast tier: tests marked ``slow`` are deselected.
    ``python -m pytest --full`` runs everything (what .ci/run does). A ``-m``
    expression, or a test named by its node id (``file.py::test``), also runs
    slow tests.
"""

import atexit
import hashlib
import importlib.metadata
import os
import re
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: a package module outside _kernels/ that compiles numba functions is hashed too
_COMPILES = re.compile(r"\bnjit\b|@(numba\.)?(jit|vectorize|guvectorize|cfunc)\b")
#: a hash folder not used for this long is removed (a concurrent session keeps its own)
PRUNE_AFTER_S = 3600


def kernel_sources(root: str = REPO) -> list[str]:
    """Every source file a cached numba kernel can depend on, relative to ``root``, sorted."""
    out = set()
    for package in ("meanfield", "cli"):
        for dirpath, dirnames, files in os.walk(os.path.join(root, package)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for f in files:
                if not f.endswith(".py"):
                    continue
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, root)
                if rel.startswith(os.path.join("meanfield", "_kernels") + os.sep):
                    out.add(rel)
                    continue
                with open(path, encoding="utf-8") as fh:
                    if _COMPILES.search(fh.read()):
                        out.add(rel)
    return sorted(out)


def numba_cache_key(root: str = REPO) -> str:
    """A hash of every kernel source (names and bytes) and of the compiler stack's versions."""
    h = hashlib.sha256()
    h.update(sys.version.encode())
    for dist in ("numba", "llvmlite", "numpy"):
        h.update(f"{dist}={importlib.metadata.version(dist)}".encode())
    for rel in kernel_sources(root):
        h.update(rel.replace(os.sep, "/").encode() + b"\0")
        with open(os.path.join(root, rel), "rb") as fh:
            h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()[:16]


def persistent_cache_dir(base: str, key: str) -> str | None:
    """``base/key``, created and stamped as used; other folders under ``base`` unused for
    ``PRUNE_AFTER_S`` are removed. None when ``base`` is not writable."""
    path = os.path.join(base, key)
    try:
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "last_used"), "w") as fh:
            fh.write(f"{time.time()}\n")
    except OSError:
        return None
    now = time.time()
    for name in os.listdir(base):
        other = os.path.join(base, name)
        if other == path or not os.path.isdir(other):
            continue
        try:
            used = os.path.getmtime(os.path.join(other, "last_used"))
        except OSError:
            used = os.path.getmtime(other)
        if now - used > PRUNE_AFTER_S:
            shutil.rmtree(other, ignore_errors=True)
    return path


def _fresh_cache_dir() -> str:
    path = tempfile.mkdtemp(prefix="meanfield-numba-cache-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


FRESH_NUMBA_CACHE = os.environ.get("MEANFIELD_FRESH_NUMBA_CACHE", "") not in ("", "0")
_NUMBA_CACHE = (None if FRESH_NUMBA_CACHE else persistent_cache_dir(os.path.join(REPO, ".numba_cache"),
                                                                    numba_cache_key())) or _fresh_cache_dir()
os.environ["NUMBA_CACHE_DIR"] = _NUMBA_CACHE

import copy  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true",
                     help="meanfield: run the whole suite, tests marked slow too (what .ci/run does)")


def _named(config) -> list[str]:
    """Node ids named on the command line (``path::test...``), relative to the rootdir."""
    out = []
    for arg in config.args:
        if "::" in arg:
            path, rest = arg.split("::", 1)
            rel = os.path.relpath(os.path.abspath(path), str(config.rootpath)).replace(os.sep, "/")
            out.append(f"{rel}::{rest}")
    return out


def pytest_collection_modifyitems(config, items):
    """The fast tier: deselect ``slow`` tests unless --full, a ``-m`` expression, or a node id asks for them."""
    if config.getoption("--full") or config.getoption("markexpr"):
        return
    named = _named(config)
    keep, slow = [], []
    for item in items:
        asked = any(item.nodeid == n or item.nodeid.startswith((n + "[", n + "::")) for n in named)
        (slow if item.get_closest_marker("slow") and not asked else keep).append(item)
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = keep
        config._meanfield_slow_deselected = len(slow)


def pytest_terminal_summary(terminalreporter, config):
    n = getattr(config, "_meanfield_slow_deselected", 0)
    if n:
        terminalreporter.write_line(
            f"fast tier: {n} slow tests not run ('python -m pytest --full' runs the whole suite)")


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


def benchmark_module(name: str):
    """Yield the script ``benchmarks/<name>.py`` imported as a module (for a module-scoped fixture).

    Its folder is on ``sys.path`` while the fixture lives (the scripts import ``_common``).
    """
    import importlib

    bench = os.path.join(REPO, "benchmarks")
    sys.path.insert(0, bench)
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(bench)
