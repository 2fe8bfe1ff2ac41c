"""Summation backend "exact, sharded over a dask cluster" of the softmax and sphere models.

One pass over pairs (:func:`meanfield._kernels.pairwise.loop_pass`) is split
by blocks of target rows: each worker computes its rows against all columns
with the same row-wise kernel, and the client places the rows it gathers.
Per oracle call the state ``x`` (N, d) is sent once to the cluster and
fetched by every worker from the first that holds it (each lays out its source
tiles and query rows from it and keeps them for the passes of the same call:
the accelerated field's z pass and force pass); the force pass also sends s_j
(N) the same way and c_i, m_i of its rows with each shard. A row's sums depend
only on its index, not on how the blocks are split (see ``loop_pass``), so the
gathered sums are bit for bit those of one
row-wise pass in one process, at any number of workers -- provided the
workers run the same machine code as the client: numba compiles for the CPU
it runs on, and a different vector width (AVX2 vs AVX-512) changes the order
of the tile reductions, hence the last bits.

Faults: a worker lost during a call has its shard recomputed by another
(the scheduler's own rescheduling, plus ``retries`` for errors raised in a
task); a worker lost with the only copy of the state makes the client send it
again and redo the pass, which gives the same bits. A lost scheduler raises
:class:`~meanfield.errors.SimulationError` (the loop adds the step and time;
the run file keeps its last checkpoint and resumes with ``meanfield run --resume``).
"""

from __future__ import annotations

import threading

import numpy as np

from .._kernels import pairwise as PK
from ..errors import SimulationError

#: Extra attempts for a shard whose task raised (a worker that dies is rescheduled anyway).
RETRIES = 3
#: Seconds a pass waits for a worker when the cluster has none.
WAIT_FOR_WORKERS = 60.0
#: Attempts of a pass whose state a dying worker took with it (each sends it again).
PASS_ATTEMPTS = 4
#: Seconds a scatter is tried again after failing on a lost worker (while the scheduler answers).
SCATTER_RETRY_S = 30.0

# ------------------------------------------------------------------ worker side

#: The tiles of the newest state this process holds: ``{key: (XT, QA)}`` (one entry).
_PREPARED: dict = {}
#: One shard at a time per process: numba's workqueue threading layer does not allow parallel
#: regions launched from several threads at once (workers sharing a process: processes=False).
_LOCK = threading.Lock()


def _worker_threads():
    """numba threads for a shard: the calling dask worker's thread count (1 outside a worker)."""
    try:
        from distributed import get_worker

        return get_worker().state.nthreads
    except (ImportError, ValueError):
        return 1


def _prepared(x, A, key):
    """Source tiles ``XT`` and query rows ``QA`` of state ``x`` for logits ``x^T A x``, made once per key."""
    got = _PREPARED.get(key)
    if got is None:
        n, d = x.shape
        tj = PK.tile_width(d, x.dtype.itemsize)
        XT = PK.empty_aligned((PK.n_tiles(n, tj), d, tj), x.dtype)
        QA = np.empty((n, d), x.dtype)
        PK.prepare(x, A, XT, QA)
        _PREPARED.clear()  # one state at a time: a call's passes share it, the next call brings its own
        _PREPARED[key] = got = (XT, QA)
    return got


