"""The adaptive methods dopri5, ros34pw2 and auto (docs/models.md §5) through attempt/commit.

Orders measured on a smooth problem (the step, the embedded error estimate,
the dense output), the controller's global error against rtol, rejected
attempts, the stiff method on eigenvalues spread over 10^6, auto's switch,
get_state/set_state, and real models through a VectorField against rk4.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.linalg import expm

from meanfield.integrators import INTEGRATORS, make_integrator
from meanfield.integrators.adaptive import integrate
from meanfield.integrators.controllers import PIController
from meanfield.integrators.vector_field import VectorField
from meanfield.models import make_model
from meanfield.schedules import make_schedule

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = ["dopri5", "ros34pw2", "auto"]


class Field:
    """``z' = f(t, z)`` with an analytic Jacobian; counts calls like a model."""

    finite_difference_jacobian = False

    def __init__(self, f, jac):
        self.f, self.jac = f, jac
        self.calls = self.jacobians = 0

    def __call__(self, t, z, out=None):
        self.calls += 1
        value = np.asarray(self.f(t, z), dtype=float)
        if out is None:
            return value
        out[...] = value
        return out

    def jacobian(self, t, z, fz=None):
        self.jacobians += 1
        return np.asarray(self.jac(t, z), dtype=float)


def forced_duffing():
    """A smooth non-autonomous nonlinear problem and its solution at t = 1 (tight DOP853)."""
    from scipy.integrate import solve_ivp

    def f(t, z):
        return np.array([z[1], -z[0] - 0.1 * z[0] ** 3 + 0.2 * np.cos(t)])

    def jac(t, z):
        return np.array([[0.0, 1.0], [-1.0 - 0.3 * z[0] ** 2, 0.0]])

    z0 = np.array([1.0, 0.0])
    sol = solve_ivp(f, (0, 1), z0, method="DOP853", rtol=1e-13, atol=1e-14, dense_output=True)
    return Field(f, jac), z0, sol.sol


DUFFING = forced_duffing()


def fixed_steps(name, n, t1=1.0, **options):
    """``n`` equal steps through attempt/commit (every attempt committed)."""
    field, z0, _ = DUFFING
    integ = make_integrator(name, "first_order", **options)
    z, t, h = z0.copy(), 0.0, t1 / n
    for _ in range(n):
        z_new, _ = integ.attempt(field, t, h, z)
        integ.commit(field, t, h, z, z_new)
        z, t = z_new, t + h
    return z


def slope(hs, errs):
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


# --------------------------------------------------------------- orders
@pytest.mark.parametrize("name", METHODS)
def test_order_fixed_steps(name):
    """Global error of n fixed steps: the fitted slope is the declared order (auto: dopri5's).

    ros34pw2 evaluates its Jacobian once, at t = 0, and keeps it (the steps are
    equal, so the LU too): the order it shows is that of the W-method with a stale W.
    """
    exact = DUFFING[2](1.0)
    ns = [4, 8, 16, 32]
    errs = [np.abs(fixed_steps(name, n) - exact).max() for n in ns]
    order = make_integrator(name, "first_order").order  # auto starts with dopri5
    assert abs(slope(1.0 / np.array(ns), errs) - order) < 0.25, (errs, order)


@pytest.mark.parametrize("name", ["dopri5", "ros34pw2"])
def test_embedded_error_order(name):
    """The error estimate of one step from (0, z0) is O(h^(error_order + 1))."""
    field, z0, _ = DUFFING
    hs = 0.2 / 2.0 ** np.arange(4)
    errs = []
    for h in hs:
        integ = make_integrator(name, "first_order", rtol=1e-12, atol=1.0)  # err ~ RMS of the estimate
        errs.append(integ.attempt(field, 0.0, h, z0)[1])
    expected = INTEGRATORS[name]["first_order"].error_order + 1
    assert abs(slope(hs, errs) - expected) < 0.3, errs


