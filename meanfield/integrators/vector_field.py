"""A system's dynamics as one ODE ``z' = F(t, z)`` on a flat vector, for adaptive methods.

Fixed-step integrators call a model's fused field methods on ``(x, y)``.
Error-controlled methods (:mod:`meanfield.integrators.adaptive`) need the
state as one vector: a weighted error norm over every component, stage
combinations, a Jacobian. :class:`VectorField` packs the state of a model

* first-order: ``z = x.ravel()``, ``F(t, z) = f(x)``, shape ``(N d,)``;
* accelerated: ``z = (x.ravel(), y.ravel())``,
  ``F(t, z) = (dH/dy N, -N dH/dx - alpha(t) y)``, shape ``(2 N d,)``

(grid systems present ``first_order`` like a model, so a density of ``M``
cells is ``z`` of shape ``(M,)``). Every evaluation of ``F`` is one oracle
call of the model, counted there; a finite-difference Jacobian costs one
call per column, counted the same way. Models with an analytic Jacobian provide
``jacobian_first_order(x, t) -> (N d, N d)``, counted by the model.
"""

from __future__ import annotations

import numpy as np


class VectorField:
    """``z' = F(t, z)`` of a model (or a grid system), on flat vectors.

    Parameters
    ----------
    model : Model or GridSystem
        Owns the field methods (``first_order`` or ``hamiltonian_field``).
    schedule : Schedule
        The damping alpha(t) of accelerated dynamics.
    shape : tuple
        Shape of one state array (``(N, d)`` for particles, ``(M,)`` for a grid).
    accelerated : bool
        True when the state is ``(x, y)``.

    Attributes
    ----------
    n : int
        Length of ``z``.
    """

    def __init__(self, model, schedule, shape, accelerated: bool):
        self.model, self.schedule = model, schedule
        self.shape = tuple(shape)
        self.accelerated = bool(accelerated)
        self.m = int(np.prod(self.shape))
        self.n = 2 * self.m if accelerated else self.m

    # ----------------------------------------------------------------- state
    def pack(self, x, y=None, out=None) -> np.ndarray:
        """The flat state ``z`` of ``(x, y)``, shape ``(n,)`` (a new array unless ``out``)."""
        z = np.empty(self.n, dtype=x.dtype) if out is None else out
        z[: self.m] = x.reshape(-1)
        if self.accelerated:
            z[self.m:] = y.reshape(-1)
        return z

    def unpack(self, z) -> tuple:
        """Views ``(x, y)`` of a flat state (``y`` None for first-order dynamics)."""
        x = z[: self.m].reshape(self.shape)
        return (x, z[self.m:].reshape(self.shape)) if self.accelerated else (x, None)

    # ----------------------------------------------------------------- field
    def __call__(self, t, z, out=None) -> np.ndarray:
        """``F(t, z)``, shape ``(n,)``; one oracle call."""
        if out is None:
            out = np.empty_like(z)
        x, y = self.unpack(z)
        fx, fy = self.unpack(out)
        if self.accelerated:
            self.model.hamiltonian_field(x, y, t, out_x=fx, out_y=fy)
            alpha = self.schedule.alpha(t)
            if alpha:
                fy -= alpha * y
        else:
            self.model.first_order(x, t, out=fx)
        return out

    @property
    def finite_difference_jacobian(self) -> bool:
        """True when :meth:`jacobian` costs ``n`` field calls (no analytic Jacobian): kept longer by stiff methods."""
        return self.accelerated or not getattr(self.model, "has_jacobian", False)

    def jacobian(self, t, z, fz=None) -> np.ndarray:
        """The dense Jacobian ``dF/dz`` at ``(t, z)``, shape ``(n, n)``.

        Analytic when the model has one (``has_jacobian``: first-order sphere and
        softmax particles with exact summation), else forward differences, one
        oracle call per column (plus one for ``F(t, z)`` when ``fz`` is not given).
        A new array each call.
        """
        if not self.accelerated and getattr(self.model, "has_jacobian", False):
            x, _ = self.unpack(z)
            return self.model.jacobian_first_order(x, t)
        if fz is None:
            fz = self(t, z)
        J = np.empty((self.n, self.n), dtype=z.dtype)
        zp = z.copy()
        col = np.empty_like(z)
        root = np.sqrt(np.finfo(z.dtype).eps)
        for j in range(self.n):
            step = root * max(abs(float(z[j])), 1e-5 * max(1.0, float(np.abs(z).max())))
            zp[j] = z[j] + step
            self(t, zp, col)
            J[:, j] = (col - fz) / (zp[j] - z[j])
            zp[j] = z[j]
        return J
