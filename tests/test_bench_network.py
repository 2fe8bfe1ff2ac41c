"""benchmarks/bench_network.py --quick: the three forward passes agree and the JSON has its fields.

The script's numbers (docs/performance.md, issue 27's targets) rest on the
three passes computing the same network: the NumPy transcription and, when
torch and transformers are installed, GPT2Model loaded from the same arrays
must match meanfield's run to round-off.
"""

import json

import pytest
from conftest import benchmark_module


@pytest.fixture(scope="module")
def bench():
    yield from benchmark_module("bench_network")


def test_quick_run_writes_the_table(bench, tmp_path, capsys):
    out = tmp_path / "network.json"
    assert bench.main(["--quick", "--repeats", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["shape"] == bench.QUICK and res["cpu_label"] and len(res["load_average_after"]) == 3
    assert [r["dtype"] for r in res["rows"]] == ["float64", "float32"]
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        has_torch = True
    except ImportError:
        has_torch = False
    for r in res["rows"]:
        assert r["meanfield_s"] > 0 and r["numpy_s"] > 0 and r["meanfield_full_diagnostics_s"] > 0
        assert r["ratio_numpy"] == pytest.approx(r["meanfield_s"] / r["numpy_s"])
        tol = 1e-12 if r["dtype"] == "float64" else 1e-5
        assert r["rel_diff_numpy"] < tol
        if has_torch:
            assert r["torch_s"] > 0 and r["rel_diff_torch"] < tol
            assert r["ratio_torch"] == pytest.approx(r["meanfield_s"] / r["torch_s"])
        else:
            assert r["torch"].startswith("not installed") and r["ratio_torch"] is None
    assert "meanfield / NumPy" in bench.markdown(res)
    assert "float32" in capsys.readouterr().out


def test_torch_passes_run_with_openmp_not_nested(bench):
    """numba's OpenMP layer sets libgomp's max-active-levels to 255; torch, sharing libgomp,
    then nests its regions and ran its forward at half speed. The torch passes run at level 1,
    as in a process of their own, and numba's level is restored after."""
    import ctypes

    import numba
    import numpy as np
    from numba import njit, prange

    @njit(parallel=True)
    def launch(a):
        for i in prange(a.size):
            a[i] += 1.0

    launch(np.zeros(8))  # numba's threading layer is up
    try:
        gomp = ctypes.CDLL("libgomp.so.1")
    except OSError:
        pytest.skip("no libgomp (numba's threading layer is not OpenMP here)")
    if numba.threading_layer() != "omp":
        pytest.skip("numba's threading layer is not OpenMP")
    before = gomp.omp_get_max_active_levels()
    with bench._openmp_not_nested():
        assert gomp.omp_get_max_active_levels() == 1
    assert gomp.omp_get_max_active_levels() == before