@pytest.mark.parametrize("name", ["dopri5", "ros34pw2"])
def test_dense_output_order(name):
    """``dense(theta)`` inside one step from the exact state: local error O(h^(dense_order + 1))."""
    field, z0, exact = DUFFING
    cls = INTEGRATORS[name]["first_order"]
    hs = 0.4 / 2.0 ** np.arange(4)
    errs = []
    for h in hs:
        integ = cls()
        z_new, _ = integ.attempt(field, 0.0, h, z0)
        integ.commit(field, 0.0, h, z0, z_new)
        assert np.array_equal(integ.dense(1.0), z_new) or np.allclose(integ.dense(1.0), z_new, rtol=0, atol=1e-15)
        assert np.allclose(integ.dense(0.0), z0, rtol=0, atol=1e-15)
        errs.append(max(np.abs(integ.dense(th) - exact(th * h)).max() for th in (0.3, 0.5, 0.8)))
    assert slope(hs, errs) > cls.dense_order + 1 - 0.3, errs


# ------------------------------------------------------------ tolerance
def damped_oscillator():
    A = np.array([[-0.1, 1.0], [-1.0, -0.1]])
    return Field(lambda t, z: A @ z, lambda t, z: A), np.array([1.0, 0.5]), lambda t: expm(A * t) @ [1.0, 0.5]


@pytest.mark.parametrize("name", METHODS)
def test_global_error_tracks_rtol(name):
    """Over rtol = 1e-4 .. 1e-8 the global error at t = 5 stays within [1e-3, 3] rtol and falls with it."""
    ratios = []
    for rtol in (1e-4, 1e-5, 1e-6, 1e-7, 1e-8):
        field, z0, exact = damped_oscillator()
        z, info = integrate(field, make_integrator(name, "first_order", rtol=rtol, atol=1e-3 * rtol), 0.0, 5.0, z0)
        ratios.append(np.abs(z - exact(5.0)).max() / rtol)
    assert all(1e-3 < r < 3.0 for r in ratios), ratios


@pytest.mark.parametrize("name", METHODS)
def test_rejected_attempt_changes_nothing(name):
    """A too-large step is rejected, leaves z alone, and the retry equals a fresh integrator's step."""
    field, z0, exact = damped_oscillator()
    integ = make_integrator(name, "first_order", rtol=1e-8, atol=1e-10)
    z = z0.copy()
    z_bad, err = integ.attempt(field, 0.0, 3.0, z)
    assert err > 1.0 and np.array_equal(z, z0)
    retry, _ = integ.attempt(field, 0.0, 0.01, z)
    fresh, _ = make_integrator(name, "first_order", rtol=1e-8, atol=1e-10).attempt(field, 0.0, 0.01, z0.copy())
    assert np.array_equal(retry, fresh)
    # through the controller: a too-large first step is retried, and the tolerance is still met
    z1, info = integrate(field, make_integrator(name, "first_order", rtol=1e-7, atol=1e-10), 0.0, 5.0, z0, h0=3.0)
    assert info["rejected"] >= 1 and info["steps"][0][1] < 3.0
    assert np.abs(z1 - exact(5.0)).max() < 3e-7


