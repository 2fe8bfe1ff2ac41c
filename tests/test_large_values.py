"""Large logits and runaway energies: diagnostics never stop a run whose state is finite.

* energies of the softmax and sphere models are formed from log z_i when the
  z_i overflow: a representable energy is exact, one beyond float64 is
  stored as -inf and the run ends with status "finished: warning: ...";
* sphere runs at beta >= 710 work (their infimum -e^beta / 2 is then unknown);
* a numerical failure inside the oracle names the loop's step and time, and
  the advice fits the run;
* a runaway energy (below the known infimum, or a dissipation residual beyond
  the energy scale) ends with a warning in the status, while the converging
  runs of the suite keep the plain status "finished".
"""

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import logsumexp

import meanfield
from meanfield.diagnostics.clustering import pair_statistics
from meanfield.errors import ParameterError, SimulationError
from meanfield.models import make_model
from meanfield.models.bilinear import Bilinear
from meanfield.reductions.equiangular import clustering_rate, solve_equiangular
from meanfield.resume import resume_run

pytestmark = pytest.mark.usefixtures("one_thread")


def _log_interaction(X, A):
    """log(1/(2N^2) sum_ij exp(x_i^T A x_j)) by scipy's logsumexp."""
    n = X.shape[0]
    return logsumexp(X @ A @ X.T) - math.log(2.0 * n * n)


@pytest.mark.parametrize("dynamics", ["first_order", "accelerated"])
def test_softmax_energy_exact_when_only_some_z_i_overflow(dynamics):
    """z_0 > float64 max, but the mean over 400 tokens, hence the energy, is representable."""
    d, n = 2, 400
    rng = np.random.default_rng(0)
    X = 0.5 * rng.standard_normal((n, d))
    X[0] = [math.sqrt(712.0), 0.0]  # logits 712, 713: e^712 overflows, z_0 ~ e^712 / 400 does not
    X[1] = [math.sqrt(713.0), 0.0]
    A = np.eye(d)
    model = make_model({"name": "softmax", "dynamics": dynamics, "d": d, "A": "identity"})
    with pytest.raises(SimulationError, match="z_i"):
        model.z(X)  # the z_i themselves (needed by the accelerated field) do overflow
    Y = 0.3 * rng.standard_normal((n, d))
    e = model.energies(X, Y if dynamics == "accelerated" else None)
    ref = -math.exp(_log_interaction(X, A))
    assert math.isfinite(e["interaction"]) and e["interaction"] == pytest.approx(ref, rel=1e-13)
    if dynamics == "accelerated":
        zlog = logsumexp(X @ A @ X.T, axis=1) - math.log(n)
        K = float(np.mean(np.sum(Y * Y, axis=1) / 2.0 * np.exp(-zlog)))
        assert e["kinetic"] == pytest.approx(K, rel=1e-12)
        assert e["energy"] == pytest.approx(K + ref, rel=1e-13)


def test_softmax_energy_beyond_float64_is_minus_inf_not_an_error():
    model = make_model({"name": "softmax", "dynamics": "first_order", "d": 2, "A": 800.0})
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    assert _log_interaction(X, 800.0 * np.eye(2)) > 709.8
    e = model.energies(X, None)
    assert e["energy"] == e["interaction"] == -np.inf


def test_growing_sa_tokens_finish_with_a_warning_not_an_error(tmp_path):
    """V = 2 I: tokens grow like e^{2t}; the SA field stays finite, the energy leaves float64."""
    cfg = {"model": {"name": "softmax", "dynamics": "first_order", "d": 2, "A": 1.0,
                     "V": [[2.0, 0.0], [0.0, 2.0]]},
           "integrator": {"name": "euler", "h": 0.05},
           "initial": {"law": "gaussian", "n": 20, "mean": [0.0, 0.0], "cov": np.eye(2).tolist(), "seed": 0},
           "run": {"t0": 0.0, "t1": 10.0, "save_every": 20}, "output": {"save": []}}
    res = meanfield.Run(cfg).simulate(str(tmp_path / "grow.h5"))
    assert np.all(np.isfinite(res.x)) and np.abs(res.x).max() > 1e6
    assert res.status.startswith("finished: warning: energy")
    assert "beyond the float64 range from step" in res.status and "(t = " in res.status
    E = res["energy"]
    assert np.isfinite(E[0]) and E[-1] == -np.inf  # stored, never a stop
    tr = meanfield.load(res.path)
    assert tr.attrs["status"] == res.status and len(tr.t) == len(res.t)
    with pytest.raises(ParameterError, match="unfinished"):  # finished, with a warning
        resume_run(res.path)


