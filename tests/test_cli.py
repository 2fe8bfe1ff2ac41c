"""The command line: default example, info, init, bad inputs (exit 2, one line), failures (exit 1)."""

import os
import textwrap

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from meanfield_cli.main import cli

import meanfield

SMALL = textwrap.dedent("""\
    [model]
    name = "bilinear"
    dynamics = "accelerated"
    d = 2
    A = "identity"
    Q = [[1.0, 0.0], [0.0, 2.0]]
    m = [0.5, -0.5]
    [damping]
    schedule = "nesterov"
    r = 3.0
    [integrator]
    name = "exp_euler"
    h = 0.02
    [initial]
    law = "gaussian"
    n = 64
    mean = [0.5, 0.0]
    cov = [[1.0, 0.0], [0.0, 1.0]]
    momentum = "zero"
    seed = 0
    [run]
    t0 = 1.0
    t1 = 2.0
    save_every = 5
    [output]
    path = "small.h5"
    save = ["x", "y"]
    """)


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def _write(text, name="p.toml"):
    with open(name, "w") as fh:
        fh.write(text)
    return name


def test_default_example_runs_and_compares(runner):
    res = runner.invoke(cli, ["run", "--set", "run.t1=6.0", "--set", "initial.n=200"])
    assert res.exit_code == 0, res.output
    # at t1 = 6 acceleration has not overtaken yet (gaps 0.109 vs 0.100): the line says so
    assert "1.1x higher with acceleration" in res.output, res.output
    assert os.path.exists("run.h5") and os.path.exists("run-first_order.h5")
    with h5py.File("run.h5") as f, h5py.File("run-first_order.h5") as g:
        assert f.attrs["status"] == "finished"
        assert f["scales/oracle_calls"][-1] == g["scales/oracle_calls"][-1]
    # a second run refuses to overwrite
    again = runner.invoke(cli, ["run", "--set", "run.t1=6.0"])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_run_info_and_layout(runner):
    p = _write(SMALL)
    res = runner.invoke(cli, ["run", p, "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "final energy" in res.output and "oracle calls" in res.output
    with h5py.File("small.h5") as f:
        T = f["scales/sim_time"].shape[0]
        assert T == 11  # t = 1..2 in 50 steps, saved every 5 plus the initial state
        for name in ("sim_time", "iteration", "oracle_calls", "wall_time"):
            assert f["scales"][name].shape == (T,)
        assert f["tasks/x"].shape == (T, 64, 2) and f["tasks/y"].shape == (T, 64, 2)
        assert f["tasks/cov"].shape == (T, 2, 2) and f["tasks/mean"].shape == (T, 2)
        for name in ("energy", "kinetic", "potential", "dissipation_residual"):
            assert f["tasks"][name].shape == (T,)
        assert f["checkpoint/x"].shape == (64, 2)
        assert f.attrs["status"] == "finished"
        assert "numba_version" in f.attrs and "created" in f.attrs
        assert f["scales/sim_time"][-1] == pytest.approx(2.0)
    info = runner.invoke(cli, ["info", "small.h5"])
    assert info.exit_code == 0 and "finished" in info.output and "energy" in info.output


def test_set_overrides_and_threads(runner):
    p = _write(SMALL)
    res = runner.invoke(cli, ["run", p, "-o", "o.h5", "--set", "integrator.name=kick_drift",
                              "--set", "run.save_every=50", "--threads", "1"])
    assert res.exit_code == 0, res.output
    tr = meanfield.load("o.h5")
    assert tr.config["integrator"]["name"] == "kick_drift"
    assert tr.scales["oracle_calls"][-1] == 100


def test_init_template_is_a_valid_parameter_file(runner):
    res = runner.invoke(cli, ["init"])
    assert res.exit_code == 0
    p = _write(res.output)
    out = runner.invoke(cli, ["run", p, "--set", "run.t1=1.5", "--set", "initial.n=50"])
    assert out.exit_code == 0, out.output
    assert runner.invoke(cli, ["init", "--model", "nope"]).exit_code == 2


BAD = [
    # (what to change, key that must be named)
    (lambda s: s.replace('d = 2', 'd = 0'), "model.d"),
    (lambda s: s.replace('Q = [[1.0, 0.0], [0.0, 2.0]]', 'Q = [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]'), "model.Q"),
    (lambda s: s.replace('Q = [[1.0, 0.0], [0.0, 2.0]]', 'Q = [[1.0, 0.5], [0.0, 2.0]]'), "model.Q"),
    (lambda s: s.replace('m = [0.5, -0.5]', 'm = [0.5, -0.5, 1.0]'), "model.m"),
    (lambda s: s.replace('name = "bilinear"', 'name = "bilinearr"'), "model.name"),
    (lambda s: s.replace('dynamics = "accelerated"', 'dynamics = "fast"'), "model.dynamics"),
    (lambda s: s.replace('[model]', '[model]\ncolor = "red"'), "model.color"),
    (lambda s: s.replace('name = "exp_euler"', 'name = "euler"'), "integrator.name"),
    (lambda s: s.replace('name = "exp_euler"', 'name = "leapfrog"'), "integrator.name"),
    (lambda s: s.replace('h = 0.02', 'h = 0.0'), "integrator.h"),
    (lambda s: s.replace('h = 0.02', 'h = -0.1'), "integrator.h"),
    (lambda s: s.replace('h = 0.02', 'h = nan'), "integrator.h"),
    (lambda s: s.replace('t1 = 2.0', 't1 = 0.5'), "run.t1"),
    (lambda s: s.replace('t1 = 2.0', 't1 = inf'), "run.t1"),
    (lambda s: s.replace('t0 = 1.0', 't0 = 0.0'), "run.t0"),  # nesterov needs t0 > 0
    (lambda s: s.replace('cov = [[1.0, 0.0], [0.0, 1.0]]', 'cov = [[1.0, 0.0], [0.0, -1.0]]'), "initial.cov"),
    (lambda s: s.replace('cov = [[1.0, 0.0], [0.0, 1.0]]', 'cov = [[1.0, 2.0], [2.0, 1.0]]'), "initial.cov"),
    (lambda s: s.replace('mean = [0.5, 0.0]', 'mean = [0.5, "a"]'), "initial.mean"),
    (lambda s: s.replace('n = 64', 'n = -3'), "initial.n"),
    (lambda s: s.replace('law = "gaussian"', 'law = "cauchy"'), "initial.law"),
    (lambda s: s.replace('momentum = "zero"', 'momentum = "affine"\nS = [[1.0]]'), "initial.S"),
    (lambda s: s.replace('schedule = "nesterov"', 'schedule = "cosine"'), "damping.schedule"),
    (lambda s: s.replace('r = 3.0', 'a = 3.0'), "damping.a"),
    (lambda s: s.replace('save_every = 5', 'save_every = 0'), "run.save_every"),
    (lambda s: s.replace('t1 = 2.0', 't1 = 2.0\nsteps = 10'), "run.t1/steps/oracle_calls"),
    (lambda s: s.replace('save = ["x", "y"]', 'save = ["z"]'), "output.save"),
    (lambda s: s + '\n[extra]\nfoo = 1\n', "extra"),
    (lambda s: s.replace('[run]', '[run'), "valid TOML"),
    (lambda s: s.replace('law = "gaussian"', 'law = "file"\npath = "missing.npy"')
     .replace('mean = [0.5, 0.0]\n', '').replace('cov = [[1.0, 0.0], [0.0, 1.0]]\n', ''), "initial.path"),
    (lambda s: s.replace('dtype', 'dtype') + '', None),  # control: a good file
]


@pytest.mark.parametrize("change,key", BAD, ids=[k or "control" for _, k in BAD])
def test_bad_parameter_files_exit_2_with_one_clear_line(runner, change, key):
    text = change(SMALL)
    p = _write(text, "bad.toml")
    res = runner.invoke(cli, ["run", p, "-o", "bad.h5"])
    if key is None:
        assert res.exit_code == 0, res.output
        return
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert "bad.toml" in lines[0] and key in lines[0] and "expected" in lines[0] and "found" in lines[0]
    assert "Traceback" not in res.output
    assert not os.path.exists("bad.h5")


def test_bad_set_override_and_bad_file_arguments(runner):
    p = _write(SMALL)
    res = runner.invoke(cli, ["run", p, "--set", "integrator.h=-1"])
    assert res.exit_code == 2 and "integrator.h" in res.output
    res = runner.invoke(cli, ["run", p, "--set", "nosection.h=1"])
    assert res.exit_code == 2 and "nosection" in res.output
    res = runner.invoke(cli, ["run", "does-not-exist.toml"])
    assert res.exit_code == 2 and "does-not-exist.toml" in res.output
    np.save("wrong.npy", np.zeros((10, 3)))
    text = SMALL.replace('law = "gaussian"', 'law = "file"\npath = "wrong.npy"')
    text = text.replace('mean = [0.5, 0.0]\n', '').replace('cov = [[1.0, 0.0], [0.0, 1.0]]\n', '')
    res = runner.invoke(cli, ["run", _write(text, "f.toml")])
    assert res.exit_code == 2 and "initial.path" in res.output and "shape" in res.output


def test_blow_up_exits_1_and_keeps_the_file_readable(runner):
    text = SMALL.replace("Q = [[1.0, 0.0], [0.0, 2.0]]", "Q = [[-50.0, 0.0], [0.0, -50.0]]")
    text = text.replace('dynamics = "accelerated"', 'dynamics = "first_order"')
    text = text.replace('name = "exp_euler"', 'name = "euler"').replace("h = 0.02", "h = 0.5")
    text = text.replace('schedule = "nesterov"\nr = 3.0', 'schedule = "none"').replace("t1 = 2.0", "t1 = 200.0")
    p = _write(text)
    res = runner.invoke(cli, ["run", p, "-o", "boom.h5"])
    assert res.exit_code == 1, res.output
    assert "step" in res.output and "t =" in res.output
    with h5py.File("boom.h5") as f:
        assert f.attrs["status"].startswith("failed")
        assert np.all(np.isfinite(f["tasks/x"][...]))
        assert f["scales/sim_time"].shape[0] >= 1


def test_plot_kinds_write_images(runner):
    p = _write(SMALL.replace('momentum = "zero"', 'momentum = "zero"') + "\n[diagnostics]\nmoment_ode = true\n")
    assert runner.invoke(cli, ["run", p, "-o", "a.h5"]).exit_code == 0
    assert runner.invoke(cli, ["run", p, "-o", "b.h5", "--set", "integrator.name=kick_drift"]).exit_code == 0
    for args in (["a.h5", "--kind", "moments"], ["a.h5", "--kind", "particles"],
                 ["a.h5", "b.h5", "--kind", "energy", "--x", "oracle_calls", "--e-star", "auto"]):
        res = runner.invoke(cli, ["plot", *args, "-o", "fig.png"])
        assert res.exit_code == 0, res.output
        with open("fig.png", "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        os.remove("fig.png")
    bad = runner.invoke(cli, ["plot", "a.h5", "b.h5", "--kind", "moments"])
    assert bad.exit_code == 2 and "one run file" in bad.output
    assert runner.invoke(cli, ["plot", "missing.h5"]).exit_code == 2


def test_bench_lists_and_rejects_unknown_names(runner):
    res = runner.invoke(cli, ["bench"])
    assert res.exit_code == 0 and "bilinear" in res.output and "softmax" in res.output
    bad = runner.invoke(cli, ["bench", "nope"])
    assert bad.exit_code == 2 and "bench NAME" in bad.output