# ------------------------------------------------------------------ stiff
def spread_spectrum(n=20, seed=0):
    """A dense symmetric z' = A z with eigenvalues -1 .. -1e6 (log-spaced) and its solution."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.logspace(0, 6, n)
    A = -(Q * lam) @ Q.T
    z0 = rng.standard_normal(n)
    return Field(lambda t, z: A @ z, lambda t, z: A), z0, lambda t: Q @ (np.exp(-lam * t) * (Q.T @ z0))


@pytest.mark.parametrize("name", ["ros34pw2", "auto"])
def test_stiff_steps_reach_slow_scale(name):
    """Eigenvalues over 10^6: the steps grow to the slow time scale (h ~ 0.1, not 3e-6), calls bounded."""
    field, z0, exact = spread_spectrum()
    integ = make_integrator(name, "first_order", rtol=1e-4, atol=1e-10)
    z, info = integrate(field, integ, 0.0, 10.0, z0)
    assert np.abs(z - exact(10.0)).max() < 1e-6
    assert max(h for _, h in info["steps"]) > 0.1
    # explicit methods would need h < 3.3e-6: 3e6 steps
    assert field.calls < 2000 and field.jacobians <= 15, (field.calls, field.jacobians)
    assert integ.stats["jacobians"] == field.jacobians
    assert integ.stats["factorizations"] <= info["accepted"] + info["rejected"]


def test_auto_switches_on_stiff_and_not_on_smooth():
    field, z0, _ = spread_spectrum()
    stiff = make_integrator("auto", "first_order", rtol=1e-4, atol=1e-10)
    integrate(field, stiff, 0.0, 1.0, z0)
    assert stiff.stats["switches"] >= 1 and stiff.stats["stiff"] == 1 and stiff.error_order == 2
    field, z0, _ = damped_oscillator()
    smooth = make_integrator("auto", "first_order", rtol=1e-6, atol=1e-9)
    integrate(field, smooth, 0.0, 20.0, z0)
    assert smooth.stats["switches"] == 0 and smooth.stats["stiff"] == 0 and smooth.error_order == 4
    assert field.jacobians == 0


def test_auto_switches_back_when_stiffness_ends():
    """z' = -lambda(t) (z - cos t), lambda from 1e4 down to 1e-1: stiff first, explicit again at the end."""
    def lam(t):
        return 1e4 if t < 2.0 else 0.1

    field = Field(lambda t, z: -lam(t) * (z - np.cos(t)), lambda t, z: -lam(t) * np.eye(z.size))
    integ = make_integrator("auto", "first_order", rtol=1e-5, atol=1e-8)
    modes = []
    integrate(field, integ, 0.0, 20.0, np.ones(3), on_step=lambda t, h, z: modes.append(integ.stats["stiff"]))
    assert 1 in modes[: len(modes) // 2] and modes[-1] == 0 and integ.stats["switches"] == 2


# ------------------------------------------------------------ checkpoint
def stored(state):
    """What a checkpoint gives back, through strict JSON (no NaN): numpy arrays and plain scalars."""
    text = json.dumps(state, allow_nan=False, default=lambda a: {"array": a.tolist()} if isinstance(a, np.ndarray) else a.item())
    return {k: np.array(v["array"], dtype=float) if isinstance(v, dict) else v for k, v in json.loads(text).items()}


def steps_from(field, integ, ctrl, t, z, h, count):
    trace = []
    for _ in range(count):
        z_new, err = integ.attempt(field, t, h, z)
        ok, h_next = ctrl.judge(err, h)
        if ok:
            integ.commit(field, t, h, z, z_new)
            t, z = t + h, z_new
        trace.append((t, h, err, z.copy(), integ.dense(0.5).copy() if ok else None))
        h = h_next
    return trace, t, z, h


@pytest.mark.parametrize("name", METHODS)
def test_state_round_trip_bit_identical(name):
    """Stop after 80 attempts (auto: stiff by then), restore get_state into a fresh instance: the next 40 agree bit for bit."""
    field, z0, _ = spread_spectrum(n=8)
    integ = make_integrator(name, "first_order", rtol=1e-5, atol=1e-9)
    ctrl = PIController(integ)
    _, t, z, h = steps_from(field, integ, ctrl, 0.0, z0, 1e-4, 80)
    saved, saved_ctrl = stored(integ.get_state()), ctrl.get_state()
    assert name == "dopri5" or saved.get("stats_stiff", 1) == 1 and saved["stats_jacobians"] >= 1
    between = integ.dense(0.3)
    calls = field.calls
    first, *_ = steps_from(field, integ, ctrl, t, z.copy(), h, 40)
    calls, calls_first = field.calls, field.calls - calls
    fresh = make_integrator(name, "first_order", rtol=1e-5, atol=1e-9)
    fresh.set_state(saved)
    assert np.array_equal(fresh.dense(0.3), between)  # saves between the last step's ends still work
    ctrl2 = PIController(fresh)
    ctrl2.set_state(saved_ctrl)
    second, *_ = steps_from(field, fresh, ctrl2, t, z.copy(), h, 40)
    assert field.calls - calls == calls_first  # the FSAL derivative and F(t, z) were restored, not recomputed
    for a, b in zip(first, second):
        assert a[:3] == b[:3] and np.array_equal(a[3], b[3])
        assert (a[4] is None and b[4] is None) or np.array_equal(a[4], b[4])
    assert fresh.stats == integ.stats


def test_rosenbrock_state_without_matrix_recomputes_it():
    """Above jac_store_max the state keeps where the Jacobian was evaluated, not the matrix."""
    field, z0, _ = spread_spectrum(n=8)
    integ = make_integrator("ros34pw2", "first_order", rtol=1e-5)
    ctrl = PIController(integ)
    _, t, z, h = steps_from(field, integ, ctrl, 0.0, z0, 1e-4, 10)
    integ.jac_store_max = 4
    saved = stored(integ.get_state())
    assert "jac" not in saved and saved["jac_z"].shape == (8,)
    first, *_ = steps_from(field, integ, PIController(integ), t, z.copy(), h, 10)
    fresh = make_integrator("ros34pw2", "first_order", rtol=1e-5)
    fresh.set_state(saved)
    second, *_ = steps_from(field, fresh, PIController(fresh), t, z.copy(), h, 10)
    assert all(np.array_equal(a[3], b[3]) for a, b in zip(first, second))


# ------------------------------------------------------------ real models
def rk4_reference(model, schedule, x, y, t1, h):
    rk4 = make_integrator("rk4", "accelerated" if y is not None else "first_order")
    t = 0.0
    for _ in range(int(round(t1 / h))):
        x, y = rk4.step(model, schedule, t, h, x, y)
        t += h
    return x, y


def sphere_case():
    model = make_model({"name": "sphere", "dynamics": "first_order", "d": 3, "beta": 4.0})
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 3))
    return model, None, x / np.linalg.norm(x, axis=1, keepdims=True), None


