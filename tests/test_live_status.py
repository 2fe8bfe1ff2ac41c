"""A running batch run can be watched: its status sidecar, ``meanfield info`` on it, progress lines in a log.

While a run writes ``OUT.h5`` HDF5 locks the file; the loop rewrites a small JSON
sidecar ``OUT.h5.status`` at every save, which ``meanfield info`` shows instead
of refusing the file.
"""

import json
import os
import signal
import subprocess
import sys
import time

from click.testing import CliRunner
from meanfield_cli.main import cli

import meanfield
from meanfield.io.live import read_status, status_path

from test_cli import SMALL  # the small bilinear parameter file of the CLI tests (n = 64, t1 = 2)

LONG = SMALL.replace("t1 = 2.0", "t1 = 100000.0").replace("n = 64", "n = 2000")
TIMEOUT = 120


def _wait_for(predicate, proc, what):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"no {what} after {TIMEOUT} s")


def test_info_reports_on_a_run_while_it_writes(tmp_path):
    (tmp_path / "p.toml").write_text(LONG)
    out = str(tmp_path / "live.h5")
    proc = subprocess.Popen([sys.executable, "-m", "meanfield_cli.main", "run", "p.toml", "-o", out,
                             "--threads", "1", "--no-progress"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        status = _wait_for(lambda: (read_status(out) or {}).get("saves", 0) >= 3 and read_status(out),
                           proc, "status sidecar with 3 saves")
        assert status["status"] == "running" and status["pid"] == proc.pid
        assert status["step"] >= 10 and status["t"] > 1.0 and "energy" in status
        # the run file itself is locked by its writer: info reads the sidecar instead
        res = CliRunner().invoke(cli, ["info", out])
        assert res.exit_code == 0, res.output
        assert "running" in res.output and f"pid {proc.pid}" in res.output, res.output
        assert "step" in res.output and "energy" in res.output, res.output
        later = _wait_for(lambda: (read_status(out) or {}).get("saves", 0) > status["saves"]
                          and read_status(out), proc, "a later save")
        assert later["step"] > status["step"] and later["wall_time"] >= status["wall_time"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130
    # the run file holds the status again: the sidecar is gone, info reads the file
    assert not os.path.exists(status_path(out))
    res = CliRunner().invoke(cli, ["info", out])
    assert res.exit_code == 0 and "interrupted" in res.output, res.output


def test_a_stale_status_sidecar_is_not_shown(tmp_path, make_config):
    # a run killed with SIGKILL leaves its sidecar saying "running": info reads the file
    path = str(tmp_path / "k.h5")
    meanfield.Run(make_config()).simulate(path)
    with open(status_path(path), "w") as fh:
        json.dump({"status": "running", "pid": 2**22 + 12345, "host": os.uname().nodename,
                   "step": 3, "t": 1.03, "saves": 1, "energy": 1.0, "wall_time": 0.1}, fh)
    res = CliRunner().invoke(cli, ["info", path])
    assert res.exit_code == 0 and "finished" in res.output and "pid" not in res.output, res.output


def test_progress_into_a_log_writes_lines(tmp_path, monkeypatch):
    # stderr is not a terminal (a batch log): --progress used to write only the bar's label
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.toml").write_text(SMALL)
    res = CliRunner().invoke(cli, ["run", "p.toml", "-o", "p.h5", "--progress"])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("meanfield: run: step")]
    assert len(lines) >= 2, res.output
    assert lines[-1].startswith("meanfield: run: step 50/50 (100%)"), lines
