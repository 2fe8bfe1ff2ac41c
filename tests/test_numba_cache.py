"""Test sessions compile numba kernels into a cache keyed by every kernel source (see conftest.py).

A stale cache once hid a broken helper: numba's ``cache=True`` keys a kernel on
its own file only. The session's folder is named by a hash of all kernel
sources and of the compiler stack's versions, so any change gets a new folder;
CI (``MEANFIELD_FRESH_NUMBA_CACHE=1``) compiles everything from source.
"""

import importlib
import inspect
import os
import pkgutil
import shutil
import subprocess
import sys
import time

import numba
import numpy as np
import pytest

import meanfield

from conftest import FRESH_NUMBA_CACHE, REPO, kernel_sources, numba_cache_key, persistent_cache_dir


def test_session_uses_the_cache_of_its_kernel_sources():
    from meanfield._kernels import _config, checks

    cache = os.environ["NUMBA_CACHE_DIR"]
    if FRESH_NUMBA_CACHE:
        assert os.path.basename(cache).startswith("meanfield-numba-cache-")
    else:
        assert cache == os.path.join(REPO, ".numba_cache", numba_cache_key())
    assert numba.config.CACHE_DIR == cache
    x = np.ones((3, 2))
    checks.max_abs_or_nan(x, _config.chunk_bounds(3), np.empty(1))
    # the kernel's cache index was written to the session's directory
    found = [f for _, _, files in os.walk(cache) for f in files if f.startswith("checks.max_abs_or_nan")]
    assert found, f"no cache entry of max_abs_or_nan under {cache}"


