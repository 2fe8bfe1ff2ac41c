"""SIGKILL a ``meanfield run`` with each adaptive method, resume it, compare bit for bit.

The controller's state (proposed step, previous error), the rejected-step count,
the integrator's FSAL derivative and kept Jacobian, the cluster count and the
clocks are all in the checkpoint (:class:`meanfield.simulate.LoopState`), so the
resumed file equals the uninterrupted one: every save, every step size, every
event. Same helpers and conventions as tests/test_resume_subprocess.py.
"""

import subprocess
import textwrap

import numpy as np
import pytest
from test_resume_subprocess import TIMEOUT, _cmd, _start, _wait_for_checkpoint

import meanfield
from meanfield.integrators import INTEGRATORS

ADAPTIVE = sorted(name for name, kinds in INTEGRATORS.items()
                  if getattr(kinds.get("first_order"), "adaptive", False) and not name.startswith("test_"))

PARAMS = textwrap.dedent("""\
    [model]
    name = "sphere"
    dynamics = "{dynamics}"
    d = 3
    beta = 9.0
    {damping}
    [integrator]
    name = "{name}"
    rtol = 1e-7
    atol = 1e-10
    [initial]
    law = "sphere_uniform"
    n = 48
    seed = 4
    [run]
    t1 = {t1}
    saves_per_decade = 3
    [output]
    save = ["x"]
    """)


def test_every_adaptive_method_is_registered():
    assert {"dopri5", "auto"} <= set(ADAPTIVE) and len(ADAPTIVE) >= 3, ADAPTIVE


@pytest.mark.slow
@pytest.mark.parametrize("dynamics", ["first_order", "accelerated"])
@pytest.mark.parametrize("name", ADAPTIVE)
def test_sigkill_then_resume_is_bit_identical(tmp_path, name, dynamics):
    damping = "[damping]\nschedule = \"constant\"\na = 1.0" if dynamics == "accelerated" else ""
    # dopri5 is explicit: its steps stay small on the plateaus; accelerated runs keep small steps
    # with every method (docs/models.md §5), so their horizon is short
    t1 = 10.0 if dynamics == "accelerated" else 3e3 if name == "dopri5" else 1e5
    (tmp_path / "p.toml").write_text(PARAMS.format(name=name, dynamics=dynamics, damping=damping, t1=t1))
    env = dict(__import__("os").environ, MEANFIELD_CHECKPOINT_INTERVAL="0.05")
    ref = subprocess.run(_cmd("p.toml", "-o", "full.h5"), cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=TIMEOUT, check=False)
    assert ref.returncode == 0, ref.stderr
    proc = _start(tmp_path, env, "p.toml", "-o", "kill.h5")
    _wait_for_checkpoint(proc, str(tmp_path / "kill.h5.ckpt"), after=5)
    proc.kill()
    proc.communicate(timeout=TIMEOUT)
    res = subprocess.run(_cmd("--resume", "-o", "kill.h5"), cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=TIMEOUT, check=False)
    assert res.returncode == 0, res.stderr
    a, b = meanfield.load(str(tmp_path / "full.h5")), meanfield.load(str(tmp_path / "kill.h5"))
    assert b.attrs["status"] == a.attrs["status"] == "finished"
    for key in ("x", "energy", "n_clusters"):
        assert np.array_equal(a[key], b[key]), key
    for key in ("sim_time", "iteration", "oracle_calls", "h"):
        assert np.array_equal(a.scales[key], b.scales[key], equal_nan=True), key
    assert np.array_equal(a.events["n_clusters"], b.events["n_clusters"])
    for key in ("accepted_steps", "rejected_steps", "jacobians"):
        assert a.attrs[key] == b.attrs[key], key
