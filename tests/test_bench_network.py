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
