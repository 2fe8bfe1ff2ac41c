"""Every registered integrator: measured convergence order, oracle accounting, energy behaviour.

The order test is parametrized over the registry ``INTEGRATORS`` (diffrax
style), so registering an integrator adds it here. Each run is compared with
scipy's DOP853 at rtol 1e-13 on the exact ODE at the same final time (the
model's damped field; for ``nag`` its own ODE x'' + alpha x' = f(x),
v(0) = 0), never with one of the package's integrators, and the log-log
slope of the error against h must match the declared order within 0.3.
"""

import functools
import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import meanfield
from meanfield.integrators import INTEGRATORS, make_integrator
from meanfield.integrators.symplectic import DEFAULT_OMEGA
from meanfield.models import MODELS
from meanfield.simulate import Recorder

MODEL_NAMES = ["bilinear", "softmax"]
# adaptive methods choose their own steps (no fixed h to measure an order or a transcription by):
# tests/test_adaptive_methods.py and tests/test_long_time*.py cover them
PAIRS = sorted((name, kind) for name, by_kind in INTEGRATORS.items() for kind in by_kind
               if not by_kind[kind].adaptive)
# integrators without an order (order = None: maps such as mean_shift) are skipped with their note
ORDER_PARAMS = [pytest.param(n, k, id=f"{n}-{k}", marks=() if INTEGRATORS[n][k].order is not None else
                             pytest.mark.skip(reason=f"{n}: {INTEGRATORS[n][k].order_note}")) for n, k in PAIRS]

T = 2.0                            # integration time of the order test
NS = (16, 32, 64, 128)             # steps per run: h = T/16 .. T/128
REF_RTOL, REF_ATOL = 1e-13, 1e-15  # DOP853 reference (its error ~1e-13 here)
SLOPE_TOL = 0.3


pytestmark = pytest.mark.usefixtures("one_thread")


def _require(model):
    assert model in MODELS, f"model {model!r} is no longer registered"  # fail, never skip


# ---------------------------------------------------------------- problems
def _model_section(model, dynamics):
    if model == "bilinear":
        # non-symmetric A (the first-order flow uses A, the Hamiltonian sym(A))
        return {"name": "bilinear", "dynamics": dynamics, "d": 2, "A": [[1.0, 0.3], [-0.1, 0.8]],
                "Q": [[1.0, 0.2], [0.2, 2.0]], "m": [0.3, -0.2]}
    # softmax: logits x^T A x of O(0.1-1) over the cloud, and a confining W
    # strong enough that the exp(x^T A x) attraction (unbounded below) stays
    # a local well: the undamped energy-test trajectory stays bounded.
    base = np.array([[1.0, 0.2, 0.0], [0.2, 0.8, -0.2], [0.0, -0.2, 0.6]])
    return {"name": "softmax", "dynamics": dynamics, "d": 3, "A": (0.2 * base).tolist(),
            "B": [[1.0, 0.2, 0.0], [0.2, 0.8, 0.0], [0.0, 0.0, 1.2]],
            "normalized": True, "causal": False,
            "Q": [[3.0, 0.0, 0.0], [0.0, 1.5, 0.0], [0.0, 0.0, 2.4]], "m": [0.2, -0.1, 0.3]}


def order_config(model, kind, name, steps, shorten=0.4):
    """Damped (nesterov, t0 = 1) problem with gaussian momenta on [1, 1 + T]; small N.

    ``h = T / (steps - shorten)``: the loop takes ``steps`` steps and shortens
    the last one to ``(1 - shorten) h`` to land on t1, so every integrator is
    also checked with a variable step (ab2's history, tao2's copies).
    """
    d = 2 if model == "bilinear" else 3
    n = 16 if model == "bilinear" else 12
    cov = 1.0 if model == "bilinear" else 0.5
    initial = {"law": "gaussian", "n": n, "mean": [0.5] + [0.0] * (d - 1),
               "cov": (cov * np.eye(d)).tolist(), "seed": 1}
    if kind == "accelerated":
        initial.update(momentum="gaussian", momentum_scale=0.5)
    return {
        "model": _model_section(model, kind),
        "damping": {"schedule": "nesterov", "r": 3.0},
        "integrator": {"name": name, "h": T / (steps - shorten)},
        "initial": initial,
        "run": {"t0": 1.0, "t1": 1.0 + T, "save_every": steps},
        "output": {"save": []},
    }


