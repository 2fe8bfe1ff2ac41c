"""``auto``: dopri5 until the problem turns stiff, then ros34pw2, and back (as LSODA does).

* explicit -> stiff when dopri5's stiffness detection fires (Hairer's test:
  :attr:`Dopri5.stiff_steps` accepted steps in a row limited by stability,
  ``h |lambda| > 3.25``). The stiff method starts with a fresh Jacobian and
  takes dopri5's last stage ``F(z_new)`` as its first stage (no extra call).
* stiff -> explicit when the stiff steps are so small that dopri5 would be
  stable with them, ``h ||J||_inf <= back_bound`` (``||J||_inf`` bounds the
  spectral radius, so this is conservative), or cheaper, ``h <= back_ratio
  h_explicit`` with ``h_explicit`` dopri5's last (stability-limited) step
  before the switch and ``back_ratio = 4/6`` the ratio of calls per step, on
  :attr:`Auto.back_steps` accepted steps in a row. The stiff steps are then
  limited by accuracy, where the fifth-order explicit pair does better.

``order``, ``error_order`` and ``dense_order`` are those of the method in use
(the controller reads ``error_order`` at every judgement); the class
attributes are the stiff method's, the lower ones. ``stats`` adds
``switches`` (both directions) and ``stiff`` (1 while ros34pw2 is in use).
"""

from __future__ import annotations

from .adaptive import AdaptiveIntegrator
from .dopri5 import Dopri5
from .rosenbrock import Ros34PW2


class Auto(AdaptiveIntegrator):
    """Stiffness-switching combination of :class:`Dopri5` and :class:`Ros34PW2` (module docstring)."""

    name = "auto"
    kind = "first_order"
    order = Ros34PW2.order
    error_order = Ros34PW2.error_order
    dense_order = Ros34PW2.dense_order
    oracle_calls = Dopri5.oracle_calls
    #: switch back to dopri5 when h ||J||_inf stays at or below this ...
    back_bound = 1.0
    #: ... or the stiff steps stay below this fraction of dopri5's (stability-limited) step
    #: before the switch (4 calls per stiff step, 6 per explicit one) ...
    back_ratio = 4 / 6
    #: ... for this many accepted stiff steps in a row
    back_steps = 6

    def __init__(self, **options):
        super().__init__(**options)
        self.explicit = Dopri5(**options)
        self.implicit = Ros34PW2(**options)
        self.stats.update(switches=0, stiff=0)
        self.back_count = 0
        self.explicit_h = 0.0  # dopri5's last step before the switch to the stiff method
        self.last = None  # the method of the last committed step (its dense output)
        self._use(self.explicit)

    @property
    def method(self) -> AdaptiveIntegrator:
        """The method the next attempt uses."""
        return self.implicit if self.stats["stiff"] else self.explicit

    def _use(self, method) -> None:
        self.stats["stiff"] = int(method is self.implicit)
        self.order, self.error_order = method.order, method.error_order

    def _sync(self) -> None:
        for key in ("jacobians", "jvps", "factorizations"):
            self.stats[key] = self.explicit.stats[key] + self.implicit.stats[key]

    def attempt(self, field, t, h, z):
        out = self.method.attempt(field, t, h, z)
        self._sync()
        return out

    def commit(self, field, t, h, z, z_new):
        method = self.method
        method.commit(field, t, h, z, z_new)
        self.last = method
        self.dense_order = method.dense_order
        if method is self.explicit and method.stiff:
            self.explicit_h = float(h)
            self._switch(self.implicit)
            self.implicit.fsal.put(t + h, self.explicit.fsal.f)
            self.implicit.forget_jacobian()
        elif method is self.implicit:
            cheaper = h * method.rho <= self.back_bound or h <= self.back_ratio * self.explicit_h
            self.back_count = self.back_count + 1 if cheaper else 0
            if self.back_count >= self.back_steps:
                self._switch(self.explicit)
        self._sync()

    def _switch(self, method) -> None:
        self._use(method)
        self.stats["switches"] += 1
        self.back_count = 0
        self.explicit.clear_stiffness()

    def dense(self, theta):
        return self.last.dense(theta)

    def reset(self) -> None:
        """A new run starts explicit, with both methods' caches cleared."""
        self.explicit.reset()
        self.implicit.reset()
        self.back_count = 0
        self.explicit_h = 0.0
        self.last = None
        self._use(self.explicit)

    def retracted(self, field, t, z):
        self.method.retracted(field, t, z)

    def get_state(self) -> dict:
        """Both methods' states (prefixed), the mode, the switch-back counter and ``stats``."""
        state = {"back_count": self.back_count, "explicit_h": self.explicit_h, "last": -1 if self.last is None else int(self.last is self.implicit),
                 **self.stats_state()}
        for prefix, method in (("explicit_", self.explicit), ("implicit_", self.implicit)):
            state.update({prefix + k: v for k, v in method.get_state().items()})
        return state

    def set_state(self, state: dict) -> None:
        for prefix, method in (("explicit_", self.explicit), ("implicit_", self.implicit)):
            method.set_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        self.restore_stats(state)
        self.back_count = int(state["back_count"])
        self.explicit_h = float(state["explicit_h"])
        self._use(self.method)
        last = int(state["last"])
        self.last = None if last < 0 else (self.implicit if last else self.explicit)
        if self.last is not None:
            self.dense_order = self.last.dense_order
