"""Defects a newcomer hit on a first trial of the command line (each test failed before its fix)."""

import textwrap

import h5py
import pytest
from click.testing import CliRunner
from meanfield_cli.main import cli

import meanfield

from test_cli import SMALL  # the small bilinear parameter file of the CLI tests (n = 64, t1 = 2)


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_text(SMALL)
    return CliRunner()


# ---- run.max_wall_time is a budget per invocation (batch-queue slots) --------------------------

def test_resume_of_a_wall_time_stop_gets_a_fresh_budget(runner):
    # a run stopped by its wall-time limit; pretend its first slot used 1000 s
    (open("s.toml", "w")).write(SMALL.replace("t1 = 2.0", "t1 = 2.0\nmax_wall_time = 1e-9"))
    assert runner.invoke(cli, ["run", "s.toml", "-o", "s.h5"]).exit_code == 0
    with h5py.File("s.h5", "a") as f:
        f["scales/wall_time"][...] = 1000.0
    # the next slot, with a 60 s budget, must run to the end (it used to stop after one step)
    res = runner.invoke(cli, ["run", "--resume", "s.h5", "--set", "run.max_wall_time=60"])
    assert res.exit_code == 0, res.output
    tr = meanfield.load("s.h5")
    assert tr.attrs["status"] == "finished"
    assert tr.t[-1] == 2.0
    assert tr.scales["wall_time"][-1] > 1000.0  # the file's clock still counts across resumes


def test_a_wall_time_stop_says_so(runner):
    # the summary line used to read like a finished run ("final energy ... at t = 1.02")
    (open("s.toml", "w")).write(SMALL.replace("t1 = 2.0", "t1 = 2.0\nmax_wall_time = 1e-9"))
    res = runner.invoke(cli, ["run", "s.toml", "-o", "s.h5"])
    assert res.exit_code == 0, res.output
    assert "stopped: wall time" in res.output and "--resume s.h5" in res.output, res.output
    res = runner.invoke(cli, ["run", "--resume", "s.h5"])
    assert res.exit_code == 0 and "stopped: wall time" in res.output, res.output
    res = runner.invoke(cli, ["run", "--resume", "s.h5", "--set", "run.max_wall_time=60"])
    assert res.exit_code == 0 and "stopped" not in res.output, res.output


# ---- stdout closed early (`meanfield info out.h5 | head -1`) ---------------------------------

def test_closed_stdout_is_not_a_bad_input(runner):
    import os
    import subprocess
    import sys

    assert runner.invoke(cli, ["run", "p.toml", "-o", "out.h5"]).exit_code == 0
    r, w = os.pipe()
    os.close(r)  # the reader is gone before anything is written: every write fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "meanfield_cli.main", "info", "out.h5"],
                              stdout=w, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(w)
    # it used to say "meanfield: error: Broken pipe" and exit 2 (bad input)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == "", proc.stderr


# ---- [solver] keys a particle run does not use ------------------------------------------------

def test_particle_run_says_it_ignores_grid_keys(runner):
    # solver.grid / domain / momentum_max only shape pde runs; a particle run took them silently
    res = runner.invoke(cli, ["run", "p.toml", "-o", "a.h5", "--set", "solver.grid=64",
                              "--set", "solver.domain=[-1.0, 1.0]"])
    assert res.exit_code == 0, res.output
    warning = [ln for ln in res.output.splitlines() if "warning" in ln]
    assert len(warning) == 1, res.output
    assert "p.toml" in warning[0] and "solver.grid" in warning[0] and "solver.domain" in warning[0]
    res = runner.invoke(cli, ["run", "p.toml", "-o", "b.h5"])
    assert res.exit_code == 0 and "warning" not in res.output, res.output


# ---- what --resume may change: the same list in the help, the guide and the code ---------------

def test_resume_keys_are_listed_everywhere():
    import os
    import re

    from meanfield.resume import RESUMABLE

    help_text = " ".join(CliRunner().invoke(cli, ["run", "--help"]).output.split())
    docs = os.path.join(os.path.dirname(__file__), os.pardir, "docs")
    params = open(os.path.join(docs, "parameters.md")).read()
    section = params[params.index("## What `--resume` may change"):params.index("## Sweep files")]
    started = open(os.path.join(docs, "getting-started.md")).read()
    sentence = " ".join(started[started.index("`--set run.t1=...`"):].split("may extend")[0].split())
    for key in RESUMABLE:
        short = key.split(".")[1]
        assert re.search(rf"\b{short}\b", help_text), (key, help_text)
        assert f"`{key}`" in section, key
        assert f"`{short}`" in sentence or "`--set run.t1=...`" in sentence and short == "t1", (key, sentence)


