"""Dormand-Prince 5(4): the explicit embedded pair ``dopri5`` (docs/models.md §5).

Seven stages, the last one at the new state (first same as last, FSAL): an
attempt costs 6 field calls, the very first 7. The step is the fifth-order
solution (local extrapolation), the error estimate the difference to the
embedded fourth-order one. Dense output is Shampine's quartic (the ``P``
matrix of scipy's ``RK45``), order 4.

Stiffness detection follows Hairer's DOPRI5 (``iasti``): stages 6 and 7 are
both at ``t + h``, so ``h |k7 - k6| / |z_new - Y6|`` estimates ``h |lambda|`` of
the dominant eigenvalue; above 3.25 (the edge of the stability region on the
negative axis) the step size is limited by stability, not accuracy. Fifteen
such accepted steps in a row (six non-stiff ones reset the count) raise
:attr:`Dopri5.stiff`, which ``auto`` reads.
"""

from __future__ import annotations

import math

import numpy as np

from .adaptive import AdaptiveIntegrator, dense_from_state, dense_state, error_norm

# Dormand & Prince (1980), Shampine (1986) for the dense output: the tableau of scipy's RK45.
C = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0])
A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
B = np.array([35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84])
#: fifth- minus fourth-order weights over the 7 stages (the last is F at the new state)
E = np.array([-71 / 57600, 0.0, 71 / 16695, -71 / 1920, 17253 / 339200, -22 / 525, 1 / 40])
#: dense output: z(t + theta h) = z + h K^T P (theta, theta^2, theta^3, theta^4)
P = np.array([
    [1, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432],
    [0, 0, 0, 0],
    [0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799],
    [0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072],
    [0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632],
    [0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844],
    [0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423],
])


class FsalCache:
    """``F(t, z)`` at the start of the next step, keyed by ``t``.

    Computed once per step start (a rejected attempt reuses it) or taken from
    the last stage of the accepted step (FSAL). The loop may retract the
    committed state by O(tol) before the next attempt; the derivative of the
    unretracted state is reused anyway (an O(tol) perturbation of the stage).
    """

    def __init__(self):
        self.t = math.nan
        self.f = None

    def get(self, field, t: float, z: np.ndarray) -> np.ndarray:
        """``F(t, z)``: the cached value if it belongs to ``t``, else one field call."""
        if self.f is None or self.t != t:
            self.f = field(t, z)
            self.t = t
        return self.f

    def put(self, t: float, f: np.ndarray) -> None:
        """Keep ``f = F(t, .)``, shape ``(n,)`` (the last stage of an accepted step)."""
        self.t, self.f = float(t), f

    def get_state(self) -> dict:
        """``fsal`` (empty when there is none) and its time ``fsal_t`` (finite: JSON-able)."""
        if self.f is None:
            return {"fsal_t": 0.0, "fsal": np.empty(0)}
        return {"fsal_t": self.t, "fsal": self.f.copy()}

    def set_state(self, state: dict) -> None:
        """Restore :meth:`get_state`."""
        f = np.asarray(state["fsal"], dtype=float)
        self.f = f.copy() if f.size else None
        self.t = float(state["fsal_t"]) if f.size else math.nan


class Dopri5(AdaptiveIntegrator):
    """Dormand-Prince 5(4) with FSAL, quartic dense output and stiffness detection (module docstring).

    Attributes
    ----------
    hlamb : float
        The last accepted step's estimate of ``h |lambda|``.
    stiff : bool
        True once :data:`stiff_steps` accepted steps in a row had ``hlamb > stiff_bound``.
    """

    name = "dopri5"
    kind = "first_order"
    order = 5
    error_order = 4
    dense_order = 4
    oracle_calls = 6
    #: h |lambda| on the boundary of the stability region (Hairer's DOPRI5)
    stiff_bound = 3.25
    #: stiff steps in a row that signal stiffness, non-stiff steps that reset the count (DOPRI5)
    stiff_steps = 15
    nonstiff_steps = 6

    def __init__(self, **options):
        super().__init__(**options)
        self.fsal = FsalCache()
        self.hlamb = 0.0
        self.iasti = self.nonsti = 0
        self._trial = None  # stages and stiffness estimate of the last attempt
        self._dense = None  # (t, h, z, K) of the last committed step

    @property
    def stiff(self) -> bool:
        """True after :attr:`stiff_steps` accepted steps in a row limited by stability (``hlamb > 3.25``)."""
        return self.iasti >= self.stiff_steps

    def attempt(self, field, t, h, z):
        K = np.empty((7, z.size), dtype=z.dtype)
        K[0] = self.fsal.get(field, t, z)
        for i in range(1, 6):
            stage = z + h * np.dot(A[i], K[:i])
            field(t + C[i] * h, stage, K[i])
        z_new = z + h * np.dot(B, K[:6])
        field(t + h, z_new, K[6])
        err = error_norm(h * np.dot(E, K), z, z_new, self.rtol, self.atol)
        # Y6 = stage, both it and z_new are at t + h: their field difference gives h |lambda|
        den = float(np.linalg.norm(z_new - stage))
        hlamb = h * float(np.linalg.norm(K[6] - K[5])) / den if den > 0 else 0.0
        self._trial = (K, hlamb)
        return z_new, err

    def commit(self, field, t, h, z, z_new):
        K, hlamb = self._trial
        self._trial = None
        self.fsal.put(t + h, K[6])
        self._dense = (float(t), float(h), z.copy(), K)
        self.hlamb = hlamb
        if hlamb > self.stiff_bound:
            self.nonsti = 0
            self.iasti += 1
        else:
            self.nonsti += 1
            if self.nonsti >= self.nonstiff_steps:
                self.iasti = 0

    def dense(self, theta):
        _, h, z, K = self._dense
        powers = np.cumprod(np.full(4, float(theta)))
        return z + h * (K.T @ (P @ powers))

    def clear_stiffness(self) -> None:
        """Restart the stiffness detection's counts."""
        self.iasti = self.nonsti = 0

    def reset(self) -> None:
        """Forget the FSAL derivative, the dense output and the stiffness counts (a new run)."""
        self.fsal = FsalCache()
        self.clear_stiffness()
        self._trial = self._dense = None

    def get_state(self) -> dict:
        """FSAL derivative, stiffness counters, the last step's dense data and :attr:`stats`."""
        return {**self.fsal.get_state(), "hlamb": self.hlamb, "iasti": self.iasti, "nonsti": self.nonsti,
                **self.stats_state(), **dense_state(self._dense)}

    def set_state(self, state: dict) -> None:
        self.fsal.set_state(state)
        self.hlamb = float(state["hlamb"])
        self.iasti, self.nonsti = int(state["iasti"]), int(state["nonsti"])
        self.restore_stats(state)
        self._trial = None
        self._dense = dense_from_state(state)