@functools.cache
def _reference(model, kind, nag):
    """Final state at t0 + T of the exact ODE, by scipy's DOP853 (rtol 1e-13), as (x, y-or-None).

    The ODE is the model's (first-order: x' = f(x); accelerated: x' = F(x, y),
    y' = G(x, y) - alpha(t) y); for ``nag`` it is x'' + alpha x' = f(x) with
    v(0) = 0, written as a system in (x, v). No integrator of the package is
    involved, so an error in rk4 cannot hide in its own reference.
    """
    run = meanfield.Run(order_config(model, "first_order" if nag else kind, "nag" if nag else "rk4", 8))
    m, alpha, t0 = run.model, run.schedule.alpha, run.horizon.t0
    x0 = run.x0.astype(np.float64)
    shape, size = x0.shape, x0.size

    def split(z):
        return np.ascontiguousarray(z[:size].reshape(shape)), np.ascontiguousarray(z[size:].reshape(shape))

    if nag:
        def rhs(t, z):
            x, v = split(z)
            return np.concatenate([v.ravel(), (m.first_order(x, t) - alpha(t) * v).ravel()])
        z0 = np.concatenate([x0.ravel(), np.zeros(size)])
    elif kind == "accelerated":
        def rhs(t, z):
            x, y = split(z)
            F, G = m.hamiltonian_field(x, y, t)
            return np.concatenate([F.ravel(), (G - alpha(t) * y).ravel()])
        z0 = np.concatenate([x0.ravel(), run.y0.astype(np.float64).ravel()])
    else:
        def rhs(t, z):
            return m.first_order(np.ascontiguousarray(z.reshape(shape)), t).ravel()
        z0 = x0.ravel()
    sol = solve_ivp(rhs, (t0, t0 + T), z0, method="DOP853", rtol=REF_RTOL, atol=REF_ATOL)
    assert sol.success, sol.message
    z = sol.y[:, -1]
    if nag or kind == "first_order":
        return z[:size].reshape(shape), None
    return split(z)


@pytest.mark.parametrize("model", MODEL_NAMES)
@pytest.mark.parametrize("name,kind", ORDER_PARAMS)
def test_convergence_order_matches_declared(name, kind, model):
    _require(model)
    cls = INTEGRATORS[name][kind]
    x_ref, y_ref = _reference(model, kind, name == "nag")
    errors = []
    for steps in NS:
        res = meanfield.Run(order_config(model, kind, name, steps)).simulate()
        assert res["iteration"][-1] == steps and res.t[-1] == 1.0 + T
        assert res.oracle_calls == steps * cls.oracle_calls
        assert res["oracle_calls"][-1] == steps * cls.oracle_calls
        err = np.abs(res.x - x_ref).max()
        if y_ref is not None:
            err = max(err, np.abs(res.y - y_ref).max())
        errors.append(err)
    hs = T / (np.array(NS) - 0.4)
    slope = np.polyfit(np.log(hs), np.log(errors), 1)[0]
    msg = f"{name} ({kind}, {model}): errors {[f'{e:.2e}' for e in errors]}, slope {slope:.2f}"
    assert abs(slope - cls.order) <= SLOPE_TOL, msg
    # the errors must stay above the reference's round-off (~1e-14) for the fit to mean anything
    assert min(errors) > 1e-13, msg


# ---------------------------------------------------------------- energy
def energy_config(model, name, steps=10_000, h=0.01):
    """Undamped problem whose exact trajectory stays bounded for t <= 100.

    bilinear: every particle moves by one common linear map (x_i = U(t) x_i(0),
    docs/models.md §2) and without damping the spread of the cloud has no potential
    minimum: a wide cloud collapses exponentially (x -> 0, |y| -> inf), where
    no fixed-step method is meaningful. A narrow cloud (cov 1e-4 I) around a
    point away from m oscillates in the potential well instead; its spread
    stays O(1e-2) over the run.

    softmax: -exp(x^T A x) / 2 is unbounded below, so W only makes a local
    well; a compact cloud with small momenta stays in it (rk4 keeps H to 5e-9
    and |x| <= 2 up to t = 100), while a method that pumps energy in escapes.
    """
    if model == "bilinear":
        section = {"name": "bilinear", "dynamics": "accelerated", "d": 2, "A": "identity",
                   "Q": [[1.0, 0.2], [0.2, 2.0]], "m": [0.6, -0.4]}
        initial = {"law": "gaussian", "n": 16, "mean": [0.3, -0.1], "cov": [[1e-4, 0], [0, 1e-4]],
                   "momentum": "gaussian", "momentum_scale": 0.3, "seed": 1}
    else:
        section = _model_section("softmax", "accelerated")
        initial = {"law": "gaussian", "n": 12, "mean": [0.5, 0.0, 0.0], "cov": (0.25 * np.eye(3)).tolist(),
                   "momentum": "gaussian", "momentum_scale": 0.3, "seed": 1}
    return {
        "model": section,
        "damping": {"schedule": "none"},
        "integrator": {"name": name, "h": h},
        "initial": initial,
        "run": {"t0": 0.0, "steps": steps, "save_every": 10},
        "output": {"save": []},
    }


def _relative_energy_error(model, name):
    """|H - H0| / |H0| at every save; a run that blows up ends with +inf (the drift ran away)."""
    recorder = Recorder()
    try:
        meanfield.Run(energy_config(model, name)).simulate(observers=[recorder])
        escaped = False
    except meanfield.SimulationError:
        escaped = True
    H = np.asarray(recorder.tasks["energy"][: len(recorder.scales["sim_time"])], dtype=float)
    rel = np.abs(H - H[0]) / abs(H[0])
    return np.append(rel, np.inf) if escaped else rel