# ---- the run-file layout of file-format.md names everything a run writes -----------------------

def test_file_format_names_every_attribute_task_and_grid(tmp_path):
    import os
    import re

    from test_cli import SMALL as small
    import tomllib

    base = tomllib.loads(small)
    base["run"] = {"t0": 1.0, "steps": 2}
    sphere = {"model": {"name": "sphere", "dynamics": "accelerated", "d": 2, "beta": 1.0},
              "damping": {"schedule": "constant", "a": 1.0},
              "integrator": {"name": "strang", "h": 0.05},
              "initial": {"law": "von_mises", "n": 16}, "run": {"steps": 2}}
    line = {"model": {"name": "softmax", "dynamics": "accelerated", "d": 1, "A": 0.5, "Q": 1.0},
            "damping": {"schedule": "constant", "a": 1.0},
            "integrator": {"name": "strang", "h": 0.05},
            "initial": {"law": "gaussian", "n": 16, "mean": 0.3, "cov": 0.3,
                        "momentum": "gaussian", "momentum_scale": 0.5},
            "run": {"steps": 2}}
    softmax = {**line, "model": {**line["model"], "d": 2, "A": 0.2},
               "initial": {"law": "gaussian", "n": 16, "momentum": "gaussian"},
               "integrator": {"name": "exp_euler", "h": 0.05}}
    cfgs = {"bil": base, "bil_pde": {**base, "solver": {"kind": "pde"}},
            "sphere": sphere, "sphere_fo": {**sphere, "model": {**sphere["model"], "dynamics": "first_order"},
                                            "integrator": {"name": "euler", "h": 0.05},
                                            "damping": {"schedule": "none"}},
            "circle_fv": {**sphere, "model": {**sphere["model"], "dynamics": "first_order"},
                          "integrator": {"name": "euler", "h": 0.05}, "damping": {"schedule": "none"},
                          "solver": {"kind": "pde", "grid": 64}},
            "circle_kin": {**sphere, "solver": {"kind": "pde", "grid": [64, 65]}},
            "line_kin": {**line, "solver": {"kind": "pde", "grid": [64, 64], "domain": [-4.0, 4.0]}},
            "softmax": softmax}
    doc = open(os.path.join(os.path.dirname(__file__), os.pardir, "docs", "file-format.md")).read()
    layout = doc[doc.index("## One run = one HDF5 file"):doc.index("## Crash safety")]
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", layout))
    missing = set()
    for name, cfg in cfgs.items():
        path = str(tmp_path / f"{name}.h5")
        meanfield.Run(cfg).simulate(path)
        with h5py.File(path, "r") as f:
            names = set(f.attrs) | set(f["tasks"]) | set(f["scales"]) | set(f.get("grid", {})) \
                | set(f["checkpoint"])
        missing |= {f"{name}: {n}" for n in names
                    if n not in words and not (n.startswith("ode_") and "ode_" in layout)}
    assert not missing, sorted(missing)


def test_kinetic_even_momentum_cells_at_rest_is_a_documented_input_error(runner):
    import os

    from test_kinetic import KINETIC_TOML  # the circle's kinetic run of the kinetic tests

    cfg = (KINETIC_TOML.replace('momentum = "gaussian"\nmomentum_scale = 0.6\n', "")
           .replace("momentum_max = MOMENTUM_MAX\n", "").replace("grid = [64, 80]", "grid = [64, 64]"))
    assert "momentum" not in cfg.split("[initial]")[1].split("[run]")[0]  # at rest
    open("k.toml", "w").write(cfg)
    res = runner.invoke(cli, ["run", "k.toml", "-o", "k.h5"])
    assert res.exit_code == 2 and "solver.grid" in res.output and "odd" in res.output, res.output
    doc = open(os.path.join(os.path.dirname(__file__), os.pardir, "docs", "kinetic.md")).read()
    errors = doc[doc.index("## Input errors"):]
    assert "an odd number of cells" in " ".join(errors.split())
    res = runner.invoke(cli, ["run", "k.toml", "-o", "k.h5", "--set", "solver.grid=[64, 65]"])
    assert res.exit_code == 0, res.output  # the grid the guide suggests


# ---- the default example prints the table the README and the guide show ------------------------

