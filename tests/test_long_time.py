"""The time loop with adaptive steps, save clocks and cluster events (docs/long-time.md).

The loop's mechanics are tested with a small embedded pair registered only
here (Heun-Euler, order 2(1)), so they do not depend on the production
methods, whose own tests are in tests/test_adaptive_methods.py.
"""

import math
import os
import signal

import numpy as np
import pytest

import meanfield
from meanfield.errors import Interrupted, ParameterError
from meanfield.integrators import INTEGRATORS, register
from meanfield.integrators.adaptive import AdaptiveIntegrator, error_norm
from meanfield.resume import resume_run
from meanfield.steppers import SaveAt


class _HeunEuler(AdaptiveIntegrator):
    """Heun's method with Euler as the embedded solution; linear dense output."""

    name = "test_heun_euler"
    order, error_order, dense_order, oracle_calls = 2, 1, 1, 2

    def attempt(self, field, t, h, z):
        k1 = field(t, z)
        k2 = field(t + h, z + h * k1)
        z_new = z + 0.5 * h * (k1 + k2)
        return z_new, error_norm(0.5 * h * (k2 - k1), z, z_new, self.rtol, self.atol)

    def commit(self, field, t, h, z, z_new):
        self._ends = (z.copy(), z_new.copy())

    def dense(self, theta):
        return (1.0 - theta) * self._ends[0] + theta * self._ends[1]


@pytest.fixture(autouse=True, scope="module")
def heun_euler():
    for kind in ("first_order", "accelerated"):
        register(type(f"_HeunEuler_{kind}", (_HeunEuler,), {"kind": kind}))
    yield
    INTEGRATORS.pop(_HeunEuler.name)


def sphere(n=24, beta=4.0, t1=200.0, seed=1, **run):
    return {"model": {"name": "sphere", "dynamics": "first_order", "d": 3, "beta": beta},
            "integrator": {"name": _HeunEuler.name, "rtol": 1e-5, "atol": 1e-8},
            "initial": {"law": "sphere_uniform", "n": n, "seed": seed},
            "run": {"t1": t1, **run}, "output": {"save": ["x"]}}


def test_save_at_times_are_hit_exactly_by_adaptive_and_fixed_steps():
    times = [0.3, 1.0, math.pi, 7.5]
    for integ in ({"name": _HeunEuler.name, "rtol": 1e-5}, {"name": "rk4", "h": 0.2}):
        cfg = sphere(t1=10.0, save_at=times)
        cfg["integrator"] = integ
        r = meanfield.Run(cfg).simulate()
        assert r.t.tolist() == [0.0, *times, 10.0]


def test_fixed_steps_keep_their_grid_between_save_times():
    cfg = sphere(t1=1.0, save_at=[0.25, 0.5])
    cfg["integrator"] = {"name": "euler", "h": 0.1}
    plain = meanfield.Run({**cfg, "run": {"t1": 1.0}}).simulate()
    clocked = meanfield.Run(cfg).simulate()
    # steps at 0.1 k, cut at 0.25 and 0.5 (0.5 is on the grid): 10 grid steps + one extra
    assert clocked.scales["iteration"][-1] == 11
    assert plain.scales["iteration"][-1] == 10
    assert np.abs(clocked.x - plain.x).max() < 0.05  # the same flow, one more (shorter) step


def test_saves_per_decade_is_a_logarithmic_clock():
    r = meanfield.Run(sphere(t1=1e3, saves_per_decade=2)).simulate()
    expected = [0.0] + [10.0 ** (j / 2) for j in range(-4, 6)] + [1e3]
    assert r.t.tolist() == expected  # from 10^-2 (t0 = 0): the times 10^(j/2) exactly
    assert SaveAt.per_decade(4, 1.0, 100.0) == tuple(10.0 ** (j / 4) for j in range(1, 8)) + (100.0,)
    assert np.isnan(r.scales["h"][0]) and np.all(r.scales["h"][1:] > 0)


