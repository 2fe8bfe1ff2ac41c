"""The bilinear flow map (docs/models.md §2) as a pde run: exact mean-field solution for any initial law."""

import h5py
import numpy as np
import pytest
from conftest import interrupt_and_resume

import meanfield
from meanfield.errors import ParameterError
from meanfield.pde.bilinear_flow import initial_moments, push_forward

pytestmark = pytest.mark.usefixtures("one_thread")

D = 3
MODEL = {"name": "bilinear", "d": D, "A": [[1.0, 0.3, 0.0], [-0.1, 0.8, 0.2], [0.0, 0.1, 1.2]],
         "Q": [[1.0, 0.2, 0.0], [0.2, 2.0, -0.3], [0.0, -0.3, 0.7]], "m": [0.3, -0.2, 0.5]}


def config(dynamics, integrator, h, steps, initial, kind="particles", damping=None, save_every=None):
    return {"model": {**MODEL, "dynamics": dynamics},
            "damping": damping or ({"schedule": "nesterov", "r": 3.0} if dynamics == "accelerated"
                                   else {"schedule": "none"}),
            "integrator": {"name": integrator, "h": h},
            "initial": dict(initial),
            "run": {"t0": 1.0, "steps": steps, "save_every": save_every or steps},
            "output": {"save": ["x", "y"]},
            "solver": {"kind": kind}}


def skewed_sample(tmp_path, n=300, seed=4):
    """Student-t positions (dof 5) and momenta y = S x + b + centred exponential noise (skewed)."""
    rng = np.random.default_rng(seed)
    scale = np.array([[1.0, 0.0, 0.0], [0.4, 0.7, 0.0], [0.0, -0.2, 0.5]])
    x = 0.3 + (rng.standard_normal((n, D)) / np.sqrt(rng.chisquare(5, n) / 5)[:, None]) @ scale.T
    S = np.array([[0.2, 0.1, 0.0], [0.0, -0.3, 0.1], [0.1, 0.0, 0.1]])  # not symmetric
    y = x @ S.T + 0.2 + rng.exponential(0.5, (n, D)) - 0.5
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return {"law": "file", "path": str(tmp_path / "x.npy"), "momentum": "file",
            "momentum_path": str(tmp_path / "y.npy")}, x, y


@pytest.mark.parametrize("integrator", ["exp_euler", "tao2", "rk4"])
def test_particles_equal_the_pushed_forward_sample_of_a_non_elliptical_law(tmp_path, integrator):
    initial, x0, y0 = skewed_sample(tmp_path)
    parts = meanfield.Run(config("accelerated", integrator, 0.05, 60, initial)).simulate()
    flow = meanfield.Run(config("accelerated", integrator, 0.05, 60, initial, kind="pde")).simulate()
    Phi = flow["flow_map"][-1]
    x, y = push_forward(Phi, flow["flow_shift"][-1], x0, y0)
    scale = max(np.abs(x).max(), np.abs(y).max())
    assert np.abs(x - parts.x).max() < 1e-12 * scale
    assert np.abs(y - parts.y).max() < 1e-12 * scale
    # the run moved the particles well away from the identity map
    assert np.abs(Phi - np.eye(2 * D)).max() > 0.1
    # mean-field energies and moments are those of the particles
    for name in ("energy", "kinetic", "potential", "mean", "cov", "Mxy", "dissipation_residual"):
        np.testing.assert_allclose(flow[name], parts[name], rtol=1e-11, atol=1e-12, err_msg=name)


def test_flow_map_converges_at_the_integrators_order(tmp_path):
    initial, x0, y0 = skewed_sample(tmp_path)
    finals = {}
    for steps in (20, 40, 80, 640):
        res = meanfield.Run(config("accelerated", "rk4", 2.0 / steps, steps, initial, kind="pde")).simulate()
        finals[steps] = np.hstack([res["flow_map"][-1], res["flow_shift"][-1][:, None]])
    errs = [np.abs(finals[s] - finals[640]).max() for s in (20, 40, 80)]
    slopes = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(slopes - 4.0) < 0.3), (errs, slopes)


def test_first_order_flow_map_moves_particles_linearly(tmp_path):
    initial, x0, _ = skewed_sample(tmp_path)
    initial = {k: v for k, v in initial.items() if not k.startswith("momentum")}
    parts = meanfield.Run(config("first_order", "heun", 0.05, 40, initial)).simulate()
    flow = meanfield.Run(config("first_order", "heun", 0.05, 40, initial, kind="pde")).simulate()
    U = flow["flow_map"][-1]
    assert U.shape == (D, D) and "flow_shift" not in flow
    x, y = push_forward(U, None, x0)
    assert y is None and np.abs(x - parts.x).max() < 1e-12 * np.abs(parts.x).max()
    np.testing.assert_allclose(flow["energy"], parts["energy"], rtol=1e-12)


def test_affine_momenta_reduce_to_the_moment_ode():
    """Population moments of a Gaussian law with y = S x + b: the moment ODE of docs/models.md §2."""
    initial = {"law": "gaussian", "mean": [0.5, 0.0, -0.2], "cov": [[1.0, 0.2, 0.0], [0.2, 0.5, 0.1],
                                                                    [0.0, 0.1, 0.8]],
               "momentum": "affine", "S": [[0.1, 0.05, 0.0], [0.05, -0.2, 0.0], [0.0, 0.0, 0.3]],
               "b": [0.1, 0.0, -0.1]}
    errs = []
    for steps in (40, 80):
        cfg = config("accelerated", "rk4", 2.0 / steps, steps, initial, kind="pde", save_every=5)
        cfg["diagnostics"] = {"moment_ode": True}
        res = meanfield.Run(cfg).simulate()
        errs.append(max(res["ode_error_cov"].max(), res["ode_error_mean"].max()))
    assert errs[1] < 2e-7, errs
    assert 12 < errs[0] / errs[1] < 20, errs  # order 4: a factor 16 per halving


