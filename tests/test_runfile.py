"""meanfield.io.runfile.run_file_status: the one classification of a file at an output path."""

from __future__ import annotations

import subprocess
import sys

from meanfield.io.runfile import run_file_status
from meanfield.io.writer import HDF5Writer


def test_run_file_status_kinds(tmp_path):
    assert run_file_status(tmp_path / "none.h5").kind == "missing"
    (tmp_path / "empty.h5").write_bytes(b"")
    assert run_file_status(tmp_path / "empty.h5").kind == "unstarted"  # killed as it was created
    (tmp_path / "text.h5").write_text("not a run file, but long enough " * 1000)
    rf = run_file_status(tmp_path / "text.h5")
    assert rf.kind == "unreadable" and "not an HDF5 file" in rf.reason
    w = HDF5Writer(str(tmp_path / "run.h5"), {"output": {"path": "run.h5"}})
    w.save({"scales": {"sim_time": 0.0, "iteration": 0, "oracle_calls": 0, "wall_time": 0.0},
            "tasks": {"energy": 1.0}})
    w.set_status("finished")
    w.close(final=True)
    rf = run_file_status(tmp_path / "run.h5")
    assert (rf.kind, rf.status, rf.config) == ("readable", "finished", {"output": {"path": "run.h5"}})
    holder = subprocess.Popen([sys.executable, "-c", "import h5py, sys; f = h5py.File(sys.argv[1], 'a'); "
                               "print('open', flush=True); sys.stdin.read()", str(tmp_path / "run.h5")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        assert run_file_status(tmp_path / "run.h5").kind == "busy"  # another process writes it
    finally:
        holder.communicate("")
    assert run_file_status(tmp_path / "run.h5").kind == "readable"
