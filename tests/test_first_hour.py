"""A new user's first hour (issue 25): walls hit right after ``meanfield init``, the Python API,
messages pointing at the wrong place, compare/plot across unrelated runs, figures and sweeps.

Each test failed before its fix.
"""

import os
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from meanfield_cli.main import cli
from meanfield_cli.templates import TEMPLATES

import meanfield
from meanfield.errors import ParameterError

from test_cli import SMALL  # the small bilinear parameter file of the CLI tests (n = 64, t1 = 2)

#: The bilinear template made small and short (what a user has after ``meanfield init > p.toml``).
TEMPLATE = TEMPLATES["bilinear"].replace("n = 1000", "n = 32").replace("t1 = 61.0", "t1 = 1.5")

#: SMALL in one dimension (another problem: its energies have another floor).
ONE_D = (SMALL.replace("d = 2", "d = 1").replace("[[1.0, 0.0], [0.0, 2.0]]", "[[1.0]]")
         .replace("m = [0.5, -0.5]", "m = [0.5]").replace("mean = [0.5, 0.0]", "mean = [0.5]")
         .replace("cov = [[1.0, 0.0], [0.0, 1.0]]", "cov = [[1.0]]"))


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_text(SMALL)
    (tmp_path / "t.toml").write_text(TEMPLATE)
    return CliRunner()


def error_line(res, code=2):
    """The one stderr line of a refused command (exit ``code``, no traceback)."""
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("meanfield: error")]
    assert len(lines) == 1, res.output
    return lines[0]


# ---- --set switching a choice ---------------------------------------------------------------

def test_set_switches_the_damping_schedule(runner):
    # the template's damping.r (nesterov) used to stop the run: exit 2 on damping.r
    res = runner.invoke(cli, ["run", "t.toml", "-o", "a.h5", "--set", 'damping.schedule="constant"',
                              "--set", "damping.a=1.0"])
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert len(warn) == 1 and "damping.r" in warn[0] and "nesterov" in warn[0], res.stderr
    assert meanfield.load("a.h5").config["damping"] == {"schedule": "constant", "a": 1.0}


def test_set_switches_the_initial_law_to_a_file(runner):
    np.save("x.npy", np.random.default_rng(0).standard_normal((20, 3)))
    res = runner.invoke(cli, ["run", "t.toml", "-o", "b.h5", "--set", 'initial.law="file"',
                              "--set", 'initial.path="x.npy"'])
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert len(warn) == 1 and "initial.mean" in warn[0] and "initial.cov" in warn[0], res.stderr
    assert meanfield.load("b.h5").tasks["x"].shape[1:] == (20, 3)


def test_set_replaces_a_whole_section(runner):
    res = runner.invoke(cli, ["run", "t.toml", "-o", "c.h5",
                              "--set", 'damping={schedule="constant", a=1.0}'])
    assert res.exit_code == 0, res.output
    assert "warning" not in res.stderr, res.stderr  # nothing dropped behind the user's back
    assert meanfield.load("c.h5").config["damping"] == {"schedule": "constant", "a": 1.0}
    res = runner.invoke(cli, ["run", "t.toml", "-o", "d.h5", "--set", "damping=3"])
    assert "--set damping" in error_line(res)


def test_set_to_the_same_choice_drops_nothing():
    # setting a choice to the value it has is no switch: its keys stay
    cfg = meanfield.io.config.apply_overrides(
        {"damping": {"schedule": "nesterov", "r": 3.0}}, ['damping.schedule="nesterov"'],
        choices=meanfield.run.CHOICES)
    assert cfg["damping"] == {"schedule": "nesterov", "r": 3.0}


# ---- messages that point at the wrong place ------------------------------------------------

def test_bad_set_value_names_the_option(runner):
    line = error_line(runner.invoke(cli, ["run", "p.toml", "--set", "model.d=three"]))
    assert "--set model.d=three" in line and "p.toml" not in line, line


