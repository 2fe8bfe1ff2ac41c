"""Damaged run files give one line and exit status 2, never an internal error.

A dataset deleted or shortened by hand (or by a broken copy), a damaged
sidecar checkpoint, a file another process holds open: each command says
which file and what it expected, and ``--resume`` changes nothing in a file
it refuses.
"""

import os
import subprocess
import sys

import h5py
import pytest
from click.testing import CliRunner
from meanfield_cli.main import cli

import meanfield
from meanfield.io.hdf5 import checkpoint_path, write_checkpoint_file

from test_cli import SMALL  # the small bilinear parameter file of the CLI tests (n = 64, t1 = 2)


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_text(SMALL)
    return CliRunner()


def _one_line_error(res, *words):
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("meanfield: error:"), res.output
    assert "internal error" not in res.output and "Traceback" not in res.output
    for word in words:
        assert word in lines[0], res.output


@pytest.fixture
def stopped(runner):
    """An unfinished (resumable) run: stopped by its wall-time budget after a few saves."""
    cfg = SMALL.replace("t1 = 2.0", "t1 = 2.0\nmax_wall_time = 1e-9")
    open("s.toml", "w").write(cfg)
    assert runner.invoke(cli, ["run", "s.toml", "-o", "s.h5"]).exit_code == 0
    for _ in range(3):  # each resume takes one step past the checkpoint: reach a few saves
        assert runner.invoke(cli, ["run", "--resume", "s.h5", "--set", "run.save_every=1"]).exit_code == 0
    with h5py.File("s.h5", "r") as f:
        assert f.attrs["status"].startswith("stopped") and f["scales/sim_time"].shape[0] >= 3
    return "s.h5"


def _snapshot(path):
    with h5py.File(path, "r") as f:
        return (f.attrs["status"], f.attrs.get("resume_history"),
                {f"{g}/{k}": f[g][k].shape for g in ("scales", "tasks") for k in f[g]})


@pytest.mark.parametrize("task", ["energy", "mean"])
def test_resume_of_a_file_missing_a_task_is_refused(runner, stopped, task):
    # before: energy -> internal error KeyError; mean -> exit 0, /tasks/mean recreated short
    with h5py.File(stopped, "a") as f:
        del f[f"tasks/{task}"]
    before = _snapshot(stopped)
    res = runner.invoke(cli, ["run", "--resume", stopped, "--set", "run.max_wall_time=60"])
    _one_line_error(res, stopped, "deleted" if task != "energy" else "energy")
    assert _snapshot(stopped) == before


def test_resume_of_a_file_with_a_shortened_task_is_refused(runner, stopped):
    with h5py.File(stopped, "a") as f:
        f["tasks/mean"].resize(1, axis=0)
    before = _snapshot(stopped)
    res = runner.invoke(cli, ["run", "--resume", stopped, "--set", "run.max_wall_time=60"])
    _one_line_error(res, stopped, "tasks/mean")
    assert _snapshot(stopped) == before


@pytest.fixture
def finished(runner):
    assert runner.invoke(cli, ["run", "p.toml", "-o", "f.h5"]).exit_code == 0
    return "f.h5"


@pytest.mark.parametrize("command", [["plot", "--kind", "energy"], ["plot", "--kind", "moments"],
                                     ["compare"], ["info"]])
def test_a_shortened_dataset_is_one_line(runner, finished, command):
    # before: plot -> ValueError (x and y of different lengths), compare -> IndexError
    with h5py.File(finished, "a") as f:
        n = f["scales/sim_time"].shape[0]
        f["tasks/energy"].resize(n // 2, axis=0)
        f["tasks/mean"].resize(n // 2, axis=0)
    res = runner.invoke(cli, [command[0], finished, *command[1:]])
    _one_line_error(res, finished, "/tasks/")


def test_a_half_written_last_save_is_dropped_not_refused(runner, finished):
    # what a kill in the middle of a save leaves: some datasets one row longer
    with h5py.File(finished, "a") as f:
        n = f["scales/sim_time"].shape[0]
        f["tasks/x"].resize(n + 1, axis=0)
    tr = meanfield.load(finished)
    assert len(tr.t) == n and all(len(v) == n for v in tr.tasks.values())
    assert runner.invoke(cli, ["plot", finished, "--kind", "particles"]).exit_code == 0


def test_a_damaged_sidecar_is_one_line_in_info(runner, finished):
    with h5py.File(finished, "r") as f:
        state = {k: f["checkpoint"][k][...] for k in ("x", "y")}
    side = checkpoint_path(finished)
    write_checkpoint_file(side, state, {"t": 2.0, "iteration": 50, "oracle_calls": 50, "n_saves": 11})
    data = open(side, "rb").read()
    # a zeroed block in the middle (seen: RuntimeError "bad local heap signature")
    open(side, "wb").write(data[:512] + b"\0" * 1024 + data[1536:])
    res = runner.invoke(cli, ["info", finished])
    _one_line_error(res, side)


HOLD = """\
import sys, time, h5py
f = h5py.File(sys.argv[1], "r")
print("open", flush=True)
time.sleep(60)
"""


def test_resume_of_a_file_another_process_reads_is_one_clear_line(runner, stopped):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, stopped], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        before = _snapshot(stopped)
        res = runner.invoke(cli, ["run", "--resume", stopped, "--set", "run.max_wall_time=60"])
        _one_line_error(res, stopped, "another process")
        assert "unable to lock file" not in res.output
    finally:
        holder.kill()
        holder.wait()
    assert _snapshot(stopped) == before
    assert not os.path.exists(checkpoint_path(stopped) + ".tmp")


def _damaged_inside(path):
    """A copy of ``path`` whose /tasks/energy object header is zeroed: h5py raises inside the file.

    (Zeroing blocks at random can also send HDF5 into an endless loop; this damage is the
    one seen most: KeyError "bad object header version number".)
    """
    with h5py.File(path, "r") as f:
        header = h5py.h5o.get_info(f["tasks/energy"].id).addr
    data = bytearray(open(path, "rb").read())
    data[header:header + 16] = bytes(16)
    open("damaged.h5", "wb").write(bytes(data))
    return "damaged.h5"


@pytest.mark.parametrize("command", [["info"], ["plot", "-o", "d.png"], ["compare"]])
def test_a_run_file_damaged_inside_is_one_line(runner, finished, command):
    # seen: KeyError 'bad object header version number', RuntimeError 'bad symbol table node'
    damaged = _damaged_inside(finished)
    res = runner.invoke(cli, [command[0], damaged, *command[1:]])
    _one_line_error(res, damaged)
