"""Sweeps on a real dask LocalCluster (2 worker processes, no mocks).

One cluster is shared by the module; the CLI test starts its own, as the
command does. Runs are tiny (bilinear, d = 2, N = 32) except the one whose
worker is killed mid-run.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from meanfield_cli.main import cli
from test_mlp import _mlp_weights  # random weights of a token-wise MLP

import meanfield
from meanfield.errors import ParameterError
from meanfield.io.hdf5 import checkpoint_path
from meanfield.sweep import BAD, load_sweep, run_sweep

distributed = pytest.importorskip("distributed")

BASE = textwrap.dedent("""\
    [model]
    name = "bilinear"
    dynamics = "accelerated"
    d = 2
    A = "identity"
    Q = [[1.0, 0.0], [0.0, 2.0]]
    m = [0.5, -0.5]
    [damping]
    schedule = "nesterov"
    [integrator]
    name = "exp_euler"
    h = 0.02
    [initial]
    law = "gaussian"
    n = 32
    mean = [0.5, 0.0]
    cov = [[1.0, 0.0], [0.0, 1.0]]
    momentum = "zero"
    seed = 0
    [run]
    t0 = 1.0
    steps = 40
    save_every = 10
    [output]
    path = "not-used-by-sweeps.h5"
    save = ["x", "y"]
    """)

GRID = textwrap.dedent("""\
    base = "base.toml"
    seeds = [0, 1]
    [grid]
    "integrator.name" = ["exp_euler", "kick_drift"]
    "damping.schedule" = ["constant", "nesterov"]
    [output]
    dir = "out"
    """)


@pytest.fixture(scope="module")
def client():
    # workers inherit the environment: frequent checkpoints for the kill test
    old = os.environ.get("MEANFIELD_CHECKPOINT_INTERVAL")
    os.environ["MEANFIELD_CHECKPOINT_INTERVAL"] = "0.02"
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None,
                                       scheduler_kwargs={"dashboard_address": ":0"},
                                       silence_logs=logging.CRITICAL)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()
    if old is None:
        os.environ.pop("MEANFIELD_CHECKPOINT_INTERVAL", None)
    else:
        os.environ["MEANFIELD_CHECKPOINT_INTERVAL"] = old


def _write(folder, grid=GRID, base=BASE):
    (folder / "base.toml").write_text(base)
    (folder / "sweep.toml").write_text(grid)
    return str(folder / "sweep.toml")


def _index(out):
    with open(out / "index.json") as fh:
        return json.load(fh)["runs"]


def test_grid_runs_writes_index_and_a_second_run_skips(tmp_path, client):
    path = _write(tmp_path)
    sweep = load_sweep(path)
    assert len(sweep.jobs) == 8
    assert [j.name for j in sweep.jobs] == [j.name for j in load_sweep(path).jobs]  # deterministic
    assert len({j.path for j in sweep.jobs}) == 8
    res = run_sweep(sweep, client=client)
    assert res.ok, res.rows
    assert [r["action"] for r in res.rows] == ["ran"] * 8
    out = tmp_path / "out"
    files = sorted(p.name for p in out.glob("*.h5"))
    assert files == sorted(os.path.basename(j.path) for j in sweep.jobs)
    assert not list(out.glob("*.ckpt*"))  # sidecars are removed when runs end
    for job in sweep.jobs:
        tr = meanfield.load(job.path)
        assert tr.attrs["status"] == "finished" and len(tr.t) == 5
        assert tr.config["integrator"]["name"] == job.params["integrator.name"]
        assert tr.config["damping"]["schedule"] == job.params["damping.schedule"]
        assert tr.config["initial"]["seed"] == job.params["initial.seed"]
        assert tr.checkpoint["iteration"] == 40
    rows = _index(out)
    assert [r["file"] for r in rows] == [os.path.basename(j.path) for j in sweep.jobs]
    assert all(r["status"] == "finished" and r["executions"] == 1 for r in rows)
    assert rows[0]["oracle_calls"] == 40 and np.isfinite(rows[0]["energy"])
    # numba threads per run: cores / worker processes (1 on a 2-core machine)
    assert all(r["threads"] == max(1, (os.cpu_count() or 1) // 2) for r in rows)
    lines = (out / "index.csv").read_text().splitlines()
    assert len(lines) == 9
    head = "id,file,status,action,integrator.name,damping.schedule,initial.seed,"
    assert lines[0].startswith(head)
    mtimes = {f: os.stat(out / f).st_mtime_ns for f in files}

    again = run_sweep(load_sweep(path), client=client)
    assert [r["action"] for r in again.rows] == ["skipped"] * 8
    assert {f: os.stat(out / f).st_mtime_ns for f in files} == mtimes
    assert all(r["executions"] == 1 and r["status"] == "finished" for r in _index(out))
    assert again.rows[3]["energy"] == res.rows[3]["energy"]

    forced = run_sweep(load_sweep(path), client=client, overwrite=True)
    assert [r["action"] for r in forced.rows] == ["rerun"] * 8
    assert all(r["executions"] == 2 for r in _index(out))
    assert [r["energy"] for r in forced.rows] == [r["energy"] for r in res.rows]


def test_bad_grid_point_is_reported_and_the_rest_runs(tmp_path, client):
    grid = textwrap.dedent("""\
        base = "base.toml"
        [grid]
        "integrator.name" = ["exp_euler", "no_such_integrator", "kick_drift"]
        "integrator.h" = [0.02, -1.0]
        [output]
        dir = "out"
        """)
    res = run_sweep(_write(tmp_path, grid), client=client)
    by = {(r["params"]["integrator.name"], r["params"]["integrator.h"]): r for r in res.rows}
    assert by[("exp_euler", 0.02)]["status"] == "finished"
    assert by[("kick_drift", 0.02)]["status"] == "finished"
    bad = [r for r in res.rows if r["status"] == BAD]
    assert len(bad) == 4 and not res.ok
    assert "integrator.name" in by[("no_such_integrator", 0.02)]["message"]
    assert "integrator.h" in by[("exp_euler", -1.0)]["message"]
    assert all("\n" not in r["message"] and "Traceback" not in r["message"] for r in bad)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.h5")) == sorted(
        by[k]["file"] for k in (("exp_euler", 0.02), ("kick_drift", 0.02)))
    csv_text = (tmp_path / "out" / "index.csv").read_text()
    assert csv_text.count(BAD) == 4 and "expected one of" in csv_text


def test_model_files_of_the_base_config_are_found_beside_the_sweep_file(tmp_path, client):
    """A relative model.mlp (like initial.path) names a file beside the sweep file, not in the workers' cwd."""
    d, h = 2, 4
    np.savez(tmp_path / "w.npz", **_mlp_weights(np.random.default_rng(0), d, h, scale=0.1))
    base = textwrap.dedent("""\
        [model]
        name = "softmax"
        dynamics = "first_order"
        d = 2
        mlp = "w.npz"
        [integrator]
        name = "euler"
        h = 0.1
        [initial]
        n = 16
        [run]
        steps = 4
        """)
    grid = 'base = "base.toml"\n[grid]\n"integrator.h" = [0.1, 0.05]\n[output]\ndir = "out"\n'
    res = run_sweep(_write(tmp_path, grid, base), client=client)
    assert [r["status"] for r in res.rows] == ["finished", "finished"], [r["message"] for r in res.rows]
    for row in res.rows:
        with h5py.File(tmp_path / "out" / row["file"], "r") as f:
            assert json.loads(f.attrs["config"])["model"]["mlp"] == str(tmp_path / "w.npz")
            assert f["scales/mlp_calls"][-1] == 4


