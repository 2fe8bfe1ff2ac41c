"""1 thread == 2 threads, bit for bit, for every parallel numba kernel, ABOVE the serial threshold.

Models run their kernels on one thread below ``Model.serial_below``
particles (:class:`meanfield._kernels._config.serial_if_small`), so every
problem here is just above its model's threshold (softmax / sphere 1024,
bilinear 4096), with a small d to stay fast. Kernels split work by particle
count only, so results must not depend on the thread count. These tests fail
(they do not skip) when numba cannot run two threads: a thread test that
passes on one thread proves nothing.
"""

import importlib
import inspect
import pkgutil

import numba
import numpy as np
import pytest
from numba import njit, prange

import meanfield._kernels
from meanfield._kernels import _config, checks, sphere
from meanfield._kernels._config import serial_if_small
from meanfield.models import make_model

#: Every module of meanfield._kernels (a new module's parallel kernels are found too).
KERNEL_MODULES = tuple(importlib.import_module(f"meanfield._kernels.{m.name}")
                       for m in pkgutil.iter_modules(meanfield._kernels.__path__))


def _parallel_kernels() -> set[str]:
    out = set()
    for mod in KERNEL_MODULES:
        for name, obj in inspect.getmembers(mod):
            if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.targetoptions.get("parallel"):
                out.add(f"{mod.__name__.rsplit('.', 1)[1]}.{name}")
    return out


#: every parallel kernel, and the test below that runs it on 1 and 2 threads
COVERED = {
    **{f"moments.{k}": "test_bilinear" for k in (
        "cross_moment", "column_mean", "affine_map", "affine_pair_map", "quadratic_mean",
        "causal_hamiltonian", "causal_first_order")},
    **{f"pairwise.{k}": "test_softmax" for k in (
        "prepare", "prepare_values", "loop_pass", "half_quadratic", "prepare_symmetric", "_sym_round",
        "finish_first_order", "z_from_rows", "kinetic_terms", "quadratic_forms", "finish_hamiltonian", "axpby",
        "axpby2")},
    **{f"kinetic.{k}": "test_kinetic" for k in ("deposit_lines", "position_flow")},
    **{f"fourier.{k}": "test_fourier_harmonics" for k in ("sh_analysis", "sh_synthesis")},
    "jacobian.attention_jacobian": "test_jacobian",
    **{f"sphere.{k}": "test_sphere" for k in (
        "directions", "norms_into", "retract", "retract_tangent", "finish_first_order",
        "finish_hamiltonian", "constraint_errors")},
}


@njit(parallel=True)
def _thread_ids(out):
    for i in prange(out.shape[0]):
        out[i] = numba.get_thread_id()


def test_two_threads_really_run():
    """Fail loudly on a machine (or a numba configuration) with a single thread."""
    assert numba.config.NUMBA_NUM_THREADS >= 2, (
        f"numba has {numba.config.NUMBA_NUM_THREADS} thread(s): the 1-vs-2-thread tests need 2 "
        "(set NUMBA_NUM_THREADS=2; two threads also run correctly on one core)")
    with _threads(2):
        ids = np.full(4096, -1, np.int64)
        _thread_ids(ids)
    assert len(set(ids.tolist())) == 2


def test_every_parallel_kernel_is_covered():
    """A new parallel kernel must be added to COVERED (and to one of the tests below)."""
    assert _parallel_kernels() == set(COVERED)


class _threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = numba.get_num_threads()
        numba.set_num_threads(self.n)

    def __exit__(self, *exc):
        numba.set_num_threads(self.old)


def _same_on_1_and_2_threads(fn, model=None, n=None):
    """Run ``fn()`` on 1 then 2 threads; every returned array must be identical."""
    if model is not None:  # the model must not fall back to one thread at this size
        assert not serial_if_small(n, model.serial_below).serial
    out = {}
    for threads in (1, 2):
        with _threads(threads):
            out[threads] = fn()
    assert len(out[1]) == len(out[2])
    for i, (a, b) in enumerate(zip(out[1], out[2])):
        assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True), f"output {i} differs between 1 and 2 threads"


def _state(n, d, seed, y=True):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X, (0.4 * rng.standard_normal((n, d)) if y else None)


def test_state_check():
    n = 1100  # two chunks of particles
    X, _ = _state(n, 3, 0)
    bounds = _config.chunk_bounds(n)
    assert bounds.shape[0] - 1 >= 2
    partial = np.empty(bounds.shape[0] - 1)
    X[1000, 2] = 1e200  # in the last chunk
    Xn = X.copy()
    Xn[n - 1, 0] = np.nan
    _same_on_1_and_2_threads(lambda: (checks.max_abs_or_nan(X, bounds, partial),
                                      checks.max_abs_or_nan(Xn, bounds, partial)))
    with _threads(2):
        assert checks.max_abs_or_nan(X, bounds, partial) == 1e200
        assert np.isnan(checks.max_abs_or_nan(Xn, bounds, partial))


