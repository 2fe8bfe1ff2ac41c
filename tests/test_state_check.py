"""The loop's state check: NaN, inf and blow-up, directly on the kernel and through a run.

:func:`meanfield._kernels.checks.max_abs_or_nan` returns max |X_ij|, NaN as
soon as one entry is NaN (a plain max would skip it: ``max(1.0, nan) == 1.0``);
the loop stops with a :class:`SimulationError` that names the step and time
when the state holds a NaN or an inf, or exceeds the blow-up limit
(:data:`meanfield.simulate.BLOWUP`), in x or in y, and keeps every save before.
"""

import math

import numpy as np
import pytest

from meanfield._kernels import _config
from meanfield._kernels.checks import max_abs_or_nan
from meanfield.errors import SimulationError
from meanfield.integrators import make_integrator
from meanfield.models.bilinear import Bilinear, BilinearParams
from meanfield.schedules import make_schedule
from meanfield.simulate import BLOWUP, Horizon, Recorder, simulate

N, D = 1100, 3  # two chunks of particles


def _check(X):
    bounds = _config.chunk_bounds(X.shape[0])
    return max_abs_or_nan(X, bounds, np.empty(bounds.shape[0] - 1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("row", [0, 600, N - 1])  # first chunk, second chunk, last row
def test_kernel_nan_inf_and_largest_value(dtype, row):
    rng = np.random.default_rng(row)
    X = rng.standard_normal((N, D)).astype(dtype)
    assert _check(X) == np.abs(X).max()
    big = X.copy()
    big[row, 1] = -7e17
    assert _check(big) == np.float64(dtype(7e17))
    for bad in (np.inf, -np.inf):
        Xi = X.copy()
        Xi[row, 2] = bad
        assert _check(Xi) == np.inf
    Xn = X.copy()
    Xn[row, 0] = np.nan
    assert math.isnan(_check(Xn))
    Xn[(row + 550) % N, 1] = np.inf  # NaN wins over inf, in either chunk order
    assert math.isnan(_check(Xn))
    one = np.full((1, D), np.nan, dtype)
    assert math.isnan(_check(one))
    assert _check(np.zeros((1, D), dtype)) == 0.0


class _Faulty(Bilinear):
    """Bilinear model whose field writes ``value`` into one entry of x (or y) from ``t_bad`` on."""

    def __init__(self, dynamics, value, t_bad, where="x"):
        d = D
        super().__init__(BilinearParams(d=d, A=np.eye(d), Q=np.eye(d), m=np.zeros(d)), dynamics)
        self.value, self.t_bad, self.where = value, t_bad, where

    def _combine_first_order(self, x, t, a, b, out):
        super()._combine_first_order(x, t, a, b, out)
        if t >= self.t_bad:
            out[N - 1, 1] = self.value

    def _combine_hamiltonian(self, x, y, t, ax, bx, ay, by, out_x, out_y):
        super()._combine_hamiltonian(x, y, t, ax, bx, ay, by, out_x, out_y)
        if t >= self.t_bad:
            (out_x if self.where == "x" else out_y)[N - 1, 1] = self.value


CASES = [(np.nan, "NaN"), (np.inf, "overflow"), (-np.inf, "overflow"), (1e200, "blow-up")]


@pytest.mark.parametrize("value,what", CASES, ids=["nan", "inf", "-inf", "blowup"])
@pytest.mark.parametrize("dynamics,where", [("first_order", "x"), ("accelerated", "x"),
                                            ("accelerated", "y")])
def test_a_run_stops_at_the_bad_step_and_keeps_the_saves_before(value, what, dynamics, where):
    assert not abs(value) <= BLOWUP[np.dtype(np.float64)]
    h, bad_step = 0.01, 7  # the field evaluated from t = 0.06 (step 7) writes the bad value
    model = _Faulty(dynamics, value, t_bad=0.06 - 1e-12, where=where)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D))
    y = 0.1 * rng.standard_normal((N, D)) if dynamics == "accelerated" else None
    integ = make_integrator("euler" if dynamics == "first_order" else "exp_euler", dynamics)
    rec = Recorder()
    with pytest.raises(SimulationError) as info:
        simulate(model, make_schedule("constant", 0.0, a=1.0), integ, x, y,
                 Horizon(t0=0.0, h=h, steps=20), save_every=2, observers=[rec])
    exc = info.value
    assert exc.step == bad_step and exc.t == pytest.approx(bad_step * h)
    assert what in str(exc) and f"step {bad_step}" in str(exc)
    scales, _ = rec.arrays()
    assert list(scales["iteration"]) == [0, 2, 4, 6]  # every save before the failure is kept