# Thresholds. tao2/strang: the error of a symplectic method oscillates around
# the O(h^2) gap between H and its modified Hamiltonian (measured max 5.4e-5
# on bilinear, 1.3e-4 on softmax, at h = 0.01); "no drift" = the max over the
# second half is at most 2x the max over the first half (measured 1.3x and
# 0.95x), and everything stays below 1e-3 (8-20x margin).
# exp_euler / kick_drift: their error grows ~linearly in time (bilinear: mean
# over quarters 0.09 -> 0.69 and 0.011 -> 0.072); "drift" = the mean over the
# last quarter is at least 3x the mean over the first quarter and above 1e-2,
# ten times the bound the symplectic methods satisfy. On softmax exp_euler
# pumps energy in until the cloud leaves the well (quarter means 0.8, 3.1,
# 6.5, then the energy explodes near t = 85); a run that the loop stops as a
# blow-up would count as drift too.
BOUNDED_MAX = 1e-3
BOUNDED_GROWTH = 2.0
DRIFT_GROWTH = 3.0
DRIFT_MIN = 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("model", MODEL_NAMES)
@pytest.mark.parametrize("name", ["tao2", "strang"])
def test_symplectic_energy_error_stays_bounded(name, model):
    _require(model)
    rel = _relative_energy_error(model, name)
    assert np.isfinite(rel).all(), f"{name} on {model}: the undamped run blew up"
    half = len(rel) // 2
    first, second = rel[1:half].max(), rel[half:].max()
    msg = f"{name} on {model}: max |H-H0|/|H0| {first:.2e} (first half), {second:.2e} (second half)"
    assert second <= BOUNDED_GROWTH * first, msg
    assert rel.max() <= BOUNDED_MAX, msg


@pytest.mark.parametrize("model", MODEL_NAMES)
@pytest.mark.parametrize("name", ["exp_euler", "kick_drift"])
def test_first_order_methods_drift(name, model):
    _require(model)
    rel = _relative_energy_error(model, name)
    quarters = np.array_split(rel[1:], 4)
    early, late = quarters[0].mean(), quarters[-1].mean()
    msg = f"{name} on {model}: mean |H-H0|/|H0| {early:.2e} (first quarter), {late:.2e} (last quarter)"
    assert late >= DRIFT_GROWTH * early, msg
    assert late >= DRIFT_MIN, msg


# ---------------------------------------------------------------- state, options
STATEFUL = [("tao2", "accelerated"), ("strang", "accelerated"), ("ab2", "accelerated"),
            ("nag", "first_order")]


@pytest.mark.parametrize("name,kind", STATEFUL, ids=[n for n, _ in STATEFUL])
def test_state_round_trip_continues_the_same_run(name, kind):
    """Stopping after k steps and restoring get_state() into a fresh integrator changes nothing."""
    run = meanfield.Run(order_config("bilinear", kind, name, 10, shorten=0.0))
    model, schedule, h = run.model, run.schedule, run.horizon.h

    def advance(integ, x, y, k0, k1):
        for k in range(k0, k1):
            x, y = integ.step(model, schedule, 1.0 + k * h, h, x, y)
        return x, y

    x0 = run.x0.copy()
    y0 = None if run.y0 is None else run.y0.copy()
    a = make_integrator(name, kind)
    a.reset()
    xa, ya = advance(a, x0.copy(), None if y0 is None else y0.copy(), 0, 10)

    b = make_integrator(name, kind)
    b.reset()
    xb, yb = advance(b, x0.copy(), None if y0 is None else y0.copy(), 0, 4)
    state = b.get_state()
    assert state and all(isinstance(v, (np.ndarray, float)) for v in state.values())
    c = make_integrator(name, kind)
    c.reset()
    c.set_state(state)
    xc, yc = advance(c, xb.copy(), None if yb is None else yb.copy(), 4, 10)
    assert np.array_equal(xa, xc)
    if ya is not None:
        assert np.array_equal(ya, yc)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), "fast", True])
def test_omega_is_validated(bad):
    with pytest.raises(meanfield.ParameterError, match="integrator.omega"):
        make_integrator("tao2", "accelerated", omega=bad)


def test_options_and_kinds_are_checked():
    assert make_integrator("strang", "accelerated").omega == DEFAULT_OMEGA
    with pytest.raises(meanfield.ParameterError, match="valid: name, h, omega"):
        make_integrator("tao2", "accelerated", beta=0.5)
    with pytest.raises(meanfield.ParameterError, match="nag"):
        make_integrator("nag", "accelerated")
    with pytest.raises(meanfield.ParameterError, match="tao2"):
        make_integrator("tao2", "first_order")
    assert INTEGRATORS["nag"]["first_order"].uses_schedule
    assert math.isfinite(DEFAULT_OMEGA) and DEFAULT_OMEGA > 0
