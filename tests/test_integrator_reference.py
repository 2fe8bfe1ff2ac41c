"""Every integrator against an independent plain-NumPy transcription of its own scheme.

The references below are written from the schemes' formulas (docs/models.md §5 and the
integrators' docstrings), on the naive pairwise bilinear fields of
``tests/naive.py`` and with the damping written out by hand (nesterov:
eta(t) = r log t), sharing no code with :mod:`meanfield.integrators` or the
model kernels. A few steps, with a shortened last step (variable-step
formulas), must agree to round-off: a changed coefficient anywhere in a
scheme (e.g. tao2's conformal coupling weight replaced by 1, which turns
tao2 into strang) fails here even when it keeps the method's order.
"""

import math

import numpy as np
import pytest
from naive import bilinear_first_order, bilinear_hamiltonian_field

from meanfield.integrators import INTEGRATORS, make_integrator
from meanfield.integrators.symplectic import DEFAULT_OMEGA
from meanfield.models.bilinear import Bilinear, BilinearParams
from meanfield.models.softmax import Softmax, SoftmaxParams
from meanfield.schedules import make_schedule

R, T0 = 3.0, 1.0
A = np.array([[1.0, 0.3], [-0.1, 0.8]])
Q = np.array([[1.0, 0.2], [0.2, 2.0]])
M = np.array([0.3, -0.2])
STEPS = [0.05] * 5 + [0.031]  # the last step shortened, as the loop does to land on t1
RTOL = 1e-12


def alpha(t):
    return R / t


def deta(t, h):
    """eta(t + h) - eta(t) for eta = r log t (nesterov)."""
    return R * math.log((t + h) / t)


def f(x, t):
    return bilinear_first_order(x, A, Q, M)


def FG(x, y, t):
    return bilinear_hamiltonian_field(x, y, A, Q, M)


def damped(x, y, t):
    F, G = FG(x, y, t)
    return F, G - alpha(t) * y


# ------------------------------------------------------------ references (one step each)
def ref_euler(x, y, t, h, st):
    return x + h * f(x, t), None


def ref_heun(x, y, t, h, st):
    k1 = f(x, t)
    k2 = f(x + h * k1, t + h)
    return x + h / 2 * (k1 + k2), None


def _rk4(rhs, z, t, h):
    k1 = rhs(z, t)
    k2 = rhs([a + h / 2 * b for a, b in zip(z, k1)], t + h / 2)
    k3 = rhs([a + h / 2 * b for a, b in zip(z, k2)], t + h / 2)
    k4 = rhs([a + h * b for a, b in zip(z, k3)], t + h)
    return [a + h / 6 * (b + 2 * c + 2 * d + e) for a, b, c, d, e in zip(z, k1, k2, k3, k4)]


def ref_rk4_first(x, y, t, h, st):
    return _rk4(lambda z, s: [f(z[0], s)], [x], t, h)[0], None


def ref_rk4_acc(x, y, t, h, st):
    return tuple(_rk4(lambda z, s: list(damped(z[0], z[1], s)), [x, y], t, h))


def ref_nag(x, y, t, h, st):
    # v+ = sigma v + h f(x + h sigma v), x+ = x + h v+, f at t + h; v = 0 at the start
    sigma = math.exp(-deta(t, h))
    v = st.get("v", np.zeros_like(x))
    v = sigma * v + h * f(x + h * sigma * v, t + h)
    st["v"] = v
    return x + h * v, None


def ref_exp_euler(x, y, t, h, st):
    e = deta(t, h)
    sigma = math.exp(-e)
    w = (1.0 - sigma) / (e / h)
    F, G = FG(x, y, t)
    return x + h * F, sigma * y + w * G


def ref_kick_drift(x, y, t, h, st):
    sigma = math.exp(-deta(t, h))
    _, G = FG(x, y, t)
    y1 = sigma * (y + h * G)
    F, _ = FG(x, y1, t)
    return x + h * F, y1


def ref_heavy_ball(x, y, t, h, st):
    beta = 1.0 - h * alpha(t)
    F, G = FG(x, y, t)
    return x + h * F, beta * y + h * G


def ref_ab2(x, y, t, h, st):
    fx, fy = damped(x, y, t)
    if "prev" not in st:  # first step: Euler
        xn, yn = x + h * fx, y + h * fy
    else:
        px, py, hp = st["prev"]
        r = h / hp
        xn = x + h * ((1 + r / 2) * fx - r / 2 * px)
        yn = y + h * ((1 + r / 2) * fy - r / 2 * py)
    st["prev"] = (fx, fy, h)
    return xn, yn