def _copy_sources(tmp_path):
    for rel in ("meanfield", "cli"):
        shutil.copytree(os.path.join(REPO, rel), tmp_path / rel,
                        ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    return str(tmp_path)


def test_key_changes_with_every_kernel_source_only(tmp_path):
    root = _copy_sources(tmp_path)
    key = numba_cache_key(root)
    assert key == numba_cache_key(REPO)  # content, not location or modification times

    def edited(rel, text="\n# edited\n"):
        path = os.path.join(root, rel)
        with open(path, encoding="utf-8") as fh:
            old = fh.read()
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
        try:
            return numba_cache_key(root)
        finally:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(old)

    # a helper in another file than the kernels that inline it (the stale-cache case)
    assert edited("meanfield/_kernels/fastexp.py") != key
    assert edited("meanfield/_kernels/_config.py") != key
    # a module outside _kernels/ counts once it compiles numba functions
    assert edited("meanfield/run.py") == key
    assert edited("meanfield/run.py", "\nfrom numba import njit\n\n@njit\ndef f(x):\n    return x\n") != key
    assert numba_cache_key(root) == key


def test_every_compiled_function_is_in_the_key():
    """Every numba dispatcher of the package lives in a file that numba_cache_key hashes."""
    hashed = {os.path.join(REPO, rel) for rel in kernel_sources()}
    files = set()
    for mod in pkgutil.walk_packages(meanfield.__path__, "meanfield."):
        module = importlib.import_module(mod.name)
        for _, obj in inspect.getmembers(module):
            if isinstance(obj, numba.core.registry.CPUDispatcher):
                files.add(inspect.getsourcefile(obj.py_func))
    assert files and files <= hashed, sorted(files - hashed)


def test_other_keys_folders_are_pruned_when_unused(tmp_path):
    old, recent = tmp_path / "aaaa", tmp_path / "bbbb"
    for folder, age in ((old, 2 * 3600), (recent, 60)):
        folder.mkdir()
        (folder / "last_used").write_text("")
        t = time.time() - age
        os.utime(folder / "last_used", (t, t))
    path = persistent_cache_dir(str(tmp_path), "cccc")
    assert path == str(tmp_path / "cccc") and os.path.isdir(path)
    assert not old.exists() and recent.exists()


def test_fresh_cache_on_request():
    """MEANFIELD_FRESH_NUMBA_CACHE=1 (.ci/run) gives a session a new temporary folder."""
    code = "import os, conftest; print(os.environ['NUMBA_CACHE_DIR'])"
    env = dict(os.environ, MEANFIELD_FRESH_NUMBA_CACHE="1")
    out = subprocess.run([sys.executable, "-c", code], cwd=os.path.join(REPO, "tests"), env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert os.path.basename(out).startswith("meanfield-numba-cache-") and not os.path.exists(out)
    env["MEANFIELD_FRESH_NUMBA_CACHE"] = "0"
    out = subprocess.run([sys.executable, "-c", code], cwd=os.path.join(REPO, "tests"), env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == os.path.join(REPO, ".numba_cache", numba_cache_key())


#: Hashes the outputs of the kernels that reduce with re-association (the row-wise pair
#: passes, parallel; the dense Jacobian, parallel; the sphere's spanning tree, serial) and of
#: a network's attention and LayerNorm (helpers called, not inlined: they do not re-associate)
#: and reports whether each kernel was compiled or loaded from the cache in this process.
_BITS_SCRIPT = r"""
import hashlib
import numpy as np
from meanfield.diagnostics.clustering import spanning_tree
from meanfield.models import make_model
from meanfield._kernels import heads as HK, jacobian as JK, layernorm as LK, pairwise as PK, sphere as SK

def h(a):
    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]

rng = np.random.default_rng(1)
d, n = 3, 300
A = rng.normal(size=(d, d))
A = (A + A.T) / 2
x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d))
first = make_model({"name": "softmax", "dynamics": "first_order", "d": d, "A": A.tolist()})
first.use_row_passes()
print("first_order", h(first.first_order(x, 0.0)))
acc = make_model({"name": "softmax", "dynamics": "accelerated", "d": d, "A": A.tolist()})
acc.use_row_passes()
print("hamiltonian", "/".join(h(f) for f in acc.hamiltonian_field(x, y, 0.0)))
print("jacobian", h(make_model({"name": "softmax", "dynamics": "first_order", "d": d,
                                 "A": A.tolist()}).jacobian_first_order(x[:100], 0.0)))
tree = spanning_tree(x, beta=3.0)
print("tree", h(tree["w"]), h(np.array([tree["sum_exp"]])))
qkv, bias = rng.normal(size=(n, 3 * 2 * 8)), rng.normal(size=3 * 2 * 8)
for causal in (False, True):
    att = np.empty((n, 2, 8))
    HK.multi_head_attention(qkv, bias, 2, 8 ** -0.5, causal, 64, 2, att)
    print("heads", causal, h(att))
ln = np.empty_like(qkv)
LK.layer_norm_rows(qkv, bias, bias[::-1].copy(), 1e-5, ln)
print("layer_norm", h(ln))
# the heads and LayerNorm run their numba kernels on Python threads (_kernels/workers.py)
for k in (PK.loop_pass, JK.attention_jacobian, SK.prim_pass, HK._head_items, LK._layer_norm_range):
    print("stats", k.__name__, sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values()))
"""


@pytest.mark.slow
def test_compiled_and_cache_loaded_kernels_give_the_same_bits(tmp_path):
    """A process that compiles the kernels and one that loads them from its cache agree bit for bit (#29).

    They used not to: a helper that LLVM did not inline was called through a weak
    symbol, which the JIT binds to the first definition loaded. The compiling
    process had loaded the helper's own library (optimized once); a process
    loading the kernel from the cache had only the copy linked into the kernel,
    optimized again, and under re-association the second optimization reorders
    sums (1 ulp in 15 of 900 entries of the dask cluster tests).
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _BITS_SCRIPT], env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr
        runs.append(out.stdout.splitlines())
    compiled, loaded = ({line.split()[1]: line.split()[2:] for line in run if line.startswith("stats")}
                        for run in runs)
    for name in compiled:
        assert compiled[name] == ["0", "1"], (name, compiled[name])  # compiled in the first process,
        assert loaded[name] == ["1", "0"], (name, loaded[name])  # loaded in the second
    bits = [[line for line in run if not line.startswith("stats")] for run in runs]
    assert bits[0] == bits[1]