def shard_pass(x, key, A, mode, causal, b0, b1, s=None, cvec=None, mrow=None):
    """One pass over pairs for the targets of blocks ``[b0, b1)`` (a dask task; see ``loop_pass``).

    Parameters
    ----------
    x : (N, d) state (the copy sent for this call)
    key : hashable, names ``x`` and ``A`` (the worker keeps their tiles for the call's next pass)
    A : (d, d) float64 query-key matrix
    mode : int, ``PK.MODE_SOFTMAX``, ``MODE_Z`` or ``MODE_FORCE``
    causal : bool
    b0, b1 : int, blocks of ``PK.TI`` targets
    s : (N,) float64 s_j (force mode; sent like x)
    cvec, mrow : (M,) float64 c_i and m_i of the shard's rows (force mode)

    Returns
    -------
    tuple of arrays
        ``(mrow, lrow)`` in z mode, ``(mrow, lrow, acc)`` in softmax mode, ``(acc,)`` in force mode;
        rows ``b0 TI`` to ``min(N, b1 TI) - 1``, acc ``(M, d)`` float64.
    """
    from ..cluster import set_numba_threads

    n, d = x.shape
    m_rows = min(n, b1 * PK.TI) - b0 * PK.TI
    zero = x.dtype.type(0)
    big = x.dtype.type(PK.big_for(x.dtype))
    with _LOCK:
        set_numba_threads(_worker_threads())
        XT, QA = _prepared(x, A, key)
        force = mode == PK.MODE_FORCE
        acc = np.empty((m_rows, d) if mode != PK.MODE_Z else (1, d), np.float64)
        lrow = np.empty(m_rows, np.float64)
        if force:
            ST = PK.empty_aligned(XT.shape[:1] + XT.shape[2:], x.dtype)
            PK.prepare_values(s, ST)
            mrow = np.ascontiguousarray(mrow)
            cvec = np.ascontiguousarray(cvec)
        else:
            ST = np.zeros((1, 1), x.dtype)
            mrow = np.empty(m_rows, np.float64)
            cvec = mrow
        PK.loop_pass(mode, QA, XT, ST, cvec, n, causal, zero, big, b0, b1, acc, mrow, lrow)
    if force:
        return (acc,)
    return (mrow, lrow) if mode == PK.MODE_Z else (mrow, lrow, acc)


# ------------------------------------------------------------------ client side


def shard_bounds(nblk: int, parts: int, causal: bool) -> list:
    """Block ranges ``[(b0, b1), ...]`` splitting ``nblk`` blocks into at most ``parts`` of equal cost.

    A block costs its number of sources: all N, or ~its index under a causal mask.
    """
    parts = max(1, min(parts, nblk))
    cost = np.arange(1, nblk + 1, dtype=np.float64) if causal else np.ones(nblk)
    cum = np.concatenate([[0.0], np.cumsum(cost)])
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, parts) / parts)
    edges = np.unique(np.concatenate([[0], np.clip(cuts, 1, nblk - 1), [nblk]]))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


