"""dask.distributed clients for sweeps and for one run on a cluster (the ``[cluster]`` section).

A sweep spreads many runs over a cluster (:mod:`meanfield.sweep`); a run with
a ``[cluster]`` section spreads each of its oracle calls (the exact pair
passes of the softmax and sphere models, :mod:`meanfield.models._sharded`).
Both connect here: to an existing scheduler (``tcp://host:8786``: started by
``dask scheduler`` / ``dask worker``, dask-jobqueue or Kubernetes) or to a
LocalCluster of worker processes on this machine.

``[cluster]`` keys (docs/parameters.md)::

    scheduler = "local"        # or "tcp://host:8786"
    workers = 2                # local only: worker processes (default: all cores)
    threads_per_worker = 1     # local only: threads (numba threads of a shard) per worker
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from dataclasses import dataclass

from distributed.diagnostics.plugin import WorkerPlugin

from . import schema
from .errors import ParameterError

#: Keys of the ``[cluster]`` section.
CLUSTER_KEYS = ("scheduler", "workers", "threads_per_worker")
#: Seconds a run waits for the scheduler at ``cluster.scheduler`` before giving up (exit 2).
CONNECT_TIMEOUT = 10.0


def one_line(exc) -> str:
    """An exception's message on one line, at most 300 characters (its type name when empty)."""
    text = " ".join(str(exc).split())
    return text[:300] if text else type(exc).__name__


def set_numba_threads(threads) -> int:
    """Set (if given) and return the numba threads of the calling thread."""
    import numba

    if threads:
        # thread-local in numba: applies to the parallel regions this worker thread launches
        numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    return numba.get_num_threads()


def start_client(scheduler=None, workers=None, threads_per_worker=1, connect_timeout=CONNECT_TIMEOUT,
                 key="--scheduler"):
    """A client of the scheduler at ``scheduler``, or of a new LocalCluster; returns ``(client, cluster)``.

    Parameters
    ----------
    scheduler : str or None
        ``tcp://host:port`` of a running scheduler; None starts a LocalCluster.
    workers : int or None
        Worker processes of the LocalCluster (default: all cores).
    threads_per_worker : int
        Threads of each local worker.
    connect_timeout : float
        Seconds to wait for ``scheduler``.
    key : str
        What a ParameterError for an unreachable scheduler names (an option or a key).

    Returns
    -------
    client : distributed.Client
    cluster : distributed.LocalCluster or None
        The cluster started here (None for an existing scheduler): :func:`stop_client` closes it.

    Raises
    ------
    ParameterError
        ``scheduler`` cannot be reached within ``connect_timeout``.
    """
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            return Client(scheduler, timeout=connect_timeout), None
        except (OSError, TimeoutError, ValueError) as exc:
            raise ParameterError(key, "the address of a running dask scheduler (tcp://host:port)",
                                 f"{scheduler} ({one_line(exc)})") from None
    n = workers or os.cpu_count() or 1
    # no dashboard; its bare HTTP server on a free port (8787 may be taken). Worker
    # errors reach the caller, so the cluster's own logs are kept quiet.
    cluster = LocalCluster(n_workers=n, threads_per_worker=threads_per_worker, processes=True,
                           dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"},
                           silence_logs=logging.CRITICAL)
    client = Client(cluster)
    client.register_plugin(_IgnoreSigint(), name="meanfield-ignore-sigint")
    return client, cluster


class _IgnoreSigint(WorkerPlugin):
    """Ctrl-C in a terminal reaches the local workers too (same process group): only the
    client should react (a sweep writes its index, a run finishes its step and checkpoints),
    then close the cluster."""

    def setup(self, worker):
        import signal

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_client(client, cluster) -> None:
    """Close ``client``, then ``cluster`` if it was started by :func:`start_client`."""
    try:
        client.close()
    finally:
        if cluster is not None:
            cluster.close()


_CLUSTER = schema.section("cluster")


@dataclass(frozen=True)
class ClusterSpec:
    """The validated ``[cluster]`` section of a run.

    Attributes
    ----------
    scheduler : str
        ``"local"`` or the address of a running scheduler (``tcp://host:8786``).
    workers : int or None
        Local worker processes (None: all cores); local only.
    threads_per_worker : int
        Threads of each local worker: numba threads of the shard it computes; local only.
    """

    scheduler: str = _CLUSTER.default("scheduler")
    workers: int | None = None  # all cores (the schema's derived default)
    threads_per_worker: int = _CLUSTER.default("threads_per_worker")

    @property
    def local(self) -> bool:
        """True for a LocalCluster started by the run (``scheduler = "local"``)."""
        return self.scheduler == "local"

    @classmethod
    def from_dict(cls, section: dict) -> ClusterSpec:
        """Validated keys of a ``[cluster]`` section (each value by its schema kind; unknown keys are
        refused by the config reader)."""
        s, given = _CLUSTER.read(section), _CLUSTER.typed(section)
        scheduler = s.scheduler
        for key in ("workers", "threads_per_worker"):
            value = getattr(given, key)  # a default is not a value given with a remote scheduler
            if value is not None and scheduler != "local":
                raise ParameterError(f"cluster.{key}", 'no value with scheduler = "tcp://..." (the workers '
                                     "of a running scheduler are set where they start: dask worker "
                                     "--nworkers/--nthreads); it sizes a scheduler = \"local\" cluster",
                                     value)
        return cls(scheduler=scheduler, workers=s.workers, threads_per_worker=s.threads_per_worker)


class Connection:
    """A run's dask client (and the LocalCluster it started); closed by :meth:`close` or at exit.

    Parameters
    ----------
    spec : ClusterSpec
    connect_timeout : float or None
        Seconds to wait for a remote scheduler (None: :data:`CONNECT_TIMEOUT`).

    Raises
    ------
    ParameterError
        ``cluster.scheduler`` cannot be reached (nothing has been written yet).
    """

    def __init__(self, spec: ClusterSpec, connect_timeout: float | None = None):
        self.spec = spec
        # a lost scheduler stops the run with its own one-line message (models/_sharded.py);
        # the client's reconnection log would add lines of its own to the command's output
        logging.getLogger("distributed.client").setLevel(logging.CRITICAL)
        self.client, self.cluster = start_client(
            None if spec.local else spec.scheduler, spec.workers, spec.threads_per_worker,
            CONNECT_TIMEOUT if connect_timeout is None else connect_timeout, key="cluster.scheduler")
        self._finalizer = weakref.finalize(self, _close_quietly, self.client, self.cluster)

    def close(self) -> None:
        """Close the client (and stop a LocalCluster started for the run)."""
        self._finalizer()


def _close_quietly(client, cluster) -> None:
    try:
        stop_client(client, cluster)
    except Exception:  # noqa: BLE001 - at exit, a scheduler already gone is not an error
        pass


__all__ = ["CLUSTER_KEYS", "ClusterSpec", "Connection", "one_line", "set_numba_threads", "start_client",
           "stop_client"]
