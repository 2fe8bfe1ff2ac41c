"""ROS34PW2, the stiff method ``ros34pw2``: a Rosenbrock-W method (docs/models.md §5).

Rang & Angermann (BIT 45, 2005): 4 stages, order 3 with an embedded
order-2 solution, L-stable and stiffly accurate. It is a *W-method*: the
order holds for any matrix ``W`` in place of the Jacobian, so one dense
Jacobian (analytic when the model has ``jacobian_first_order``, else forward
differences, one field call per column) and one LU are kept over many steps.
In the form of Hairer & Wanner (IV.7.25) each stage solves::

    (I / (h gamma) - W) U_i = F(t + c_i h, z + sum_j a_ij U_j) + sum_j (c_ij / h) U_j,
    z_new = z + sum_i m_i U_i,  error = sum_i (m_i - m^_i) U_i.

Costs: 4 field calls per attempt (a retry after a rejection reuses ``F(t, z)``:
3), plus the Jacobian and the LU when the reuse policy asks for them:

* a Jacobian is evaluated at the start ``(t, z)`` of the first step, and again
  when a step is rejected while the kept Jacobian is older than that step
  (the retry uses a fresh one), or after 50 accepted steps. A Jacobian by
  finite differences (``field.finite_difference_jacobian``, n field calls)
  is re-evaluated only after the second rejection in a row and after 100
  steps (:attr:`Ros34PW2.jac_policy`: on the sphere benchmark, 64 tokens to
  t = 1e8, this saves a fifth of the calls; with a cheap analytic Jacobian the
  stricter policy saves steps);
* the LU of ``I / (h_LU gamma) - J`` is kept while ``h / h_LU`` stays in
  ``[1 / lu_ratio, lu_ratio]``: with ``h != h_LU`` the stages use
  ``W = (h_LU / h) J``, still a W-method of order 3 (the solve is rescaled),
  otherwise it is refactored with the current ``h`` (``scipy.linalg.lu_factor``).

Both counts go to ``stats["jacobians"]`` and ``stats["factorizations"]``.

Time dependence (the damping alpha(t) of accelerated runs) enters only
through the stage times ``t + c_i h``: the Rosenbrock term ``gamma_i h^2 dF/dt``
is dropped, which is the W-method with ``W = [[J, 0], [0, 0]]`` for the
autonomous system in ``(z, t)``, so the order stays 3.

Dense output is ``z + sum_i m_i(theta) U_i`` with weights of degree 2 in theta
that satisfy the W-method's conditions of order 2 (dense order 2); being built
from the damped stages, it stays bounded across steps much longer than the
fast time scale, where a Hermite cubic through ``F(z_new)`` would multiply
the stiff components' error by ``h |lambda|``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import get_lapack_funcs, lu_factor

from .adaptive import AdaptiveIntegrator, dense_from_state, dense_state, error_norm
from .dopri5 import FsalCache

GAMMA = 0.43586652150845900
#: stage weights a_ij (the stage times are their row sums)
ALPHA = np.array([
    [0.0, 0.0, 0.0, 0.0],
    [0.87173304301691801, 0.0, 0.0, 0.0],
    [0.84457060015369423, -0.11299064236484185, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
])
#: gamma_ij, lower triangular with gamma on the diagonal
GAMMAS = np.array([
    [GAMMA, 0.0, 0.0, 0.0],
    [-0.87173304301691801, GAMMA, 0.0, 0.0],
    [-0.90338057013044082, 0.054180672388095326, GAMMA, 0.0],
    [0.24212380706095346, -1.2232505839045147, 0.54526025533510214, GAMMA],
])
B = np.array([0.24212380706095346, -1.2232505839045147, 1.5452602553351020, 0.43586652150845900])
B_HAT = np.array([0.37810903145819369, -0.096042292212423178, 0.5, 0.21793326075422950])

# The transformed form U = Gamma K (Hairer & Wanner IV.7): no products with W.
_GINV = np.linalg.inv(GAMMAS)
A_U = ALPHA @ _GINV
C_U = np.diag(1.0 / np.diag(GAMMAS)) - _GINV
M = B @ _GINV
M_ERR = (B - B_HAT) @ _GINV
C_T = ALPHA.sum(axis=1)


def _dense_weights() -> np.ndarray:
    """``D`` of the dense weights ``b(theta) = theta b + theta (1 - theta) d`` (D = d Gamma^-1).

    W-method order 2 at every theta: ``sum b_i(theta) = theta``,
    ``sum b_i(theta) c_i = theta^2 / 2``, ``sum b_i(theta) gamma'_i = 0`` with
    ``gamma'_i = sum_j gamma_ij``; since ``b`` satisfies them at theta = 1 this
    asks ``sum d = 0``, ``sum d c = -1/2``, ``sum d gamma' = 0`` (least-norm d).
    """
    conditions = np.array([np.ones(4), C_T, GAMMAS.sum(axis=1)])
    d = np.linalg.lstsq(conditions, np.array([0.0, -0.5, 0.0]), rcond=None)[0]
    return d @ _GINV


D_U = _dense_weights()


class Ros34PW2(AdaptiveIntegrator):
    """ROS34PW2 Rosenbrock-W method with a kept dense Jacobian and LU (module docstring).

    Attributes
    ----------
    rho : float
        ``||J||_inf`` of the kept Jacobian (a bound on its spectral radius; ``auto`` reads it).
    """

    name = "ros34pw2"
    #: Keeps a dense (n, n) Jacobian: states of more than JACOBIAN_MAX numbers are refused when a run is built.
    uses_jacobian = True
    kind = "first_order"
    order = 3
    error_order = 2
    dense_order = 2
    oracle_calls = 4
    #: Jacobian reuse: (rejections in a row at one step start after which a Jacobian older than
    #: the step is re-evaluated, accepted steps after which it is re-evaluated anyway), for an
    #: analytic Jacobian and for one by finite differences (n field calls: kept longer)
    jac_policy = {"analytic": (1, 50), "finite_differences": (2, 100)}
    #: the LU is kept while h / h_LU stays in [1 / lu_ratio, lu_ratio]
    lu_ratio = 2.0
    #: get_state stores the Jacobian itself up to this n (n^2 floats), else only where it was evaluated
    jac_store_max = 1024

    def __init__(self, **options):
        super().__init__(**options)
        self.reset()

    def reset(self) -> None:
        """Forget the kept Jacobian, LU, ``F(t, z)`` and dense output (a new run)."""
        self.fsal = FsalCache()  # F(t, z) at the step start, shared by the retries of a rejection
        self.forget_jacobian()
        self.last_attempt_t = math.nan
        self.retries = 0
        self._trial = None
        self._dense = None

    def forget_jacobian(self) -> None:
        """Drop the kept Jacobian and LU: the next attempt evaluates a new one."""
        self.J, self.jac_t, self.jac_z, self.jac_age, self.rho = None, math.nan, None, 0, math.nan
        self.lu, self.lu_h = None, math.nan
        self._restore_lu = False

    # ----------------------------------------------------------- Jacobian
    def _evaluate_jacobian(self, field, t, z, fz, count=True):
        self.J = np.ascontiguousarray(field.jacobian(t, z, fz), dtype=z.dtype)
        self.jac_t, self.jac_z = float(t), z.copy()
        self.rho = float(np.abs(self.J).sum(axis=1).max()) if self.J.size else 0.0
        self.lu = None
        if count:
            self.jac_age = 0
            self.stats["jacobians"] += 1

    def _factorize(self, h, count=True):
        n = self.J.shape[0]
        matrix = np.eye(n, dtype=self.J.dtype) / (h * GAMMA) - self.J
        self.lu = lu_factor(matrix, overwrite_a=True, check_finite=False)
        self.lu_h = float(h)
        if count:
            self.stats["factorizations"] += 1

    def use_matrix(self, field, t, h, z, fz) -> None:
        """Apply the reuse policy before an attempt at ``(t, h, z)`` (module docstring)."""
        if self.J is None and self.jac_z is not None:
            # resumed from a state without the matrix: recompute it where it was evaluated
            self._evaluate_jacobian(field, self.jac_t, self.jac_z, None, count=False)
        if self.lu is None and self._restore_lu:
            self._factorize(self.lu_h, count=False)
        self._restore_lu = False
        self.retries = self.retries + 1 if t == self.last_attempt_t else 0
        rejections, max_age = self.jac_policy[
            "finite_differences" if getattr(field, "finite_difference_jacobian", True) else "analytic"]
        if self.J is None or (self.retries >= rejections and self.jac_t != t) or self.jac_age >= max_age:
            self._evaluate_jacobian(field, t, z, fz)
        if self.lu is None or not 1.0 / self.lu_ratio <= h / self.lu_h <= self.lu_ratio:
            self._factorize(h)

    # -------------------------------------------------------------- steps
    def attempt(self, field, t, h, z):
        f0 = self.fsal.get(field, t, z)
        self.use_matrix(field, t, h, z, f0)
        self.last_attempt_t = t
        # the solve with the LU of I/(h_LU gamma) - J is the W-method with W = (h_LU / h) J
        scale = h / self.lu_h
        U = np.empty((4, z.size), dtype=z.dtype)
        for i in range(4):
            if i == 0:
                rhs = f0.copy()
            else:
                stage = z + np.dot(A_U[i, :i], U[:i])
                rhs = field(t + C_T[i] * h, stage)
                rhs += np.dot(C_U[i, :i] / h, U[:i])
            # LAPACK's getrs itself: scipy's lu_solve wrapper costs more than the solve at n ~ 200
            U[i] = get_lapack_funcs("getrs", (self.lu[0],))(*self.lu, rhs)[0]
            U[i] *= scale
        z_new = z + np.dot(M, U)
        err = error_norm(np.dot(M_ERR, U), z, z_new, self.rtol, self.atol)
        self._trial = U
        return z_new, err

    def commit(self, field, t, h, z, z_new):
        self._dense = (float(t), float(h), z.copy(), self._trial)
        self._trial = None
        self.jac_age += 1

    def dense(self, theta):
        _, _, z, U = self._dense
        theta = float(theta)
        return z + np.dot(theta * M + theta * (1.0 - theta) * D_U, U)

    # -------------------------------------------------------------- state
    def get_state(self) -> dict:
        """Everything later steps depend on (module docstring).

        The Jacobian is stored as a matrix when ``n <= jac_store_max``, else as
        the point ``(jac_t, jac_z)`` where it was evaluated: a resumed run
        recomputes it there (for a finite-difference Jacobian that costs ``n``
        field calls the uninterrupted run did not make; ``stats`` does not count it).
        The LU is recomputed from the Jacobian and ``lu_h``.
        """
        known = self.jac_z is not None
        state = {**self.fsal.get_state(), "jac_t": self.jac_t if known else 0.0, "jac_age": self.jac_age,
                 "jac_z": self.jac_z.copy() if known else np.empty(0),
                 "lu_h": 0.0 if math.isnan(self.lu_h) else self.lu_h,
                 "attempted": int(not math.isnan(self.last_attempt_t)),
                 "last_attempt_t": 0.0 if math.isnan(self.last_attempt_t) else self.last_attempt_t,
                 "retries": self.retries,
                 **self.stats_state()}
        if self.J is not None and self.J.shape[0] <= self.jac_store_max:
            state["jac"] = self.J.copy()
        state.update(dense_state(self._dense))
        return state

    def set_state(self, state: dict) -> None:
        self.fsal.set_state(state)
        jac_z = np.asarray(state["jac_z"], dtype=float)
        self.jac_z = jac_z.copy() if jac_z.size else None
        self.jac_t = float(state["jac_t"]) if jac_z.size else math.nan
        self.jac_age = int(state["jac_age"])
        self.lu_h = float(state["lu_h"]) if state["lu_h"] > 0 else math.nan
        self.last_attempt_t = float(state["last_attempt_t"]) if state["attempted"] else math.nan
        self.retries = int(state["retries"])
        self.restore_stats(state)
        self.J, self.lu = None, None
        if "jac" in state:
            self.J = np.array(state["jac"])
            self.rho = float(np.abs(self.J).sum(axis=1).max()) if self.J.size else 0.0
        self._restore_lu = not math.isnan(self.lu_h)
        self._trial = None
        self._dense = dense_from_state(state)