def test_interrupted_and_failed_files_are_continued_on_rerun(tmp_path, client):
    grid = GRID.replace("seeds = [0, 1]\n", "").replace('["constant", "nesterov"]', '["nesterov"]')
    path = _write(tmp_path, grid)
    sweep = load_sweep(path)
    first = run_sweep(sweep, client=client)
    assert first.ok
    ref = {j.id: meanfield.load(j.path) for j in sweep.jobs}

    # job 0: redo it in this process and stop it with Ctrl-C at step 25 (status "interrupted")
    cut = sweep.jobs[0]
    os.remove(cut.path)

    def interrupt(done, total):
        if done == 25:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        meanfield.Run(cut.config).simulate(cut.path, progress=interrupt)
    with h5py.File(cut.path) as f:
        assert f.attrs["status"] == "interrupted" and f["checkpoint"].attrs["iteration"] == 25
    # job 1: a file left behind as "running" by a killed process, with no checkpoint at all
    lost = sweep.jobs[1]
    with h5py.File(lost.path, "a") as f:
        f.attrs["status"] = "running"
        del f["checkpoint"]

    again = run_sweep(load_sweep(path), client=client)
    assert again.ok, again.rows
    assert [r["action"] for r in again.rows] == ["resumed", "restarted"]
    for job in sweep.jobs:
        tr = meanfield.load(job.path)
        assert tr.attrs["status"] == "finished"
        want = ref[job.id]
        assert np.array_equal(tr["x"][-1], want["x"][-1])
        # the same saves as the uninterrupted run (none added at the interrupt, step 25)
        assert np.array_equal(tr.scales["iteration"], want.scales["iteration"])
        assert np.array_equal(tr["energy"], want["energy"])
    assert [r["executions"] for r in _index(tmp_path / "out")] == [2, 2]