def test_existing_output_names_the_option(runner):
    open("taken.h5", "w").close()
    line = error_line(runner.invoke(cli, ["run", "p.toml", "-o", "taken.h5"]))
    assert "[-o]" in line and "output.path" not in line and "--overwrite" in line, line


def test_no_placeholder_keys_in_messages(runner):
    open("bad.toml", "w").write("x =\n")
    line = error_line(runner.invoke(cli, ["run", "bad.toml"]))
    assert "(syntax)" not in line and "bad.toml" in line and "TOML" in line, line
    line = error_line(runner.invoke(cli, ["info", "p.toml"]))
    assert "(file)" not in line and "p.toml" in line, line


def test_empty_parameter_file_says_what_is_required(runner):
    open("empty.toml", "w").close()
    line = error_line(runner.invoke(cli, ["run", "empty.toml"]))
    assert "empty.toml" in line and "meanfield init" in line, line
    assert "integrator.h" in line and "run.t1" in line, line  # every required key at once


def test_default_grid_is_named_as_a_default():
    cfg = meanfield.io.config.resolve({"solver": {"kind": "pde"}, "integrator": {"h": 0.1},
                                       "run": {"t1": 1.0}})
    with pytest.raises(ParameterError) as err:
        meanfield.Run({"model": {"name": "sphere", "d": 2, "beta": 1.0}, "solver": {"kind": "pde"},
                       "integrator": {"name": "strang", "h": 0.01}, "run": {"t1": 1.5},
                       "initial": {"law": "sphere_uniform", "momentum": "zero"}})
    assert err.value.key == "solver.grid", err.value
    assert "default" in str(err.value) and cfg["solver"]["grid"] == 512, err.value


def test_resume_with_another_models_file_names_the_model(runner):
    assert runner.invoke(cli, ["run", "p.toml", "-o", "a.h5"]).exit_code == 0
    open("s.toml", "w").write(TEMPLATES["sphere"])
    line = error_line(runner.invoke(cli, ["run", "--resume", "s.toml", "-o", "a.h5"]))
    assert "[model.name]" in line, line


def test_moments_plot_of_a_one_dimensional_run(runner):
    open("d1.toml", "w").write(ONE_D)
    assert runner.invoke(cli, ["run", "d1.toml", "-o", "d1.h5"]).exit_code == 0
    res = runner.invoke(cli, ["plot", "--kind", "moments", "d1.h5"])
    assert "--dims" not in res.output
    assert res.exit_code == 0 and os.path.getsize("d1-moments.png") > 0, res.output


def test_huge_mean_leaks_no_lapack_line(runner, capfd):
    res = runner.invoke(cli, ["run", "--set", "initial.mean=1e200", "-o", "big.h5"])
    assert res.exit_code == 2, res.output
    out, err = capfd.readouterr()  # LAPACK writes to the process's own stdout, past click
    assert "DLASCL" not in out + err and "overflow" not in res.output, out + err + res.output


def test_bare_meanfield_prints_usage(runner):
    res = runner.invoke(cli, [])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.stdout and "Commands:" in res.stdout and "error" not in res.output
    assert len(res.stdout.splitlines()) > 5  # the help as help, not squashed into one line


# ---- the Python API ------------------------------------------------------------------------

def _small_cfg(**initial):
    return {"model": {"d": 2}, "integrator": {"h": 0.05}, "run": {"steps": 4},
            "initial": {"n": 16, **initial}}


def test_numpy_integers_are_integers():
    # np.int64 (what arithmetic on numpy arrays gives) used to be refused as "an integer"
    run = meanfield.Run({"model": {"d": np.int64(2)}, "integrator": {"h": np.float32(0.05)},
                         "run": {"steps": np.int32(4), "save_every": np.int64(2)},
                         "initial": {"n": np.int64(50), "seed": np.uint8(3),
                                     "mean": np.array([0.5, 0.0]), "cov": np.eye(2)}})
    res = run.simulate()
    assert res.x.shape == (50, 2) and len(res.t) == 3
    assert isinstance(run.resolved()["initial"]["n"], int)