@pytest.mark.parametrize("beta", [709.0, 710.0, 800.0, 5000.0])
def test_sphere_at_large_beta_runs_and_reports_its_infimum_only_when_representable(beta):
    cfg = {"model": {"name": "sphere", "dynamics": "first_order", "d": 3, "beta": beta},
           "integrator": {"name": "euler", "h": 1e-3},
           "initial": {"law": "sphere_uniform", "n": 12, "seed": 0},
           "run": {"t0": 0.0, "steps": 10, "save_every": 5}, "output": {"save": []}}
    run = meanfield.Run(cfg)
    inf = run.model.energy_infimum(run.x0)
    if beta < 709.78:
        assert inf == -0.5 * math.exp(beta)
    elif beta <= 710.0:  # e^beta overflows, e^beta / 2 does not
        assert inf == pytest.approx(-math.exp(beta - 1.0) * (math.e / 2.0), rel=1e-12)
    else:
        assert inf is None
    res = run.simulate()
    assert np.all(np.isfinite(res.x))
    assert np.all(np.abs(np.linalg.norm(res.x, axis=1) - 1.0) < 1e-12)
    st = pair_statistics(run.x0, beta)
    g = run.x0 @ run.x0.T  # E_beta = 1/(2 beta N^2) sum_ij exp(beta g_ij), inf past float64
    log_e = logsumexp(beta * g) - math.log(2.0 * beta * 12 * 12)
    if beta < 750.0:
        assert log_e < 709.0 and st["E_beta"] == pytest.approx(math.exp(log_e), rel=1e-11)
    else:
        assert log_e > 710.0 and st["E_beta"] == np.inf
    if beta > 710.5:  # U = -e^beta (...) / (2 N^2) is beyond float64
        assert res.status.startswith("finished: warning:") and np.all(res["energy"] == -np.inf)
    else:
        assert res.status == "finished" and np.all(np.isfinite(res["energy"]))


def test_equiangular_reduction_at_large_beta():
    t = np.linspace(0.0, 1.0, 5)
    sa = solve_equiangular(0.2, t, beta=800.0, n=5)
    assert np.all(np.isfinite(sa["rho"])) and np.all(np.diff(sa["rho"]) >= 0)
    peri = solve_equiangular(0.2, t, beta=800.0, n=5, normalized=False, normalization="peri_ln")
    assert np.all(np.isfinite(peri["rho"])) and np.all(np.isfinite(peri["r"]))
    with pytest.raises(ParameterError, match="model.beta"):
        solve_equiangular(0.2, t, beta=800.0, n=5, normalized=False)
    assert clustering_rate(800.0, normalized=False) == math.inf
    assert clustering_rate(3.0, normalized=False) == pytest.approx(2.0 * math.exp(3.0), rel=1e-15)


# ---------------------------------------------------------------- step and time in failures
def _overflow_config(dynamics):
    """Logits x_i^T A x_j up to ~4000: fine for the initial save, then the oracle of step 1 overflows
    (USA field for first-order, z_i of the mobility for accelerated)."""
    cfg = {"model": {"name": "softmax", "dynamics": dynamics, "d": 2, "A": 400.0},
           "integrator": {"name": "euler" if dynamics == "first_order" else "exp_euler", "h": 0.1},
           "initial": {"law": "gaussian", "n": 8, "mean": [0.0, 0.0], "cov": np.eye(2).tolist(), "seed": 0},
           "run": {"t0": 0.0, "steps": 20, "save_every": 5}, "output": {"save": []}}
    if dynamics == "first_order":
        cfg["model"]["normalized"] = False
    else:
        cfg["initial"]["momentum"] = "zero"
        cfg["damping"] = {"schedule": "constant", "a": 1.0}
    return cfg


@pytest.mark.parametrize("dynamics", ["first_order", "accelerated"])
def test_an_overflow_inside_the_oracle_names_the_step_and_time(dynamics):
    res = []
    with pytest.raises(SimulationError) as info:
        meanfield.Run(_overflow_config(dynamics)).simulate(observers=[type("R", (), {"save": res.append})()])
    exc = info.value
    assert (exc.step, exc.t) == (1, 0.0) and len(res) == 1  # the initial save was made
    msg = str(exc)
    assert msg.startswith("in step 1 (from t = 0): softmax overflow at t = 0")
    # advice that fits the run: only a first-order USA run can switch to normalized = true
    assert ("normalized = true" in msg) is (dynamics == "first_order")