class ShardedSums:
    """The exact row-wise pair passes of a model, computed on a dask cluster by row blocks.

    Parameters
    ----------
    client : distributed.Client
    causal : bool
        Causal mask (balances the shards by their number of pairs).
    """

    def __init__(self, client, causal: bool):
        self.client = client
        self.causal = causal
        self._x = None  # the client's copy of the state on the cluster
        self._xf = None  # its future on the cluster
        self._s = None  # s_j of the last force pass, and its future
        self._sf = None
        #: Shards of the last pass (the tests read it).
        self.shards = []

    def warm_up(self, d: int, dtype) -> None:
        """Have every worker compile (or load) the pass kernels for ``(d, dtype)`` now, not in the first step.

        In one process numba compiles before the loop's clock starts
        (``compile_time``); this does the same for the workers.
        """
        x = np.random.default_rng(0).normal(size=(2 * PK.TI, d)).astype(dtype)
        A, s = np.eye(d), np.zeros(len(x))
        c = np.ones(len(x))
        futures = [self.client.submit(shard_pass, x, ("warm-up", w), A, mode, self.causal, 0, 2, workers=[w],
                                      pure=False, **({"s": s, "cvec": c, "mrow": c}
                                                     if mode == PK.MODE_FORCE else {}))
                   for w in self._workers() for mode in (PK.MODE_SOFTMAX, PK.MODE_FORCE)]
        try:
            self.client.gather(futures)
        except Exception as exc:  # noqa: BLE001
            raise self._lost(exc) from None

    def set_points(self, x) -> None:
        """Send state ``x`` (N, d) to the cluster for this call's passes (not again if it is there already)."""
        if self._x is not None and self._x.shape == x.shape and np.array_equal(self._x, x):
            return
        self._xf = None  # the old copies go when no future names them
        self._x = x.copy()
        self._xf = self._scatter(self._x)

    def _scatter(self, arr):
        """A future of ``arr``, held by one worker; the shards on other workers fetch it from there.

        Not dask's broadcast: its replication waits on a worker that died since
        the last call (30 s connection attempts, repeated). Here a worker lost
        with the only copy makes the pass fail with "lost dependencies", and
        :meth:`run_pass` sends the data again and redoes the pass. A scatter
        that fails is tried again while the scheduler answers.
        """
        import time

        deadline = time.monotonic() + SCATTER_RETRY_S
        while True:
            try:
                return self.client.scatter(arr, hash=False)
            except Exception as exc:  # noqa: BLE001 - comm failures
                if time.monotonic() > deadline or not self._scheduler_answers():
                    raise self._lost(exc) from None
                time.sleep(0.2)

    def _scheduler_answers(self) -> bool:
        try:
            self.client.scheduler_info(n_workers=-1)
        except Exception:  # noqa: BLE001
            return False
        return self.client.status == "running"

    def _lost(self, exc) -> SimulationError:
        from ..cluster import one_line

        return SimulationError(
            f"lost the dask cluster ({type(exc).__name__}: {one_line(exc)}); the run stopped at its "
            "last checkpoint: continue with meanfield run --resume once the scheduler is back")

    def _workers(self) -> list:
        try:
            info = self.client.scheduler_info(n_workers=-1)["workers"]
        except Exception as exc:  # noqa: BLE001
            raise self._lost(exc) from None
        workers = sorted(info)
        if not workers:  # none yet (a batch system starting them) or none left: wait a little
            try:
                self.client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS)
                workers = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
            except Exception:  # noqa: BLE001 - a timeout, or the scheduler went too
                workers = []
        if not workers:
            raise SimulationError("the dask cluster has no workers left; the run stopped at its last "
                                  "checkpoint: continue with meanfield run --resume")
        return workers

    def run_pass(self, mode, A, acc, mrow, lrow, s=None, cvec=None) -> None:
        """One pass over pairs (``PK.MODE_*``) at the state on the cluster into the client's arrays.

        Parameters
        ----------
        mode : int
        A : (d, d) float64 query-key matrix
        acc : (N, d) float64 output (softmax and force modes)
        mrow : (N,) float64 output (input in force mode)
        lrow : (N,) float64 output (softmax and z modes)
        s : (N,) float64 s_j (force mode)
        cvec : (N,) float64 c_i (force mode)
        """
        force = mode == PK.MODE_FORCE
        if force and (self._s is None or not np.array_equal(self._s, s)):
            self._sf = None
            self._s = s.copy()
            self._sf = self._scatter(self._s)
        for attempt in range(PASS_ATTEMPTS):
            try:
                results = self._shards(mode, A, cvec, mrow)
                break
            except SimulationError:
                raise
            except Exception as exc:  # noqa: BLE001 - comm failures, cancelled futures, lost data
                if not self._scheduler_answers():
                    raise self._lost(exc) from None
                if attempt == PASS_ATTEMPTS - 1:
                    if _is_comm_failure(exc):
                        raise self._lost(exc) from None
                    raise
                # a worker died with the only copy of x or s: send
                # them again and redo the pass (a pure function of its inputs: the same bits)
                self._xf = self._scatter(self._x)
                if force:
                    self._sf = self._scatter(self._s)
        n = self._x.shape[0]
        for (b0, b1), res in zip(self.shards, results):
            r0, r1 = b0 * PK.TI, min(n, b1 * PK.TI)
            if force:
                acc[r0:r1] = res[0]
                continue
            mrow[r0:r1], lrow[r0:r1] = res[0], res[1]
            if mode == PK.MODE_SOFTMAX:
                acc[r0:r1] = res[2]

    def _shards(self, mode, A, cvec, mrow) -> list:
        """Submit one shard per worker and gather their results (in the order of ``self.shards``)."""
        n = self._x.shape[0]
        workers = self._workers()
        self.shards = shard_bounds(PK.n_blocks(n), len(workers), self.causal)
        key = (self._xf.key, A.tobytes())
        futures = []
        for w, (b0, b1) in zip(workers, self.shards):
            extra = {}
            if mode == PK.MODE_FORCE:
                r0, r1 = b0 * PK.TI, min(n, b1 * PK.TI)
                extra = dict(s=self._sf, cvec=cvec[r0:r1].copy(), mrow=mrow[r0:r1].copy())
            # pinned to a worker (one shard each), but any other may take it if that one dies
            futures.append(self.client.submit(
                shard_pass, self._xf, key, A, mode, self.causal, b0, b1, **extra,
                workers=[w], allow_other_workers=True, retries=RETRIES, pure=False))
        return self.client.gather(futures)


def _is_comm_failure(exc) -> bool:
    """True for the errors of a client that lost its scheduler (not for an error raised in a task)."""
    from concurrent.futures import CancelledError

    from distributed.client import FutureCancelledError

    # CommClosedError is an OSError
    return isinstance(exc, (CancelledError, FutureCancelledError, OSError, TimeoutError))
