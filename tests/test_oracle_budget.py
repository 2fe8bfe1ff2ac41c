"""Runs bounded by an oracle budget: ``run.oracle_calls = K`` gives floor(K / calls) steps, counted exactly."""

import h5py
import numpy as np
import pytest

import meanfield
from meanfield.integrators import INTEGRATORS

pytestmark = pytest.mark.usefixtures("one_thread")


def budget_config(dynamics, name, K, save_every=7, h=0.01):
    cfg = {
        "model": {"name": "bilinear", "dynamics": dynamics, "d": 2, "A": "identity",
                  "Q": [[1.0, 0.0], [0.0, 2.0]], "m": [0.3, -0.2]},
        "damping": {"schedule": "nesterov", "r": 3.0},
        "integrator": {"name": name, "h": h},
        "initial": {"law": "gaussian", "n": 32, "mean": [0.5, 0.0], "cov": [[1.0, 0.0], [0.0, 1.0]],
                    "seed": 1},
        "run": {"t0": 1.0, "oracle_calls": K, "save_every": save_every},
        "output": {"save": []},
    }
    if dynamics == "accelerated":
        cfg["initial"].update(momentum="gaussian", momentum_scale=0.3)
    return cfg


CASES = [("accelerated", "tao2"), ("first_order", "euler"), ("accelerated", "kick_drift"),
         ("first_order", "nag")]


@pytest.mark.parametrize("K", [100, 103])
@pytest.mark.parametrize("dynamics,name", CASES, ids=[n for _, n in CASES])
def test_budget_gives_floor_steps_and_exact_counts(dynamics, name, K, tmp_path):
    calls = INTEGRATORS[name][dynamics].oracle_calls
    steps = K // calls
    path = tmp_path / "run.h5"
    res = meanfield.Run(budget_config(dynamics, name, K)).simulate(output=str(path))

    assert res["iteration"][-1] == steps
    assert res.oracle_calls == steps * calls <= K < (steps + 1) * calls
    assert res.t[-1] == pytest.approx(1.0 + steps * 0.01, abs=1e-12)
    # every save: the cumulative count is exactly iteration x calls per step
    np.testing.assert_array_equal(res["oracle_calls"], res["iteration"] * calls)
    expected_iters = sorted(set(range(0, steps + 1, 7)) | {steps})
    np.testing.assert_array_equal(res["iteration"], expected_iters)

    with h5py.File(path, "r") as f:
        oc = f["scales/oracle_calls"][:]
        it = f["scales/iteration"][:]
        assert oc.dtype == np.int64
        np.testing.assert_array_equal(oc, res["oracle_calls"])
        np.testing.assert_array_equal(it, res["iteration"])
        np.testing.assert_array_equal(oc, it * calls)
        assert oc[-1] == steps * calls
        # a run that ends cleanly always stores its final state as the checkpoint, with the counts
        assert f["checkpoint"].attrs["oracle_calls"] == steps * calls
        assert f["checkpoint"].attrs["iteration"] == steps


def test_equal_budget_compares_tao2_with_euler():
    """At the same K, tao2 (4 calls/step) takes K/4 steps and euler (1 call/step) takes K."""
    K = 400
    acc = meanfield.Run(budget_config("accelerated", "tao2", K, save_every=50)).simulate()
    fo = meanfield.Run(budget_config("first_order", "euler", K, save_every=50)).simulate()
    assert acc["iteration"][-1] == 100 and fo["iteration"][-1] == 400
    assert acc.oracle_calls == fo.oracle_calls == K
    assert acc["oracle_calls"][-1] == fo["oracle_calls"][-1] == K
    # same h: the accelerated run covers a quarter of the time
    assert acc.t[-1] == pytest.approx(2.0) and fo.t[-1] == pytest.approx(5.0)


def test_budget_below_one_step_is_an_input_error():
    with pytest.raises(meanfield.ParameterError, match="run.oracle_calls"):
        meanfield.Run(budget_config("accelerated", "tao2", 3))