def test_adaptive_steps_follow_the_tolerance():
    r = meanfield.Run(sphere(t1=1e2, saves_per_decade=1)).simulate()
    assert np.all(r.scales["h"][1:] > 0)
    ref = meanfield.Run({**sphere(t1=2.0), "integrator": {"name": "rk4", "h": 0.005}}).simulate()
    errs = []
    for rtol in (1e-3, 1e-5):
        cfg = sphere(t1=2.0, save_at=[2.0])
        cfg["integrator"]["rtol"], cfg["integrator"]["atol"] = rtol, rtol * 1e-3
        errs.append(np.abs(meanfield.Run(cfg).simulate().x - ref.x).max())
    assert errs[1] < errs[0] / 20  # the global error follows rtol (order 2 method: ~ rtol)
    assert r.attrs["accepted_steps"] == r.scales["iteration"][-1]
    assert r.attrs["rejected_steps"] >= 0


def test_rejected_attempts_are_counted_and_never_saved():
    cfg = sphere(t1=3.0, save_at=[3.0])
    cfg["integrator"]["h"] = 5.0  # far too large a first step: rejected, retried
    r = meanfield.Run(cfg).simulate()
    assert r.attrs["rejected_steps"] >= 1
    # every oracle call is counted: 2 per attempt, accepted or not
    assert r.oracle_calls == 2 * (r.attrs["accepted_steps"] + r.attrs["rejected_steps"])
    assert r.t.tolist() == [0.0, 3.0]
    every = meanfield.Run(sphere(t1=3.0)).simulate()  # save_every = 1: every accepted step
    assert len(every.t) == every.attrs["accepted_steps"] + 1


def test_cluster_events_are_located_inside_steps_and_stop_the_run():
    r = meanfield.Run(sphere(n=16, t1=1e4, saves_per_decade=1, stop_clusters=1)).simulate()
    ev = r.events["n_clusters"]
    assert ev[0].tolist() == [0.0, 16.0]  # the initial count
    assert np.all(np.diff(ev[:, 0]) > 0) and np.all(np.diff(ev[:, 1]) < 0)
    assert r.status.startswith("stopped: clusters") and r["n_clusters"][-1] <= 1
    assert r.t_end == r.t[-1] < 1e4
    # the located time lies strictly inside the last step, not at its end
    assert ev[-1, 0] < r.t_end


def test_resume_in_the_middle_of_a_log_clock_run_is_bit_identical(tmp_path):
    cfg = sphere(t1=300.0, saves_per_decade=3)
    full = meanfield.Run(cfg).simulate(str(tmp_path / "full.h5"))

    def ctrl_c(done, total, calls=[0]):
        calls[0] += 1
        if calls[0] == 400:  # a Ctrl-C between two saves, mid-run
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted):
        meanfield.Run(cfg).simulate(str(tmp_path / "cut.h5"), progress=ctrl_c)
    resumed = resume_run(str(tmp_path / "cut.h5"))
    a, b = meanfield.load(str(tmp_path / "full.h5")), meanfield.load(str(tmp_path / "cut.h5"))
    assert resumed.status == full.status == "finished"
    for name in ("x", "energy", "n_clusters"):
        assert np.array_equal(a[name], b[name]), name
    for name in ("sim_time", "iteration", "oracle_calls", "h"):
        assert np.array_equal(a.scales[name], b.scales[name], equal_nan=True), name
    assert np.array_equal(a.events["n_clusters"], b.events["n_clusters"])
    assert a.attrs["rejected_steps"] == b.attrs["rejected_steps"]


@pytest.mark.parametrize("run, key", [
    ({"save_at": [1.0, 0.5]}, "run.save_at"),
    ({"save_at": [1.0, 500.0]}, "run.save_at"),
    ({"save_at": [1.0], "save_every": 2}, "run.save_at"),
    ({"saves_per_decade": 0}, "run.saves_per_decade"),
    ({"stop_clusters": 0}, "run.stop_clusters"),
])
def test_bad_clocks_name_the_key(run, key):
    with pytest.raises(ParameterError) as e:
        meanfield.Run(sphere(t1=200.0, **run))
    assert e.value.key == key