def test_cli_prints_step_and_time_of_an_oracle_overflow(tmp_path):
    (tmp_path / "p.toml").write_text(
        '[model]\nname = "softmax"\ndynamics = "first_order"\nd = 2\nA = 400.0\nnormalized = false\n'
        '[integrator]\nname = "euler"\nh = 0.1\n'
        '[initial]\nlaw = "gaussian"\nn = 8\nmean = [0.0, 0.0]\ncov = [[1.0, 0.0], [0.0, 1.0]]\nseed = 0\n'
        '[run]\nt0 = 0.0\nsteps = 200\nsave_every = 50\n[output]\nsave = []\n')
    res = subprocess.run([sys.executable, "-m", "meanfield_cli.main", "run", "p.toml", "-o", "out.h5",
                          "--no-progress"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("meanfield: run failed: in step 1 (from t = 0): softmax overflow"), res.stderr
    assert "Traceback" not in res.stderr


# ---------------------------------------------------------------- runaway warnings
def _bilinear(make_config, **run):
    return make_config("accelerated", "rk4", n=40, **run)


def test_converging_run_with_a_known_infimum_has_no_warning(make_config):
    cfg = _bilinear(make_config, t1=20.0, save_every=100)
    run = meanfield.Run(cfg)
    assert run.model.energy_infimum(run.x0) is not None  # the infimum check is active
    res = run.simulate()
    assert res.status == "finished"
    assert np.all(np.abs(res["dissipation_residual"]) < 1e-6)


def test_energy_below_the_known_infimum_is_reported(make_config, monkeypatch):
    cfg = _bilinear(make_config, t1=5.0, save_every=50)
    res0 = meanfield.Run(cfg).simulate()
    claimed = float(res0["energy"][-1]) + 1e-3  # a (wrong) bound the run must cross
    monkeypatch.setattr(Bilinear, "energy_infimum", lambda self, x0: claimed)
    res = meanfield.Run(cfg).simulate()
    assert res.status.startswith("finished: warning: energy") and "below the known infimum" in res.status
    assert np.array_equal(res.x, res0.x)  # a warning only: the run is the same
    k = int(np.argmax(res["energy"] < claimed))
    assert f"at step {int(res['iteration'][k])} " in res.status


def test_runaway_accelerated_softmax_is_reported():
    """exp(x^T A x) beats the confining W: the cloud runs off and H -> -inf (the old init template)."""
    cfg = {"model": {"name": "softmax", "dynamics": "accelerated", "d": 3, "A": 0.5,
                     "Q": np.eye(3).tolist(), "m": [0.0, 0.0, 0.0]},
           "damping": {"schedule": "constant", "a": 1.0},
           "integrator": {"name": "exp_euler", "h": 0.01},
           "initial": {"law": "gaussian", "n": 100, "mean": [0.5, 0.0, 0.0], "cov": np.eye(3).tolist(),
                       "momentum": "gaussian", "momentum_scale": 0.3, "seed": 0},
           "run": {"t0": 0.0, "t1": 5.0, "save_every": 10}, "output": {"save": []}}
    res = meanfield.Run(cfg).simulate()
    assert res["energy"][-1] < -100 * abs(res["energy"][0])
    assert "warning: dissipation residual" in res.status and "exceeds the energy scale" in res.status


def test_circle_pde_at_large_beta():
    from meanfield.reductions.circle_pde import CirclePDE

    f = 1.0 / (2.0 * np.pi) * (1.0 + 0.5 * np.cos(CirclePDE(64, 1.0).theta))
    v = CirclePDE(64, 800.0).velocity(f)  # SA: the ratio of two scaled correlations
    assert np.all(np.isfinite(v))
    # SA is invariant under the scaling: same velocity as with the plain kernels (beta = 5)
    plain = CirclePDE(64, 5.0)
    K0 = np.exp(5.0 * np.cos(plain.theta))
    ref = (np.fft.ifft(np.fft.fft(f) * np.conj(np.fft.fft(K0 * np.sin(plain.theta)))).real
           / np.fft.ifft(np.fft.fft(f) * np.conj(np.fft.fft(K0))).real)
    assert np.abs(plain.velocity(f) - ref).max() < 1e-13 * np.abs(ref).max()
    with pytest.raises(ParameterError, match="model.beta"):
        CirclePDE(64, 800.0, normalized=False)


def test_cli_says_a_runaway_on_stderr_in_one_line(tmp_path):
    """The CLI reports a finished-with-warning run: exit 0, the summary on stdout, one warning line on stderr."""
    params = tmp_path / "runaway.toml"
    params.write_text(
        '[model]\nname = "softmax"\ndynamics = "accelerated"\nd = 3\nA = 0.5\n'
        'Q = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]\nm = [0.0, 0.0, 0.0]\n'
        '[damping]\nschedule = "constant"\na = 1.0\n[integrator]\nname = "exp_euler"\nh = 0.01\n'
        '[initial]\nlaw = "gaussian"\nn = 100\nmean = [0.5, 0.0, 0.0]\nmomentum = "gaussian"\n'
        'momentum_scale = 0.3\nseed = 0\n[run]\nt0 = 0.0\nt1 = 5.0\nsave_every = 10\n[output]\nsave = []\n')
    res = subprocess.run([sys.executable, "-m", "meanfield_cli.main", "run", str(params), "-o",
                          str(tmp_path / "r.h5"), "--no-progress"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    warn = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(warn) == 1 and warn[0].startswith("meanfield: warning: dissipation residual"), res.stderr
    assert "final energy" in res.stdout
