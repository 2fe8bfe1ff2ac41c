"""Paths a user can take that used to end in a traceback, a silent wrong answer or a hang.

Every bad input ends in exit 2 and one line naming the key; output files are
never destroyed before the new output is known to be writable.
"""

import hashlib
import os
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

SMALL = textwrap.dedent("""\
    [model]
    name = "bilinear"
    dynamics = "accelerated"
    d = 2
    Q = [[1.0, 0.0], [0.0, 2.0]]
    m = [0.5, -0.5]
    [damping]
    schedule = "nesterov"
    r = 3.0
    [integrator]
    name = "exp_euler"
    h = 0.02
    [initial]
    law = "gaussian"
    n = 32
    mean = [0.5, 0.0]
    cov = [[1.0, 0.0], [0.0, 1.0]]
    seed = 0
    [run]
    t0 = 1.0
    t1 = 2.0
    save_every = 5
    [output]
    path = "small.h5"
    save = ["x", "y"]
    """)


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
    one_line_error(res, 2, "output.path", "existing directory")


def test_output_into_unwritable_directory(runner):
    # /sys refuses new files even to root (tests may run as root, so chmod proves nothing)
    res = runner.invoke(cli, ["run", "p.toml", "-o", "/sys/meanfield-test.h5"])
    one_line_error(res, 2, "output.path", "writable")


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
    (tmp_path / "p.toml").write_text(SMALL.replace("t1 = 2.0", "t1 = 400.0")
                                     .replace("n = 32", "n = 3000").replace("h = 0.02", "h = 0.005"))
    ok = subprocess.run([sys.executable, "-m", "meanfield_cli.main", "run", "p.toml", "-o", "o.h5",
                         "--set", "run.t1=1.1", "--no-progress", "--threads", "1"],
                        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    proc = subprocess.Popen([sys.executable, "-m", "meanfield_cli.main", "run", "p.toml", "-o",
                             "o.h5", "--overwrite", "--no-progress", "--threads", "1"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    n = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
        try:
            tr = meanfield.load(str(tmp_path / "o.h5"), tasks=["energy"])
        except (OSError, ParameterError):
            continue
        n = len(tr.t)
        if tr.config["run"]["t1"] == 400.0 and n >= 3:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert n >= 3, proc.stderr.read().decode()
    tr = meanfield.load(str(tmp_path / "o.h5"))
    assert tr.config["run"]["t1"] == 400.0
    assert len(tr.t) >= 3 and np.all(np.isfinite(tr["energy"]))


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
])
def test_compare_rejects_bad_options(runner, args, key):
    assert runner.invoke(cli, ["run", "p.toml", "-o", "r.h5"]).exit_code == 0
    one_line_error(runner.invoke(cli, ["compare", "r.h5", *args]), 2, key)


def _cfg(**run):
    cfg = {"model": {"d": 2}, "integrator": {"h": 0.05}, "initial": {"n": 20},
           "run": {"steps": 4}}
    cfg["run"].update(run)
    return cfg