@pytest.mark.parametrize("causal", [False, True])
def test_bilinear(causal):
    d = 3
    n = 4200  # Bilinear.serial_below = 4096
    rng = np.random.default_rng(1)
    A = np.eye(d) + 0.2 * rng.standard_normal((d, d))
    p = {"name": "bilinear", "d": d, "A": A.tolist(), "Q": np.diag([1.0, 2.0, 0.5]).tolist(),
         "m": [0.3, -0.2, 0.1], "causal": causal}
    acc = make_model({**p, "dynamics": "accelerated"})
    fo = make_model({**p, "dynamics": "first_order"})
    X, Y = _state(n, d, 2)

    def run():
        return (*acc.hamiltonian_field(X, Y, 0.0), fo.first_order(X, 0.0),
                [acc.energies(X, Y)[k] for k in ("energy", "kinetic", "potential")],
                *acc.diagnostics(X, Y).values())

    _same_on_1_and_2_threads(run, acc, n)


@pytest.mark.parametrize("causal", [False, True])
def test_softmax(causal):
    d = 3
    n = 1100
    rng = np.random.default_rng(3)
    A = 0.3 * np.eye(d) + 0.1 * (lambda G: G + G.T)(rng.standard_normal((d, d)))
    p = {"name": "softmax", "d": d, "A": A.tolist(), "causal": causal, "Q": np.eye(d).tolist()}
    acc = make_model({**p, "dynamics": "accelerated"})
    sa = make_model({**p, "dynamics": "first_order"})
    usa = make_model({**p, "dynamics": "first_order", "normalized": False})
    X, Y = _state(n, d, 4)
    X *= 0.7
    assert acc.symmetric_pairs is (not causal)  # the symmetric passes (_sym_round) run when unmasked

    def run():
        # z first: it drops the z pass the previous run's energies kept, so the field makes its own
        out = [acc.z(X), *acc.hamiltonian_field(X, Y, 0.0), sa.first_order(X, 0.0), usa.first_order(X, 0.0)]
        X2, Y2 = X.copy(), Y.copy()
        acc.combine_hamiltonian(X2, Y2, 0.0, 1.0, 0.01, 0.9, 0.01, out_x=X2, out_y=Y2)
        X3 = X.copy()
        sa.combine_first_order(X3, 0.0, 1.0, 0.01, out=X3)
        e = acc.energies(X, Y)
        return [*out, X2, Y2, X3, [e[k] for k in ("energy", "kinetic", "potential")],
                *acc.diagnostics(X, Y).values()]

    _same_on_1_and_2_threads(run, acc, n)
    # the row-wise passes too (symmetric_pairs off), so both kinds of pass ran on two threads
    if not causal:
        acc.symmetric_pairs = sa.symmetric_pairs = False
        _same_on_1_and_2_threads(lambda: (acc.z(X), *acc.hamiltonian_field(X, Y, 0.0),
                                          sa.first_order(X, 0.0)), acc, n)


def test_kinetic():
    """The kinetic solver's remap kernels (parallel over grid lines), called outside the loop.

    The loop runs grids below ``KineticSystem.serial_below`` cells on one thread;
    here the solver's steps are taken directly, so both thread counts really run.
    """
    import meanfield

    cfg = {"model": {"name": "sphere", "dynamics": "accelerated", "d": 2, "beta": 2.0},
           "integrator": {"name": "strang", "h": 0.05}, "damping": {"schedule": "constant", "a": 1.0},
           "initial": {"law": "von_mises", "mu": [0.0, 2.0], "kappa": 3.0, "weights": [0.5, 0.5],
                       "momentum": "gaussian", "momentum_scale": 0.5, "n": 10},
           "run": {"t0": 0.0, "steps": 4}, "solver": {"kind": "pde", "grid": [64, 80], "momentum_max": 5.0}}
    run = meanfield.Run(cfg)

    def steps():
        system = run.make_system()
        run.integrator.reset()
        for k in range(3):
            system.step(run.integrator, run.schedule, 0.05 * k, 0.05)
        return [system.density.copy()]

    _same_on_1_and_2_threads(steps)


@pytest.mark.parametrize("normalization", ["post_ln", "pre_ln", "peri_ln"])
def test_sphere(normalization):
    d = 3
    n = 1100
    p = {"name": "sphere", "d": d, "beta": 2.0, "normalization": normalization}
    fo = make_model({**p, "dynamics": "first_order"})
    X, Y = _state(n, d, 5)
    if normalization == "post_ln":
        X /= np.linalg.norm(X, axis=1, keepdims=True)

    def run():
        out = [fo.first_order(X, 0.0)]
        X2 = X.copy()
        fo.combine_first_order(X2, 0.0, 1.0, 0.01, out=X2)
        fo.project(X2, None)
        theta = np.empty_like(X)
        sphere.directions(X, theta)
        r = np.empty(n)
        sphere.norms_into(X, r)
        return [*out, X2, theta, r, fo.constraint_errors(X2), fo.energies(X, None)["energy"]]

    _same_on_1_and_2_threads(run, fo, n)
    if normalization != "post_ln":
        return
    acc = make_model({**p, "dynamics": "accelerated"})
    Xa, Ya = X.copy(), Y.copy()
    acc.check_state(Xa, Ya)  # retract_tangent

    def run_acc():
        X2, Y2 = Xa.copy(), Ya.copy()
        acc.combine_hamiltonian(X2, Y2, 0.0, 1.0, 0.01, 0.9, 0.01, out_x=X2, out_y=Y2)
        acc.project(X2, Y2)
        e = acc.energies(Xa, Ya)
        return [*acc.hamiltonian_field(Xa, Ya, 0.0), X2, Y2, acc.constraint_errors(X2, Y2),
                [e[k] for k in ("energy", "kinetic")]]

    _same_on_1_and_2_threads(run_acc, acc, n)


