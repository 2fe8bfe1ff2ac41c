"""The token-wise MLP sub-step of a transformer block (docs/mlp-block.md).

A block is the attention step of the run's integrator composed with an MLP
sub-step. The sub-steps know the model only through ``mlp_field(at, base,
layer, out)`` (the MLP evaluated at ``at`` as a velocity at ``base``; the
sphere model projects it as it projects attention) and count their MLP
evaluations in ``calls`` per step, apart from attention oracle calls.

* :class:`LieMLP` (first-order, default): after the attention step,
  ``x <- x + h MLP(x)`` -- the residual MLP update of a transformer layer; the
  block is a Lie-Trotter splitting of ``x' = f_attn(x) + MLP(x)``. 1 call.
* :class:`StrangMLP` (first-order, ``mlp_splitting = "strang"``): an MLP
  half step before and after the attention step, each by the explicit
  midpoint rule (2 calls), so that with a second-order attention integrator
  the block is a second-order (Strang) splitting of the same flow. 4 calls.
* :class:`NesterovMLP` (accelerated): SympFormer's MLP sub-step on its own
  velocity stream ``v``: ``x_in = x + mu v``, ``v <- beta v + gamma MLP(x_in)``,
  ``x <- x + v``. 1 call.
"""

from __future__ import annotations

import numpy as np


class LieMLP:
    """``x <- x + h MLP(x)`` after the attention step (Lie-Trotter). 1 MLP call per step."""

    calls = 1
    #: Order of the block (attention integrator of order >= 1, then this sub-step) in h.
    order = 1
    uses_velocity = False

    def __init__(self, model):
        self._F = None

    def _work(self, x) -> np.ndarray:
        if self._F is None or self._F.shape != x.shape or self._F.dtype != x.dtype:
            self._F = np.empty_like(x)
        return self._F

    def before(self, model, x, v, h, layer) -> None:
        """Sub-step before the attention step (none for Lie-Trotter)."""

    def after(self, model, x, v, h, layer) -> None:
        """Sub-step after the attention step: ``x += h MLP(x)`` in place."""
        F = model.mlp_field(x, x, layer, self._work(x))
        x += x.dtype.type(h) * F


class StrangMLP(LieMLP):
    """Half an MLP step (explicit midpoint) before and after the attention step. 4 MLP calls per step."""

    calls = 4
    order = 2  # with an attention integrator of order >= 2

    def __init__(self, model):
        super().__init__(model)
        self._xm = None

    def _half(self, model, x, h, layer) -> None:
        F = self._work(x)
        if self._xm is None or self._xm.shape != x.shape or self._xm.dtype != x.dtype:
            self._xm = np.empty_like(x)
        tau = x.dtype.type(0.5 * h)
        model.mlp_field(x, x, layer, F)
        np.multiply(F, tau / 2, out=self._xm)
        self._xm += x
        model.mlp_field(self._xm, self._xm, layer, F)
        x += tau * F
        model.project(x, None)

    def before(self, model, x, v, h, layer) -> None:
        self._half(model, x, h, layer)

    def after(self, model, x, v, h, layer) -> None:
        self._half(model, x, h, layer)


class NesterovMLP(LieMLP):
    """SympFormer's MLP sub-step on the velocity ``v`` (Nesterov look-ahead). 1 MLP call per step.

    ``x_in = x + mu v``; ``v <- beta v + gamma MLP(x_in)``; ``x <- x + v``,
    with ``mu, beta, gamma`` = ``mlp_mu, mlp_beta, mlp_gamma`` (``h`` is not
    used: these are the layer's own step parameters).
    """

    uses_velocity = True
    #: None: with fixed (mu, beta, gamma) the block approximates no ODE (docs/mlp-block.md);
    #: with beta = 1 - a h, gamma = c h^2, mu = beta it is first order (tests/test_mlp.py).
    order = None

    def __init__(self, model):
        super().__init__(model)
        p = model.mlp_nesterov
        self.mu, self.beta, self.gamma = float(p.mlp_mu), float(p.mlp_beta), float(p.mlp_gamma)
        self._xin = None

    def after(self, model, x, v, h, layer) -> None:
        if self._xin is None or self._xin.shape != x.shape or self._xin.dtype != x.dtype:
            self._xin = np.empty_like(x)
        t = x.dtype.type
        np.multiply(v, t(self.mu), out=self._xin)
        self._xin += x
        F = model.mlp_field(self._xin, x, layer, self._work(x))
        v *= t(self.beta)
        v += t(self.gamma) * F
        x += v


def make_substep(model):
    """The MLP sub-step of ``model``'s block, or None without an MLP."""
    if model.mlp is None:
        return None
    if model.accelerated:
        return NesterovMLP(model)
    return StrangMLP(model) if model.mlp_splitting == "strang" else LieMLP(model)


__all__ = ["LieMLP", "NesterovMLP", "StrangMLP", "make_substep"]
