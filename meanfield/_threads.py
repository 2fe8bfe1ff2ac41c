"""The time loop's numba thread count on shared machines: measured, not assumed.

Every parallel kernel splits its work by particle count only, so a step gives
the same bits on any number of threads (tests/test_threads.py). The loop may
therefore change the thread count between steps, and does: on a 2-core machine
with one core taken by another job, a parallel region waits for the thread
whose core is busy (a scheduler time slice, milliseconds) at every fork and
join, and two threads ran a bilinear run 3.6x slower than one.
:class:`AdaptiveThreads` times the loop's steps on all threads and on one, keeps
the faster, and measures again now and then (load changes), less often while
the answer stays the same.

It stands aside when the user fixed the count (``meanfield run --threads N``
calls :func:`pin`; in Python, ``numba.set_num_threads(k)`` below the default),
when the loop already runs on one thread (small problems, ``serial_below``),
and for systems whose results depend on the thread count
(``system.thread_invariant`` False: FINUFFT sums in the Fourier backend).
"""

from __future__ import annotations

import contextlib
import statistics
import time

_PINNED = False


def serial_blas(n: int, threshold: int):
    """Context manager: BLAS/LAPACK on one thread when ``n < threshold`` (as numba's kernels then).

    A stiff method factorizes and solves with its matrix at every few steps; at
    n = 192 OpenBLAS's LU takes 0.34 ms on one thread and 0.53 ms on two here,
    the thread pool's wake-up costing more than the work. Large problems keep
    BLAS's own threads.
    """
    if n >= threshold:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def pin(threads: int) -> None:
    """Run numba kernels on exactly ``threads`` threads from now on; the loop no longer adapts."""
    global _PINNED
    import numba

    numba.set_num_threads(int(threads))
    _PINNED = True


class AdaptiveThreads:
    """Context manager for the time loop: call :meth:`tick` once at the start of every step.

    Rounds of measurement time one *window* of steps on each candidate
    (all threads, then one): at least ``MIN_STEPS`` steps and ``WINDOW_S``
    seconds each. The candidate with the smaller median step time is then held
    for ``hold`` windows' worth of steps; ``hold`` doubles (up to ``MAX_HOLD``)
    each time a round confirms the choice and drops back to ``MIN_HOLD`` when it
    changes, so on a steady machine measuring the slower candidate costs a few
    percent at most.

    Parameters
    ----------
    system
        The loop's system; its ``thread_invariant`` (default True) must be true.
    """

    MIN_STEPS = 3
    WINDOW_S = 0.05
    MIN_HOLD = 8
    MAX_HOLD = 256
    #: Seconds, monotonic (tests put a fake clock here).
    clock = staticmethod(time.perf_counter)

    def __init__(self, system):
        import numba

        self._numba = numba
        n = numba.get_num_threads()
        self.active = (not _PINNED and n > 1 and n == numba.config.NUMBA_NUM_THREADS
                       and getattr(system, "thread_invariant", True))
        self.candidates = (n, 1)
        self.hold = self.MIN_HOLD
        #: ``(step count at the decision, threads chosen)`` for each round (for tests and logs)
        self.decisions: list[tuple[int, int]] = []

    def __enter__(self):
        self._steps = 0
        self._last = None
        self._start_round()
        return self

    def __exit__(self, *exc):
        if self.active:
            self._numba.set_num_threads(self.candidates[0])
        return False

    @property
    def threads(self) -> int:
        """The thread count of the step about to run."""
        return self._numba.get_num_threads()

    def _use(self, threads: int) -> None:
        if self._numba.get_num_threads() != threads:
            self._numba.set_num_threads(threads)

    def _start_round(self) -> None:
        self._probe = 0  # index into candidates; None while holding
        self._times = {c: [] for c in self.candidates}
        if self.active:
            self._use(self.candidates[0])

    def tick(self) -> None:
        """Account the step that just ended (if any) and set the threads of the next one."""
        if not self.active:
            return
        now = self.clock()
        if self._last is not None:
            self._record(now - self._last)
        self._last = now

    def _record(self, seconds: float) -> None:
        self._steps += 1
        if self._probe is None:
            self._held += 1
            if self._held >= self._hold_steps:
                self._start_round()
            return
        current = self.candidates[self._probe]
        times = self._times[current]
        times.append(seconds)
        if len(times) < self.MIN_STEPS or sum(times) < self.WINDOW_S:
            return
        self._window = max(len(times), self.MIN_STEPS)
        if self._probe + 1 < len(self.candidates):
            self._probe += 1
            self._use(self.candidates[self._probe])
            return
        best = min(self.candidates, key=lambda c: statistics.median(self._times[c]))
        if self.decisions and self.decisions[-1][1] == best:
            self.hold = min(2 * self.hold, self.MAX_HOLD)
        else:
            self.hold = self.MIN_HOLD
        self.decisions.append((self._steps, best))
        self._use(best)
        self._probe = None
        self._held = 0
        self._hold_steps = self.hold * self._window