@pytest.mark.parametrize("name, p", [
    ("sphere", {"d": 3, "beta": 2.0, "normalized": False, "causal": True, "normalization": "peri_ln"}),
    ("softmax", {"d": 2, "A": [[0.5, 0.2], [0.1, 0.4]], "Q": "identity", "normalized": True})])
def test_jacobian(name, p):
    """Dense Jacobians (no serial threshold: each of their rows costs O(N d^2)); 40 rows = 3 tasks."""
    model = make_model({"name": name, "dynamics": "first_order", **p})
    X, _ = _state(40, p["d"], 9)
    _same_on_1_and_2_threads(lambda: [model.jacobian_first_order(X, 0.0)])


def test_fourier_harmonics():
    """The S^2 harmonic sums (summation = "fourier", d = 3) split work by fixed chunks of tokens."""
    n = 1100  # two chunks
    X, Y = _state(n, 3, 6)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y -= np.einsum("ij,ij->i", X, Y)[:, None] * X
    p = {"name": "sphere", "d": 3, "beta": 3.0, "summation": "fourier"}

    def run():  # fresh models: the backend keeps the sums of a state it has seen
        fo = make_model({**p, "dynamics": "first_order"})
        acc = make_model({**p, "dynamics": "accelerated"})
        out = [fo.first_order(X, 0.0), *acc.hamiltonian_field(X, Y, 0.0)]
        assert fo.attention._fourier.last["path"] == "harmonics"
        return out

    _same_on_1_and_2_threads(run)


@pytest.mark.parametrize("causal", [True, False])
def test_network_heads(tmp_path, causal):
    """Multi-head attention of a network from weights (runs of (head, block) items on numba's thread
    count of Python threads: meanfield._kernels.workers.in_workers)."""
    from meanfield.models.weights import save_weights

    rng = np.random.default_rng(12)
    L, H, dh, hid = 1, 2, 4, 8
    d = H * dh
    w = {"ln1_g": 1 + rng.random((L, d)), "ln1_b": rng.standard_normal((L, d)),
         "ln2_g": 1 + rng.random((L, d)), "ln2_b": rng.standard_normal((L, d)),
         **{f"W_{c}": rng.standard_normal((L, H, dh, d)) / 3 for c in "qkv"},
         **{f"b_{c}": rng.standard_normal((L, H, dh)) for c in "qkv"},
         "W_o": rng.standard_normal((L, d, H, dh)) / 3, "b_o": rng.standard_normal((L, d)),
         "W1": rng.standard_normal((L, hid, d)), "b1": rng.standard_normal((L, hid)),
         "W2": rng.standard_normal((L, d, hid)), "b2": rng.standard_normal((L, d))}
    save_weights(str(tmp_path / "w.npz"), w)
    model = make_model({"name": "softmax", "weights": str(tmp_path / "w.npz"), "causal": causal})
    n = model.serial_below + 6
    X, _ = _state(n, d, 13)
    _same_on_1_and_2_threads(lambda: [model.first_order(X, 0.0)], model, n)


def test_mlp_activation():
    """The fused bias + gelu_tanh of a network's MLP (one prange index per token), above its serial size."""
    from meanfield._kernels.activations import bias_gelu_tanh

    rng = np.random.default_rng(14)
    U = 3 * rng.standard_normal((_config.TOKENWISE_SERIAL_BELOW // 32 + 5, 32))
    b = rng.standard_normal(32)

    def run():
        W = U.copy()
        bias_gelu_tanh(W, b)
        return [W]

    _same_on_1_and_2_threads(run)


def test_layer_norm():
    """A network's LayerNorm (one prange index per token)."""
    from meanfield._kernels.layernorm import layer_norm_rows

    rng = np.random.default_rng(15)
    X = 2 + 3 * rng.standard_normal((_config.TOKENWISE_SERIAL_BELOW // 32 + 5, 32))
    g, b = rng.standard_normal(32), rng.standard_normal(32)

    def run():
        out = np.empty_like(X)
        layer_norm_rows(X, g, b, 1e-5, out)
        return [out]

    _same_on_1_and_2_threads(run)
