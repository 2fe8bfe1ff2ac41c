"""Presymplectic integrators of the damped Hamiltonian system: ``tao2`` and ``strang`` (docs/models.md §5).

Both use Tao's explicit scheme for non-separable Hamiltonians (Phys. Rev. E
94, 043303, 2016). The phase space is doubled: besides the state ``(q, p)``
the integrator carries a copy ``(x~, y~)`` that persists between steps, and
one step is the symmetric composition

    phi_A^{h/2} o phi_B^{h/2} o phi_C^{h} o phi_B^{h/2} o phi_A^{h/2}

of the exactly solvable flows of ``H_A = H(q, y~)`` (moves ``p`` and ``x~``),
``H_B = H(x~, p)`` (moves ``q`` and ``y~``) and the coupling
``omega H_C = omega (|q - x~|^2 + |p - y~|^2) / 2`` (a rotation of the
differences by the angle ``2 omega h``). ``phi_A`` and ``phi_B`` are one call
of ``model.hamiltonian_field`` each, so a step costs 4 oracle calls.

Damping (``tao2``). With ``P = exp(eta) y`` the damped flow
``x' = F(x, y)``, ``y' = G(x, y) - alpha(t) y`` is the Hamiltonian flow of the
conformal time-dependent Hamiltonian
``Ht(t, x, P) = exp(eta) K(x, exp(-eta) P) + exp(eta) U(x)``:
by the chain rule ``dHt/dP = F(x, exp(-eta) P)`` and
``-dHt/dx = exp(eta) G(x, exp(-eta) P)``. The explicit time dependence is
frozen at the step midpoint ``t + h/2`` (local error O(h^3): the
linear-in-time part of the error integrates to zero over a symmetric step,
so the step stays symmetric and of order 2). ``eta`` is measured from the
step start, ``eta(t) - eta(t_n)``, because ``Ht`` is only defined up to that
constant and ``exp(eta(t) - eta(t0))`` overflows on long nesterov or
constant-damping runs.

Written in the midpoint-scaled momentum ``Y = exp(-e_m) P`` (``e_m`` the
eta increment over the first half step) the frozen Hamiltonian flows are the
*undamped* flows of ``H``, so a ``tao2`` step is: scale ``y`` and ``y~`` by
``exp(-e_m)``, one conservative Tao step at ``t + h/2`` whose rotation acts
on ``(q - x~, exp(e_m) (Y - Y~))``, and scale by the remaining factor
``exp(-(eta(t+h) - eta(t+h/2)))``. ``strang`` is the same with the rotation
on ``(q - x~, Y - Y~)``: with the time frozen at the midpoint the two methods
differ only by the weight of the coupling, an O(alpha h) change of the
metric in which the copies are bound.

The copies are stored in y-units at the step's end time, so they are
directly comparable with ``y`` (``get_state`` / ``set_state``).
"""

from __future__ import annotations

import math

import numpy as np

from ..schema import Key, Real
from .base import INTEGRATOR, Integrator

#: Default coupling of the two copies. Measured on undamped bilinear runs of
#: 10^4 steps (the energy test of tests/test_orders.py) and damped order-test
#: problems: a weak coupling lets the copies separate (omega = 1 gives 3-4x
#: the max energy error of omega = 5 at h = 0.005..0.02, omega = 2 1.2-1.6x),
#: a strong one makes the error constant grow and the scheme resonate or blow
#: up once the rotation angle 2 omega h is O(1) (omega = 10 blew up at
#: h = 0.1, omega = 50 at h = 0.02). omega = 5 was within ~15% of the best
#: error at every h in [0.005, 0.1] tried; its angle is 0.1 rad at h = 0.01.
#: On the softmax model the error hardly depends on omega in [1, 10].
#: Stability limit: when the momenta grow (bilinear model under decaying
#: nesterov damping, |y| ~ 0.1 t) the doubled system becomes unstable once
#: h |y| exceeds a threshold that shrinks with omega (blow-up at t = 64 / 106 /
#: 150 with omega = 5 / 2 / 1 at h = 0.1, t = 132 / 211 / 312 at h = 0.05),
#: while kick_drift, ab2 and rk4 run on to t = 2000. Use a smaller h or omega
#: for such long runs.
_OPTIONS = INTEGRATOR.declare(Key("omega", Real("a finite number > 0 (Tao's coupling)", lambda v: v > 0), 5.0,
                       "coupling of Tao's doubled copies"), owners=("tao2", "strang"))
DEFAULT_OMEGA = INTEGRATOR.default("omega")


