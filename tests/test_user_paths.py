"""Paths a user can take that used to end in a traceback, a silent wrong answer or a hang.

Every bad input ends in exit 2 and one line naming the key; output files are
never destroyed before the new output is known to be writable.
"""

import hashlib
import os
import stat
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from meanfield_cli.main import cli

import meanfield
from meanfield.errors import ParameterError
from meanfield.io.hdf5 import HDF5Writer, checkpoint_path

from test_cli import SMALL  # the small bilinear parameter file of the CLI tests (n = 64, t1 = 2)


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_text(SMALL)
    return CliRunner()


def one_line_error(res, code=2, *words):
    """Exit ``code``, no traceback, and the whole output is one line containing ``words``."""
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# ---- -o into a missing or unwritable directory ----------------------------------------------

def test_output_into_missing_directory(runner):
    res = runner.invoke(cli, ["run", "p.toml", "-o", "no/such/dir/out.h5"])
    one_line_error(res, 2, "[-o]", "existing directory")


def test_output_into_unwritable_directory(runner):
    # /sys refuses new files even to root (tests may run as root, so chmod proves nothing)
    res = runner.invoke(cli, ["run", "p.toml", "-o", "/sys/meanfield-test.h5"])
    one_line_error(res, 2, "[-o]", "writable")


def test_output_path_directory_in_config(runner, tmp_path):
    os.mkdir("adir")
    res = runner.invoke(cli, ["run", "p.toml", "--set", 'output.path="adir"'])
    one_line_error(res, 2, "output.path", "not a directory")


def test_overwrite_into_unwritable_directory_keeps_old_file(runner, monkeypatch):
    assert runner.invoke(cli, ["run", "p.toml", "-o", "old.h5"]).exit_code == 0
    before = digest("old.h5")

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    res = runner.invoke(cli, ["run", "p.toml", "-o", "old.h5", "--overwrite",
                              "--set", "run.t1=3.0"])
    one_line_error(res, 2, "writable")
    assert digest("old.h5") == before


def test_replacing_writer_leaves_old_file_until_first_save(tmp_path):
    old = tmp_path / "r.h5"
    meanfield.Run(_cfg(steps=4)).simulate(str(old))
    before = digest(old)
    w = HDF5Writer(str(old), {"new": True}, mode="w", replace=True)
    assert digest(old) == before, "the old file changed before the new run had a save"
    rec = {"scales": {"sim_time": 0.0, "iteration": 0, "oracle_calls": 0, "wall_time": 0.0},
           "tasks": {"energy": 1.0}}
    w.save(rec)
    # after the first save the new file is in place (and readable while still being written)
    assert meanfield.load(str(old)).config == {"new": True}
    w.close()
    assert sorted(os.listdir(tmp_path)) == ["r.h5"]


def test_replaced_file_has_the_permissions_of_a_new_file(tmp_path):
    """--overwrite writes through a temporary file: the result is not left at mkstemp's 0600."""
    fresh, old = tmp_path / "fresh.h5", tmp_path / "old.h5"
    rec = {"scales": {"sim_time": 0.0, "iteration": 0, "oracle_calls": 0, "wall_time": 0.0},
           "tasks": {"energy": 1.0}}
    for path, replace in ((fresh, False), (old, False), (old, True)):
        w = HDF5Writer(str(path), {}, mode="w", replace=replace)
        w.save(rec)
        w.close()
    assert stat.S_IMODE(os.stat(old).st_mode) == stat.S_IMODE(os.stat(fresh).st_mode)


def test_replacing_writer_closed_before_first_save_keeps_old(tmp_path):
    old = tmp_path / "r.h5"
    meanfield.Run(_cfg(steps=4)).simulate(str(old))
    before = digest(old)
    w = HDF5Writer(str(old), {"new": True}, mode="w", replace=True)
    w.close()
    assert digest(old) == before
    assert sorted(os.listdir(tmp_path)) == ["r.h5"]