def softmax_case():
    d = 2
    model = make_model({"name": "softmax", "dynamics": "accelerated", "d": d, "A": [[1.0, 0.2], [0.2, 0.5]],
                        "B": [[1.0, 0.0], [0.0, 1.0]]})
    rng = np.random.default_rng(4)
    return model, make_schedule("constant", 0.0, a=1.0), rng.standard_normal((12, d)), 0.3 * rng.standard_normal((12, d))


@pytest.mark.parametrize("case", [sphere_case, softmax_case], ids=["sphere-first_order", "softmax-accelerated"])
@pytest.mark.parametrize("name", METHODS)
def test_real_models_against_rk4(case, name):
    """Through a VectorField with rtol 1e-8, retracting to the sphere: within 1e-7 (relative) of rk4 at h = 1e-3."""
    model, schedule, x, y = case()
    ref_x, ref_y = rk4_reference(model, schedule, x.copy(), None if y is None else y.copy(), 2.0, 1e-3)
    field = VectorField(model, schedule, x.shape, y is not None)
    integ = make_integrator(name, "accelerated" if y is not None else "first_order", rtol=1e-8, atol=1e-10)

    def retract(z):
        if getattr(model, "on_sphere", False):
            xs = z.reshape(x.shape)
            xs /= np.linalg.norm(xs, axis=1, keepdims=True)
        return z

    z, info = integrate(field, integ, 0.0, 2.0, field.pack(x, y), retract=retract)
    ref = field.pack(ref_x, ref_y)
    assert np.abs(z - ref).max() < 1e-7 * np.abs(ref).max()


@pytest.mark.parametrize("name, first, retry", [("dopri5", 7, 6), ("ros34pw2", 4, 3)])
def test_calls_per_attempt(name, first, retry):
    """Field calls of the first attempt and of a retry at the same start (F(t, z) is reused)."""
    field, z0, _ = damped_oscillator()
    integ = make_integrator(name, "first_order")
    integ.attempt(field, 0.0, 10.0, z0)
    assert field.calls == first
    integ.attempt(field, 0.0, 0.1, z0)
    assert field.calls == first + retry
    assert integ.oracle_calls == first - (name == "dopri5")