@pytest.mark.parametrize("progress", [False, True, None, "callable"])
def test_simulate_progress_true_false_or_callable(tmp_path, capsys, progress):
    seen = []
    arg = (lambda done, total: seen.append((done, total))) if progress == "callable" else progress
    res = meanfield.Run(_small_cfg()).simulate(tmp_path / "a.h5", progress=arg)
    assert res.status == "finished"
    assert meanfield.load(tmp_path / "a.h5").attrs["status"] == "finished"
    err = capsys.readouterr().err
    if progress == "callable":
        assert seen[-1] == (4, 4)
    assert ("4/4" in err) == (progress is True), err


def test_simulate_refuses_a_bad_progress_before_writing(tmp_path):
    with pytest.raises(TypeError, match="progress"):
        meanfield.Run(_small_cfg()).simulate(tmp_path / "a.h5", progress="yes")
    assert not (tmp_path / "a.h5").exists()  # no file left behind with status "failed"


def test_load_gives_one_clear_error(tmp_path):
    (tmp_path / "p.toml").write_text(SMALL)
    for path, words in ((tmp_path / "p.toml", "readable meanfield HDF5"),
                        (tmp_path, "existing meanfield HDF5"),
                        (tmp_path / "none.h5", "existing meanfield HDF5")):
        with pytest.raises(ParameterError, match=words) as err:
            meanfield.load(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_api_existing_file_error_names_overwrite_true(tmp_path):
    run = meanfield.Run(_small_cfg())
    run.simulate(tmp_path / "a.h5")
    with pytest.raises(ParameterError) as err:
        run.simulate(tmp_path / "a.h5")
    assert "overwrite=True" in str(err.value) and "--overwrite" not in str(err.value)


def test_overrides_as_a_dict(tmp_path):
    (tmp_path / "p.toml").write_text(SMALL)
    run = meanfield.Run(tmp_path / "p.toml", overrides={"run.t1": 1.5, "initial.n": np.int64(8)})
    assert run.config["run"]["t1"] == 1.5 and run.x0.shape == (8, 2)
    with pytest.raises(ParameterError, match=r"overrides\['model.d'\]"):
        meanfield.Run(tmp_path / "p.toml", overrides={"model.d": "three"})


def test_runresult_repr_is_short():
    res = meanfield.Run(_small_cfg(n=2000)).simulate()
    text = repr(res)
    assert len(text) < 600 and "(2000, 2)" in text and "finished" in text, text


# ---- compare and plot across unrelated runs ---------------------------------------------------

@pytest.fixture
def two_problems(runner):
    open("d1.toml", "w").write(ONE_D)
    for params, out in (("p.toml", "a.h5"), ("d1.toml", "b.h5")):
        assert runner.invoke(cli, ["run", params, "-o", out]).exit_code == 0
    return runner


def test_compare_warns_about_unrelated_runs(two_problems):
    res = two_problems.invoke(cli, ["compare", "a.h5", "b.h5"])
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert len(warn) == 1 and "d = 2" in warn[0] and "d = 1" in warn[0], res.stderr
    res = two_problems.invoke(cli, ["compare", "a.h5", "./a.h5"])
    warn = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert res.exit_code == 0 and len(warn) == 1 and "same file" in warn[0], res.output
    res = two_problems.invoke(cli, ["compare", "a.h5"])
    assert "warning" not in res.stderr, res.stderr


def test_energy_plot_measures_each_problem_from_its_own_floor(two_problems):
    from meanfield.plotting import plot_energy

    fig = plot_energy([meanfield.load("a.h5"), meanfield.load("b.h5")], e_star="auto")
    for line in fig.axes[0].get_lines():
        y = line.get_ydata()
        # the curve reaches (down to the plotting margin) its own lowest energy
        assert y.min() <= 1e-5 * max(1.0, y.max()), (line.get_label(), y.min())


def test_energy_plot_refuses_e_star_above_every_energy(two_problems):
    top = float(np.max(meanfield.load("a.h5")["energy"]))
    line = error_line(two_problems.invoke(cli, ["plot", "a.h5", "--e-star", str(top + 1.0)]))
    assert "--e-star" in line and "a.h5" in line, line
    assert not os.path.exists("a-energy.png")


# ---- a sweep's output.dir is created as run -o's file is: in an existing folder only -----------

def test_sweep_output_dir_in_a_missing_folder_is_refused(runner, tmp_path):
    from test_sweep import BASE

    (tmp_path / "base.toml").write_text(BASE)
    (tmp_path / "sweep.toml").write_text('base = "base.toml"\n[grid]\n"integrator.h" = [0.1]\n'
                                         '[output]\ndir = "typo/deeper/out"\n')
    line = error_line(runner.invoke(cli, ["sweep", "sweep.toml", "--no-progress"]))
    assert "[output.dir]" in line and "sweep.toml" in line, line
    assert not (tmp_path / "typo").exists()  # it used to be created, with all its parents
    # the last level alone may be missing: load_sweep accepts it (run_sweep makes it)
    (tmp_path / "s2.toml").write_text('base = "base.toml"\n[output]\ndir = "new"\n')
    assert meanfield.sweep.load_sweep(str(tmp_path / "s2.toml")).out_dir == str(tmp_path / "new")


# ---- figures --------------------------------------------------------------------------------

def _grid_result(density):
    from meanfield.run import RunResult

    T, M = density.shape
    scales = {"sim_time": np.linspace(0.0, 1.0, T), "iteration": np.arange(T),
              "oracle_calls": np.arange(T), "wall_time": np.zeros(T)}
    return RunResult(scales=scales, tasks={"density": density, "mass": density.sum(axis=1) / M},
                     x=None, y=None, status="finished", oracle_calls=T, wall_time=0.0,
                     config={"model": {"name": "sphere", "dynamics": "first_order", "d": 2},
                             "solver": {"kind": "pde"}, "integrator": {"name": "rk4"}},
                     grid={"theta": np.linspace(-np.pi, np.pi, M, endpoint=False)})


def test_density_plot_of_a_uniform_state_draws_no_roundoff_stripes():
    from meanfield.plotting import plot_density

    rng = np.random.default_rng(0)
    rho = 1 / (2 * np.pi) * (1 + 1e-15 * rng.standard_normal((5, 64)))  # uniform up to round-off
    vmin, vmax = plot_density(_grid_result(rho)).axes[0].collections[0].get_clim()
    assert vmax - vmin > 1e-3 / (2 * np.pi), (vmin, vmax)  # it spanned the 1e-16 round-off
    rho = 1 / (2 * np.pi) * (1 + 0.1 * np.cos(np.linspace(-np.pi, np.pi, 64)))[None].repeat(5, 0)
    vmin, vmax = plot_density(_grid_result(rho)).axes[0].collections[0].get_clim()
    assert (vmin, vmax) == (rho.min(), rho.max())  # a real profile keeps its own limits


def test_particles_plot_has_labels_and_shared_limits(runner):
    from meanfield.plotting import plot_particles

    res = meanfield.Run("p.toml").simulate()
    fig = plot_particles(res)
    axes = fig.axes
    assert all(ax.get_xlabel() == "x[0]" for ax in axes) and axes[0].get_ylabel() == "x[1]"
    assert len({ax.get_xlim() for ax in axes}) == 1  # one scale: tick labels cannot differ
    assert all(len(ax.get_xticks()) <= 6 for ax in axes)


def test_cluster_counts_get_plain_integer_ticks():
    import matplotlib.pyplot as plt

    from meanfield.plotting import count_axis

    fig, ax = plt.subplots()
    ax.step([0, 1, 2], [2, 1, 1])
    count_axis(ax, [2, 1, 1])
    fig.canvas.draw()
    labels = [lab.get_text() for lab in ax.get_yticklabels() if lab.get_text()]
    assert ax.get_yscale() == "linear" and all("10^" not in s and "times" not in s for s in labels)
    assert all(float(v).is_integer() for v in ax.get_yticks())
    plt.close(fig)


def test_example_with_a_missing_out_directory_stops_before_computing(tmp_path):
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples",
                          "accelerated_vs_classical.py")
    res = subprocess.run([sys.executable, script, "--size", "small", "--out",
                          str(tmp_path / "missing" / "fig.png")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "--out" in res.stderr, res.stderr
    assert res.stdout == ""  # nothing computed (it printed every block's gap, then crashed)


def test_bench_writes_outside_the_tracked_results(runner, tmp_path, monkeypatch):
    import subprocess
    import sys

    calls = []
    monkeypatch.setattr(subprocess, "call", lambda args, env=None: calls.append(env) or 0)
    assert runner.invoke(cli, ["bench", "bilinear", "--quick"]).exit_code == 0
    assert calls[-1]["MEANFIELD_BENCH_OUT"] == str(tmp_path / "bench-results")
    assert runner.invoke(cli, ["bench", "bilinear", "--update-results"]).exit_code == 0
    assert calls[-1].get("MEANFIELD_BENCH_OUT") == os.environ.get("MEANFIELD_BENCH_OUT")
    # the scripts' save_json follows the variable (the tracked file is not touched)
    bench = os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import _common; "
            "print(_common.save_json('bilinear.json', {'n': 1}))")
    out = subprocess.run([sys.executable, "-c", code, bench], capture_output=True, text=True,
                         env={**os.environ, "MEANFIELD_BENCH_OUT": str(tmp_path)}, timeout=120)
    assert out.stdout.strip() == str(tmp_path / "bilinear.json"), out.stderr


# ---- the sphere template's pde run, and E* in meanfield info ---------------------------------

def test_sphere_template_pde_example_moves(runner):
    import re
    import shlex

    open("s.toml", "w").write(TEMPLATES["sphere"].replace("t1 = 20.0", "t1 = 2.0"))
    # the command the template prints, as a user would paste it
    lines = [ln.split("#", 1)[1].strip() for ln in TEMPLATES["sphere"].splitlines()
             if re.match(r"\s+#   \S", ln)]
    args = shlex.split(" ".join(lines).replace("THIS.toml", "s.toml"))
    assert args[:3] == ["meanfield", "run", "s.toml"], args
    res = runner.invoke(cli, args[1:] + ["-o", "pde.h5"])
    assert res.exit_code == 0 and "warning" not in res.stderr, res.output
    rho = meanfield.load("pde.h5")["density"]
    spread = rho.max(axis=1) - rho.min(axis=1)
    assert spread[0] > 0.05 and spread[-1] > 1.5 * spread[0]  # a law that clusters, not a fixed point


def test_pde_run_from_the_uniform_law_warns(runner):
    open("s.toml", "w").write(TEMPLATES["sphere"].replace("t1 = 20.0", "t1 = 0.5"))
    res = runner.invoke(cli, ["run", "s.toml", "--set", "model.d=2", "--set", 'solver.kind="pde"',
                              "-o", "u.h5"])
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert len(warn) == 1 and "stationary" in warn[0] and "von_mises" in warn[0], res.stderr


def test_info_shows_e_star(runner):
    assert runner.invoke(cli, ["run", "p.toml", "-o", "a.h5"]).exit_code == 0
    tr = meanfield.load("a.h5")
    e_star = tr.attrs["energy_infimum"]
    res = runner.invoke(cli, ["info", "a.h5"])
    row = [ln for ln in res.output.splitlines() if ln.startswith("E*")]
    assert len(row) == 1 and f"{e_star:.10g}" in row[0], res.output
    assert f"{tr['energy'][-1] - e_star:.3e}" in row[0]