@pytest.mark.slow
def test_a_killed_worker_loses_only_its_run_which_is_retried(tmp_path, client):
    # the victim must outlive the time it takes to see its first checkpoint and kill its
    # worker, on fast machines too: many cheap steps (Python overhead per step dominates)
    steps = 12000
    long_base = (BASE.replace("n = 32", "n = 1000").replace("steps = 40", f"steps = {steps}")
                 .replace("save_every = 10", "save_every = 200")
                 .replace('save = ["x", "y"]', "save = []"))
    grid = textwrap.dedent("""\
        base = "base.toml"
        [grid]
        "initial.n" = [1000, 32, 33, 34]
        [output]
        dir = "out"
        """)
    sweep = load_sweep(_write(tmp_path, grid, long_base))
    victim = sweep.jobs[0]
    box = {}

    def reference():  # the uninterrupted run, in this process, meanwhile (numba threads: 1)
        import numba

        numba.set_num_threads(1)  # thread-local
        box["ref"] = meanfield.Run(victim.config).simulate()

    threads = [threading.Thread(target=lambda: box.update(
        res=run_sweep(sweep, client=client, threads=1))), threading.Thread(target=reference)]
    for t in threads:
        t.start()
    pids = client.run(os.getpid)
    side = checkpoint_path(victim.path)
    deadline = time.monotonic() + 60
    killed = None
    while killed is None and time.monotonic() < deadline and threads[0].is_alive():
        try:
            with h5py.File(side, "r") as f:
                started = f["checkpoint"].attrs["iteration"] > 0
        except (OSError, KeyError):
            started = False
        if started:
            for addr, keys in client.processing().items():
                if any(victim.name in str(k) for k in keys):
                    os.kill(pids[addr], signal.SIGKILL)
                    killed = addr
        time.sleep(0.005)
    for t in threads:
        t.join(120)
    assert killed is not None, "the long run ended before its worker could be killed"
    res = box["res"]
    assert res.ok, res.rows
    assert res.rows[0]["action"] == "resumed"  # the retry continued from the sidecar checkpoint
    assert [r["action"] for r in res.rows[1:]] == ["ran"] * 3
    tr = meanfield.load(victim.path)
    assert tr.attrs["status"] == "finished" and tr.scales["iteration"][-1] == steps
    ref = box["ref"]
    assert np.array_equal(tr.checkpoint["x"], ref.x) and np.array_equal(tr.checkpoint["y"], ref.y)
    assert np.array_equal(tr["energy"], ref["energy"])


