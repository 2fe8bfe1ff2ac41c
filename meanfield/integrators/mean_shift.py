"""The pure attention layer: self-attention without the residual connection (mean shift).

One step replaces every token by its attention average,

    x_i <- a_i = sum_j E_ij V x_j / sum_j E_ij,

then (on the sphere) normalizes it, x_i <- a_i / |a_i|. With V = I this is
the blurring mean-shift iteration (Fukunaga & Hostetler 1975; Cheng 1995)
for the kernel exp(x^T A x'); one layer of it is the object of the
long-context phase transition (Chen, Lin, Polyanskiy & Rigollet).

It is a map, not the discretization of a flow: the step size ``h`` is
accepted and ignored (so a parameter file switches between a residual block
such as ``euler`` and this one by ``[integrator] name`` alone; with
``t0 = 0`` and ``h = 1`` the saved time counts layers, and the saved
``iteration`` always does). It has no convergence order (``order = None``),
and one step is one oracle call (the model's ``attention_layer``).

Supported models (checked when the run is built, :meth:`MeanShift.check_model`):

* ``sphere``, first-order, ``normalization = "post_ln"``, SA or USA, any Q, K, V,
  causal or not: ``attention_layer`` returns a_i at the directions and the
  model's retraction after the step (``project``) normalizes it. USA's a_i
  is SA's times Z_i / N > 0, so after normalization both layers agree; they
  are both accepted. pre_ln / peri_ln are rejected: without the residual
  connection they move the directions exactly like post_ln
  (theta_i <- a_i / |a_i|) and differ only in the radius, so post_ln is the
  one layer.
* ``softmax``, first-order, SA (``normalized = true``), no confining W
  (``Q = 0``), any A, V, causal or not: x_i <- a_i.
  USA is rejected: its weights E_ij / N do not sum to 1, so x_i <- (1/N) sum_j E_ij V x_j
  is not an average of the tokens (it rescales them by z_i ~ exp(x_i^T A x_i)
  and leaves a layer's fixed points undefined). A confining W is rejected:
  its term -B grad W(x_i) / z_i is a velocity of the flow, not part of an
  attention layer's output, and adding it to a position has no meaning.
* Accelerated dynamics (no registered ``mean_shift`` for them) and the
  bilinear model (linear attention has no attention average) are rejected.
"""

from __future__ import annotations

from ..errors import ParameterError
from .base import Integrator


def _expected(model) -> str | None:
    """Why ``model`` has no pure attention layer (None when it has one)."""
    if model.accelerated:
        return "first-order dynamics (the layer has no momenta)"
    if model.name == "sphere" and model.normalization != "post_ln":
        return ('model.normalization = "post_ln" (without the residual connection pre_ln and '
                "peri_ln move the directions exactly like post_ln, theta_i <- a_i / |a_i|)")
    if model.name == "softmax" and not model.normalized:
        return ("model.normalized = true (SA): USA's weights E_ij / N do not sum to 1, so "
                "x_i <- (1/N) sum_j E_ij V x_j is not an average of the tokens")
    if model.name == "softmax" and model.params.has_potential:
        return ("no confining W (model.Q = 0): -B grad W / z_i is a velocity of the flow, "
                "not part of an attention layer's output")
    if model.mlp is not None:
        return ("an integrator with a step size h (the MLP sub-step x <- x + h MLP(x) needs one; "
                "mean_shift ignores h)")
    if not hasattr(model, "attention_layer"):
        return ("model sphere (post_ln) or softmax (SA, no confining W): the layer replaces "
                "each token by its softmax attention average")
    return None


class MeanShift(Integrator):
    """One pure self-attention layer per step, x_i <- a_i (then a_i / |a_i| on the sphere).

    No order (a map, not a flow discretization; ``h`` is ignored), 1 oracle call.
    """

    name = "mean_shift"
    order = None
    order_note = "a pure attention layer is a map, not the discretization of a flow: it has no order in h"
    oracle_calls = 1
    kind = "first_order"

    def check_model(self, model) -> None:
        """Raise ParameterError (key ``integrator.name``) when ``model`` has no pure attention layer."""
        why = _expected(model)
        if why is not None:
            found = f"{self.name} with model {model.name} ({model.dynamics}"
            if model.name == "sphere":
                found += f", {model.normalization}"
            raise ParameterError("integrator.name", f"for {self.name}: {why}", found + ")")

    def step(self, model, schedule, t, h, x, y):
        """``x <- a(x)`` in place (one oracle call); ``h`` is ignored. The loop's ``project`` normalizes."""
        model.attention_layer(x, t, out=x)
        return x, None
