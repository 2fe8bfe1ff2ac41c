"""Resume is bit-identical for EVERY registered integrator, including those with internal state.

tao2 and strang (doubled copies), ab2 (previous field) and nag (velocity) carry state
between steps: a resume that dropped it would restart them (tao2 / ab2 then
end ~1e-5 away from the uninterrupted run). Two paths are tested:

* in-process: Ctrl-C (SIGINT) at step 23 (between two saves), then :func:`meanfield.resume.resume_run`
  through the HDF5 file;
* real processes: a child run SIGKILLs itself right after step 27 (the
  sidecar checkpoint of step 25 is on disk, saves are every 5 steps), then
  ``meanfield run --resume`` continues it.

Each resumed final state, and the energy of the last save, equals the
uninterrupted run's bit for bit (all runs are below the serial threshold,
so on one thread).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import meanfield
from meanfield.integrators import INTEGRATORS
from meanfield.resume import resume_run

# adaptive methods choose their own steps (no fixed h to measure an order or a transcription by):
# tests/test_adaptive_methods.py and tests/test_long_time*.py cover them
CASES = sorted((name, kind) for name, by_kind in INTEGRATORS.items() for kind in by_kind
               if not by_kind[kind].adaptive)
IDS = [f"{name}-{kind}" for name, kind in CASES]
STATEFUL = {"tao2", "strang", "ab2", "nag"}
STEPS, STOP, KILL = 60, 25, 27
INTERRUPT = 23  # off the save grid (every 5 steps): the interrupt must not add a save
TIMEOUT = 120


#: Integrators that are not defined on the bilinear model run on this one instead
#: (mean_shift is a layer of softmax attention: x <- the attention average).
OTHER_MODEL = {"mean_shift": {"name": "softmax", "dynamics": "first_order", "d": 3, "A": 0.5}}


def _config(make_config, name, kind):
    cfg = make_config(kind, name, n=24, steps=STEPS, save_every=5)
    cfg["damping"] = {"schedule": "nesterov", "r": 3.0}  # nag uses it; the others ignore it
    if kind == "first_order":
        cfg["initial"] = {k: v for k, v in cfg["initial"].items() if not k.startswith("momentum")}
        cfg["output"]["save"] = ["x"]
    if name in OTHER_MODEL:
        cfg["model"] = dict(OTHER_MODEL[name])
        cfg["damping"] = {"schedule": "none"}
    return cfg


def _assert_same(res, full, path):
    assert np.array_equal(res.x, full.x)
    if full.y is not None:
        assert np.array_equal(res.y, full.y)
    tr = meanfield.load(path)
    assert tr.attrs["status"] == "finished"
    # the file is the uninterrupted run's: the same saves (an interrupt adds none off the
    # save grid) and every saved array bit for bit, the dissipation residual included
    assert np.array_equal(tr.scales["iteration"], full["iteration"])
    assert sorted(tr.tasks) == sorted(full.tasks)
    for name in full.tasks:
        assert np.array_equal(tr[name], full[name], equal_nan=True), name
    for name in full.scales:
        if name != "wall_time":
            assert np.array_equal(tr.scales[name], full.scales[name]), name


def test_the_stateful_integrators_are_covered():
    """The interesting cases exist: a registry change must not silently drop them."""
    assert STATEFUL <= {name for name, _ in CASES}
    for name, kind in CASES:
        if name in STATEFUL:
            integ = INTEGRATORS[name][kind]()
            assert type(integ).get_state is not INTEGRATORS["euler"]["first_order"].get_state, name


@pytest.mark.parametrize("name,kind", CASES, ids=IDS)
def test_sigint_then_resume_through_hdf5_is_bit_identical(tmp_path, make_config, name, kind):
    cfg = _config(make_config, name, kind)
    full = meanfield.Run(cfg).simulate()

    def interrupt(done, total):
        if done == INTERRUPT:
            os.kill(os.getpid(), signal.SIGINT)

    path = str(tmp_path / "cut.h5")
    with pytest.raises(KeyboardInterrupt):
        meanfield.Run(cfg).simulate(path, progress=interrupt)
    ck = meanfield.load(path).checkpoint
    assert ck["iteration"] == INTERRUPT
    if name in STATEFUL:
        assert ck.get("integrator"), f"{name}: the checkpoint lost the integrator state"
    res = resume_run(path)
    _assert_same(res, full, path)


CHILD = textwrap.dedent("""\
    import json, os, signal, sys
    import meanfield

    cfg, path, kill = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])

    def hook(done, total):
        if done == kill:
            os.kill(os.getpid(), signal.SIGKILL)

    meanfield.Run(cfg).simulate(path, progress=hook)
    """)


@pytest.mark.slow
@pytest.mark.parametrize("name,kind", CASES, ids=IDS)
def test_sigkill_then_cli_resume_is_bit_identical(tmp_path, make_config, name, kind):
    cfg = _config(make_config, name, kind)
    full = meanfield.Run(cfg).simulate()
    path = str(tmp_path / "kill.h5")
    env = dict(os.environ, MEANFIELD_CHECKPOINT_INTERVAL="0", NUMBA_NUM_THREADS="1")
    child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg), path, str(KILL)],
                           env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr
    killed = meanfield.load(path)
    assert killed.attrs["status"] == "running"
    assert killed.checkpoint["source"] == "sidecar" and killed.checkpoint["iteration"] == STOP
    res = subprocess.run([sys.executable, "-m", "meanfield_cli.main", "run", "--resume", "-o", path,
                          "--threads", "1", "--no-progress"],
                         env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert res.returncode == 0, res.stderr
    tr = meanfield.load(path, tasks=["x", "y"] if full.y is not None else ["x"])
    final = type("Final", (), {"x": tr["x"][-1], "y": tr["y"][-1] if full.y is not None else None})
    _assert_same(final, full, path)