@pytest.mark.slow
def test_ctrl_c_leaves_the_unfinished_runs_interrupted_not_running(tmp_path):
    # before: the runs cut short by stopping the cluster kept the status "running"
    long_base = (BASE.replace("n = 32", "n = 1000").replace("steps = 40", "steps = 200000")
                 .replace("save_every = 10", "save_every = 200").replace('save = ["x", "y"]', "save = []"))
    grid = 'base = "base.toml"\n[grid]\n"initial.n" = [1000, 1001]\n[output]\ndir = "out"\n'
    sweep = load_sweep(_write(tmp_path, grid, long_base))
    env = dict(os.environ, MEANFIELD_CHECKPOINT_INTERVAL="0.05")
    proc = subprocess.Popen([sys.executable, "-m", "meanfield_cli.main", "sweep", "sweep.toml",
                             "--workers", "2", "--threads", "1", "--no-progress"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    started = set()
    while len(started) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for job in sweep.jobs:
            try:
                with h5py.File(checkpoint_path(job.path), "r") as f:
                    if f["checkpoint"].attrs["iteration"] > 0:
                        started.add(job.id)
            except (OSError, KeyError):
                pass
        time.sleep(0.05)
    assert len(started) == 2, "the runs did not start"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    for job in sweep.jobs:
        with h5py.File(job.path, "r") as f:  # not locked: the workers are gone
            assert f.attrs["status"] == "interrupted"
        assert os.path.exists(checkpoint_path(job.path))  # what --resume / a rerun continues from
    assert {r["status"] for r in _index(tmp_path / "out")} == {"not done: sweep interrupted"}


@pytest.mark.slow
def test_cli_sweep_exit_status_and_summary(tmp_path):
    grid = GRID.replace("seeds = [0, 1]\n", "").replace('["exp_euler", "kick_drift"]',
                                                        '["exp_euler", "nope"]')
    path = _write(tmp_path, grid)
    r = CliRunner().invoke(cli, ["sweep", path, "--workers", "2", "--no-progress"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert "4 runs (2 ran): 2 finished, 2 with bad parameters" in r.stdout
    assert r.stderr.count("bad parameters") == 2 and '"nope"' in r.stderr
    assert len(_index(tmp_path / "out")) == 4


def test_cli_sweep_on_an_existing_scheduler(tmp_path, client):
    grid = GRID.replace("seeds = [0, 1]\n", "").replace('["constant", "nesterov"]', '["constant"]')
    path = _write(tmp_path, grid)
    address = client.scheduler.address
    r = CliRunner().invoke(cli, ["sweep", path, "--scheduler", address, "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "2 runs (2 ran): 2 finished" in r.stdout and r.stderr == ""
    r = CliRunner().invoke(cli, ["sweep", path, "--scheduler", address, "--workers", "2"])
    assert r.exit_code == 2 and "--workers" in r.output
    with pytest.raises(ParameterError, match="--scheduler"):
        run_sweep(path, scheduler="tcp://127.0.0.1:1", connect_timeout=0.5)
    assert client.submit(sum, [1, 2]).result() == 3  # the shared cluster is still up


@pytest.mark.parametrize("text, key", [
    ('base = "missing.toml"\n', "[base]"),
    ('base = "base.toml"\nbogus = 1\n', "[bogus]"),
    ('base = "base.toml"\n[grid]\n"integrator.h" = 0.1\n', "[grid.integrator.h]"),
    ('base = "base.toml"\n[grid]\n"nosection.h" = [0.1]\n', "[grid.nosection.h]"),
    ('base = "base.toml"\n[grid]\n"integrator.h" = [0.1, 0.1]\n', "[grid.integrator.h]"),
    ('base = "base.toml"\nseeds = [0, -1]\n', "[seeds]"),
    ('base = "base.toml"\n[output]\ndirectory = "x"\n', "[output.directory]"),
    ('base = "base.toml"\n[grid\n', "valid TOML"),
])
def test_cli_bad_sweep_file_exit_2_one_line(tmp_path, text, key):
    path = _write(tmp_path, text)
    r = CliRunner().invoke(cli, ["sweep", path, "--no-progress"])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    assert "sweep.toml" in lines[0] and key in lines[0] and "expected" in lines[0]


@pytest.mark.slow
def test_sigterm_to_the_sweep_writes_the_index_and_closes_the_cluster(tmp_path):
    # what a batch system sends before its kill: the finished point is "finished" in the
    # index (not "pending"), exit 128 + 15, one line, no leaked semaphores of the cluster
    import subprocess
    import sys

    grid = textwrap.dedent("""\
        base = "base.toml"
        [grid]
        run = [{t0 = 1.0, steps = 40, save_every = 10},
               {t0 = 1.0, steps = 50000000, save_every = 1000000}]
        [output]
        dir = "out"
        """)
    sweep = load_sweep(_write(tmp_path, grid))
    quick = sweep.jobs[0]
    proc = subprocess.Popen([sys.executable, "-m", "meanfield_cli.main", "sweep", "sweep.toml",
                             "--workers", "2", "--threads", "1", "--no-progress"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    status = None
    while status != "finished" and time.monotonic() < deadline and proc.poll() is None:
        try:
            with h5py.File(quick.path, "r") as f:
                status = f.attrs["status"]
        except (OSError, KeyError):
            pass
        time.sleep(0.05)
    assert status == "finished", proc.poll()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "sweep interrupted by SIGTERM" in err and "index written" in err, err
    assert "leaked" not in err and "Traceback" not in err, err
    rows = _index(tmp_path / "out")
    assert rows[0]["status"] == "finished", rows
    assert rows[1]["status"] != "pending", rows


def test_a_truncated_or_empty_file_is_run_again(tmp_path, client):
    # HDF5's error for a truncated file mentions "sblock": the point was taken for one another
    # process was writing, and never redone
    grid = GRID.replace("seeds = [0, 1]\n", "").replace('["constant", "nesterov"]', '["nesterov"]')
    sweep = load_sweep(_write(tmp_path, grid))
    assert run_sweep(sweep, client=client).ok
    truncated, empty = sweep.jobs
    size = os.path.getsize(truncated.path)
    assert size > 32 * 1024
    with open(truncated.path, "r+b") as fh:
        fh.truncate(size // 2)
    with open(empty.path, "r+b") as fh:
        fh.truncate(96)  # what a run killed within a millisecond of creating its file leaves
    again = run_sweep(load_sweep(_write(tmp_path, grid)), client=client)
    assert again.ok, again.rows
    assert [r["action"] for r in again.rows] == ["ran", "ran"]
    assert "unreadable file moved" in again.rows[0]["message"]  # a damaged file is kept aside
    assert os.path.exists(truncated.path + ".unreadable")
    assert not os.path.exists(empty.path + ".unreadable")


def test_the_sweep_specification_needs_no_dask(tmp_path):
    """meanfield.sweep.spec parses and expands a sweep file without importing dask.distributed (#28)."""
    (tmp_path / "base.toml").write_text('[model]\nname = "bilinear"\nd = 2\n[integrator]\nname = "exp_euler"\n'
                                        'h = 0.1\n[initial]\nlaw = "gaussian"\nn = 4\n[run]\nsteps = 2\n')
    (tmp_path / "s.toml").write_text('base = "base.toml"\nseeds = [0, 1]\n[grid]\n"integrator.h" = [0.1, 0.2]\n')
    code = ("import sys; from meanfield.sweep.spec import load_sweep; "
            f"s = load_sweep({str(tmp_path / 's.toml')!r}); print(len(s.jobs), 'distributed' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["4", "False"]


def test_a_sweep_refuses_cluster_runs_in_one_line(tmp_path):
    """A [cluster] section in a sweep's base file would start a cluster inside a worker: input error."""
    (tmp_path / "base.toml").write_text('[model]\nname = "softmax"\nd = 2\n[integrator]\nname = "rk4"\nh = 0.1\n'
                                        '[initial]\nlaw = "gaussian"\nn = 4\n[run]\nsteps = 2\n[cluster]\n'
                                        'scheduler = "local"\n')
    (tmp_path / "s.toml").write_text('base = "base.toml"\n[grid]\n"integrator.h" = [0.1, 0.2]\n')
    with pytest.raises(ParameterError) as err:
        load_sweep(str(tmp_path / "s.toml"))
    msg = str(err.value)
    assert "\n" not in msg and "base.toml" in msg and "[cluster]" in msg, msg
