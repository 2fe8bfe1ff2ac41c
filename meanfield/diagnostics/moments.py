"""Moment diagnostics: the bilinear moment ODE run alongside particles, ellipticity checks."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ..initial import as_typed
from ..reductions.bilinear_moments import BilinearMomentODE


class MomentODEProbe:
    """Solve the moment ODE alongside a bilinear run and record it at every save.

    Adds to each save: ``ode_mean (d,)``, ``ode_cov (d, d)``, ``ode_error_mean``
    (max |mean - ode_mean|), ``ode_error_cov`` (max |cov - ode_cov|) and
    ``ode_rel_error_cov`` (Frobenius norm of the difference over that of ode_cov).

    Parameters
    ----------
    model : Bilinear
    schedule : Schedule
    x0 : (N, d) initial positions (the ODE starts from their empirical moments), or None
    t0 : float
    S, b : (d, d), (d,) affine initial momentum y = S x + b (accelerated only)
    moments : ((d,), (d, d)) or None
        Initial mean and second moment of the positions instead of those of ``x0``
        (a pde run: the law's population moments).
    """

    def __init__(self, model, schedule, x0, t0, S=None, b=None, moments=None):
        self.ode = BilinearMomentODE(model, schedule)
        if moments is None:
            x0 = np.asarray(x0, dtype=np.float64)
            moments = (x0.mean(axis=0), x0.T @ x0 / x0.shape[0])
        self.z = self.ode.pack(*moments, S, b)
        self.t = float(t0)

    def __call__(self, t, x, y, tasks) -> dict:
        self.z = self.ode.advance(self.z, self.t, float(t))
        self.t = float(t)
        u = self.ode.unpack(self.z)
        out = {"ode_mean": u["mean"].copy(), "ode_cov": u["cov"].copy()}
        if "mean" in tasks and "cov" in tasks:
            dcov = np.asarray(tasks["cov"]) - u["cov"]
            out["ode_error_mean"] = float(np.abs(np.asarray(tasks["mean"]) - u["mean"]).max())
            out["ode_error_cov"] = float(np.abs(dcov).max())
            out["ode_rel_error_cov"] = float(np.linalg.norm(dcov) / np.linalg.norm(u["cov"]))
        return out


def moment_ode_probe(run) -> MomentODEProbe:
    """Build the probe for a :class:`meanfield.run.Run`, checking that the closure applies."""
    if run.model.name != "bilinear":
        raise ParameterError("diagnostics.moment_ode", "the bilinear model (the closure is docs/models.md §2's)",
                             run.model.name)
    if getattr(run.model, "causal", False):
        raise ParameterError("diagnostics.moment_ode", "an unmasked model (the closure fails under a causal mask)",
                             "causal = true")
    if getattr(run.integrator, "uses_schedule", False):
        raise ParameterError("diagnostics.moment_ode",
                             "an integrator of the first-order flow itself (nag integrates x'' + alpha x' = f)",
                             run.integrator.name)
    S = b = None
    if run.model.accelerated:
        initial = as_typed(run.params.initial.given())
        mom = initial.momentum
        d = run.model.d
        if mom == "zero":
            S, b = np.zeros((d, d)), np.zeros(d)
        elif mom == "affine":
            from ..models._params import as_matrix, as_vector

            S = as_matrix(initial.S, d, "initial.S")
            b = as_vector(initial.b, d, "initial.b")
        else:
            raise ParameterError("diagnostics.moment_ode",
                                 'momentum "affine" or "zero" (the closure needs y = S x + b)', mom)
    moments = None
    if getattr(run, "pde", None) is not None:
        d = run.model.d
        moments = (run.pde.mean0[:d], run.pde.second0[:d, :d])
    return MomentODEProbe(run.model, run.schedule, run.x0, run.params.run.t0, S, b, moments)


def whitened(x) -> np.ndarray:
    """Whitened particles Cov^{-1/2} (x_i - mean), ``(N, d)`` (symmetric inverse square root)."""
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(axis=0)
    w, V = np.linalg.eigh(xc.T @ xc / x.shape[0])
    return xc @ (V / np.sqrt(w)) @ V.T


def whitened_radii(x) -> np.ndarray:
    """Sorted radii |Cov^{-1/2}(x_i - mean)|, ``(N,)``: invariant under any affine flow map."""
    return np.sort(np.linalg.norm(whitened(x), axis=1))