def test_a_clock_needs_an_end_time():
    cfg = sphere(saves_per_decade=2)
    cfg["run"] = {"steps": 10, "saves_per_decade": 2}
    with pytest.raises(ParameterError, match="run.t1"):
        meanfield.Run(cfg)


def test_stop_clusters_needs_the_sphere_model():
    cfg = {"model": {"name": "bilinear", "dynamics": "first_order", "d": 2, "A": "identity"},
           "integrator": {"name": "rk4", "h": 0.1}, "initial": {"law": "gaussian", "n": 10},
           "run": {"t1": 1.0, "stop_clusters": 1}}
    with pytest.raises(ParameterError) as e:
        meanfield.Run(cfg)
    assert e.value.key == "run.stop_clusters"


def test_adaptive_methods_refuse_what_fixed_steps_only_cover(tmp_path):
    np.savez(tmp_path / "mlp.npz", W1=np.eye(3), b1=np.zeros(3), W2=np.eye(3), b2=np.zeros(3))
    cfg = sphere()
    cfg["model"]["mlp"] = str(tmp_path / "mlp.npz")
    with pytest.raises(ParameterError) as e:
        meanfield.Run(cfg)
    assert e.value.key == "integrator.name"
    kinetic = {"model": {"name": "sphere", "dynamics": "accelerated", "d": 2, "beta": 2.0},
               "integrator": {"name": _HeunEuler.name}, "damping": {"schedule": "constant", "a": 1.0},
               "initial": {"law": "von_mises"}, "solver": {"kind": "pde", "grid": [32, 33]},
               "run": {"t1": 1.0}}
    with pytest.raises(ParameterError) as e:
        meanfield.Run(kinetic)
    assert e.value.key == "integrator.name"


def test_fixed_step_methods_still_need_h():
    cfg = sphere()
    cfg["integrator"] = {"name": "rk4"}
    with pytest.raises(ParameterError) as e:
        meanfield.Run(cfg)
    assert e.value.key == "integrator.h"


def test_grid_runs_take_adaptive_steps_within_the_cfl_bound():
    cfg = {"model": {"name": "sphere", "dynamics": "first_order", "d": 2, "beta": 4.0},
           "integrator": {"name": _HeunEuler.name, "rtol": 1e-3, "atol": 1e-6},
           "initial": {"law": "von_mises", "mu": [0.0, 2.0], "kappa": [4.0, 4.0], "weights": [0.5, 0.5]},
           "solver": {"kind": "pde", "grid": 64}, "run": {"t1": 4.0, "save_at": [1.0, 2.0]}}
    run = meanfield.Run(cfg)
    bounds = []
    system = run.make_system()
    step_bound = system.step_bound
    system.step_bound = lambda: bounds.append(step_bound()) or bounds[-1]
    res = run.advance(system, [])
    assert res.t == 4.0 and bounds
    assert res.stats["accepted_steps"] >= 4.0 / max(bounds)
    heun = meanfield.Run({**cfg, "integrator": {"name": "heun", "h": 0.002}}).simulate()
    assert np.abs(res.state["density"] - heun["density"][-1]).max() < 1e-3 * heun["density"][-1].max()


def test_progress_is_reported_in_log_time_on_a_log_clock():
    seen = []

    class Progress:
        unit = None

        def at_time(self, t):
            seen.append(t)

        def __call__(self, done, total):
            seen.append((done, total))

    p = Progress()
    meanfield.Run(sphere(t1=1e3, saves_per_decade=1)).simulate(progress=p)
    assert p.unit == "log time"
    dones = [d for d in seen if isinstance(d, tuple)]
    assert dones[-1] == (1000, 1000)
    # half the log-time span is reached by t ~ sqrt(1e-3 * 1e3): far before half of t1
    half = next(seen[i - 1] for i, d in enumerate(seen) if isinstance(d, tuple) and d[0] >= 500)
    assert half < 10.0


TOML = """\
[model]
name = "sphere"
dynamics = "first_order"
d = 3
beta = 4.0
[integrator]
name = "test_heun_euler"
rtol = 1e-5
{extra}
[initial]
law = "sphere_uniform"
n = 16
[run]
t1 = 1000.0
saves_per_decade = 1
{run}
"""


