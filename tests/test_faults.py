"""Runs on failing machines: a full disk, damaged and truncated files, concurrent writers.

The full-disk tests write to a 2 MiB tmpfs when the tests run as root (``mount``), and
otherwise skip; the in-process test fakes the free space instead and always runs.
"""

import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from test_resume_subprocess import PARAMS as RESUME_PARAMS
from test_resume_subprocess import STEPS as RESUME_STEPS

import meanfield
import meanfield.io.checkpoint as checkpoint
import meanfield.io.hdf5 as hdf5
import meanfield.io.writer as writer
from meanfield.errors import NoSpaceError
from meanfield.io.hdf5 import checkpoint_path
from meanfield.resume import resume_run

TIMEOUT = 180

# the subprocess resume tests' problem with 41 saves of x and y (n = 1000, d = 3): 2 MB, more
# than the 2 MiB disk holds
PARAMS = (RESUME_PARAMS.replace("n = 2000", "n = 1000")
          .replace(f"steps = {RESUME_STEPS}", "steps = 400")
          .replace("save_every = 100", "save_every = 10").replace("h = 0.005", "h = 0.01"))


def _cli(*args, cwd, env=None, prelude=""):
    """``meanfield ARGS`` in a subprocess; ``prelude`` is Python run first (to patch it)."""
    code = (f"{prelude}\nfrom meanfield_cli.main import main\nimport sys\n"
            f"sys.argv = ['meanfield', *{list(args)!r}]\nmain()")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with the parameter file and the uninterrupted reference run (full.h5)."""
    folder = tmp_path_factory.mktemp("faults")
    (folder / "p.toml").write_text(PARAMS)
    env = dict(os.environ, MEANFIELD_CHECKPOINT_INTERVAL="0.05")
    ref = _cli("run", "p.toml", "-o", "full.h5", "--threads", "1", "--no-progress", cwd=folder,
               env=env)
    assert ref.returncode == 0, ref.stderr
    return folder, env


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (root only; skipped elsewhere)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _assert_same_final_state(path, ref_path):
    got, ref = meanfield.load(str(path)), meanfield.load(str(ref_path))
    assert got.attrs["status"] == "finished"
    assert np.array_equal(got.checkpoint["x"], ref.checkpoint["x"])
    assert np.array_equal(got.checkpoint["y"], ref.checkpoint["y"])
    at = np.searchsorted(got.scales["iteration"], ref.scales["iteration"])
    assert np.array_equal(got.scales["iteration"][at], ref.scales["iteration"])
    assert np.array_equal(got["energy"][at], ref["energy"])


# HDF5 failing a write itself (the disk filled by someone else after the check) crashed the
# process at exit (exit 139); "checked" is the run's own free-space check before each write
@pytest.mark.slow
@pytest.mark.parametrize("how", ["checked", pytest.param("hdf5 fails", marks=pytest.mark.xfail(
    strict=False, reason="known: when HDF5 itself hits ENOSPC writing the sidecar, the process "
    "segfaults in about 1 run in 5 after the merge of the fault and reader work (exit -11 instead "
    "of 1); the run's own free-space check (the 'checked' case) is what normally stops it"))])
def test_a_full_disk_stops_in_one_line_and_the_file_resumes_elsewhere(work, small_disk, how):
    folder, env = work
    prelude = "import meanfield.io.writer as h; h.free_bytes = lambda path: 1 << 40" \
        if how == "hdf5 fails" else ""
    out = small_disk / "o.h5"
    r = _cli("run", str(folder / "p.toml"), "-o", str(out), "--threads", "1", "--no-progress",
             cwd=folder, env=env, prelude=prelude)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "no space left on device" in r.stderr and "at step" in r.stderr and "(t = " in r.stderr
    # free space: move the run (file and sidecar) to a large disk and finish it there
    moved = folder / f"moved-{how.split()[0]}.h5"
    shutil.copy(out, moved)
    if os.path.exists(checkpoint_path(str(out))):
        shutil.copy(checkpoint_path(str(out)), checkpoint_path(str(moved)))
    with h5py.File(moved, "r") as f:
        status = f.attrs["status"]
        assert "checkpoint" not in f or "x" in f["checkpoint"]  # never a half-made group
    if how == "checked":
        assert status.startswith("failed: no space left on device"), status
    r = _cli("run", "--resume", str(moved), "--threads", "1", "--no-progress", cwd=folder, env=env)
    assert r.returncode == 0, r.stderr
    _assert_same_final_state(moved, folder / "full.h5")


def test_a_full_disk_in_process(tmp_path, make_config, monkeypatch):
    cfg = make_config("accelerated", "exp_euler", n=40, steps=60, save_every=5)
    full = meanfield.Run(cfg).simulate()
    path = str(tmp_path / "full-disk.h5")
    real = writer.free_bytes
    state = {"saves": 0}

    def free(p):  # the disk is full once 5 saves were made (the writer is the last observer)
        return 0 if state["saves"] >= 5 else real(p)

    class Count:
        def save(self, record):
            state["saves"] += 1

    monkeypatch.setattr(writer, "free_bytes", free)
    with pytest.raises(NoSpaceError, match=r"no space left on device .* at step 20 \(t = "):
        meanfield.Run(cfg).simulate(path, observers=[Count()])
    monkeypatch.setattr(writer, "free_bytes", real)
    with h5py.File(path, "r") as f:
        assert f.attrs["status"].startswith("failed: no space left on device")
        assert f["scales/iteration"][-1] == 15 and "checkpoint" not in f
    assert os.path.exists(checkpoint_path(path))  # the newest checkpoint stays beside it
    res = resume_run(path)
    assert np.array_equal(res.x, full.x) and np.array_equal(res.y, full.y)


# --------------------------------------------------------------------------- locks and stubs


def _invoke(*args):
    """``meanfield ARGS`` in this process (CliRunner); returns the result."""
    from click.testing import CliRunner
    from meanfield_cli.main import cli

    return CliRunner().invoke(cli, list(args))


def _one_line(res, code, *words):
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == code and len(lines) == 1 and "Traceback" not in res.output, res.output
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def holder():
    """Start processes holding a file open with h5py, for writing (as a run does) or reading."""
    procs = []

    def hold(path, mode="a"):
        code = ("import h5py, sys, time; f = h5py.File(sys.argv[1], sys.argv[2]); "
                "print('open', flush=True); time.sleep(300)")
        proc = subprocess.Popen([sys.executable, "-c", code, str(path), mode],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "open"
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def _digest(path):
    import hashlib

    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def small_run(tmp_path, make_config):
    """A finished small run file (run.h5) and its config; the cwd is tmp_path."""
    cfg = make_config("accelerated", "exp_euler", n=40, steps=30, save_every=10)
    cfg["output"]["path"] = str(tmp_path / "unused.h5")
    # JSON values of numbers, strings and lists of them are TOML values too
    (tmp_path / "p.toml").write_text("".join(
        f"[{sec}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in body.items())
        for sec, body in cfg.items()))
    full = meanfield.Run(cfg).simulate(str(tmp_path / "run.h5"))
    return tmp_path, full


def test_a_truncated_file_is_not_reported_as_being_written(small_run, holder):
    folder, _ = small_run
    trunc = folder / "trunc.h5"
    trunc.write_bytes((folder / "run.h5").read_bytes()[:96])  # HDF5's error text says "sblock"
    line = _one_line(_invoke("info", str(trunc)), 2, "truncated")
    assert "writing" not in line
    holder(folder / "run.h5")
    _one_line(_invoke("info", str(folder / "run.h5")), 2, "still writing")
    _one_line(_invoke("run", "--resume", str(folder / "run.h5")), 2, "a run is writing it")


@pytest.mark.parametrize("stub", ["0 bytes", "96 bytes", "no save"])
def test_a_run_killed_as_it_created_its_file_is_run_again(small_run, stub):
    # SIGKILL within about 1 ms of the file's creation leaves an empty or truncated file; the
    # docs promise a run killed before its first checkpoint is restarted
    folder, full = small_run
    out = folder / "stub.h5"

    def make_stub():
        if stub == "no save":
            hdf5.HDF5Writer(str(out), full.config).f.close()  # killed before the first save
        else:
            out.write_bytes((folder / "run.h5").read_bytes()[:int(stub.split()[0])])

    make_stub()
    res = _invoke("run", str(folder / "p.toml"), "-o", str(out), "--threads", "1")  # no --overwrite
    assert res.exit_code == 0, res.output
    assert np.array_equal(meanfield.load(str(out)).checkpoint["x"], full.x)
    # --resume: from the file's own parameters if it holds them, else from PARAMS
    out.unlink()
    make_stub()
    res = _invoke("run", "--resume", str(out), "--threads", "1")
    if stub == "no save":
        assert res.exit_code == 0, res.output
    else:
        _one_line(res, 2, f"meanfield run PARAMS -o {out}")
        res = _invoke("run", str(folder / "p.toml"), "--resume", "-o", str(out), "--threads", "1")
        assert res.exit_code == 0, res.output
    tr = meanfield.load(str(out))
    assert tr.attrs["status"] == "finished" and np.array_equal(tr.checkpoint["x"], full.x)


def test_a_damaged_file_with_saves_is_never_replaced_without_overwrite(small_run):
    folder, _ = small_run
    data = (folder / "run.h5").read_bytes()
    damaged = folder / "damaged.h5"
    damaged.write_bytes(data[:len(data) // 2])  # saves were made: not a stub
    before = _digest(damaged)
    _one_line(_invoke("run", str(folder / "p.toml"), "-o", str(damaged)), 2, "--overwrite")
    assert _digest(damaged) == before


def test_overwrite_refuses_a_file_another_run_is_writing(small_run, holder):
    folder, _ = small_run
    out = folder / "run.h5"
    holder(out)
    before = _digest(out)
    _one_line(_invoke("run", str(folder / "p.toml"), "-o", str(out), "--overwrite"), 2,
              "no other process is writing")
    assert _digest(out) == before
    # no sidecar, no temporary file
    assert sorted(p.name for p in folder.iterdir()) == ["p.toml", "run.h5"]
    # the writer itself checks too (a run that starts between the check and the write)
    with pytest.raises(meanfield.ParameterError, match="no other process is writing"):
        hdf5.HDF5Writer(str(out), {}, mode="w", replace=True)
    with pytest.raises(meanfield.ParameterError, match="no other process is writing"):
        hdf5.HDF5Writer(str(out), {}, mode="w")


def test_a_run_replacing_a_file_locks_it_until_the_replacement(small_run):
    folder, _ = small_run
    out = str(folder / "run.h5")
    w = hdf5.HDF5Writer(out, {}, mode="w", replace=True)
    try:
        assert hdf5.is_being_written(out)  # another --overwrite or --resume now stops at once
        with pytest.raises(meanfield.ParameterError, match="no other process is writing"):
            hdf5.check_output_path(out, overwrite=True)
    finally:
        w.close()
    assert not hdf5.is_being_written(out)


def test_partial_files_of_a_killed_overwrite_are_removed_by_the_next_run(small_run, holder):
    folder, _ = small_run
    stale = folder / ".run.h5.k1ll3d.partial"  # what a SIGKILL during --overwrite leaves
    stale.write_bytes(b"")
    live = folder / ".run.h5.l1ve00.partial"  # one another live run is writing
    hdf5.HDF5Writer(str(live), {}).close()
    holder(live)
    res = _invoke("run", str(folder / "p.toml"), "-o", str(folder / "run.h5"), "--overwrite")
    assert res.exit_code == 0, res.output
    assert not stale.exists() and live.exists()


def test_a_run_started_inside_an_except_block_checkpoints_its_final_state(tmp_path, make_config,
                                                                         monkeypatch):
    # the sweep restarts a run that cannot be resumed from inside "except ParameterError:";
    # the writer took the exception being handled for one propagating, and stored the first
    # (rate-limited) checkpoint as /checkpoint of a finished file
    monkeypatch.setenv("MEANFIELD_CHECKPOINT_INTERVAL", "3600")
    cfg = make_config("accelerated", "exp_euler", n=40, steps=30, save_every=10)
    try:
        raise ValueError("handled")
    except ValueError:
        res = meanfield.Run(cfg).simulate(str(tmp_path / "r.h5"))
    ck = meanfield.load(str(tmp_path / "r.h5")).checkpoint
    assert ck["iteration"] == 30 and np.array_equal(ck["x"], res.x)


# --------------------------------------------------------------------------- memory


def _big(make_config, n=5000):
    # 41 saves of x and y, (n, 3) each: 9.8 MB of saves at n = 5000
    return make_config("accelerated", "exp_euler", n=n, steps=40, save_every=1)


def test_saves_are_streamed_to_the_file_not_kept_in_memory(tmp_path, make_config):
    import tracemalloc

    cfg = _big(make_config)
    mem = meanfield.Run(cfg).simulate()  # kept in memory (and the kernels compiled, untraced)
    tracemalloc.start()
    try:
        res = meanfield.Run(cfg).simulate(str(tmp_path / "big.h5"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    saves = 41 * 2 * 5000 * 3 * 8
    assert peak < saves / 3, f"peak {peak / 2**20:.2f} MiB for {saves / 2**20:.1f} MiB of saves"
    # the result reads them back from the file when used, equal to the run kept in memory
    assert sorted(res.tasks) == sorted(mem.tasks)
    for name in ("x", "y", "energy", "mean"):
        assert np.array_equal(res[name], mem[name]), name
    assert res["x"].shape == (41, 5000, 3)


def test_a_run_whose_saves_cannot_fit_in_memory_is_refused_before_it_starts(tmp_path, make_config,
                                                                            monkeypatch):
    import meanfield.initial

    monkeypatch.setattr(meanfield.initial, "_memory_bytes", lambda: 16 * 2**20)  # budget 8 MiB
    cfg = _big(make_config)
    with pytest.raises(meanfield.ParameterError, match=r"run.save_every.*41 saves"):
        meanfield.Run(cfg).simulate()
    res = meanfield.Run(cfg).simulate(str(tmp_path / "big.h5"))  # streamed: fits
    assert res.status == "finished"


def test_the_kinetic_grid_is_size_checked_with_its_momentum_axis(tmp_path):
    cfg = {"model": {"name": "sphere", "dynamics": "accelerated", "d": 2, "beta": 1.0},
           "damping": {"schedule": "constant", "a": 1.0},
           "integrator": {"name": "strang", "h": 0.01},
           "initial": {"law": "sphere_uniform", "n": 16},
           "run": {"t0": 0.0, "steps": 2},
           "solver": {"kind": "pde", "grid": [4096, 3000000]}}
    with pytest.raises(meanfield.ParameterError,
                       match=r"\[solver.grid\] expected a grid that fits in memory"):
        meanfield.Run(cfg)


# --------------------------------------------------------------------------- checksums


def _interrupted(cfg, path, at=25):
    """Run ``cfg`` into ``path``, Ctrl-C after step ``at`` (status interrupted, /checkpoint)."""
    import signal

    def interrupt(done, total):
        if done == at:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        meanfield.Run(cfg).simulate(path, progress=interrupt)


def _overwrite_bytes(path, offset, data):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


@pytest.mark.parametrize("where", ["file", "sidecar"])
def test_a_damaged_checkpoint_is_refused(tmp_path, make_config, where):
    cfg = make_config("accelerated", "exp_euler", n=200, steps=60, save_every=10)
    path = str(tmp_path / "cut.h5")
    _interrupted(cfg, path)
    target = path
    if where == "sidecar":  # what a killed run leaves: its newest checkpoint beside the file
        ck = hdf5.read_checkpoint(path)
        target = checkpoint_path(path)
        counters = {k: ck[k] for k in ("t", "iteration", "oracle_calls", "n_saves")}
        hdf5.write_checkpoint_file(target, ck["state"], counters)
    with h5py.File(target, "r") as f:
        ds = f["checkpoint/x"]
        offset, size = ds.id.get_offset(), ds.id.get_storage_size()
    _overwrite_bytes(target, offset, bytes(min(size, 4096)))  # a zeroed block
    with pytest.raises(meanfield.ParameterError, match="checksum does not match"):
        resume_run(path)
    _one_line(_invoke("run", "--resume", path), 2, "checksum does not match")


def test_a_damaged_save_is_refused_by_every_reader(tmp_path, make_config):
    cfg = make_config("accelerated", "exp_euler", n=40, steps=60, save_every=10)
    path = str(tmp_path / "run.h5")
    meanfield.Run(cfg).simulate(path)
    with h5py.File(path, "r") as f:
        energy = f["tasks/energy"].id.get_chunk_info(0)
        x = f["tasks/x"].id.get_chunk_info(3)
    def flip(info):  # one bit of a chunk's data
        at = info.byte_offset + 8
        _overwrite_bytes(path, at, bytes([open(path, "rb").read()[at] ^ 0x10]))
    flip(x)
    _one_line(_invoke("plot", path, "--kind", "particles", "-o", str(tmp_path / "p.png")), 2,
              "checksum does not match")
    flip(energy)
    for args in (["info", path], ["plot", path, "-o", str(tmp_path / "e.png")], ["compare", path]):
        _one_line(_invoke(*args), 2, "checksum does not match")


def test_files_written_without_checksums_still_read_and_resume(tmp_path, make_config, monkeypatch):
    cfg = make_config("accelerated", "exp_euler", n=40, steps=60, save_every=10)
    full = meanfield.Run(cfg).simulate()
    path = str(tmp_path / "old.h5")
    monkeypatch.setattr(checkpoint, "CHECKSUMS", False)  # as files were written before checksums
    _interrupted(cfg, path)
    monkeypatch.setattr(checkpoint, "CHECKSUMS", True)
    with h5py.File(path, "r") as f:
        assert "checksum" not in f["checkpoint"].attrs and not f["tasks/x"].fletcher32
    res = resume_run(path)
    assert np.array_equal(res.x, full.x) and np.array_equal(res.y, full.y)
    tr = meanfield.load(path)
    assert tr.attrs["status"] == "finished" and np.array_equal(tr["x"][-1], full["x"][-1])
    assert _invoke("info", path).exit_code == 0


def test_a_replacing_run_that_cannot_start_leaves_no_lock_and_no_temporary_file(small_run,
                                                                               monkeypatch):
    folder, _ = small_run
    out = str(folder / "run.h5")
    monkeypatch.setattr(writer, "free_bytes", lambda path: 0)
    with pytest.raises(NoSpaceError, match="before the first save"):
        hdf5.HDF5Writer(out, {}, mode="w", replace=True)
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == ["p.toml", "run.h5"]
    hdf5.HDF5Writer(out, {}, mode="w", replace=True).close()  # the old file is not locked


def test_a_writer_blocked_by_a_reader_says_so_in_one_line(small_run, holder):
    folder, _ = small_run
    out = str(folder / "run.h5")
    holder(out, "r")  # a reader (meanfield info, a notebook) holds the file
    with pytest.raises(meanfield.ParameterError, match="no other process is reading"):
        hdf5.HDF5Writer(out, mode="a")