@pytest.mark.slow
def test_default_example_table_is_the_documented_one(runner):
    import os
    import re

    res = runner.invoke(cli, ["run"])
    assert res.exit_code == 0, res.output
    row = re.compile(r"^\s*\d+\s+\S+e[+-]\d+\s+\S+e[+-]\d+\s+\S+$")
    printed = [ln.split() for ln in res.output.splitlines() if row.match(ln)]
    assert len(printed) >= 5, res.output
    top = os.path.join(os.path.dirname(__file__), os.pardir)
    for doc in ("README.md", os.path.join("docs", "getting-started.md")):
        text = open(os.path.join(top, doc)).read()
        shown = [ln.split() for ln in text.splitlines() if row.match(ln)]
        assert shown == printed, (doc, shown, printed)  # every row, in order (none left out)


# ---- the default example with --set overrides ---------------------------------------------------

@pytest.mark.parametrize("override,key", [
    ('model.name="softmax"', "model.name"),          # used to end in an internal error (E* is None)
    ('solver.kind="pde"', "solver.kind"),            # used to end in an internal error (no x0)
    ('model.dynamics="first_order" integrator.name="euler"', "model.dynamics"),
    ("model.Q=0.0", "--set"),                        # no positive definite Q: E* unknown
])
def test_default_example_refuses_overrides_it_cannot_compare(runner, override, key):
    sets = [a for o in override.split() for a in ("--set", o)]
    res = runner.invoke(cli, ["run", "--set", "run.t1=1.5", "--set", "initial.n=40", *sets])
    line = [ln for ln in res.output.splitlines() if "error" in ln]  # (first-order: also its warning)
    assert res.exit_code == 2 and len(line) == 1, res.output
    assert "internal error" not in line[0] and key in line[0], line[0]
    assert not any(name.endswith(".h5") for name in __import__("os").listdir("."))  # nothing written


def test_default_example_says_when_acceleration_loses(runner):
    # at t1 = 3 the first-order gap is smaller: "0.5x lower with acceleration" read as a win
    res = runner.invoke(cli, ["run", "--set", "run.t1=3.0", "--set", "initial.n=200"])
    assert res.exit_code == 0, res.output
    last = res.output.strip().splitlines()[-1]
    assert "higher with acceleration" in last and "lower" not in last, last


# ---- the circle's first-order grid run knows the same E* as its particles ------------------------

def test_circle_grid_run_has_the_sphere_energy_infimum(tmp_path):
    import math

    from meanfield.diagnostics.rates import compare_runs

    cfg = {"model": {"name": "sphere", "dynamics": "first_order", "d": 2, "beta": 2.0},
           "integrator": {"name": "heun", "h": 0.05},
           "initial": {"law": "von_mises", "mu": [0.0, 3.0], "kappa": 2.0, "n": 200},
           "run": {"steps": 20}}
    parts = meanfield.Run(cfg).simulate(str(tmp_path / "p.h5"))
    grid = meanfield.Run({**cfg, "solver": {"kind": "pde", "grid": 128}}).simulate(str(tmp_path / "g.h5"))
    e_star = -0.5 * math.exp(2.0)  # full clustering: the value of the energy at a point mass
    assert meanfield.load(parts.path).attrs["energy_infimum"] == pytest.approx(e_star, rel=1e-15)
    # compare used to fit E* + c t^-p to the grid run instead (a gap of ~1e3 on this run)
    assert meanfield.load(grid.path).attrs["energy_infimum"] == pytest.approx(e_star, rel=1e-15)
    row = compare_runs([meanfield.load(grid.path)], names=["g"])[0]
    assert row["E_star_source"] == "exact infimum" and row["E_star"] == pytest.approx(e_star)


# ---- plot --kind moments prints nothing but "wrote ..." ---------------------------------------

def test_moments_plot_draws_without_matplotlib_chatter(runner, caplog):
    (open("m.toml", "w")).write(SMALL.replace("[output]", "[diagnostics]\nmoment_ode = true\n[output]"))
    assert runner.invoke(cli, ["run", "m.toml", "-o", "mo.h5"]).exit_code == 0
    caplog.set_level("WARNING")
    res = runner.invoke(cli, ["plot", "mo.h5", "--kind", "moments", "-o", "m.png"])
    assert res.exit_code == 0 and res.output.strip() == "wrote m.png", res.output
    # matplotlib used to log "Ignoring fixed x limits to fulfill fixed data aspect ..." on stderr
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("matplotlib")]


# ---- every plot kind is named where a user looks for it ----------------------------------------

