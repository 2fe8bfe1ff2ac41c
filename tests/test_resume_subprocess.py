"""Interrupt and kill real ``meanfield run`` processes, then ``--resume`` them.

Every process runs with ``--threads 1``; the resumed final state is compared
with an uninterrupted run **bit for bit** (``np.array_equal``). Kernels split
work by particle count only, so this holds for any fixed thread count.
Checkpoints go to the sidecar ``OUT.h5.ckpt`` every 0.05 s here
(``MEANFIELD_CHECKPOINT_INTERVAL``); the tests wait for one past step 0
before sending a signal, so nothing depends on timing. Numba's on-disk cache
(``cache=True`` on every kernel) keeps the start-up of each process short.

The last tests run in-process: which state lands in ``/checkpoint`` when
sidecar writes are rate-limited (normal end, Ctrl-C, numerical failure), and
resuming a run killed before its first checkpoint.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

import meanfield
from meanfield.errors import SimulationError
from meanfield.io.hdf5 import HDF5Writer, checkpoint_path
from meanfield.resume import resume_run

STEPS = 6000
PARAMS = textwrap.dedent(f"""\
    [model]
    name = "bilinear"
    dynamics = "accelerated"
    d = 3
    A = "identity"
    Q = [[1.0, 0.2, 0.0], [0.2, 2.0, 0.0], [0.0, 0.0, 0.5]]
    m = [0.5, -0.5, 0.1]
    [damping]
    schedule = "nesterov"
    r = 3.0
    [integrator]
    name = "exp_euler"
    h = 0.005
    [initial]
    law = "gaussian"
    n = 2000
    mean = [0.5, 0.0, 0.0]
    cov = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    momentum = "gaussian"
    momentum_scale = 0.3
    seed = 3
    [run]
    t0 = 1.0
    steps = {STEPS}
    save_every = 100
    [output]
    path = "unused.h5"
    save = ["x", "y"]
    """)
TIMEOUT = 120


def _cmd(*args):
    return [sys.executable, "-m", "meanfield_cli.main", "run", *args,
            "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with the parameter file and the uninterrupted reference run (full.h5)."""
    folder = tmp_path_factory.mktemp("resume")
    (folder / "p.toml").write_text(PARAMS)
    env = dict(os.environ, MEANFIELD_CHECKPOINT_INTERVAL="0.05")
    ref = subprocess.run(_cmd("p.toml", "-o", "full.h5"), cwd=folder, env=env,
                         capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert ref.returncode == 0, ref.stderr
    return folder, env


def _start(folder, env, *args):
    return subprocess.Popen(_cmd(*args), cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(proc, side, after=0):
    """Poll the sidecar until it holds a step beyond ``after``; returns that step."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before it was stopped: {proc.communicate()}"
        try:
            with h5py.File(side, "r") as f:
                it = int(f["checkpoint"].attrs["iteration"])
            if it > after:
                return it
        except (OSError, KeyError):
            pass
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint past step {after} in {side} after {TIMEOUT} s")


def _assert_same_as_reference(folder, name):
    full = meanfield.load(str(folder / "full.h5"))
    got = meanfield.load(str(folder / name))
    assert got.attrs["status"] == "finished"
    assert not os.path.exists(checkpoint_path(str(folder / name)))
    assert got.checkpoint["iteration"] == STEPS == full.checkpoint["iteration"]
    assert np.array_equal(got.checkpoint["x"], full.checkpoint["x"])
    assert np.array_equal(got.checkpoint["y"], full.checkpoint["y"])
    # the resumed file holds the uninterrupted run's saves (no extra one where it stopped),
    # every array bit for bit, the dissipation residual included
    assert sorted(got.tasks) == sorted(full.tasks)
    for name in (*full.tasks, "iteration", "oracle_calls", "sim_time"):
        assert np.array_equal(got[name], full[name]), name


@pytest.mark.slow
def test_sigint_exits_cleanly_with_a_checkpoint_and_resumes_bit_identical(work):
    folder, env = work
    proc = _start(folder, env, "p.toml", "-o", "cut.h5")
    _wait_for_checkpoint(proc, str(folder / "cut.h5.ckpt"))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    assert err.strip().count("\n") == 0 and "checkpoint written" in err and "Traceback" not in err
    with h5py.File(folder / "cut.h5", "r") as f:
        assert f.attrs["status"] == "interrupted"
        stop = int(f["checkpoint"].attrs["iteration"])
        assert 0 < stop < STEPS
        # the interrupt is checkpointed, not saved: the saves keep their grid (save_every = 100)
        assert list(f["scales/iteration"]) == list(range(0, stop + 1, 100))
    assert not os.path.exists(folder / "cut.h5.ckpt")  # the main file holds the checkpoint
    res = subprocess.run(_cmd("--resume", "-o", "cut.h5"), cwd=folder, env=env,
                         capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert res.returncode == 0, res.stderr
    _assert_same_as_reference(folder, "cut.h5")


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_are_handled_like_ctrl_c(work, signame):
    # what SLURM and Kubernetes send before killing a job: checkpoint, one line, exit 128 + signum
    folder, env = work
    signum = getattr(signal, signame)
    name = f"{signame.lower()}.h5"
    proc = _start(folder, env, "p.toml", "-o", name)
    _wait_for_checkpoint(proc, str(folder / f"{name}.ckpt"))
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 128 + signum, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert signame in err and f"meanfield run --resume {name}" in err, err
    with h5py.File(folder / name, "r") as f:
        assert f.attrs["status"] == "interrupted"
        stop = int(f["checkpoint"].attrs["iteration"])
        assert 0 < stop < STEPS
    for stale in (f"{name}.ckpt", f"{name}.ckpt.tmp"):
        assert not os.path.exists(folder / stale)
    res = subprocess.run(_cmd("--resume", "-o", name), cwd=folder, env=env,
                         capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert res.returncode == 0, res.stderr
    _assert_same_as_reference(folder, name)  # the save grid kept: bit for bit, every array


@pytest.mark.slow
def test_sigkill_leaves_a_readable_file_and_resumes_bit_identical(work):
    folder, env = work
    side = str(folder / "kill.h5.ckpt")
    proc = _start(folder, env, "p.toml", "-o", "kill.h5")
    _wait_for_checkpoint(proc, side)
    proc.kill()
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    with h5py.File(folder / "kill.h5", "r") as f:  # plain h5py opens it, no h5clear needed
        assert f.attrs["status"] == "running"
        n_saves = f["scales/sim_time"].shape[0]
    tr = meanfield.load(str(folder / "kill.h5"))
    assert tr.checkpoint["source"] == "sidecar" and tr.checkpoint["iteration"] > 0
    assert len(tr.t) == n_saves and n_saves >= tr.checkpoint["n_saves"]

    # kill the continuation too, once it has made progress, then continue again
    first = int(tr.checkpoint["iteration"])
    proc = _start(folder, env, "--resume", "-o", "kill.h5")
    _wait_for_checkpoint(proc, side, after=first)
    proc.kill()
    proc.communicate(timeout=TIMEOUT)
    assert meanfield.load(str(folder / "kill.h5")).checkpoint["iteration"] > first

    res = subprocess.run(_cmd("--resume", "-o", "kill.h5"), cwd=folder, env=env,
                         capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert res.returncode == 0, res.stderr
    _assert_same_as_reference(folder, "kill.h5")


def test_resume_of_a_finished_run_is_refused_and_an_existing_file_kept(work):
    folder, env = work
    before = os.stat(folder / "full.h5").st_mtime_ns
    res = subprocess.run(_cmd("--resume", "-o", "full.h5"), cwd=folder, env=env,
                         capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert res.returncode == 2 and "unfinished" in res.stderr
    res = subprocess.run(_cmd("p.toml", "-o", "full.h5"), cwd=folder, env=env,
                         capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert res.returncode == 2 and "overwrite" in res.stderr
    assert os.stat(folder / "full.h5").st_mtime_ns == before


# --------------------------------------------------------------------------- in-process


def _small(make_config, **run):
    return make_config("accelerated", "exp_euler", n=40, **run)


def test_rate_limited_checkpoints_still_end_with_the_final_state(tmp_path, make_config,
                                                                  monkeypatch):
    # one sidecar write (the initial state) per hour: the rest comes from the final state
    monkeypatch.setenv("MEANFIELD_CHECKPOINT_INTERVAL", "3600")
    cfg = _small(make_config, steps=60, save_every=7)
    full = meanfield.Run(cfg).simulate(str(tmp_path / "full.h5"))
    tr = meanfield.load(full.path)
    assert tr.checkpoint["source"] == "file" and tr.checkpoint["iteration"] == 60
    assert np.array_equal(tr.checkpoint["x"], full.x) and np.array_equal(tr.checkpoint["y"], full.y)

    def interrupt(done, total):
        if done == 25:
            os.kill(os.getpid(), signal.SIGINT)

    cut = str(tmp_path / "cut.h5")
    with pytest.raises(KeyboardInterrupt):
        meanfield.Run(cfg).simulate(cut, progress=interrupt)
    ck = meanfield.load(cut).checkpoint
    assert ck["source"] == "file" and ck["iteration"] == 25  # the clean interrupt's own state
    assert not os.path.exists(checkpoint_path(cut))
    res = resume_run(cut)
    assert np.array_equal(res.x, full.x) and np.array_equal(res.y, full.y)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_after_a_numerical_failure_the_checkpoint_is_the_last_consistent_one(tmp_path, make_config,
                                                                             monkeypatch):
    monkeypatch.setenv("MEANFIELD_CHECKPOINT_INTERVAL", "3600")
    cfg = _small(make_config, steps=400, save_every=5)
    cfg["integrator"]["h"] = 3.0  # explicit scheme far beyond its stability limit: blows up
    path = str(tmp_path / "nan.h5")
    with pytest.raises(SimulationError):
        meanfield.Run(cfg).simulate(path)
    tr = meanfield.load(path, tasks=["x", "y"])
    assert tr.attrs["status"].startswith("failed")
    ck = tr.checkpoint
    assert ck["source"] == "file" and ck["iteration"] == 0  # the only sidecar written
    assert np.array_equal(ck["x"], tr["x"][0]) and np.array_equal(ck["y"], tr["y"][0])
    assert np.all(np.isfinite(ck["x"]))


def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path, make_config):
    cfg = _small(make_config, steps=30, save_every=10)
    run = meanfield.Run(cfg)
    full = run.simulate()
    path = str(tmp_path / "early.h5")
    w = HDF5Writer(path, run.resolved())  # what a kill during start-up leaves: no save, "running"
    w.f.close()
    assert meanfield.load(path).checkpoint is None
    res = resume_run(path)
    assert np.array_equal(res.x, full.x) and np.array_equal(res.y, full.y)
    assert meanfield.load(path).attrs["status"] == "finished"
