"""Grid (pde) runs through the one loop: registry, HDF5 layout, resume, CLI, with a toy solver."""

import os

import h5py
import numpy as np
import pytest
from conftest import interrupt_and_resume
from click.testing import CliRunner
from toy_grid import UpwindCircle

import meanfield
from meanfield.errors import ParameterError
from meanfield.pde import PDE_SOLVERS, GridRun, register_pde

M = 64


@pytest.fixture
def toy_registered():
    saved = dict(PDE_SOLVERS)
    register_pde("sphere", "first_order", GridRun.of(UpwindCircle), d=2)
    yield
    PDE_SOLVERS.clear()
    PDE_SOLVERS.update(saved)


def toy_config(integrator="euler", steps=2 * M, save_every=8, h=None):
    speed = 1.5
    return {"model": {"name": "sphere", "dynamics": "first_order", "d": 2, "beta": speed},
            "integrator": {"name": integrator, "h": h or 2 * np.pi / M / speed},
            "initial": {"law": "sphere_uniform", "n": 100},
            "run": {"t0": 0.0, "steps": steps, "save_every": save_every},
            "solver": {"kind": "pde", "grid": M}}


def test_grid_run_is_an_exact_shift_and_keeps_mass(tmp_path, toy_registered):
    res = meanfield.Run(toy_config()).simulate(str(tmp_path / "g.h5"))
    rho = res["density"]
    assert rho.shape == (2 * M // 8 + 1, M)
    for s, k in enumerate(res["iteration"]):
        assert np.abs(rho[s] - np.roll(rho[0], k)).max() < 1e-13 * rho.max()
    assert np.abs(res["mass"] - 1.0).max() < 1e-13
    assert res.oracle_calls == 2 * M
    with h5py.File(res.path) as f:
        assert f["grid/theta"].shape == (M,)
        assert f["tasks/density"].shape == rho.shape
        assert f["tasks/mass"].shape == (rho.shape[0],)
        assert "density" in f["checkpoint"] and f.attrs["spatial_order"] == 1
    tr = meanfield.load(res.path)
    assert np.array_equal(tr.grid["theta"], res.grid["theta"])


@pytest.mark.parametrize("integrator", ["heun", "rk4"])
def test_existing_integrators_advance_grids_unchanged(integrator, toy_registered):
    res = meanfield.Run(toy_config(integrator, steps=20, save_every=20, h=0.01)).simulate()
    assert res.oracle_calls == 20 * {"heun": 2, "rk4": 4}[integrator]
    assert abs(res["mass"][-1] - 1.0) < 1e-13 and res["min_density"][-1] >= 0


def test_grid_resume_is_bit_identical(tmp_path, toy_registered):
    cfg = toy_config("heun", steps=60, save_every=7, h=0.02)
    full = meanfield.Run(cfg).simulate(str(tmp_path / "full.h5"))

    path = str(tmp_path / "cut.h5")
    res = interrupt_and_resume(cfg, path, at=25)
    assert np.array_equal(res.state["density"], full.state["density"])
    tr = meanfield.load(path)
    assert tr.attrs["status"] == "finished"
    assert np.array_equal(tr["density"][-1], full["density"][-1])
    assert tr.scales["oracle_calls"][-1] == full["oracle_calls"][-1]


@pytest.mark.parametrize("change, key", [
    ({"integrator": {"name": "nag", "h": 0.01}}, "integrator.name"),
    ({"integrator": {"name": "euler", "h": 1.0}}, "integrator.h"),
    ({"run": {"t0": 0.0, "steps": 2, "dtype": "float32"}}, "run.dtype"),
    ({"solver": {"kind": "pde", "grid": [64, 32]}}, "solver.grid"),
])
def test_bad_grid_run_input_names_the_key(change, key, toy_registered):
    cfg = toy_config()
    cfg.update(change)
    with pytest.raises(ParameterError) as err:
        meanfield.Run(cfg)
    assert err.value.key == key


def test_uncovered_dimension_is_an_input_error(toy_registered):
    cfg = toy_config()
    cfg["model"]["d"] = 3
    with pytest.raises(ParameterError, match="sphere/first_order") as err:
        meanfield.Run(cfg)
    assert err.value.key == "solver.kind"


def test_cli_info_plot_compare_take_pde_runs(tmp_path, toy_registered):
    from meanfield_cli.main import cli

    grid = meanfield.Run(toy_config(steps=16)).simulate(str(tmp_path / "grid.h5")).path
    bil = {"model": {"name": "bilinear", "dynamics": "first_order", "d": 2, "Q": [[1.0, 0.0], [0.0, 2.0]],
                     "m": [0.5, 0.2]},
           "integrator": {"name": "euler", "h": 0.05},
           "initial": {"law": "gaussian", "n": 200, "mean": [1.0, 0.5]},
           "run": {"t0": 0.0, "steps": 40, "save_every": 4}}
    parts = meanfield.Run(bil).simulate(str(tmp_path / "parts.h5")).path
    bil["solver"] = {"kind": "pde"}
    flow = meanfield.Run(bil).simulate(str(tmp_path / "flow.h5")).path
    runner = CliRunner()
    out = runner.invoke(cli, ["info", grid])
    assert out.exit_code == 0, out.output
    assert "pde: theta 64 cells" in out.output and "mass" in out.output
    out = runner.invoke(cli, ["info", flow])
    assert out.exit_code == 0 and "exact flow map" in out.output, out.output
    out = runner.invoke(cli, ["plot", grid, "--kind", "density", "-o", str(tmp_path / "d.png")])
    assert out.exit_code == 0 and os.path.getsize(tmp_path / "d.png") > 0, out.output
    out = runner.invoke(cli, ["plot", parts, flow, "-o", str(tmp_path / "e.png")])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["plot", flow, "--kind", "moments", "-o", str(tmp_path / "m.png")])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["plot", flow, "--kind", "density", "-o", str(tmp_path / "x.png")])
    assert out.exit_code == 2 and "density" in out.output, out.output
    out = runner.invoke(cli, ["compare", parts, flow])
    assert out.exit_code == 0, out.output
    rows = {line.split()[0]: line.split()[1] for line in out.output.splitlines() if ".h5" in line.split()[0]}
    assert rows == {"parts.h5": "particles", "flow.h5": "pde"}, out.output