def _tao(x, y, t, h, st, conformal):
    """Tao's doubled-phase-space scheme (Phys. Rev. E 94, 043303), damping split around it."""
    xc, yc = st.get("copies", (x.copy(), y.copy()))
    e1, e2 = deta(t, h / 2), deta(t + h / 2, h / 2)
    y, yc = math.exp(-e1) * y, math.exp(-e1) * yc
    tm = t + h / 2
    c = math.exp(e1) if conformal else 1.0

    def phi_a(q, p, xc, yc):  # flow of H(q, y~) for h/2: moves p and x~
        F, G = FG(q, yc, tm)
        return q, p + h / 2 * G, xc + h / 2 * F, yc

    def phi_b(q, p, xc, yc):  # flow of H(x~, p) for h/2: moves q and y~
        F, G = FG(xc, p, tm)
        return q + h / 2 * F, p, xc, yc + h / 2 * G

    def phi_c(q, p, xc, yc):  # rotation of (q - x~, c (p - y~)) by the angle 2 omega h
        co, si = math.cos(2 * DEFAULT_OMEGA * h), math.sin(2 * DEFAULT_OMEGA * h)
        u, w = q - xc, c * (p - yc)
        u, w = co * u + si * w, -si * u + co * w
        sq, sp = q + xc, p + yc
        return (sq + u) / 2, (sp + w / c) / 2, (sq - u) / 2, (sp - w / c) / 2

    z = (x, y, xc, yc)
    for phi in (phi_a, phi_b, phi_c, phi_b, phi_a):
        z = phi(*z)
    q, p, xc, yc = z
    p, yc = math.exp(-e2) * p, math.exp(-e2) * yc
    st["copies"] = (xc, yc)
    return q, p


#: mean_shift is one attention layer without the residual (x <- the attention average): it is
#: defined for softmax attention, not for the bilinear model, so it steps a softmax model
#: with these matrices, and its reference is the layer written out in NumPy.
AS = np.array([[0.8, 0.2], [0.1, 0.6]])
VS = np.array([[1.0, 0.3], [-0.2, 0.9]])


def ref_mean_shift(x, y, t, h, st):
    logits = x @ AS @ x.T  # x_i^T A x_j
    E = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (E @ (x @ VS.T)) / E.sum(axis=1, keepdims=True), None


def softmax_model(kind):
    return Softmax(SoftmaxParams.from_dict({"d": 2, "A": AS.tolist(), "V": VS.tolist()}, kind), kind)


def bilinear_model(kind):
    return Bilinear(BilinearParams(d=2, A=A, Q=Q, m=M), kind)


MODEL_FOR = {"mean_shift": softmax_model}

REFERENCES = {
    ("mean_shift", "first_order"): ref_mean_shift,
    ("euler", "first_order"): ref_euler,
    ("heun", "first_order"): ref_heun,
    ("rk4", "first_order"): ref_rk4_first,
    ("nag", "first_order"): ref_nag,
    ("exp_euler", "accelerated"): ref_exp_euler,
    ("kick_drift", "accelerated"): ref_kick_drift,
    ("heavy_ball", "accelerated"): ref_heavy_ball,
    ("rk4", "accelerated"): ref_rk4_acc,
    ("ab2", "accelerated"): ref_ab2,
    ("tao2", "accelerated"): lambda *a: _tao(*a, conformal=True),
    ("strang", "accelerated"): lambda *a: _tao(*a, conformal=False),
}
# adaptive methods choose their own steps (no fixed h to measure an order or a transcription by):
# tests/test_adaptive_methods.py and tests/test_long_time*.py cover them
PAIRS = sorted((name, kind) for name, by_kind in INTEGRATORS.items() for kind in by_kind
               if not by_kind[kind].adaptive)


def test_every_registered_integrator_has_a_reference():
    assert set(REFERENCES) == set(PAIRS)


def _initial(kind):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 2)) + np.array([0.5, 0.0])
    y = 0.5 * rng.standard_normal((8, 2)) if kind == "accelerated" else None
    return x, y


@pytest.mark.parametrize("name,kind", PAIRS, ids=[f"{n}-{k}" for n, k in PAIRS])
def test_steps_match_the_independent_transcription(name, kind):
    model = MODEL_FOR.get(name, bilinear_model)(kind)
    schedule = make_schedule("nesterov", T0, r=R)
    integ = make_integrator(name, kind)
    integ.reset()
    x, y = _initial(kind)
    xr, yr = x.copy(), None if y is None else y.copy()
    st, t = {}, T0
    for h in STEPS:
        x, y = integ.step(model, schedule, t, h, x, y)
        xr, yr = REFERENCES[name, kind](xr, yr, t, h, st)
        t += h
    scale = np.abs(xr).max()
    assert np.abs(x - xr).max() <= RTOL * scale, f"{name}: x differs by {np.abs(x - xr).max():.2e}"
    if kind == "accelerated":
        assert np.abs(y - yr).max() <= RTOL * np.abs(yr).max(), f"{name}: y differs by {np.abs(y - yr).max():.2e}"


def test_tao2_and_strang_differ_by_more_than_round_off():
    """The test above can tell the two apart: their references differ far above RTOL."""
    x, y = _initial("accelerated")
    out = {}
    for conformal in (True, False):
        xr, yr, st, t = x.copy(), y.copy(), {}, T0
        for h in STEPS:
            xr, yr = _tao(xr, yr, t, h, st, conformal)
            t += h
        out[conformal] = np.concatenate([xr.ravel(), yr.ravel()])
    assert np.abs(out[True] - out[False]).max() > 1e6 * RTOL * np.abs(out[True]).max()