def test_plot_kinds_are_listed_in_help_and_guide():
    import os

    from meanfield.plotting import PLOTS

    help_text = " ".join(CliRunner().invoke(cli, ["plot", "--help"]).output.split())
    started = open(os.path.join(os.path.dirname(__file__), os.pardir, "docs", "getting-started.md")).read()
    synopsis = [ln for ln in started.splitlines() if ln.startswith("meanfield plot OUT.h5")]
    assert len(synopsis) == 1
    for kind in PLOTS:
        assert kind in help_text, (kind, help_text)  # it said "... (see meanfield.plotting.PLOTS)"
        assert kind in synopsis[0], (kind, synopsis[0])


# ---- Ctrl-C names the file to resume (the default example writes two) ---------------------------

def test_interrupt_names_the_file_to_resume(runner, monkeypatch):
    import signal

    def interrupt_at_3(done, total):
        if done == 3:
            signal.raise_signal(signal.SIGINT)

    class Bar:  # the CLI's progress callback, replaced by one that presses Ctrl-C at step 3
        def __init__(self, *args):
            pass

        __call__ = staticmethod(interrupt_at_3)

        def close(self):
            pass

    import meanfield_cli.main as main

    monkeypatch.setattr(main, "_Progress", Bar)
    res = runner.invoke(cli, ["run", "p.toml", "-o", "a.h5"])
    assert res.exit_code == 130, res.output
    # it said "... checkpoint written (continue with --resume)" without the file; the default
    # example writes two files and may be interrupted in either
    assert "meanfield run --resume a.h5" in res.output, res.output
    assert meanfield.load("a.h5").attrs["status"] == "interrupted"


# ---- a sweep interrupted while it writes its index leaves no temporary file ---------------------

