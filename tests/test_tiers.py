"""The fast tier (``python -m pytest``) keeps a case of every model, integrator, dtype and kernel.

Tests marked ``slow`` are left out of the default run (conftest.py); this
test collects that tier in a subprocess and checks its test ids against the
registries, so marking the last case of something ``slow`` fails here.
"""

import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys

import numba
import pytest

import meanfield._kernels
from meanfield.integrators import INTEGRATORS
from meanfield.models import MODELS

from conftest import REPO

DTYPES = ("float64", "float32")

#: kernel module -> a test file that runs its kernels (the parallel ones are also
#: listed one by one in test_threads.COVERED, checked below)
KERNEL_FILES = {
    "activations": "tests/test_activations_kernel.py",
    "checks": "tests/test_state_check.py",
    "fastexp": "tests/test_softmax.py",
    "fourier": "tests/test_fourier.py",
    "fv": "tests/test_fv.py",
    "grid": "tests/test_sphere.py",
    "heads": "tests/test_network.py",
    "jacobian": "tests/test_jacobian.py",
    "kinetic": "tests/test_kinetic.py",
    "lanes": "tests/test_activations_kernel.py",
    "layernorm": "tests/test_activations_kernel.py",
    "moments": "tests/test_bilinear.py",
    "pairwise": "tests/test_softmax.py",
    "sphere": "tests/test_sphere.py",
}


@pytest.fixture(scope="module")
def fast_ids():
    """Node ids of the default run, collected as ``python -m pytest`` would."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    res = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    ids = [line for line in res.stdout.splitlines() if "::" in line]
    assert ids and "deselected" in res.stdout  # the tier is really smaller than the suite
    return ids


def mentions(ids, name, others):
    """Ids naming ``name`` as a word (names of which it is a part, e.g. exp_euler for euler, removed)."""
    longer = [o for o in others if o != name and name in o]
    word = re.compile(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])")
    out = []
    for i in ids:
        for o in longer:
            i = i.replace(o, "")
        if word.search(i):
            out.append(i)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("registry", ["model", "integrator", "dtype"])
def test_fast_tier_names_every_model_integrator_and_dtype(fast_ids, registry):
    names = {"model": sorted(MODELS), "integrator": sorted(INTEGRATORS), "dtype": DTYPES}[registry]
    missing = [n for n in names if not mentions(fast_ids, n, names)]
    assert not missing, f"no test of the fast tier names {registry} {missing}: un-mark one as slow"


@pytest.mark.slow
def test_fast_tier_runs_every_kernel_module(fast_ids):
    modules = {m.name for m in pkgutil.iter_modules(meanfield._kernels.__path__)}
    compiled = {m for m in modules
                if any(isinstance(o, numba.core.registry.CPUDispatcher)
                       for _, o in inspect.getmembers(importlib.import_module(f"meanfield._kernels.{m}")))}
    assert compiled == set(KERNEL_FILES), "a new kernel module needs a test file in KERNEL_FILES"
    missing = [m for m, f in KERNEL_FILES.items() if not any(i.startswith(f + "::") for i in fast_ids)]
    assert not missing, f"the fast tier runs no test of kernel modules {missing}"


@pytest.mark.slow
def test_fast_tier_runs_every_parallel_kernel_on_two_threads(fast_ids):
    from test_threads import COVERED

    tests = {i.split("::")[1].split("[")[0] for i in fast_ids if i.startswith("tests/test_threads.py::")}
    missing = sorted(k for k, t in COVERED.items() if t not in tests)
    assert not missing, f"the fast tier runs no 1-vs-2-thread test of {missing}"
