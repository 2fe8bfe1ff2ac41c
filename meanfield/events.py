"""Events of a run: the cluster count of tokens on the sphere, tracked after every step.

:class:`ClusterEvents` counts the clusters (``n_clusters``, the connected
components of ``<theta_i, theta_j> > 1 - cluster_tol``) after every accepted
step. When the count changes, the time of the change is located inside the
step by bisection on the integrator's dense output (adaptive methods: to
``2^-BISECTIONS`` of the step), or given as the step's end (fixed steps), and
handed to the observers as an event ``("n_clusters", t, count)``: HDF5 runs
store them in ``/events/n_clusters`` (rows ``[t, n_clusters]``; the first row
is the initial count). With ``stop_below = k`` the run stops once the count
is <= k (``[run] stop_clusters``).
"""

from __future__ import annotations

import numpy as np


class ClusterEvents:
    """Tracks ``n_clusters`` of a sphere system after every step (module docstring).

    Parameters
    ----------
    count : callable(x) -> int
        The model's cluster count of positions ``x`` (N, d).
    stop_below : int or None
        Stop the run once the count is <= this.
    """

    #: Halvings of a step when locating a change by dense output.
    BISECTIONS = 20

    def __init__(self, count, stop_below: int | None = None):
        self.count, self.stop_below = count, stop_below
        self.last = None
        self.observers = ()

    def start(self, system, t: float, last: int | None, observers) -> None:
        """Before the first step: the count at ``t`` (or a resumed run's ``last``), reported when new."""
        self.observers = observers
        if last is None:
            self.last = self.count(system.state["x"])
            self._report(t, self.last)
        else:
            self.last = int(last)

    def _report(self, t: float, n: int) -> None:
        for obs in self.observers:
            if hasattr(obs, "event"):
                obs.event("n_clusters", float(t), int(n))

    def _locate(self, stepper, t0: float, t1: float) -> float:
        """The time in ``(t0, t1]`` where the count first differs from ``last``, by bisection."""
        if stepper.dense is None:
            return t1
        lo, hi = 0.0, 1.0
        for _ in range(self.BISECTIONS):
            mid = 0.5 * (lo + hi)
            x, _ = stepper.dense(mid)
            if self.count(np.ascontiguousarray(x)) == self.last:
                lo = mid
            else:
                hi = mid
        return t0 + hi * (t1 - t0)

    def after_step(self, system, stepper, t0: float, t1: float) -> bool:
        """Count after the step ``[t0, t1]``; report a change; whether the run should stop."""
        n = self.count(system.state["x"])
        if n != self.last:
            self._report(self._locate(stepper, t0, t1), n)
            self.last = n
        return self.stop_below is not None and n <= self.stop_below

    def describe(self) -> str:
        """Why the run stopped, for its status."""
        return f"n_clusters = {self.last} <= {self.stop_below}"