def test_overwrite_removes_old_sidecar_only_at_replace(tmp_path):
    old = tmp_path / "r.h5"
    meanfield.Run(_cfg(steps=4)).simulate(str(old))
    side = checkpoint_path(str(old))
    with open(side, "wb") as fh:
        fh.write(b"old run's checkpoint")
    w = HDF5Writer(str(old), {"new": True}, mode="w", replace=True)
    assert os.path.exists(side)
    w.save({"scales": {"sim_time": 0.0, "iteration": 0, "oracle_calls": 0, "wall_time": 0.0},
            "tasks": {"energy": 1.0}})
    assert not os.path.exists(side)
    w.close()


def test_killed_overwrite_run_leaves_readable_new_file(tmp_path):
    """SIGKILL an --overwrite run after its first saves: the file is the new run's, readable."""
    from meanfield.io.hdf5 import read_checkpoint

    (tmp_path / "p.toml").write_text(SMALL.replace("t1 = 2.0", "t1 = 400.0")
                                     .replace("n = 64", "n = 3000").replace("h = 0.02", "h = 0.005"))
    out = str(tmp_path / "o.h5")
    meanfield.Run(str(tmp_path / "p.toml"), ["run.t1=1.1"]).simulate(out)
    env = dict(os.environ, MEANFIELD_CHECKPOINT_INTERVAL="0.05")
    proc = subprocess.Popen([sys.executable, "-m", "meanfield_cli.main", "run", "p.toml", "-o",
                             "o.h5", "--overwrite", "--no-progress", "--threads", "1"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # the writer holds the HDF5 lock: watch its sidecar checkpoint, which appears only once the
    # new file has replaced the old one (the sidecar belongs to the final path)
    deadline = time.time() + 120
    it = 0
    while time.time() < deadline and proc.poll() is None and it < 20:
        time.sleep(0.05)
        if os.path.exists(checkpoint_path(out)):
            try:
                it = int(read_checkpoint(out)["iteration"])
            except (OSError, ParameterError, KeyError):
                continue
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert it >= 20, proc.stderr.read().decode()
    tr = meanfield.load(out)
    assert tr.config["run"]["t1"] == 400.0
    assert len(tr.t) >= 4 and np.all(np.isfinite(tr["energy"]))
    assert [f for f in os.listdir(tmp_path) if f.endswith(".partial")] == []


# ---- info / plot on a run file without saves; plot output paths ------------------------------

@pytest.fixture
def empty_run(runner):
    w = HDF5Writer("empty.h5", meanfield.Run(_cfg(steps=2)).resolved())
    w.set_status("failed: at step 0")
    w.close()
    return "empty.h5"


def test_info_on_run_without_saves(runner, empty_run):
    res = runner.invoke(cli, ["info", empty_run])
    assert res.exit_code == 0, res.output
    assert "saves" in res.output and "none" in res.output


@pytest.mark.parametrize("kind", ["energy", "moments", "particles"])
def test_plot_on_run_without_saves(runner, empty_run, kind):
    res = runner.invoke(cli, ["plot", empty_run, "--kind", kind])
    one_line_error(res, 2, "save")


def test_plot_output_missing_directory_and_format(runner):
    assert runner.invoke(cli, ["run", "p.toml", "-o", "r.h5"]).exit_code == 0
    one_line_error(runner.invoke(cli, ["plot", "r.h5", "-o", "missing/dir/x.png"]), 2, "-o",
                   "existing directory")
    one_line_error(runner.invoke(cli, ["plot", "r.h5", "-o", "fig.xyz"]), 2, "-o", ".png")
    res = runner.invoke(cli, ["plot", "r.h5", "-o", "fig.svg"])
    assert res.exit_code == 0 and os.path.getsize("fig.svg") > 0


def test_info_rows_aligned(runner):
    assert runner.invoke(cli, ["run", "p.toml", "-o", "r.h5"]).exit_code == 0
    res = runner.invoke(cli, ["info", "r.h5"])
    cols = {len(ln) - len(ln[len(ln.split()[0]):].lstrip()) for ln in res.output.splitlines()}
    assert len(cols) == 1, res.output  # every value starts in the same column


# ---- compare --------------------------------------------------------------------------------

@pytest.mark.parametrize("args,key", [
    (["--window", "5:1"], "--window"), (["--window", "1:1"], "--window"),
    (["--window", "nan:2"], "--window"), (["--window", "1:2:3"], "--window"),
    (["--e-star", "nan"], "--e-star"), (["--e-star", "inf"], "--e-star"),
    (["--tol", "inf"], "--tol"), (["--out", "t.txt"], "--out"),
    (["--out", "missing/t.csv"], "--out"),
    (["--window", "100:200"], "--window"), (["--window", "1.5:1.55"], "--window"),
])
def test_compare_rejects_bad_options(runner, args, key):
    assert runner.invoke(cli, ["run", "p.toml", "-o", "r.h5"]).exit_code == 0
    one_line_error(runner.invoke(cli, ["compare", "r.h5", *args]), 2, key)


def _cfg(**run):
    cfg = {"model": {"d": 2}, "integrator": {"h": 0.05}, "initial": {"n": 20},
           "run": {"steps": 4}}
    cfg["run"].update(run)
    return cfg


# ---- step sizes that cannot advance time; the step cap ----------------------------------------

@pytest.mark.parametrize("sets,key", [
    (["integrator.h=1e-300"], "run.t1"),                      # 6e301 steps: over the cap
    (["integrator.h=5e-324"], "run.t1"),                      # (t1 - t0) / h overflows
    (["integrator.h=1e-300", "run.steps=10", "run.t1=nan"], "run.t1"),
])
def test_tiny_h_rejected(runner, sets, key):
    args = ["run", "p.toml", "-o", "z.h5"]
    for s_ in sets:
        args += ["--set", s_]
    res = runner.invoke(cli, args)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert not os.path.exists("z.h5")


def test_h_below_time_spacing_rejected_with_steps():
    cfg = _cfg(steps=10)
    cfg["run"]["t0"] = 1.0
    cfg["integrator"]["h"] = 1e-300
    with pytest.raises(ParameterError, match=r"integrator\.h.*advances t"):
        meanfield.Run(cfg)


def test_step_cap():
    from meanfield.run import MAX_STEPS

    cfg = _cfg(steps=MAX_STEPS + 1)
    with pytest.raises(ParameterError, match="run.steps.*at most"):
        meanfield.Run(cfg)
    meanfield.Run(_cfg(steps=MAX_STEPS))  # the cap itself is allowed (nothing runs here)


# ---- resume: what may change, and the record of it -------------------------------------------

@pytest.fixture
def stopped(runner):
    """A run stopped by its wall-time limit after a few steps (resumable)."""
    cfg = SMALL.replace("t1 = 2.0", "t1 = 2.0\nmax_wall_time = 1e-9")
    (open("s.toml", "w")).write(cfg)
    res = runner.invoke(cli, ["run", "s.toml", "-o", "s.h5"])
    assert res.exit_code == 0, res.output
    assert meanfield.load("s.h5").attrs["status"].startswith("stopped")
    return "s.h5"


@pytest.mark.parametrize("override,key", [
    ("integrator.h=0.5", "integrator.h"), ("integrator.name=kick_drift", "integrator.name"),
    ("model.causal=true", "model.causal"), ("damping.r=2.0", "damping.r"), ("initial.seed=5", "initial.seed"),
    ('output.save=["x"]', "output.save"), ('run.dtype="float32"', "run.dtype"),
])
def test_resume_refuses_changing_the_dynamics(runner, stopped, override, key):
    before = digest(stopped)
    res = runner.invoke(cli, ["run", "--resume", stopped, "--set", override])
    one_line_error(res, 2, key)
    assert digest(stopped) == before


def test_resume_records_changes(runner, stopped):
    import json

    res = runner.invoke(cli, ["run", "--resume", stopped, "--set", "run.max_wall_time=100",
                              "--set", "run.t1=2.5"])
    assert res.exit_code == 0, res.output
    tr = meanfield.load(stopped)
    assert tr.attrs["status"] == "finished"
    assert tr.config["run"]["t1"] == 2.5 and tr.config["run"]["max_wall_time"] == 100
    assert tr.t[-1] == 2.5
    (entry,) = json.loads(tr.attrs["resume_history"])
    assert entry["changed"] == {"run.t1": [2.0, 2.5], "run.max_wall_time": [1e-9, 100]}
    assert entry["iteration"] >= 1


def test_resume_extends_finished_run_bit_identically(runner):
    cfg = SMALL.replace("t1 = 2.0", "steps = 40")
    open("e.toml", "w").write(cfg)
    assert runner.invoke(cli, ["run", "e.toml", "-o", "a.h5"]).exit_code == 0
    assert runner.invoke(cli, ["run", "--resume", "a.h5", "--set", "run.steps=60"]).exit_code == 0
    assert runner.invoke(cli, ["run", "e.toml", "-o", "b.h5", "--set", "run.steps=60"]).exit_code == 0
    a, b = meanfield.load("a.h5"), meanfield.load("b.h5")
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert a.t[-1] == b.t[-1]
    # a finished run is not resumed without something to extend
    one_line_error(runner.invoke(cli, ["run", "--resume", "b.h5"]), 2, "unfinished")


def test_resume_with_other_parameter_file(runner, stopped):
    other = SMALL.replace("h = 0.02", "h = 0.01")
    open("other.toml", "w").write(other)
    before = digest(stopped)
    res = runner.invoke(cli, ["run", "other.toml", "--resume", "-o", stopped])
    line = one_line_error(res, 2, "integrator.h", "other.toml")
    assert "same run" in line
    assert digest(stopped) == before
    # the run's own parameter file is accepted
    res = runner.invoke(cli, ["run", "s.toml", "--resume", "-o", stopped,
                              "--set", "run.max_wall_time=100"])
    assert res.exit_code == 0, res.output
    assert meanfield.load(stopped).attrs["status"] == "finished"


# ---- inputs that were silently changed -------------------------------------------------------

def test_complex_npy_rejected(runner):
    np.save("c.npy", (np.ones((64, 2)) + 1j).astype(np.complex128))
    text = SMALL.replace('law = "gaussian"', 'law = "file"\npath = "c.npy"')
    text = text.replace("mean = [0.5, 0.0]\n", "").replace("cov = [[1.0, 0.0], [0.0, 1.0]]\n", "")
    open("c.toml", "w").write(text)
    res = runner.invoke(cli, ["run", "c.toml", "-o", "c.h5"])
    line = one_line_error(res, 2, "initial.path", "real")
    assert "complex" in line


def test_first_order_with_damping_or_momenta_warns(runner):
    res = runner.invoke(cli, ["run", "p.toml", "-o", "f.h5", "--set", 'model.dynamics="first_order"',
                              "--set", "integrator.name=euler", "--set", 'initial.momentum="gaussian"',
                              "--set", "initial.momentum_scale=0.3"])
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.output.splitlines() if "warning" in ln]
    assert len(warn) == 1, res.output
    assert "damping" in warn[0] and "initial.momentum_scale" in warn[0]
    # nag uses the schedule: only the momenta are reported
    res = runner.invoke(cli, ["run", "p.toml", "-o", "g.h5", "--set", 'model.dynamics="first_order"',
                              "--set", "integrator.name=nag"])
    assert res.exit_code == 0
    assert "warning" not in res.output


def test_runtime_warnings_not_printed_before_failure(runner, monkeypatch):
    import warnings

    from meanfield.errors import SimulationError

    def failing(self, *a, **k):
        np.exp(np.array([1000.0]))  # numpy's own RuntimeWarning, as a real overflow would give
        warnings.warn("invalid value encountered in subtract", RuntimeWarning)
        raise SimulationError("blow-up at step 3 (t = 0.06)", step=3, t=0.06)

    monkeypatch.setattr(meanfield.Run, "simulate", failing)
    with np.errstate(over="warn"), warnings.catch_warnings():
        # as outside pytest: warnings are printed to stderr (pytest records them otherwise)
        warnings.simplefilter("default")
        warnings.showwarning = lambda msg, cat, fn, ln, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(msg, cat, fn, ln, line))
        res = runner.invoke(cli, ["run", "p.toml", "-o", "w.h5"])
    one_line_error(res, 1, "step 3")


