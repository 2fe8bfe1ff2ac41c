"""Analytic dense Jacobians of the first-order fields (models' ``jacobian_first_order``).

Against the slow references (naive_softmax / naive_sphere ``first_order_jacobian``:
an explicit weight-tensor product rule) to round-off, against central finite
differences of the model's own ``first_order`` on and slightly off the sphere,
and the counters the stiff integrators report.
"""

import itertools
import os

import naive_softmax as NSM
import naive_sphere as NS
import numpy as np
import pytest

from meanfield._kernels import jacobian as JK
from meanfield.errors import ParameterError, SimulationError
from meanfield.integrators.vector_field import VectorField
from meanfield.models import make_model
from meanfield.models.base import JACOBIAN_MAX

NORMS = ("post_ln", "pre_ln", "peri_ln")


def rel_err(J, ref):
    return float(np.max(np.abs(J - ref)) / np.max(np.abs(ref)))


def sphere_model(rng, d, normalized, causal, normalization, beta=1.5, dtype="float64"):
    Q, K, V = (rng.normal(size=(d, d)) for _ in range(3))
    p = dict(name="sphere", d=d, beta=beta, Q=Q.tolist(), K=K.tolist(), V=V.tolist(),
             normalized=normalized, causal=causal, normalization=normalization)
    return make_model(p, dtype), (Q, K, V)


def softmax_model(rng, d, normalized, causal, potential=True):
    A, V, B = 0.5 * rng.normal(size=(d, d)), rng.normal(size=(d, d)), rng.normal(size=(d, d))
    p = dict(name="softmax", dynamics="first_order", d=d, A=A.tolist(), V=V.tolist(), B=B.tolist(),
             normalized=normalized, causal=causal)
    Q, m = None, None
    if potential:
        Q, m = np.diag(rng.uniform(0.5, 1.0, d)), rng.normal(size=d)
        p.update(Q=Q.tolist(), m=m.tolist())
    return make_model(p), (A, V, B, Q, m)


