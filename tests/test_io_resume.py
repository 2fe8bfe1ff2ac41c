"""HDF5 round trip, Python API, interruption and resume."""

import os
import signal

import h5py
import numpy as np
import pytest

import meanfield
from meanfield.errors import ParameterError
from meanfield.resume import resume_run


def test_api_returns_arrays_and_matches_the_file(tmp_path, make_config):
    cfg = make_config("accelerated", "exp_euler", n=30, steps=40, save_every=10)
    res = meanfield.Run(cfg).simulate(str(tmp_path / "a.h5"))
    assert res.t.shape == (5,) and res["x"].shape == (5, 30, 3) and res["cov"].shape == (5, 3, 3)
    assert list(res["oracle_calls"]) == [0, 10, 20, 30, 40]
    tr = meanfield.load(res.path)
    for name in ("energy", "kinetic", "mean", "cov", "Mxy", "x", "y", "dissipation_residual"):
        assert np.array_equal(tr[name], res[name]), name
    assert np.array_equal(tr.t, res.t)
    assert tr.config["integrator"]["name"] == "exp_euler"
    assert tr.attrs["status"] == "finished"
    # the stored config rebuilds the same run
    again = meanfield.Run(tr.config).simulate()
    assert np.array_equal(again.x, res.x)


def test_existing_output_is_not_overwritten(tmp_path, make_config):
    p = str(tmp_path / "a.h5")
    meanfield.Run(make_config()).simulate(p)
    with pytest.raises(ParameterError, match="overwrite"):
        meanfield.Run(make_config()).simulate(p)
    meanfield.Run(make_config()).simulate(p, overwrite=True)


def test_seeded_initial_state_is_reproducible(make_config):
    a, b = meanfield.Run(make_config()), meanfield.Run(make_config())
    assert np.array_equal(a.x0, b.x0) and np.array_equal(a.y0, b.y0)
    cfg = make_config()
    cfg["initial"]["seed"] = 2
    assert not np.array_equal(meanfield.Run(cfg).x0, a.x0)


def test_initial_state_from_npy_and_from_a_run_file(tmp_path, make_config):
    first = meanfield.Run(make_config()).simulate(str(tmp_path / "first.h5"))
    cfg = make_config()
    cfg["initial"] = {"law": "file", "path": str(tmp_path / "first.h5"), "momentum": "file",
                      "momentum_path": str(tmp_path / "first.h5")}
    run = meanfield.Run(cfg)
    assert np.array_equal(run.x0, first.x) and np.array_equal(run.y0, first.y)
    np.save(tmp_path / "x.npy", first.x)
    cfg["initial"] = {"law": "file", "path": str(tmp_path / "x.npy"), "momentum": "zero"}
    assert np.array_equal(meanfield.Run(cfg).x0, first.x)


@pytest.mark.parametrize("integrator", ["exp_euler", "rk4"])
def test_sigint_checkpoints_and_resume_is_bit_identical(tmp_path, make_config, integrator):
    cfg = make_config("accelerated", integrator, n=40, steps=60, save_every=7)
    full = meanfield.Run(cfg).simulate(str(tmp_path / "full.h5"))

    def interrupt(done, total):
        if done == 25:
            os.kill(os.getpid(), signal.SIGINT)

    path = str(tmp_path / "cut.h5")
    with pytest.raises(KeyboardInterrupt):
        meanfield.Run(cfg).simulate(path, progress=interrupt)
    with h5py.File(path) as f:
        assert f.attrs["status"] == "interrupted"
        assert f["checkpoint"].attrs["iteration"] == 25
    res = resume_run(path)
    assert np.array_equal(res.x, full.x) and np.array_equal(res.y, full.y)
    tr = meanfield.load(path)
    assert tr.attrs["status"] == "finished"
    assert tr.scales["oracle_calls"][-1] == full["oracle_calls"][-1]
    # the resumed file holds the uninterrupted run's saves: none added at the interrupt (step 25)
    assert np.array_equal(tr.scales["iteration"], full["iteration"])
    for name in ("energy", "dissipation_residual", "x", "y"):
        assert np.array_equal(tr[name], full[name]), name


def test_a_wall_time_stop_between_saves_keeps_the_save_grid(tmp_path, make_config):
    cfg = make_config("accelerated", "exp_euler", n=40, steps=60, save_every=7)
    full = meanfield.Run(cfg).simulate()
    cfg["run"]["max_wall_time"] = 1e-9  # stops after its first step, between two saves
    path = str(tmp_path / "slot.h5")
    res = meanfield.Run(cfg).simulate(path)
    assert res.status == "stopped: wall time" and list(res["iteration"]) == [0]
    assert res.t_end == cfg["run"]["t0"] + cfg["integrator"]["h"]  # the stop's state, checkpointed
    assert meanfield.load(path).checkpoint["iteration"] == 1
    resume_run(path, overrides=["run.max_wall_time=600"])
    tr = meanfield.load(path)
    assert np.array_equal(tr.scales["iteration"], full["iteration"])
    for name in ("energy", "dissipation_residual", "x", "y"):
        assert np.array_equal(tr[name], full[name]), name


def test_resume_refuses_a_finished_run(tmp_path, make_config):
    p = str(tmp_path / "a.h5")
    meanfield.Run(make_config()).simulate(p)
    with pytest.raises(ParameterError, match="unfinished"):
        resume_run(p)


def test_resume_keeps_recording_the_moment_ode(tmp_path, make_config):
    cfg = make_config("accelerated", "rk4", n=30, steps=40, save_every=5)
    cfg["initial"].update(momentum="affine", S="zero", b=[0.0, 0.0, 0.0])
    cfg["initial"].pop("momentum_scale")
    cfg["diagnostics"] = {"moment_ode": True}
    full = meanfield.Run(cfg).simulate(str(tmp_path / "full.h5"))

    def interrupt(done, total):
        if done == 15:
            os.kill(os.getpid(), signal.SIGINT)

    path = str(tmp_path / "cut.h5")
    with pytest.raises(KeyboardInterrupt):
        meanfield.Run(cfg).simulate(path, progress=interrupt)
    resume_run(path)
    tr = meanfield.load(path)
    assert tr["ode_cov"].shape[0] == tr["cov"].shape[0] == len(tr.t)
    assert np.allclose(tr["ode_cov"][-1], full["ode_cov"][-1], rtol=1e-10, atol=1e-13)
