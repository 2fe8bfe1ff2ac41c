"""benchmarks/bench_long_time.py: its NumPy field, its way of counting scipy's calls, its CLI parameters.

The benchmark's verdicts (meanfield vs scipy's LSODA, docs/long-time.md) rest
on these: a transcription of the sphere field that is the model's field, a
count of LSODA's field evaluations that includes its finite-difference
Jacobian columns, and a TOML file the CLI reads as the run meant.
"""

import math

import numpy as np
import pytest
from conftest import benchmark_module

import meanfield


@pytest.fixture(scope="module")
def bench():
    yield from benchmark_module("bench_long_time")


@pytest.mark.parametrize("beta", [1.0, 16.0])
def test_transcription_is_the_model_field_off_the_sphere_too(bench, beta):
    assert bench.check_transcription(n=24, seed=3, beta=beta) <= 1e-13


def test_lsoda_nfev_includes_its_finite_difference_jacobian_columns(bench):
    # the docstring's counting: scipy's nfev for LSODA already holds the njev * 3 N columns
    x0 = bench.initial(8, 0)
    r = bench.scipy_run(x0, 1e3, "LSODA", 1e-6, 1e-9)
    assert r["njev"] > 0 and "warning" not in r
    assert r["calls"] == r["nfev"] > r["jacobian_columns"] == r["njev"] * 24


def test_decades(bench):
    assert bench.decades(1e8) == [10.0 ** k for k in range(1, 9)]
    assert bench.decades(3e3) == [10.0, 100.0, 1000.0, 3000.0]


def test_toml_file_is_the_config_dict(bench, tmp_path):
    cfg = bench.config(16, 2, "rk4", 1e3, accelerated=True, max_wall_time=5.0)
    path = tmp_path / "p.toml"
    path.write_text(bench.to_toml(cfg))
    assert meanfield.Run.from_toml(path).resolved() == meanfield.Run(cfg).resolved()


def test_quick_case_a_runs_and_counts_match(bench, tmp_path):
    # the script's --quick case A end to end (N = 16, t1 = 10^3): 1.3 s warm, 7.6 s with a cold numba cache
    out = tmp_path / "long_time.json"
    res = bench.main(["--quick", "--case", "A", "--out", str(out)])
    rows = res["case_A"]["table"]
    assert any(r["method"].startswith("meanfield") for r in rows)  # the adaptive methods are registered
    assert all(r.get("match", "yes") == "yes" for r in rows)
    assert out.exists() and math.isfinite(rows[0]["wall_s"])
    assert np.all([r["calls"] > 0 for r in rows])