def test_energy_plot_keeps_negative_energies():
    from meanfield.plotting import plot_energy

    cfg = _cfg(steps=20)
    res = meanfield.Run(cfg).simulate()
    res.tasks["energy"] = res.tasks["energy"] - 10.0   # all negative
    fig = plot_energy([res])
    (line,) = fig.axes[0].lines
    assert len(line.get_xdata()) == len(res.t)
    assert "E_min" in fig.axes[0].get_ylabel()
    fig = plot_energy([res], e_star=float(np.median(res["energy"])))
    assert "not shown" in fig.axes[0].get_ylabel()


# ---- API and module structure ---------------------------------------------------------------

def test_trajectory_has_final_state_like_runresult(tmp_path):
    cfg = _cfg(steps=7)
    cfg["run"]["save_every"] = 3
    res = meanfield.Run(cfg).simulate(str(tmp_path / "a.h5"))
    tr = meanfield.load(str(tmp_path / "a.h5"))
    assert np.array_equal(tr.x, res.x) and np.array_equal(tr.y, res.y)
    cfg["output"] = {"save": []}
    res = meanfield.Run(cfg).simulate(str(tmp_path / "b.h5"))
    tr = meanfield.load(str(tmp_path / "b.h5"))   # nothing saved: the checkpoint has it
    assert np.array_equal(tr.x, res.x) and np.array_equal(tr.y, res.y)