def test_sweep_index_write_interrupted_leaves_old_index_and_no_temp(tmp_path, monkeypatch):
    import os

    from meanfield.sweep import index as sweep_index

    index = tmp_path / "index.json"
    index.write_text("old")

    def ctrl_c(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        sweep_index._atomic_write(str(index), "new")
    # a Ctrl-C there used to leave index.json.tmp<pid> in the sweep's output directory
    assert sorted(os.listdir(tmp_path)) == ["index.json"] and index.read_text() == "old"


# ---- a kinetic run whose whole mass leaves the box is a numerical failure -----------------------

def test_kinetic_line_losing_all_mass_fails_with_step_and_time(runner):
    from test_kinetic import LINE_TOML  # the line's kinetic run of the kinetic tests

    cfg = (LINE_TOML.replace("GRID", "[64, 64]").replace("h = 0.05", "h = 5.0")
           .replace("steps = 3", "steps = 20"))
    open("k.toml", "w").write(cfg)
    res = runner.invoke(cli, ["run", "k.toml", "-o", "k.h5"])
    # it used to end in "internal error: ZeroDivisionError" (the mean of a zero mass) with exit 1
    assert res.exit_code == 1, res.output
    failed = [ln for ln in res.output.splitlines() if "run failed" in ln]
    assert len(failed) == 1 and "internal error" not in res.output, res.output
    assert "mass" in failed[0] and "step" in failed[0] and "t = " in failed[0], failed[0]
    assert meanfield.load("k.h5").attrs["status"].startswith("failed")


def test_info_lists_the_grid_axes_in_the_order_of_solver_grid(runner):
    from test_kinetic import KINETIC_TOML

    open("k.toml", "w").write(KINETIC_TOML.replace("MOMENTUM_MAX", "4.0"))
    assert runner.invoke(cli, ["run", "k.toml", "-o", "k.h5"]).exit_code == 0
    res = runner.invoke(cli, ["info", "k.h5"])
    # solver.grid = [64, 80] is [theta cells, momentum cells]; info said "momentum 80 cells, theta 64"
    assert "(pde: theta 64 cells, momentum 80 cells)" in res.output, res.output


# ---- compare: a tolerance above the initial gap, an E* above the energies -----------------------

@pytest.fixture
def two_runs(runner):
    """An accelerated run and its first-order euler baseline (the small bilinear problem)."""
    assert runner.invoke(cli, ["run", "p.toml", "-o", "acc.h5"]).exit_code == 0
    first = (SMALL.replace('dynamics = "accelerated"', 'dynamics = "first_order"')
             .replace('name = "exp_euler"', 'name = "euler"')
             .replace('schedule = "nesterov"\nr = 3.0', 'schedule = "none"'))
    open("f.toml", "w").write("\n".join(ln for ln in first.splitlines() if not ln.startswith("momentum")))
    res = runner.invoke(cli, ["run", "f.toml", "-o", "first.h5"])
    assert res.exit_code == 0, res.output
    return ["acc.h5", "first.h5"]


def test_compare_with_a_tolerance_met_from_the_start(runner, two_runs):
    # every run is within tol at 0 oracle calls: the speed-up 0 / 0 was an internal error
    res = runner.invoke(cli, ["compare", *two_runs, "--tol", "1e3"])
    assert res.exit_code == 0, res.output
    assert "internal error" not in res.output


@pytest.mark.parametrize("e_star", ["10", "0.9"])
def test_compare_refuses_an_e_star_above_a_run_energy(runner, two_runs, e_star):
    # E* = 10 (above every energy) was an internal error; E* between the energies gave negative
    # gaps and gap ratios like 9e8
    res = runner.invoke(cli, ["compare", *two_runs, "--e-star", e_star])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "--e-star" in lines[0] and "lowest" in lines[0], lines[0]
    lowest = min(float(meanfield.load(p)["energy"].min()) for p in two_runs)
    res = runner.invoke(cli, ["compare", *two_runs, "--e-star", repr(lowest)])
    assert res.exit_code == 0, res.output  # the lowest energy itself is a valid E*


def test_animate_refuses_a_dpi_too_large_to_draw(runner):
    assert runner.invoke(cli, ["run", "p.toml", "-o", "a.h5"]).exit_code == 0
    # --dpi 100000 (a 10^6 x 4.2 10^5 pixel frame) was "internal error: MemoryError"
    res = runner.invoke(cli, ["animate", "a.h5", "-o", "a.gif", "--dpi", "100000"])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "--dpi" in lines[0], res.output


# ---- an array the run did not save: a KeyError that says what it has ----------------------------

def test_an_unsaved_array_names_what_the_run_saved(runner):
    (open("ns.toml", "w")).write(SMALL.replace('save = ["x", "y"]', "save = []"))
    assert runner.invoke(cli, ["run", "ns.toml", "-o", "ns.h5"]).exit_code == 0
    for tr in (meanfield.load("ns.h5"), meanfield.Run("ns.toml").simulate()):
        with pytest.raises(KeyError) as exc:
            tr["x"]
        assert exc.value.args[0].startswith("'x' was not saved by this run (add \"x\" to [output] save)")
        with pytest.raises(KeyError) as exc:
            tr["no_such_task"]
        assert "it has tasks [" in exc.value.args[0] and "'energy'" in exc.value.args[0]
        assert "scales [" in exc.value.args[0] and "'sim_time'" in exc.value.args[0]
        assert tr["energy"].shape == tr["sim_time"].shape


# ---- output.save = ["v"] without an MLP velocity saved nothing, silently -------------------------

def test_saving_v_without_an_mlp_velocity_warns(runner):
    (open("v.toml", "w")).write(SMALL.replace('save = ["x", "y"]', 'save = ["x", "v"]'))
    with pytest.warns(UserWarning, match=r'output.save lists "v", which only accelerated blocks with an MLP'):
        meanfield.Run("v.toml")
    res = runner.invoke(cli, ["run", "v.toml", "-o", "v.h5"])
    assert res.exit_code == 0 and 'output.save lists "v"' in res.output


# ---- a run whose initial state is a file resumes from any folder -------------------------------

def test_resume_from_another_folder_finds_the_initial_file(runner, tmp_path, monkeypatch):
    import numpy as np

    (tmp_path / "proj").mkdir()
    np.save(tmp_path / "proj" / "x0.npy", np.random.default_rng(0).standard_normal((64, 2)))
    text = SMALL.replace('law = "gaussian"', 'law = "file"\npath = "x0.npy"')
    text = text.replace("mean = [0.5, 0.0]\n", "").replace("cov = [[1.0, 0.0], [0.0, 1.0]]\n", "")
    (tmp_path / "proj" / "f.toml").write_text(text)
    res = runner.invoke(cli, ["run", "proj/f.toml", "-o", "f.h5", "--set", "run.max_wall_time=1e-9"])
    assert res.exit_code == 0, res.output
    tr = meanfield.load("f.h5")
    assert tr.attrs["status"].startswith("stopped")
    assert tr.config["initial"]["path"] == str(tmp_path / "proj" / "x0.npy")  # recorded absolute
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    res = runner.invoke(cli, ["run", "--resume", str(tmp_path / "f.h5"), "--set", "run.max_wall_time=600"])
    assert res.exit_code == 0, res.output  # it looked for x0.npy in the current folder
    assert meanfield.load(str(tmp_path / "f.h5")).attrs["status"] == "finished"
