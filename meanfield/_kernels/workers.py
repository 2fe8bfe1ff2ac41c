"""Python threads for ``nogil`` numba kernels: a parallel pass that leaves no thread spinning.

A network's forward pass alternates BLAS products (on OpenBLAS's own threads)
with numba passes (the heads, LayerNorm, the MLP activation). After a
``prange`` region numba's OpenMP workers spin (GOMP's default: 3.5 ms of a
core per region on this project's Xeon), and the BLAS product that follows
then runs on one core for that long. :func:`in_workers` runs serial kernels
on a range of the work each, on Python threads that wait on a queue: the
kernels are compiled with ``nogil``, so they run in parallel, and the split
depends on the work only (each row, each item is computed alike whichever
thread takes it): the bits do not depend on the thread count.
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()
#: Executors by size; an executor is never shut down (another caller may hold it), a larger one is added.
_POOLS: list = []


def _pool(threads: int):
    with _LOCK:
        if not _POOLS or _POOLS[-1]._max_workers < threads:
            from concurrent.futures import ThreadPoolExecutor

            _POOLS.append(ThreadPoolExecutor(max_workers=threads, thread_name_prefix="meanfield-kernels"))
        return _POOLS[-1]


def workers_now(workers: int | None = None) -> int:
    """``workers``, or numba's thread count of this thread (what the time loop and ``--threads`` set)."""
    if workers is not None:
        return max(1, int(workers))
    import numba

    return numba.get_num_threads()


def in_workers(workers: int, task) -> None:
    """``task(g, workers)`` for g = 0 .. workers - 1: g = 0 on the calling thread, the others on Python threads.

    Returns when every task has; re-raises the first exception of a task.
    """
    if workers <= 1:
        task(0, 1)
        return
    pool = _pool(workers - 1)
    futures = [pool.submit(task, g, workers) for g in range(1, workers)]
    try:
        task(0, workers)
    finally:
        for f in futures:
            f.result()


def in_ranges(n: int, task, workers: int | None = None) -> None:
    """``task(i0, i1)`` over the ranges of ``[0, n)`` that :func:`split` gives, one per worker.

    ``workers`` (default: :func:`workers_now`) is capped at ``n``; the ranges cover every item once
    whatever their number, so a kernel that computes each item alike gives the same bits.
    """
    k = max(1, min(workers_now(workers), n))
    in_workers(k, lambda g, k: task(*split(g, k, n)))


def split(g: int, k: int, n: int) -> tuple[int, int]:
    """The range ``[g n // k, (g + 1) n // k)`` of worker g of k over n items."""
    return g * n // k, (g + 1) * n // k