class _TaoBase(Integrator):
    """Shared machinery: the doubled copies, their state hooks, and one Tao step."""

    order = 2
    oracle_calls = 4
    kind = "accelerated"
    options = _OPTIONS
    omega = DEFAULT_OMEGA

    def __init__(self, **options):
        super().__init__(**options)
        self.omega = float(self.omega)  # checked by the schema (Integrator)
        self.reset()

    # ------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget the doubled copies; the next step starts them equal to the state."""
        self._xc = None
        self._yc = None
        self._F = None
        self._G = None

    def get_state(self) -> dict:
        """The doubled copies ``x_copy``, ``y_copy`` (each ``(N, d)``, y in y-units); empty before the first step."""
        if self._xc is None:
            return {}
        return {"x_copy": self._xc.copy(), "y_copy": self._yc.copy()}

    def set_state(self, state: dict) -> None:
        """Restore the copies saved by :meth:`get_state` (an empty dict resets them)."""
        if not state:
            self.reset()
            return
        self._xc = np.array(state["x_copy"], copy=True)
        self._yc = np.array(state["y_copy"], copy=True)
        self._F = self._G = None

    def _ensure(self, x, y):
        if self._xc is None or self._xc.shape != x.shape or self._xc.dtype != x.dtype:
            self._xc = x.copy()
            self._yc = y.copy()
        if self._F is None or self._F.shape != x.shape or self._F.dtype != x.dtype:
            self._F = np.empty_like(x)
            self._G = np.empty_like(x)

    # ------------------------------------------------------------- Tao step
    def _tao_step(self, model, t, h, q, p, c):
        """One conservative Tao step of ``H`` frozen at time ``t``, in place on ``q, p`` and the copies.

        Parameters
        ----------
        q, p : (N, d) arrays
            Positions and (midpoint-scaled) momenta, updated in place.
        c : float
            Weight of the momentum difference in the coupling: the rotation
            acts on ``(q - x~, c (p - y~))``.
        """
        xc, yc, F, G = self._xc, self._yc, self._F, self._G
        half = 0.5 * h

        def flow(qa, pa, move_p, move_x):
            # one flow of H(qa, pa) for time h/2: move_p -= h/2 dH/dq, move_x += h/2 dH/dp
            model.hamiltonian_field(qa, pa, t, out_x=F, out_y=G)
            np.multiply(G, half, out=G)
            move_p += G
            np.multiply(F, half, out=F)
            move_x += F

        def flow_a():  # H(q, y~): moves p and x~
            flow(q, yc, p, xc)

        def flow_b():  # H(x~, p): moves q and y~
            flow(xc, p, yc, q)

        flow_a()
        flow_b()
        # phi_C: the sums q + x~, p + y~ are conserved, the differences rotate.
        # Done in place with F, G as scratch (no allocation per step).
        cos, sin = math.cos(2.0 * self.omega * h), math.sin(2.0 * self.omega * h)
        np.subtract(q, xc, out=F)          # u = q - x~
        np.subtract(p, yc, out=G)
        np.multiply(G, c, out=G)           # w = c (p - y~)
        q += xc                            # q + x~
        p += yc                            # p + y~
        np.multiply(G, sin, out=yc)
        np.multiply(F, cos, out=xc)
        xc += yc                           # u' = cos u + sin w
        np.multiply(G, cos, out=yc)
        np.multiply(F, sin, out=F)
        yc -= F
        yc *= 1.0 / c                      # w' / c = (-sin u + cos w) / c
        q += xc
        q *= 0.5                           # q' = (q + x~ + u') / 2
        np.subtract(q, xc, out=xc)         # x~' = q' - u'
        p += yc
        p *= 0.5
        np.subtract(p, yc, out=yc)
        flow_b()
        flow_a()

    def _damped_step(self, model, schedule, t, h, x, y, conformal_weight: bool):
        self._ensure(x, y)
        e1 = schedule.deta(t, 0.5 * h)          # eta(t + h/2) - eta(t)
        e2 = schedule.deta(t + 0.5 * h, 0.5 * h)  # eta(t + h) - eta(t + h/2)
        if e1:
            s = math.exp(-e1)
            y *= s
            self._yc *= s
        self._tao_step(model, t + 0.5 * h, h, x, y, math.exp(e1) if conformal_weight else 1.0)
        if e2:
            s = math.exp(-e2)
            y *= s
            self._yc *= s
        return x, y


class Tao2(_TaoBase):
    """Tao's explicit scheme on the conformal Hamiltonian ``exp(eta) H(x, exp(-eta) P)``. Order 2, 4 calls.

    Parameters
    ----------
    omega : float, optional
        Coupling of the two copies (rotation angle ``2 omega h``), default
        :data:`DEFAULT_OMEGA`.

    Notes
    -----
    The explicit time dependence is frozen at ``t + h/2`` and eta is measured
    from the step start (see the module docstring), so a step is exact
    damping by ``exp(-(eta(t+h/2) - eta(t)))``, a conservative Tao step whose
    coupling weights the momentum difference by ``exp(eta(t+h/2) - eta(t))``,
    and exact damping over the second half.

    Tao's doubled system has a stability limit that single-copy explicit
    methods do not share when the momenta grow large; see
    :data:`DEFAULT_OMEGA`.
    """

    name = "tao2"

    def step(self, model, schedule, t, h, x, y):
        return self._damped_step(model, schedule, t, h, x, y, conformal_weight=True)


class Strang(_TaoBase):
    """Strang splitting: half damping, conservative Tao step, half damping. Order 2, 4 calls.

    ``y *= exp(-(eta(t+h/2) - eta(t)))``, one Tao step of the undamped
    Hamiltonian at ``t + h/2``, ``y *= exp(-(eta(t+h) - eta(t+h/2)))``; the
    doubled copy ``y~`` is damped with ``y``.

    Parameters
    ----------
    omega : float, optional
        Coupling of the two copies (rotation angle ``2 omega h``), default
        :data:`DEFAULT_OMEGA`.
    """

    name = "strang"

    def step(self, model, schedule, t, h, x, y):
        return self._damped_step(model, schedule, t, h, x, y, conformal_weight=False)


__all__ = ["DEFAULT_OMEGA", "Strang", "Tao2"]