def test_sweep_command_does_not_import_main():
    """cli/sweep.py and cli/main.py share cli/_common.py; no import circle."""
    code = textwrap.dedent("""\
        import sys
        from click.testing import CliRunner
        from meanfield_cli.sweep import sweep
        res = CliRunner().invoke(sweep, ["missing-grid.toml"])
        assert res.exit_code == 2, res.output
        assert "meanfield_cli.main" not in sys.modules, "sweep imported main"
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_sweep_grid_with_whole_sections(tmp_path):
    from meanfield.sweep import load_sweep

    (tmp_path / "p.toml").write_text(SMALL)
    (tmp_path / "g.toml").write_text(textwrap.dedent("""\
        base = "p.toml"
        [grid]
        "integrator.name" = ["exp_euler", "kick_drift"]
        damping = [{schedule = "constant", a = 1.0}, {schedule = "nesterov", r = 3.0}]
        """))
    sw = load_sweep(str(tmp_path / "g.toml"))
    assert len(sw.jobs) == 4
    dampings = [j.config["damping"] for j in sw.jobs]
    assert {"schedule": "constant", "a": 1.0} in dampings and {"schedule": "nesterov", "r": 3.0} in dampings
    for job in sw.jobs:
        meanfield.Run(job.config)  # every point is valid (no r left over for constant)
    assert len({j.path for j in sw.jobs}) == 4


def test_info_on_a_file_a_run_is_writing(runner):
    """HDF5 locks a file while a run writes it: say so instead of 'unreadable'."""
    assert runner.invoke(cli, ["run", "p.toml", "-o", "busy.h5"]).exit_code == 0
    holder = subprocess.Popen([sys.executable, "-c", "import h5py, sys, time\n"
                               "f = h5py.File('busy.h5', 'a'); print('open', flush=True)\n"
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        for cmd in (["info", "busy.h5"], ["plot", "busy.h5"], ["compare", "busy.h5"]):
            one_line_error(runner.invoke(cli, cmd), 2, "still writing")
    finally:
        holder.kill()
        holder.wait()
