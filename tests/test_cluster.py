"""One run's exact pair passes sharded over a dask cluster (issue 29; meanfield/models/_sharded.py).

The reference is the row-wise pass in this process (``use_row_passes``): the
sharded passes must give its bits at 1, 2 and 3 workers. Most tests share
in-process LocalClusters (threads, started in milliseconds, one per worker
count, for the module); the end-to-end tests start real worker processes
(``[cluster] scheduler = "local"``) or a ``dask scheduler`` / ``dask worker``
pair to kill.
"""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from meanfield_cli.main import cli

import meanfield
from meanfield import cluster as mcluster
from meanfield._kernels import pairwise as PK
from meanfield.errors import ParameterError, SimulationError
from meanfield.io.hdf5 import checkpoint_path
from meanfield.models._sharded import shard_bounds
from meanfield.models.softmax import Softmax, SoftmaxParams
from meanfield.models.sphere import Sphere, SphereParams

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def clients():
    """``{k: Client}`` of in-process LocalClusters with k single-threaded workers, k = 1, 2, 3."""
    out, clusters = {}, []
    for k in (1, 2, 3):
        cl = distributed.LocalCluster(n_workers=k, threads_per_worker=1, processes=False,
                                      dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"})
        clusters.append(cl)
        out[k] = distributed.Client(cl)
    yield out
    for k, cl in zip(out, clusters):
        out[k].close()
        cl.close()


def _softmax(dynamics, causal, dtype, normalized=True, d=3):
    rng = np.random.default_rng(5)
    A = rng.normal(size=(d, d)) * 0.4
    A = A + A.T  # symmetric: in-process the symmetric pair pass would be used, not the row pass
    p = {"d": d, "A": A.tolist(), "causal": causal}
    if dynamics == "first_order":
        p["normalized"] = normalized
    return Softmax(SoftmaxParams.from_dict(p, dynamics), dynamics, dtype)


def _sphere(dynamics, causal, dtype, d=3):
    p = SphereParams.from_dict({"d": d, "beta": 2.0, "causal": causal}, dynamics)
    return Sphere(p, dynamics, dtype)


def _field(model, x, y):
    if model.accelerated:
        return model.hamiltonian_field(x, y, 0.5)
    return (model.first_order(x, 0.5),)


# N = 200: 7 blocks of PK.TI = 32 rows, the last one short; every shard boundary is a block edge
N = 200

CASES = [("softmax", "first_order", True), ("softmax", "first_order", False), ("softmax", "accelerated", True),
         ("sphere", "first_order", True), ("sphere", "accelerated", True)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name, dynamics, normalized", CASES)
def test_sharded_passes_are_the_row_passes_bit_for_bit(clients, name, dynamics, normalized, causal, dtype):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(N, 3))
    if name == "sphere":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = rng.normal(size=(N, 3)) * 0.5
    x, y = x.astype(dtype), y.astype(dtype)

    def make():
        return (_sphere(dynamics, causal, dtype) if name == "sphere"
                else _softmax(dynamics, causal, dtype, normalized))

    ref = make()
    ref.use_row_passes()
    want = _field(ref, x, y)
    energies = ref.energies(x, y if ref.accelerated else None)
    for k, client in clients.items():
        model = make()
        model.shard_over(client)
        got = _field(model, x, y)
        sharded = (model.attention if name == "sphere" else model)._sharded
        assert len(sharded.shards) == k  # one shard per worker: the pass really was split k ways
        for a, b in zip(want, got):
            assert a.dtype == dtype
            np.testing.assert_array_equal(a, b, err_msg=f"{k} workers")
        assert model.energies(x, y if model.accelerated else None) == energies
        # a second call at a new state (the broadcast copy and the workers' tiles are replaced)
        x2 = (x * dtype(0.9)).astype(dtype)
        np.testing.assert_array_equal(_field(ref, x2, y)[0], _field(model, x2, y)[0])


def test_symmetric_pairs_differ_from_the_row_passes_so_the_reference_is_the_row_pass():
    """Why the reference is ``use_row_passes``: the default in-process pass for symmetric A is another sum."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N, 3))
    sym, rows = _softmax("first_order", False, np.float64), _softmax("first_order", False, np.float64)
    rows.use_row_passes()
    assert sym.symmetric_pairs and not rows.symmetric_pairs
    a, b = sym.first_order(x, 0.0), rows.first_order(x, 0.0)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_per_layer_weights_keep_row_passes(clients):
    d = 2
    A = np.stack([np.eye(d), 0.5 * np.eye(d)])
    ref, model = _softmax("first_order", False, np.float64, d=d), _softmax("first_order", False, np.float64, d=d)
    for m in (ref, model):
        m.set_layers(A, A)
    ref.use_row_passes()
    model.shard_over(clients[2])
    x = np.random.default_rng(0).normal(size=(70, d))
    for layer in (0, 1):
        ref.use_layer(layer)
        model.use_layer(layer)
        assert not model.symmetric_pairs
        np.testing.assert_array_equal(ref.first_order(x, 0.0), model.first_order(x, 0.0))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("nblk, parts", [(1, 3), (7, 1), (7, 2), (7, 3), (100, 16)])
def test_shard_bounds_cover_every_block_once_with_balanced_cost(nblk, parts, causal):
    bounds = shard_bounds(nblk, parts, causal)
    assert bounds[0][0] == 0 and bounds[-1][1] == nblk
    assert all(a < b for a, b in bounds) and all(b == c for (_, b), (c, _) in zip(bounds, bounds[1:]))
    assert len(bounds) == min(nblk, parts)
    if nblk == 100:
        cost = [sum(range(a + 1, b + 1)) if causal else b - a for a, b in bounds]
        assert max(cost) <= 1.15 * sum(cost) / len(cost)


def test_loop_pass_over_a_block_range_writes_only_its_rows():
    """The kernel entry point of a shard: rows of blocks [b0, b1) at offset b0 TI, nothing else."""
    rng = np.random.default_rng(2)
    n, d = 150, 3
    x = rng.normal(size=(n, d))
    tj = PK.tile_width(d, 8)
    XT = PK.empty_aligned((PK.n_tiles(n, tj), d, tj), np.float64)
    QA = np.empty((n, d))
    PK.prepare(x, np.eye(d), XT, QA)
    full = [np.zeros((n, d)), np.zeros(n), np.zeros(n)]
    PK.loop_pass(PK.MODE_SOFTMAX, QA, XT, np.zeros((1, 1)), full[1], n, False, 0.0, 1e30, 0, PK.n_blocks(n),
                 *full)
    b0, b1 = 2, 4
    part = [np.full((2 * PK.TI + 1, d), 7.0), np.full(2 * PK.TI + 1, 7.0), np.full(2 * PK.TI + 1, 7.0)]
    PK.loop_pass(PK.MODE_SOFTMAX, QA, XT, np.zeros((1, 1)), part[1], n, False, 0.0, 1e30, b0, b1, *part)
    r0, r1 = b0 * PK.TI, b1 * PK.TI
    for f, p in zip(full, part):
        np.testing.assert_array_equal(f[r0:r1], p[:-1])
        assert np.all(p[-1] == 7.0)


# --------------------------------------------------------------------------- runs with [cluster]

BASE = textwrap.dedent("""\
    [model]
    name = "softmax"
    dynamics = "accelerated"
    d = 3
    A = [[0.6, 0.1, 0.0], [0.1, 0.5, 0.0], [0.0, 0.0, 0.4]]
    [damping]
    schedule = "nesterov"
    [integrator]
    name = "kick_drift"
    h = 0.02
    [initial]
    law = "gaussian"
    n = 300
    seed = 4
    [run]
    t0 = 1.0
    steps = 40
    save_every = 5
    [output]
    path = "out.h5"
    save = ["x", "y"]
    """)


def _params(tmp_path, cluster: str, name="p.toml", **subs) -> str:
    text = BASE
    for old, new in subs.items():
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text + cluster)
    return str(path)


def _reference(params: str):
    """The same run in this process with the row-wise passes (no [cluster])."""
    cfg = meanfield.io.config.read_toml(params)
    cfg.pop("cluster", None)
    run = meanfield.Run(cfg)
    run.model.use_row_passes()
    return run.simulate()


def _one_line_error(res, *words):
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("meanfield: error:"), res.output
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_unreachable_scheduler_exits_2_in_one_line_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(mcluster, "CONNECT_TIMEOUT", 0.5)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = _params(tmp_path, f'[cluster]\nscheduler = "tcp://127.0.0.1:{port}"\n')
    out = tmp_path / "out.h5"
    res = CliRunner().invoke(cli, ["run", p, "-o", str(out)])
    _one_line_error(res, "cluster.scheduler", f"127.0.0.1:{port}", "p.toml")
    assert not out.exists() and not os.path.exists(checkpoint_path(str(out)))


@pytest.mark.parametrize("cluster, words", [
    ('[cluster]\nscheduler = "local"\nnodes = 3\n', ["cluster.nodes", "threads_per_worker"]),
    ('[cluster]\nscheduler = "localhost"\n', ["cluster.scheduler", "localhost"]),
    ('[cluster]\nworkers = 0\n', ["cluster.workers", "integer >= 1"]),
    ('[cluster]\nscheduler = "tcp://127.0.0.1:8786"\nworkers = 2\n', ["cluster.workers", "dask worker"]),
])
def test_bad_cluster_keys_are_one_line(tmp_path, cluster, words):
    res = CliRunner().invoke(cli, ["run", _params(tmp_path, cluster), "-o", str(tmp_path / "o.h5")])
    _one_line_error(res, *words)
    assert not (tmp_path / "o.h5").exists()


def test_cluster_with_fourier_summation_is_an_input_error_naming_the_key(tmp_path):
    p = _params(tmp_path, '[cluster]\nscheduler = "local"\n',
                **{'d = 3\n': 'd = 2\nsummation = "fourier"\n',
                   "A = [[0.6, 0.1, 0.0], [0.1, 0.5, 0.0], [0.0, 0.0, 0.4]]": "A = 0.5"})
    res = CliRunner().invoke(cli, ["run", p, "-o", str(tmp_path / "o.h5")])
    _one_line_error(res, "model.summation", "fourier", "[cluster]")


def test_cluster_with_a_model_without_pair_sums_is_an_input_error(tmp_path):
    with pytest.raises(ParameterError, match=r"\[cluster\].*'bilinear'"):
        meanfield.Run({"model": {"name": "bilinear", "d": 2}, "integrator": {"h": 0.1}, "run": {"steps": 1},
                       "cluster": {"scheduler": "local"}})


def _worker_pids(client) -> dict:
    return client.run(os.getpid)


class _AtSave:
    """An observer calling ``action()`` at its ``at``-th save."""

    def __init__(self, at, action):
        self.at, self.action, self.saves = at, action, 0

    def save(self, record):
        self.saves += 1
        if self.saves == self.at:
            self.action()


def _kill_a_worker_mid_call(client, call):
    """SIGKILL one worker process at oracle pass ``call``, after its shards were submitted and
    before they are gathered (the shards of that worker are then lost mid-call)."""
    gather, state = client.gather, {"calls": 0, "killed": None}

    def killing_gather(futures, *args, **kwargs):
        state["calls"] += 1
        if state["calls"] == call:
            pid = sorted(_worker_pids(client).items())[0][1]
            os.kill(pid, signal.SIGKILL)
            state["killed"] = pid
        return gather(futures, *args, **kwargs)

    client.gather = killing_gather
    return state


def test_real_worker_processes_and_killed_workers_change_nothing(tmp_path):
    """[cluster] scheduler = "local": 2 worker processes; one is SIGKILLed between two calls (the
    next broadcast meets it dead), another mid-call (its shards are lost); the result is the same."""
    p = _params(tmp_path, '[cluster]\nscheduler = "local"\nworkers = 2\n')
    want = _reference(p)
    run = meanfield.Run(p)
    try:
        client = run.cluster.client
        assert len(_worker_pids(client)) == 2 and os.getpid() not in _worker_pids(client).values()
        between = _AtSave(2, lambda: os.kill(sorted(_worker_pids(client).items())[-1][1], signal.SIGKILL))
        killed = _kill_a_worker_mid_call(client, call=30)
        res = run.simulate(str(tmp_path / "out.h5"), observers=[between])
        assert between.saves >= 2 and killed["killed"] is not None
        assert killed["killed"] not in _worker_pids(client).values()  # it is gone (the nanny starts another)
    finally:
        run.close()
    np.testing.assert_array_equal(res.x, want.x)
    np.testing.assert_array_equal(res.y, want.y)
    np.testing.assert_array_equal(res["energy"], want["energy"])
    with h5py.File(tmp_path / "out.h5") as f:
        assert f.attrs["status"].startswith("finished")
        assert "cluster" in f.attrs["config"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_scheduler(port):
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                              "--port", str(port), "--dashboard-address", ":0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}",
                               "--nthreads", "1", "--no-nanny"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60  # the scheduler listens, and the worker has joined
    while time.monotonic() < deadline:
        try:
            with distributed.Client(f"tcp://127.0.0.1:{port}", timeout=5) as c:
                c.wait_for_workers(1, timeout=60)
            break
        except (OSError, TimeoutError):
            time.sleep(0.2)
    return sched, worker


def _stop(*procs):
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _lose_the_scheduler(tmp_path, port):
    """A run on a ``dask scheduler`` process that is killed at the run's third save.

    The client tries to reconnect for its connect timeout before the run stops: 2 s here.
    """
    p = _params(tmp_path, f'[cluster]\nscheduler = "tcp://127.0.0.1:{port}"\n')
    out = str(tmp_path / "out.h5")
    sched, worker = _start_scheduler(port)
    try:
        run = meanfield.Run(p)
        with pytest.raises(SimulationError, match=r"in step 1[1-5] \(from t = .*lost the dask cluster"):
            run.simulate(out, observers=[_AtSave(3, sched.kill)])
        run.close()
    finally:
        _stop(sched, worker)
    return p, out


def test_a_lost_scheduler_stops_the_run_with_step_and_time_and_a_resumable_file(tmp_path, monkeypatch):
    monkeypatch.setattr(mcluster, "CONNECT_TIMEOUT", 2.0)
    p, out = _lose_the_scheduler(tmp_path, _free_port())
    with h5py.File(out) as f:
        assert f.attrs["status"].startswith("failed: in step")
    tr = meanfield.load(out)
    assert tr.checkpoint is not None and int(tr.checkpoint["iteration"]) in (0, 5, 10)  # a save before the loss


@pytest.mark.slow
def test_after_a_lost_scheduler_resume_is_bit_identical(tmp_path):
    port = _free_port()
    p, out = _lose_the_scheduler(tmp_path, port)
    want = _reference(p)
    sched, worker = _start_scheduler(port)  # the scheduler is back at its address
    try:
        res = CliRunner().invoke(cli, ["run", "--resume", out])
        assert res.exit_code == 0, res.output
    finally:
        _stop(sched, worker)
    got = meanfield.load(out)
    np.testing.assert_array_equal(got["x"][-1], want.x)
    np.testing.assert_array_equal(got["energy"], want["energy"])


def test_benchmark_quick_mode(tmp_path):
    """benchmarks/bench_distributed.py --quick: the table's numbers, the same bits, the cost model."""
    import importlib
    import json

    bench_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
    sys.path.insert(0, bench_dir)
    try:
        bench = importlib.import_module("bench_distributed")
    finally:
        sys.path.remove(bench_dir)
    out = tmp_path / "distributed.json"
    bench.main(["--quick", "--n", "600", "--repeat", "2", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["call"]["bit_identical"] and res["call"]["N"] == 600
    assert res["call"]["cluster_s"] > 0 and res["runs"]["cluster_wall_time_s"] > 0
    assert res["runs"]["cluster_oracle_calls"] == res["runs"]["local_oracle_calls"] > 0
    assert res["per_worker_gpairs_s"] > 0 and res["machine"]["cpu"]
    m16 = next(r for r in res["model"] if r["N"] == 10**6 and r["workers"] == 16)
    assert m16["total_s"] == pytest.approx(m16["fixed_s"] + m16["broadcast_s"] + m16["compute_s"] + m16["gather_s"])
    assert m16["compute_s"] == pytest.approx(1e12 / (16 * res["per_worker_gpairs_s"] * 1e9))


@pytest.mark.slow
def test_resume_after_sigkill_of_the_client_is_bit_identical(tmp_path):
    """``meanfield run`` with a local cluster, SIGKILLed (with its workers) mid-run, then --resume."""
    p = _params(tmp_path, '[cluster]\nscheduler = "local"\nworkers = 2\n',
                **{"steps = 40": "steps = 400", "n = 300": "n = 1500"})
    want = _reference(p)
    out = str(tmp_path / "out.h5")
    proc = subprocess.Popen([sys.executable, "-m", "meanfield_cli.main", "run", p, "-o", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    side = checkpoint_path(out)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if os.path.exists(side):
                with h5py.File(side) as f:
                    if int(f["checkpoint"].attrs.get("iteration", 0)) >= 20:
                        break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it was killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the client and its LocalCluster's processes
        proc.wait(10)
    res = CliRunner().invoke(cli, ["run", "--resume", out])
    assert res.exit_code == 0, res.output
    got = meanfield.load(out)
    np.testing.assert_array_equal(got["x"][-1], want.x)
    np.testing.assert_array_equal(got["energy"], want["energy"])


def test_resume_may_move_a_cluster_run_to_another_cluster_but_not_add_one(tmp_path):
    """cluster.* are resumable: 20 steps on 2 workers, 20 more on 1, the bits of 40 row-wise steps;
    adding a [cluster] to a run without one (other rounding) is refused in one line."""
    short = {"steps = 40": "steps = 20"}
    out = str(tmp_path / "out.h5")
    res = CliRunner().invoke(cli, ["run", _params(tmp_path, '[cluster]\nscheduler = "local"\nworkers = 2\n',
                                                  **short), "-o", out])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["run", "--resume", out, "--set", "run.steps=40", "--set", "cluster.workers=1"])
    assert res.exit_code == 0, res.output
    want = _reference(_params(tmp_path, "", name="q.toml"))
    got = meanfield.load(out)
    np.testing.assert_array_equal(got["x"][-1], want.x)
    np.testing.assert_array_equal(got["energy"], want["energy"])
    plain = str(tmp_path / "plain.h5")
    assert CliRunner().invoke(cli, ["run", _params(tmp_path, "", name="r.toml", **short), "-o", plain]).exit_code == 0
    _one_line_error(CliRunner().invoke(cli, ["run", "--resume", plain, "--set", 'cluster.scheduler="local"']),
                    "[cluster]", "a section added")