@pytest.mark.parametrize("extra, run, key", [
    ("", "save_at = [5.0, 2.0]", "run.save_at"),
    ("rtol_ = 1", "", "integrator.rtol_"),
    ("h_max = -1.0", "", "integrator.h_max"),
    ("atol = -1.0", "", "integrator.atol"),
])
def test_bad_adaptive_input_is_one_line_exit_2(tmp_path, monkeypatch, extra, run, key):
    from click.testing import CliRunner
    from meanfield_cli.main import cli

    monkeypatch.chdir(tmp_path)
    text = TOML.format(extra=extra, run=run).replace("saves_per_decade = 1\nsave_at", "save_at")
    (tmp_path / "p.toml").write_text(text)
    res = CliRunner().invoke(cli, ["run", "p.toml", "-o", "o.h5", "--no-progress"])
    assert res.exit_code == 2, res.output
    assert key in res.output and len(res.output.strip().splitlines()) == 1, res.output


@pytest.mark.parametrize("rtol", ["0.0", "-1e-6", "1.5", "true"])
def test_rtol_must_lie_in_zero_one(tmp_path, monkeypatch, rtol):
    from click.testing import CliRunner
    from meanfield_cli.main import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_text(TOML.format(extra="", run="").replace("rtol = 1e-5", f"rtol = {rtol}"))
    res = CliRunner().invoke(cli, ["run", "p.toml", "-o", "o.h5", "--no-progress"])
    assert res.exit_code == 2 and "integrator.rtol" in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output


def test_the_cli_says_why_a_cluster_stop_ended_the_run(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from meanfield_cli.main import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_text(TOML.format(extra="", run="stop_clusters = 2"))
    res = CliRunner().invoke(cli, ["run", "p.toml", "-o", "o.h5", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "steps (" in res.stdout and "rejected)" in res.stdout
    assert "stopped: clusters: n_clusters = " in res.stderr and "run.stop_clusters" in res.stderr
    assert meanfield.load("o.h5").attrs["status"].startswith("stopped: clusters")


def test_a_stiff_method_refuses_a_state_too_large_for_a_dense_jacobian():
    cfg = sphere(n=3000)
    cfg["integrator"] = {"name": "ros34pw2"}
    with pytest.raises(ParameterError) as e:
        meanfield.Run(cfg)
    assert e.value.key == "integrator.name" and "dopri5" in str(e.value)
    cfg["integrator"] = {"name": "dopri5"}
    meanfield.Run(cfg)  # an explicit method has no such limit


def test_the_file_and_info_name_the_tolerances_in_force(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from meanfield_cli.main import cli

    monkeypatch.chdir(tmp_path)
    cfg = sphere(t1=10.0, save_at=[10.0])
    del cfg["integrator"]["atol"]  # the default, filled in
    r = meanfield.Run(cfg).simulate("o.h5")
    assert r.config["integrator"]["atol"] == 1e-9 and r.config["integrator"]["rtol"] == 1e-5
    assert resume_run("o.h5", overrides=["run.t1=20.0"]).status == "finished"  # the filled-in keys resume
    out = CliRunner().invoke(cli, ["info", "o.h5"]).output
    assert "rtol = 1e-05, atol = 1e-09; accepted steps" in out, out


def test_a_finished_fixed_step_run_with_save_times_extends_on_its_grid(tmp_path):
    # steps cut at a save time do not count on the grid t0 + j h: the checkpoint at t1 = 1.0 is
    # grid point j = 10 after 11 steps, and the longer run goes on from it exactly
    cfg = sphere(t1=1.0, save_at=[0.25])
    cfg["integrator"] = {"name": "rk4", "h": 0.1}
    meanfield.Run(cfg).simulate(str(tmp_path / "a.h5"))
    resumed = resume_run(str(tmp_path / "a.h5"), overrides=["run.t1=2.0"])
    full = meanfield.Run({**cfg, "run": {"t1": 2.0, "save_at": [0.25]}}).simulate()
    assert resumed.status == "finished" and np.array_equal(resumed.x, full.x)