def test_finite_difference_jacobian_counted_by_the_model():
    """ros34pw2 on accelerated dynamics: the model counts n calls per finite-difference Jacobian."""
    model, schedule, x, y = softmax_case()
    field = VectorField(model, schedule, x.shape, True)
    assert field.finite_difference_jacobian
    integ = make_integrator("ros34pw2", "accelerated")
    before = model.oracle_calls
    integ.attempt(field, 0.0, 0.01, field.pack(x, y))
    assert integ.stats == {"jacobians": 1, "jvps": 0, "factorizations": 1}
    assert model.oracle_calls - before == 4 + field.n


def test_stiff_dense_output_stays_within_the_step_errors():
    """Between steps h |lambda| up to 1e5, dense output is as accurate as the step ends (no h J e blow-up)."""
    field, z0, exact = spread_spectrum()
    integ = make_integrator("ros34pw2", "first_order", rtol=1e-4, atol=1e-10)
    inner, ends = [], []

    def on_step(t, h, z):
        inner.append(max(np.abs(integ.dense(th) - exact(t + th * h)).max() for th in (0.25, 0.5, 0.75)))
        ends.append(np.abs(z - exact(t + h)).max())

    _, info = integrate(field, integ, 0.0, 10.0, z0, on_step=on_step)
    assert max(h for _, h in info["steps"]) * 1e6 > 1e5
    assert max(inner) < 3 * max(ends) < 1e-4


@pytest.mark.parametrize("finite_differences, rejections", [(False, 1), (True, 2)])
def test_jacobian_reuse_after_rejections(finite_differences, rejections):
    """A stale Jacobian is re-evaluated after one rejection (analytic) or two in a row (n-call finite differences)."""
    field, z0, _ = spread_spectrum(n=8)
    field.finite_difference_jacobian = finite_differences
    integ = make_integrator("ros34pw2", "first_order", rtol=1e-8, atol=1e-12)
    z1, _ = integ.attempt(field, 0.0, 1e-7, z0)
    integ.commit(field, 0.0, 1e-7, z0, z1)
    assert field.jacobians == 1
    for k in range(rejections):
        assert field.jacobians == 1
        assert integ.attempt(field, 1e-7, 5.0 / 2 ** k, z1)[1] > 1.0
    integ.attempt(field, 1e-7, 1e-3, z1)
    assert field.jacobians == 2 and integ.jac_t == 1e-7
    # a fresh Jacobian is not re-evaluated by further rejections at the same start
    integ.attempt(field, 1e-7, 1e-4, z1)
    assert field.jacobians == 2


def test_jacobian_re_evaluated_by_age():
    field, z0, _ = spread_spectrum(n=8)
    integ = make_integrator("ros34pw2", "first_order", rtol=1e-3, atol=1e-6)
    _, max_age = integ.jac_policy["analytic"]
    t, z, h = 0.0, z0, 1e-7
    for _ in range(max_age + 1):
        z_new, _ = integ.attempt(field, t, h, z)
        integ.commit(field, t, h, z, z_new)
        t, z = t + h, z_new
    assert field.jacobians == 2 and integ.stats["jacobians"] == 2


@pytest.mark.parametrize("explicit_h, back", [(None, False), (1.0, True)])
def test_auto_switches_back_when_the_stiff_steps_are_below_the_explicit_ones(explicit_h, back):
    """Stiff steps of 0.01 with h ||J|| ~ 1e4: back to dopri5 only if its step before the switch was > 0.015."""
    field, z0, _ = spread_spectrum(n=8)
    integ = make_integrator("auto", "first_order", rtol=1e-4, atol=1e-10)
    z, _ = integrate(field, integ, 0.0, 1.0, z0)
    state = integ.get_state()
    assert state["stats_stiff"] == 1 and state["explicit_h"] < 1e-4
    if explicit_h is not None:
        state["explicit_h"] = explicit_h
    integ.set_state(state)
    t = 1.0
    for _ in range(integ.back_steps):
        z_new, _ = integ.attempt(field, t, 0.01, z)
        integ.commit(field, t, 0.01, z, z_new)
        t, z = t + 0.01, z_new
    assert integ.implicit.rho * 0.01 > 1.0
    assert integ.stats["stiff"] == (0 if back else 1)
