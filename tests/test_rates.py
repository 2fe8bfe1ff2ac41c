"""Known convergence rates (issue 7) and the compare command."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from meanfield_cli.main import cli

import meanfield
from meanfield.diagnostics.rates import compare_runs, fit_exponential, fit_power_law


def _identity_config(d=3, n=200, t1=400.0, h=0.05, integrator="rk4", dynamics="first_order"):
    return {
        "model": {"name": "bilinear", "dynamics": dynamics, "d": d, "A": "identity", "Q": "identity",
                  "m": [0.0] * d},
        "damping": {"schedule": "none"},
        "integrator": {"name": integrator, "h": h},
        "initial": {"law": "gaussian", "n": n, "mean": [0.3] * d, "cov": "identity", "seed": 3},
        "run": {"t0": 0.0, "t1": t1, "save_every": 20},
        "output": {"save": []},
    }


def test_first_order_identity_problem_decays_like_d_over_4t():
    """A = Q = I, m = 0: M' = -2 M^2, M(t) = (M0^-1 + 2 t I)^-1, energy = tr(M)/2 ~ d/(4t)."""
    d = 3
    run = meanfield.Run(_identity_config(d=d))
    res = run.simulate()
    x0 = run.x0
    M0 = x0.T @ x0 / len(x0)
    for k in (5, len(res.t) // 2, len(res.t) - 1):
        M = np.linalg.inv(np.linalg.inv(M0) + 2 * res.t[k] * np.eye(d))
        assert res["energy"][k] == pytest.approx(0.5 * np.trace(M), rel=1e-7)
    fit = fit_power_law(res.t, res["energy"], window=(100.0, 400.0))
    assert fit["exponent"] == pytest.approx(-1.0, abs=0.01)
    assert fit["constant"] == pytest.approx(d / 4, rel=0.02)
    assert fit["r2"] > 0.9999
    # and the exponential model fits worse
    assert fit_exponential(res.t, res["energy"], window=(100.0, 400.0))["r2"] < fit["r2"]


def test_power_and_exponential_fits_recover_synthetic_rates():
    t = np.linspace(1, 100, 400)
    p = fit_power_law(t, 3.0 * t**-2.0)
    assert p["exponent"] == pytest.approx(-2.0, abs=1e-10) and p["constant"] == pytest.approx(3.0)
    e = fit_exponential(t, 2.0 * np.exp(-0.3 * t))
    assert e["rate"] == pytest.approx(0.3, abs=1e-10) and e["r2"] == pytest.approx(1.0)


def test_compare_table_speedup_and_outputs(tmp_path):
    base = _identity_config(d=2, n=100, t1=40.0, h=0.05, integrator="euler")
    base["model"]["m"] = [0.5, -0.25]
    acc = json.loads(json.dumps(base))
    acc["model"]["dynamics"] = "accelerated"
    acc["integrator"]["name"] = "exp_euler"
    acc["damping"] = {"schedule": "nesterov", "r": 3.0}
    acc["run"]["t0"] = 1.0
    acc["run"]["t1"] = 41.0
    acc["initial"]["momentum"] = "zero"
    paths = []
    for name, cfg in (("first.h5", base), ("acc.h5", acc)):
        paths.append(str(tmp_path / name))
        meanfield.Run(cfg).simulate(paths[-1])
    trajs = [meanfield.load(p) for p in paths]
    rows = compare_runs(trajs, names=["first", "acc"])
    tol = 2 * max(r["final_gap"] for r in rows)  # reached by both runs
    rows = compare_runs(trajs, names=["first", "acc"], tol=tol)
    first, accr = rows
    assert np.isfinite(accr["speedup_calls_to_tol"]) and accr["calls_to_tol"] > 0
    assert first["E_star_source"] == "exact infimum"
    assert first["speedup_calls_to_tol"] == pytest.approx(1.0)
    assert first["gap_ratio_equal_calls"] == pytest.approx(1.0)
    assert np.isfinite(accr["gap_ratio_equal_calls"])
    assert accr["equal_calls"] == min(t["oracle_calls"][-1] for t in trajs)
    r = CliRunner().invoke(cli, ["compare", *paths, "--out", str(tmp_path / "c.csv")])
    assert r.exit_code == 0, r.output
    assert "power_exponent" in r.output and "acc.h5" in r.output
    assert (tmp_path / "c.csv").read_text().startswith("file,")
    r = CliRunner().invoke(cli, ["compare", *paths, "--out", str(tmp_path / "c.json"), "--tol", "1e-3"])
    assert r.exit_code == 0 and len(json.loads((tmp_path / "c.json").read_text())) == 2
    bad = CliRunner().invoke(cli, ["compare", paths[0], "--window", "a:b"])
    assert bad.exit_code == 2 and "--window" in bad.output


def test_gap_ratio_of_a_gap_at_roundoff_is_unknown():
    """A run whose energy reaches E* to round-off has no gap ratio (it printed ~1e304)."""

    class T(dict):
        config = {"model": {"name": "softmax", "dynamics": "first_order"},
                  "integrator": {"name": "euler"}}

    t = np.linspace(0.0, 1.0, 6)
    base = T(sim_time=t, energy=1.0 + np.exp(-t), oracle_calls=np.arange(6.0))
    exact = T(sim_time=t, energy=np.r_[2.0, np.ones(5)], oracle_calls=np.arange(6.0))
    exact.config = {**exact.config, "integrator": {"name": "mean_shift"}}
    rows = compare_runs([base, exact], names=["base", "exact"], e_star=1.0)
    assert rows[0]["gap_ratio_equal_calls"] == pytest.approx(1.0)
    assert np.isnan(rows[1]["gap_ratio_equal_calls"])
