"""Damping schedules: alpha = d eta / dt, exact factor sigma, validation."""

import math

import pytest

from meanfield.errors import ParameterError
from meanfield.schedules import SCHEDULES, make_schedule

CASES = [
    ("none", {}),
    ("constant", {"a": 0.7}),
    ("nesterov", {"r": 3.0}),
    ("loglin", {"c_log": 2.0, "c_lin": 0.3}),
]


@pytest.mark.parametrize("name,params", CASES)
def test_alpha_is_derivative_of_eta_and_sigma_is_exact(name, params):
    s = make_schedule(name, 0.5, **params)
    assert s.eta(0.5) == 0.0
    for t in (0.6, 1.0, 3.7, 20.0):
        eps = 1e-6 * t
        fd = (s.eta(t + eps) - s.eta(t - eps)) / (2 * eps)
        assert fd == pytest.approx(s.alpha(t), rel=1e-7, abs=1e-12)
        h = 0.3
        assert s.sigma(t, h) == pytest.approx(math.exp(-(s.eta(t + h) - s.eta(t))), rel=1e-13)
        assert 0 < s.sigma(t, h) <= 1


def test_table_of_spec():
    assert make_schedule("nesterov", 2.0).alpha(4.0) == pytest.approx(0.75)  # r = 3 default
    assert make_schedule("nesterov", 2.0, r=3.0).eta(4.0) == pytest.approx(3 * math.log(2))
    assert make_schedule("constant", 1.0, a=2.0).eta(3.0) == pytest.approx(4.0)
    ll = make_schedule("loglin", 1.0, c_log=1.0, c_lin=0.5)
    assert ll.alpha(2.0) == pytest.approx(1.0)
    assert ll.eta(2.0) == pytest.approx(math.log(2) + 0.5)
    assert set(SCHEDULES) == {"none", "constant", "nesterov", "loglin"}


def test_bad_schedules_are_clear_errors():
    with pytest.raises(ParameterError, match=r"run\.t0.*t0 > 0"):
        make_schedule("nesterov", 0.0)
    with pytest.raises(ParameterError, match=r"damping\.schedule.*one of"):
        make_schedule("cosine", 1.0)
    with pytest.raises(ParameterError, match=r"damping\.b.*valid: schedule, a"):
        make_schedule("constant", 1.0, b=1.0)
    with pytest.raises(ParameterError, match=r"damping\.a.*>= 0"):
        make_schedule("constant", 1.0, a=-1.0)
    with pytest.raises(ParameterError, match=r"damping\.r.*finite"):
        make_schedule("nesterov", 1.0, r=float("nan"))
