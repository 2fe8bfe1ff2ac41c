"""Run files for analysts: ``to_xarray()`` and HDF5 dimension scales (also across resume)."""

import sys

import h5py
import numpy as np
import pytest

import meanfield
from meanfield.resume import resume_run

xr = pytest.importorskip("xarray")


def _cfg(**run):
    cfg = {"model": {"d": 2, "Q": [[1.0, 0.0], [0.0, 2.0]]}, "damping": {"schedule": "constant", "a": 1.0},
           "integrator": {"name": "ab2", "h": 0.05}, "initial": {"n": 16, "momentum": "affine"},
           "run": {"steps": 12, "save_every": 3}, "diagnostics": {"moment_ode": True}}
    cfg["run"].update(run)
    return cfg


def test_to_xarray_dims_and_coords(tmp_path):
    path = str(tmp_path / "a.h5")
    res = meanfield.Run(_cfg()).simulate(path)
    tr = meanfield.load(path)
    ds = tr.to_xarray()
    T = len(tr.t)
    assert ds.sizes == {"sim_time": T, "particle": 16, "component": 2, "component2": 2}
    np.testing.assert_array_equal(ds.indexes["sim_time"].values, tr.t)
    for name in ("iteration", "oracle_calls", "wall_time"):
        assert ds[name].dims == ("sim_time",)
        np.testing.assert_array_equal(ds[name].values, tr.scales[name])
    assert ds["x"].dims == ("sim_time", "particle", "component")
    assert ds["y"].dims == ("sim_time", "particle", "component")
    assert ds["mean"].dims == ("sim_time", "component")
    assert ds["cov"].dims == ("sim_time", "component", "component2")
    assert ds["ode_cov"].dims == ("sim_time", "component", "component2")
    assert ds["energy"].dims == ("sim_time",)
    assert set(ds.data_vars) == set(tr.tasks)
    for name, v in tr.tasks.items():
        np.testing.assert_array_equal(ds[name].values, v)
    # selection by time works, and the in-memory result gives the same dataset
    t_mid = float(tr.t[2])
    np.testing.assert_array_equal(ds.x.sel(sim_time=t_mid).values, tr["x"][2])
    mem = res.to_xarray()
    assert mem.sizes == ds.sizes and mem["x"].dims == ds["x"].dims
    np.testing.assert_array_equal(mem["x"].values, ds["x"].values)
    np.testing.assert_array_equal(mem.indexes["sim_time"].values, tr.t)
    assert '"ab2"' in ds.attrs["config"] and ds.attrs["status"] == "finished"


def test_to_xarray_without_xarray_says_how_to_install(tmp_path, monkeypatch):
    path = str(tmp_path / "a.h5")
    meanfield.Run(_cfg()).simulate(path)
    monkeypatch.setitem(sys.modules, "xarray", None)
    with pytest.raises(ImportError, match=r"meanfield\[xarray\]"):
        meanfield.load(path).to_xarray()


def test_dimension_scales_attached_and_kept_across_resume(tmp_path):
    path = str(tmp_path / "r.h5")
    ref = str(tmp_path / "ref.h5")
    meanfield.Run(_cfg(steps=30, max_wall_time=1e-9)).simulate(path)
    assert meanfield.load(path).attrs["status"].startswith("stopped")
    resume_run(path, overrides=["run.max_wall_time=100"])
    meanfield.Run(_cfg(steps=30)).simulate(ref)
    with h5py.File(path, "r") as f:
        st = f["scales/sim_time"]
        assert h5py.h5ds.is_scale(st.id)
        for group in ("tasks", "scales"):
            for name, ds in f[group].items():
                if name == "sim_time":
                    continue
                assert ds.dims[0].label == "sim_time"
                assert ds.dims[0][0].name == "/scales/sim_time"
                assert ds.shape[0] == st.shape[0]
    a, b = meanfield.load(path), meanfield.load(ref)
    # the stopped run also saved the state it stopped at; every save of the reference is there
    assert set(b.t) <= set(a.t) and a.t[-1] == b.t[-1]
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert a.to_xarray().sizes["sim_time"] == len(a.t)


def test_pde_runs_name_their_grid_and_phase_axes():
    """A grid run's density has the grid's axes (cell centres as coordinates); a flow map acts on phase space."""
    circle = {"model": {"name": "sphere", "dynamics": "first_order", "d": 2, "beta": 2.0},
              "solver": {"kind": "pde", "grid": 64}, "integrator": {"name": "heun", "h": 0.01},
              "initial": {"law": "von_mises", "mu": 0.0, "kappa": 2.0}, "run": {"steps": 4, "save_every": 2}}
    ds = meanfield.Run(circle).simulate().to_xarray()
    assert ds["density"].dims == ("sim_time", "theta") and ds.sizes["theta"] == 64
    assert np.all(np.diff(ds["theta"].values) > 0)
    mass = (ds["density"].sum("theta") * (2 * np.pi / 64)).values
    assert np.allclose(mass, 1.0, atol=1e-12)
    flow = {"model": {"name": "bilinear", "dynamics": "accelerated", "d": 2}, "solver": {"kind": "pde"},
            "integrator": {"name": "rk4", "h": 0.05}, "damping": {"schedule": "constant", "a": 1.0},
            "initial": {"law": "gaussian", "momentum": "gaussian"}, "run": {"steps": 4, "save_every": 2}}
    ds = meanfield.Run(flow).simulate().to_xarray()
    assert ds["flow_map"].dims == ("sim_time", "phase", "phase2") and ds.sizes["phase"] == 4
    assert ds["flow_shift"].dims == ("sim_time", "phase")