def state(rng, N, d, radius_jitter=0.0, radii=None):
    """N random directions scaled by 1 + U(-jitter, jitter) (or by ``radii``)."""
    x = rng.normal(size=(N, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    if radii is not None:
        return x * radii[:, None]
    return x * (1.0 + radius_jitter * rng.uniform(-1.0, 1.0, size=(N, 1)))


def central_differences(model, x, h=1e-6):
    """(N d, N d) central differences of ``model.first_order`` (2 N d field calls)."""
    n, d = x.shape
    z = x.ravel()
    J = np.empty((n * d, n * d))
    for k in range(n * d):
        zp, zm = z.copy(), z.copy()
        zp[k] += h
        zm[k] -= h
        J[:, k] = (model.first_order(zp.reshape(n, d), 0.0) - model.first_order(zm.reshape(n, d), 0.0)).ravel()
    return J / (2 * h)


CASES = list(itertools.product((2, 3), (True, False), (False, True)))


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("d, normalized, causal", CASES)
def test_sphere_jacobian_matches_reference(d, normalized, causal, normalization):
    rng = np.random.default_rng([d, normalized, causal, NORMS.index(normalization)])
    model, (Q, K, V) = sphere_model(rng, d, normalized, causal, normalization)
    # off the sphere: radii far from 1 exercise d theta / d x = P / |x| (pre_ln / peri_ln states)
    x = state(rng, 11, d, radii=rng.uniform(0.5, 2.0, 11))
    J = model.jacobian_first_order(x, 0.0)
    ref = NS.first_order_jacobian(x, 1.5, Q, K, V, normalized, causal, normalization)
    assert J.shape == (11 * d, 11 * d)
    assert rel_err(J, ref) < 1e-12


@pytest.mark.parametrize("d, normalized, causal", CASES)
@pytest.mark.parametrize("potential", (True, False))
def test_softmax_jacobian_matches_reference(d, normalized, causal, potential):
    rng = np.random.default_rng([d, normalized, causal, potential, 7])
    model, (A, V, B, Q, m) = softmax_model(rng, d, normalized, causal, potential)
    x = rng.normal(size=(12, d))
    J = model.jacobian_first_order(x, 0.0)
    ref = NSM.first_order_jacobian(x, A, V, normalized, causal, B, Q, m)
    assert rel_err(J, ref) < 1e-12


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("d, normalized, causal", CASES)
@pytest.mark.parametrize("jitter", (0.0, 1e-3))
def test_sphere_jacobian_matches_finite_differences(d, normalized, causal, normalization, jitter):
    """On the sphere and with |x_i| = 1 + O(1e-3), as stage values of a step are."""
    rng = np.random.default_rng([d, normalized, causal, NORMS.index(normalization), int(jitter * 1e3)])
    model, _ = sphere_model(rng, d, normalized, causal, normalization)
    x = state(rng, 9, d, radius_jitter=jitter)
    assert rel_err(model.jacobian_first_order(x, 0.0), central_differences(model, x)) < 1e-7


@pytest.mark.parametrize("d, normalized, causal", CASES)
def test_softmax_jacobian_matches_finite_differences(d, normalized, causal):
    rng = np.random.default_rng([d, normalized, causal, 3])
    model, _ = softmax_model(rng, d, normalized, causal)
    x = rng.normal(size=(10, d))
    assert rel_err(model.jacobian_first_order(x, 0.0), central_differences(model, x)) < 1e-7


@pytest.mark.parametrize("normalization", NORMS)
def test_kernel_field_is_the_models_field(normalization):
    """The field the kernel forms along the way is the model's (the same derivative is taken)."""
    rng = np.random.default_rng(5)
    model, _ = sphere_model(rng, 3, True, False, normalization, beta=4.0)
    x = state(rng, 20, 3, radius_jitter=1e-3)
    r = np.linalg.norm(x, axis=1)
    att = model.attention
    F = np.empty_like(x)
    J = np.empty((60, 60))
    zero = np.zeros((3, 3))
    JK.attention_jacobian(x / r[:, None], 1.0 / r, att.A, att.V, zero, zero[0], model.scheme, True,
                          True, False, J, F)
    np.testing.assert_allclose(F, model.first_order(x, 0.0), rtol=0, atol=1e-13)


def test_counters_and_vector_field():
    """A Jacobian counts jacobian_cost(N) oracle calls and one jacobian_calls; VectorField uses it."""
    rng = np.random.default_rng(11)
    model, _ = sphere_model(rng, 3, True, False, "post_ln")
    x = state(rng, 16, 3)
    assert (model.oracle_calls, model.jacobian_calls) == (0, 0)
    model.first_order(x, 0.0)
    assert (model.oracle_calls, model.jacobian_calls) == (1, 0)
    J = model.jacobian_first_order(x, 0.0)
    cost = model.jacobian_cost(16)
    assert cost == 1  # ceil(d min(N d / 300, 12)) at N d = 48
    assert (model.oracle_calls, model.jacobian_calls) == (1 + cost, 1)
    assert [model.jacobian_cost(n) for n in (64, 256, 1024, 2730)] == [2, 8, 31, 36]
    field = VectorField(model, None, x.shape, accelerated=False)
    np.testing.assert_array_equal(field.jacobian(0.0, x.ravel().copy()), J)
    assert (model.oracle_calls, model.jacobian_calls) == (1 + 2 * cost, 2)


def test_has_jacobian_only_with_an_analytic_one():
    rng = np.random.default_rng(2)
    sphere, _ = sphere_model(rng, 3, True, False, "post_ln")
    soft, _ = softmax_model(rng, 2, True, False)
    assert sphere.has_jacobian and soft.has_jacobian
    others = [
        make_model(dict(name="sphere", d=2, beta=2.0, summation="fourier")),
        make_model(dict(name="sphere", d=3, dynamics="accelerated")),
        make_model(dict(name="softmax", d=2, dynamics="accelerated")),
        make_model(dict(name="bilinear", d=2, dynamics="first_order")),
    ]
    for model in others:
        assert not model.has_jacobian
        if hasattr(model, "jacobian_first_order"):
            with pytest.raises(NotImplementedError, match="no analytic Jacobian"):
                model.jacobian_first_order(state(rng, 8, model.d), 0.0)
        assert model.jacobian_calls == 0


def test_refuses_above_the_size_limit():
    rng = np.random.default_rng(3)
    model, _ = sphere_model(rng, 3, True, False, "post_ln")
    n = JACOBIAN_MAX // 3 + 1
    with pytest.raises(ParameterError, match=r"^\[integrator\.name\] expected a method without a dense "
                       r"Jacobian for N d > 8192.*found 'a dense Jacobian of N d = 8193'$"):
        model.jacobian_first_order(state(rng, n, 3), 0.0)
    assert (model.oracle_calls, model.jacobian_calls) == (0, 0)


def test_float32_model_differentiates_in_float64():
    rng = np.random.default_rng(4)
    m64, QKV = sphere_model(np.random.default_rng(9), 3, True, True, "peri_ln")
    m32, _ = sphere_model(np.random.default_rng(9), 3, True, True, "peri_ln", dtype="float32")
    x32 = state(rng, 10, 3).astype(np.float32)
    J = m32.jacobian_first_order(x32, 0.0)
    assert J.dtype == np.float64
    np.testing.assert_array_equal(J, m64.jacobian_first_order(x32.astype(np.float64), 0.0))


def test_usa_overflow_is_a_simulation_error():
    model = make_model(dict(name="softmax", dynamics="first_order", d=2, A=[[400.0, 0.0], [0.0, 400.0]],
                            normalized=False))
    x = np.array([[1.0, 0.5], [2.0, 0.0], [-1.0, 0.3]])
    with pytest.raises(SimulationError, match="Jacobian of the first-order field is not finite"):
        model.jacobian_first_order(x, 0.0)


def test_out_buffer_is_overwritten_and_returned():
    rng = np.random.default_rng(8)
    model, _ = softmax_model(rng, 3, True, True)
    x = rng.normal(size=(7, 3))
    out = np.full((21, 21), np.nan)  # every entry, masked blocks included, must be written
    J = model.jacobian_first_order(x, 0.0, out=out)
    assert J is out
    np.testing.assert_array_equal(out, model.jacobian_first_order(x, 0.0))
    with pytest.raises(ValueError, match=r"out must be a C-contiguous \(21, 21\) float64 array"):
        model.jacobian_first_order(x, 0.0, out=np.empty((21, 21), np.float32))
    assert model.jacobian_calls == 2


@pytest.mark.slow
def test_the_jacobian_has_the_same_bits_freshly_compiled_and_from_numbas_cache(tmp_path):
    # a stiff run resumed in a new process must take the same steps: a kernel whose cached
    # machine code computes other bits than a fresh compile breaks that (re-association had)
    import subprocess
    import sys

    code = ("import hashlib, numpy as np; from meanfield.models import make_model; "
            "m = make_model({'name': 'sphere', 'dynamics': 'first_order', 'd': 3, 'beta': 16.0}); "
            "x = np.random.default_rng(0).normal(size=(64, 3)); x /= np.linalg.norm(x, axis=1)[:, None]; "
            "print(hashlib.md5(m.jacobian_first_order(x, 0.0).tobytes()).hexdigest())")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    fresh, cached = (subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                    check=True, timeout=300).stdout for _ in range(2))
    assert fresh == cached
