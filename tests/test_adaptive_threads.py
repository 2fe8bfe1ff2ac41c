"""On a busy machine the loop runs on whichever thread count is faster (meanfield._threads).

A fake clock stands for the load: each step "takes" a time that depends on the
thread count it ran on, so these tests see the decisions, not the machine.
"""

import numba
import numpy as np
import pytest

import meanfield
from meanfield import _threads
from meanfield._kernels import checks
from meanfield._threads import AdaptiveThreads
from meanfield.models import make_model
from meanfield.systems import particle_system


class FakeClock:
    """``clock()`` advances by the cost of the step that just ran, on the threads it ran on."""

    def __init__(self, cost):
        self.cost = cost  # {threads: seconds per step}, may be changed mid-run
        self.t = 0.0

    def __call__(self):
        self.t += self.cost[numba.get_num_threads()]
        return self.t


class _System:
    thread_invariant = True


def _governor(monkeypatch, cost):
    clock = FakeClock(cost)
    monkeypatch.setattr(AdaptiveThreads, "clock", clock)
    return AdaptiveThreads(_System()), clock


def _run(gov, steps, change_at=None, change=None):
    """Threads of each of ``steps`` steps; ``change()`` is called before step ``change_at``."""
    ran = []
    with gov:
        for k in range(steps):
            if k == change_at:
                change()
            gov.tick()
            ran.append(gov.threads)
    return ran


def test_busy_machine_falls_back_to_one_thread_and_back(monkeypatch):
    n = numba.get_num_threads()
    assert n >= 2, "numba needs 2 threads for this test (NUMBA_NUM_THREADS=2)"
    gov, clock = _governor(monkeypatch, {n: 0.036, 1: 0.010})  # loaded: all threads 3.6x slower
    assert gov.active

    def quiet():
        assert clock.t < 1.1 * 400 * 0.010  # probing all threads again now and then cost < 10%
        clock.cost = {n: 0.006, 1: 0.010}

    ran = _run(gov, 1400, change_at=400, change=quiet)
    assert gov.decisions[0][1] == 1
    assert ran[:400].count(1) > 0.9 * 400
    assert gov.decisions[-1][1] == n  # the load went away: all threads win the next round
    assert ran[-200:].count(n) == 200
    assert numba.get_num_threads() == n  # restored on exit


def test_quiet_machine_keeps_all_threads(monkeypatch):
    n = numba.get_num_threads()
    gov, _ = _governor(monkeypatch, {n: 0.006, 1: 0.010})
    ran = _run(gov, 500)
    assert {c for _, c in gov.decisions} == {n}
    assert ran.count(n) > 0.95 * len(ran)


def test_stands_aside_when_threads_are_fixed_or_results_depend_on_them(monkeypatch):
    n = numba.get_num_threads()
    monkeypatch.setattr(AdaptiveThreads, "clock", FakeClock({n: 0.036, 1: 0.010}))

    class Variant:
        thread_invariant = False

    assert not AdaptiveThreads(Variant()).active
    numba.set_num_threads(1)  # the user's own choice, below the default
    try:
        assert not AdaptiveThreads(_System()).active
    finally:
        numba.set_num_threads(n)
    monkeypatch.setattr(_threads, "_PINNED", True)  # meanfield run --threads N
    gov = AdaptiveThreads(_System())
    assert not gov.active and set(_run(gov, 50)) == {n}


def test_fourier_sums_are_not_thread_invariant():
    exact = make_model({"name": "softmax", "d": 2, "A": np.eye(2).tolist(), "dynamics": "first_order"})
    fourier = make_model({"name": "sphere", "d": 2, "beta": 2.0, "dynamics": "first_order",
                          "summation": "fourier"})
    x = np.ones((8, 2)) / np.sqrt(2)
    assert particle_system(exact, x).thread_invariant
    assert not particle_system(fourier, x).thread_invariant


def test_loop_switches_threads_with_the_same_bits(make_config, monkeypatch):
    """A run above the serial threshold whose 2-thread steps are 'slow' runs on 1 thread, bit-identically."""
    n = numba.get_num_threads()
    cfg = make_config(n=4200, steps=24)  # Bilinear.serial_below = 4096: the loop is parallel
    seen = []

    def progress(k, total):
        seen.append(numba.get_num_threads())

    with monkeypatch.context() as m:
        m.setattr(_threads, "_PINNED", True)
        reference = meanfield.Run(cfg).simulate(progress=progress)
    assert set(seen) == {n}

    monkeypatch.setattr(AdaptiveThreads, "clock", FakeClock({n: 0.036, 1: 0.010}))
    seen.clear()
    adapted = meanfield.Run(cfg).simulate(progress=progress)
    assert seen.count(1) > len(seen) / 2 and numba.get_num_threads() == n
    assert np.array_equal(adapted.x, reference.x) and np.array_equal(adapted.y, reference.y)


def test_state_check_does_not_fork_threads():
    """max |x| is a memory-bound pass: under load its 2-thread fork cost 4-10 ms against 0.64 ms on one."""
    assert not checks.max_abs_or_nan.targetoptions.get("parallel")