@pytest.mark.parametrize("law, extra", [
    ("gaussian", {}),
    ("student_t", {"dof": 7.0}),
    ("uniform_ellipsoid", {}),
    ("elliptical", {"radial": "gamma", "radial_args": [2.0]}),
    ("sphere_uniform", {}),
])
def test_population_moments_match_large_samples(law, extra):
    section = {"law": law, "n": 400_000, "seed": 2, "momentum": "gaussian", "momentum_scale": 0.7, **extra}
    if law != "sphere_uniform":
        section.update(mean=[0.5, -0.3, 0.1], cov=[[1.0, 0.3, 0.0], [0.3, 0.6, 0.1], [0.0, 0.1, 0.4]])
    mean, second = initial_moments(section, D, True)
    x, y = meanfield.initial.initial_state(section, D, True)
    z = np.hstack([x, y])
    assert np.abs(mean - z.mean(axis=0)).max() < 0.02
    assert np.abs(second - z.T @ z / len(z)).max() < 0.05 * np.abs(second).max()


def test_pde_run_file_layout_and_bit_identical_resume(tmp_path):
    initial = {"law": "student_t", "dof": 6.0, "mean": [0.5, 0.0, 0.2], "momentum": "gaussian",
               "momentum_scale": 0.4}
    cfg = config("accelerated", "exp_euler", 0.02, 60, initial, kind="pde", save_every=7)
    full = meanfield.Run(cfg).simulate(str(tmp_path / "full.h5"))
    with h5py.File(full.path) as f:
        assert f["tasks/flow_map"].shape == (10, 2 * D, 2 * D)
        assert f["tasks/flow_shift"].shape == (10, 2 * D)
        for name in ("energy", "kinetic", "potential", "mean", "cov", "dissipation_residual"):
            assert name in f["tasks"], name
        assert "x" not in f["tasks"] and "flow_x" in f["checkpoint"]
        assert "energy_infimum" not in f.attrs  # gaussian momenta: positions do not move linearly

    path = str(tmp_path / "cut.h5")
    res = interrupt_and_resume(cfg, path, at=25)
    assert np.array_equal(res.state["flow_x"], full.state["flow_x"])
    tr = meanfield.load(path)
    assert tr.attrs["status"] == "finished"
    assert np.array_equal(tr["flow_map"][-1], full["flow_map"][-1])
    assert np.array_equal(tr["energy"][-1], full["energy"][-1])


@pytest.mark.parametrize("model, solver, key", [
    ({"name": "sphere", "d": 3, "dynamics": "first_order"}, {"kind": "pde"}, "solver.kind"),
    ({**MODEL, "dynamics": "accelerated", "causal": True}, {"kind": "pde"}, "solver.kind"),
    ({**MODEL, "dynamics": "accelerated"}, {"kind": "fluid"}, "solver.kind"),
    ({**MODEL, "dynamics": "accelerated"}, {"kind": "pde", "grid": 1}, "solver.grid"),
    ({**MODEL, "dynamics": "accelerated"}, {"kind": "pde", "domain": [2.0, -2.0]}, "solver.domain"),
    ({**MODEL, "dynamics": "accelerated"}, {"kind": "pde", "momentum_max": -1.0}, "solver.momentum_max"),
    ({**MODEL, "dynamics": "accelerated"}, {"kind": "pde", "cells": 3}, "solver.cells"),
])
def test_bad_solver_input_names_the_key(model, solver, key):
    cfg = config("accelerated", "rk4", 0.1, 2, {"law": "gaussian", "n": 5}, kind="pde")
    cfg["model"] = model
    cfg["solver"] = solver
    with pytest.raises(ParameterError) as err:
        meanfield.Run(cfg)
    assert err.value.key == key


def test_student_t_without_a_second_moment_is_an_input_error():
    cfg = config("accelerated", "rk4", 0.1, 2, {"law": "student_t", "dof": 2.0}, kind="pde")
    with pytest.raises(ParameterError) as err:
        meanfield.Run(cfg)
    assert err.value.key == "initial.dof"


@pytest.mark.slow
def test_particles_approach_the_population_flow_like_one_over_sqrt_n():
    """Particles sampled from a Student t law (gaussian momenta) vs the flow of the population law."""
    initial = {"law": "student_t", "dof": 8.0, "mean": [0.5, 0.0, 0.2], "momentum": "gaussian",
               "momentum_scale": 0.5}
    flow = meanfield.Run(config("accelerated", "rk4", 0.1, 10, initial, kind="pde")).simulate()
    rms = {}
    for n in (1000, 100_000):
        errs = []
        for seed in range(8):
            cfg = config("accelerated", "rk4", 0.1, 10, {**initial, "n": n, "seed": seed})
            res = meanfield.Run(cfg).simulate()
            errs.append(np.abs(res["cov"][-1] - flow["cov"][-1]).max())
        rms[n] = float(np.sqrt(np.mean(np.square(errs))))
    ratio = rms[1000] / rms[100_000]
    assert 4 < ratio < 25, (rms, ratio)  # sqrt(100) = 10
