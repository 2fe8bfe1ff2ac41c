"""Model "sphere": tokens on S^{d-1}, softmax self-attention as a projected flow (docs/models.md §4, §6).

Parameters: inverse temperature ``beta > 0`` and optional query, key and value
matrices ``Q, K, V`` (default identity); logits ``beta <Q x_i, K x_j> =
x_i^T A x_j`` with ``A = beta Q^T K``, so one oracle call is one tiled pass of
the softmax kernels of :mod:`meanfield._kernels.pairwise` (the model delegates
its attention sums to a :class:`~meanfield.models.softmax.Softmax` with that
``A``), followed by a particle-wise pass of :mod:`meanfield._kernels.sphere`.

First-order dynamics. The attention vector of token i is

    a_i = sum_j exp(beta <Q x_i, K x_j>) V x_j / Z_i,
    Z_i = sum_j exp(beta <Q x_i, K x_j>)  (SA, normalized = true)   or   Z_i = N  (USA),

(under ``causal = true`` the sums run over j <= i and USA's N becomes i).
The ``normalization`` key chooses where the layer norm sits, i.e. what the
state is and how fast directions move (Karagodin et al. 2025; Rigollet,
arXiv 2512.01868). With x_i = r_i theta_i, |theta_i| = 1 and a_i evaluated at
the directions theta:

* ``post_ln`` (default): the state is the direction itself, |x_i| = 1, and
  ``x_i' = P_{x_i} a_i`` with ``P_x = I - x x^T / |x|^2`` (the projected flow,
  speed factor s_i = 1). ``project`` retracts x_i <- x_i / |x_i| after every
  step, so every integrator keeps |x_i| = 1 to round-off (~1e-16 in
  float64).
* ``pre_ln``: the state is the unnormalized residual stream,
  ``x_i' = a_i(theta)``; then ``theta_i' = P_{theta_i} a_i / r_i`` and
  ``r_i' = <theta_i, a_i>`` (speed factor s_i = r_i). There is nothing to
  retract: |x_i| = r_i is a dynamic variable, and the directions
  ``theta_i = x_i / |x_i|`` (on the sphere by construction) are what the
  diagnostics and the energy see.
* ``peri_ln``: the residual stream with a normalized update,
  ``x_i' = a_i(theta) / |a_i(theta)|``, so ``theta_i' = P_{theta_i} a_i / (r_i |a_i|)``
  (speed factor s_i = r_i |a_i|) and ``r_i' = <theta_i, a_i> / |a_i|``.
  Represented like pre_ln: state x_i = r_i theta_i, directions x_i / |x_i|.

With Q = K = V = I, USA (post_ln) ascends E_beta = 1/(2 beta N^2) sum_ij
exp(beta <x_i, x_j>), and SA ascends it in the metric with mobility 1/Z_i.

Accelerated dynamics (post_ln only). The damped Hamiltonian of docs/models.md §3 with
B = I, A = beta Q^T K (symmetric; beta I by default), W = 0,

    H = (1/N) sum_i |y_i|^2 / (2 z_i) - 1/(2N^2) sum_ij exp(x_i^T A x_j),
    z_i = (1/N) sum_j exp(x_i^T A x_j),

constrained to |x_i| = 1 with tangent momenta x_i . y_i = 0:

    x_i' = y_i / z_i,
    y_i' = -alpha y_i + G_i - lambda_i x_i,  lambda_i = (x_i . G_i + y_i . x_i') / |x_i|^2,

G_i the unconstrained force of docs/models.md §3. The multiplier is the tangential
projection of G_i plus the centripetal term |y_i|^2 / z_i; with it x_i . y_i
and then |x_i| are exact invariants of the ambient flow.

Discretization of the constrained system (a projection method, Hairer,
Lubich & Wanner, *Geometric Numerical Integration*, §IV.4): any registered
accelerated integrator advances this ambient field, and ``project`` then
retracts x_i <- x_i / |x_i| and projects y_i <- y_i - (x_i . y_i) x_i. The
step error off the constraint manifold is of the integrator's local order,
so the projection keeps its order and holds |x_i| = 1, x_i . y_i = 0 to
~2e-16 after every step (tests/test_sphere.py measures every registered
accelerated integrator against rk4 with a tiny step, d = 3, N = 8, beta = 1,
nesterov damping: slopes exp_euler 1.01, heavy_ball 1.05, kick_drift 0.94,
ab2 2.03, strang 2.03, tao2 2.04, rk4 4.1). It is not a symplectic (RATTLE)
scheme on the constraint manifold: without damping, 10^4 steps of tao2 keep
|H - H_0| bounded but O(h^2) (3e-2 at h = 0.05, 4e-3 at h = 0.02; rk4: 3e-6,
2e-8). tao2's doubled copies live in the ambient space and are not
projected; attention is evaluated at the directions x_i / |x_i| so copies
off the sphere do not inflate their logits, but at large beta the copies
separate unless Tao's coupling is strong: at beta = 4 (d = 2, N = 32) the
default omega = 5 lets them drift apart (a wrong trajectory), omega >= 25
with 2 omega h <= 1 keeps them within 4e-2 (omega = 50, h = 0.01: 1e-4).

Energies: the first-order ``energy`` (= ``potential``) is
U = -1/(2N^2) sum_ij exp(beta <Q theta_i, K theta_j>) (masked: -1/(2N) sum_i z_i),
which equals -beta E_beta for Q = K = I, so it decreases along post_ln flows
with Q = K = V = I and is the potential part of H in accelerated runs. The
diagnostics recorded at every save (:meth:`Sphere.diagnostics`) are E_beta,
the min and mean pairwise inner product and the number of clusters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._kernels import jacobian as JK
from .._kernels import sphere as SK
from .._logspace import LOG_MAX, exp_clipped
from ..errors import ParameterError, SimulationError
from ..schema import Key, OneOf, Real
from ._params import MODEL, as_matrix, require_symmetric
from .base import AnalyticJacobian, Model
from .softmax import Softmax, SoftmaxParams, check_fourier, reject_first_order_options

#: Default tolerance of the cluster graph <theta_i, theta_j> > 1 - tol.
DEFAULT_CLUSTER_TOL = 1e-3

NORMALIZATIONS = tuple(SK.SCHEMES)
MODEL.declare(
    Key("beta", Real("a finite number > 0 (inverse temperature)", lambda v: v > 0), 1.0,
        "inverse temperature: A = beta Q^T K"),
    Key("normalization", OneOf(NORMALIZATIONS, f"one of {list(NORMALIZATIONS)}"), "post_ln",
        "where the sphere projection sits: post_ln | pre_ln | peri_ln"),
    owners="sphere")


def clustered_energy(beta: float) -> float | None:
    """-e^beta / 2: the interaction energy at full clustering, the infimum for Q^T K = I.

    Parameters
    ----------
    beta : float
        Inverse temperature.

    Returns
    -------
    float or None
        None beyond the float64 range (beta > ~710.5).
    """
    if beta <= LOG_MAX:
        return -0.5 * math.exp(beta)
    inf = -exp_clipped(beta - math.log(2.0))  # e^beta alone overflows, e^beta / 2 may not
    return inf if math.isfinite(inf) else None


@dataclass(frozen=True)
class SphereParams:
    """Validated parameters of the sphere model.

    Attributes
    ----------
    d : int, ambient dimension (tokens on S^{d-1}), d >= 2
    beta : float > 0, inverse temperature
    Q, K : (d, d) query and key matrices, logits beta <Q x_i, K x_j>
    V : (d, d) value matrix (first-order dynamics)
    normalized : bool, SA (True) or USA (False)
    causal : bool, token i attends to j <= i only
    normalization : {"post_ln", "pre_ln", "peri_ln"}
    summation : {"exact", "fourier"}, the backend of the attention sums (fourier: d = 2, 3, Q^T K = I)
    summation_tol : float, relative accuracy asked of the fourier backend
    """

    d: int
    beta: float
    Q: np.ndarray
    K: np.ndarray
    V: np.ndarray
    normalized: bool
    causal: bool
    normalization: str
    summation: str = "exact"
    summation_tol: float = 1e-10

    @property
    def A(self) -> np.ndarray:
        """(d, d) logit matrix ``beta Q^T K``."""
        return self.beta * (self.Q.T @ self.K)

    @property
    def identity_qk(self) -> bool:
        """True when Q^T K = I (the kernel is exp(beta <x, x'>): circle PDE and Fourier summation apply)."""
        return bool(np.array_equal(self.Q.T @ self.K, np.eye(self.d)))

    @classmethod
    def from_dict(cls, p: dict, dynamics: str = "first_order") -> SphereParams:
        """Validated parameters from a ``[model]`` section for ``dynamics`` (a ParameterError names a bad key)."""
        s = MODEL.read(p, "sphere")
        d = s.d
        if not isinstance(d, int) or isinstance(d, bool) or d < 2:
            raise ParameterError("model.d", "an integer >= 2 (tokens on the sphere S^{d-1})", d)
        beta = float(s.beta)
        Q = as_matrix(s.Q, d, "model.Q")
        K = as_matrix(s.K, d, "model.K")
        normalized, causal, norm = s.normalized, s.causal, s.normalization
        if dynamics == "accelerated":
            A = beta * (Q.T @ K)
            require_symmetric(
                A, "model.Q", expected="Q, K with Q^T K symmetric for accelerated dynamics (the "
                "Hamiltonian of docs/models.md §3 needs a symmetric A = beta Q^T K; first-order runs accept any Q, K)",
                found="a non-symmetric Q^T K")
            reject_first_order_options(MODEL.typed(p), normalized, "beta, Q, K")
            if norm != "post_ln":
                raise ParameterError(
                    "model.normalization", '"post_ln" for accelerated dynamics (the damped Hamiltonian '
                    "is constrained to the sphere; pre_ln/peri_ln are first-order residual streams)", norm)
            V = A.copy()
        else:
            V = as_matrix(s.V, d, "model.V")
        summation, tol = s.summation, float(s.summation_tol)
        if summation == "fourier":
            if not np.array_equal(Q.T @ K, np.eye(d)):
                raise ParameterError("model.Q", 'Q = K = identity for summation = "fourier" (the '
                                     "kernel exp(beta <Q x, K x'>) is a Gaussian of |x - x'| on the "
                                     "sphere only then)", "Q^T K != I")
            check_fourier(d, beta * np.eye(d), causal, "model.d", "model.beta")
        return cls(d=d, beta=beta, Q=Q, K=K, V=V, normalized=normalized, causal=causal,
                   normalization=norm, summation=summation, summation_tol=tol)


class Sphere(AnalyticJacobian, Model):
    """Self-attention on the sphere S^{d-1} (SA / USA, three normalization schemes) and its
    constrained accelerated Hamiltonian; O(N^2 d) per oracle call.

    Parameters
    ----------
    params : SphereParams
    dynamics : {"first_order", "accelerated"}
    dtype : float64 (default) or float32

    Attributes
    ----------
    cluster_tol : float
        Tolerance of the cluster graph ``<theta_i, theta_j> > 1 - cluster_tol``
        used by :meth:`diagnostics` (default :data:`DEFAULT_CLUSTER_TOL`; a
        ``[diagnostics] cluster_tol`` key sets it).
    """

    name = "sphere"
    cheap_kinetic = False  # K needs every z_i: one pass over pairs
    keys = MODEL.accept("sphere", "name", "dynamics", "d", "beta", "Q", "K", "V", "normalized", "causal",
                        "normalization", "summation", "summation_tol")

    @property
    def thread_invariant(self) -> bool:
        """As the attention sums' backend (:attr:`Softmax.thread_invariant`)."""
        return self.attention.thread_invariant

    def __init__(self, params: SphereParams, dynamics="first_order", dtype=np.float64):
        super().__init__(params.d, dynamics, dtype)
        self.params = params
        self.beta = params.beta
        self.normalization = params.normalization
        self.scheme = SK.SCHEMES[params.normalization]
        self.causal = params.causal
        self.normalized = params.normalized
        self.cluster_tol = DEFAULT_CLUSTER_TOL
        d = params.d
        sp = SoftmaxParams(d=d, A=params.A, B=np.eye(d), V=params.V, Q=np.zeros((d, d)),
                           m=np.zeros(d), normalized=params.normalized, causal=params.causal,
                           summation=params.summation, summation_tol=params.summation_tol)
        self.attention = Softmax(sp, dynamics, dtype)
        if self.attention._fourier is not None:
            self.attention._fourier.on_unit_sphere()  # attention sees directions: angle-space sums
        self._n = -1

    @classmethod
    def from_dict(cls, p: dict, dtype=np.float64):
        """The model of a ``[model]`` section, computing in ``dtype``."""
        # a bare model from Python defaults to the sphere papers' first-order flow; a parameter
        # file's [model] always has dynamics (the schema's default, "accelerated", filled by resolve)
        given = MODEL.typed(p).dynamics
        dynamics = given if given is not None else "first_order"
        return cls(SphereParams.from_dict(p, dynamics), dynamics, dtype)

    def use_row_passes(self) -> None:
        """Exact attention sums row by row (:meth:`Softmax.use_row_passes`): the sharded passes' reference."""
        self.attention.use_row_passes()

    def shard_over(self, client) -> None:
        """Attention sums on the dask cluster of ``client``, by row blocks (:meth:`Softmax.shard_over`)."""
        self.attention.shard_over(client)

    # ---------------------------------------------------------------- helpers
    @property
    def on_sphere(self) -> bool:
        """True when the state itself lives on the sphere (post_ln, accelerated)."""
        return self.scheme == SK.POST_LN

    def _scratch(self, n: int) -> None:
        if n == self._n:
            return
        self._F = np.empty((n, self.d), self.dtype)
        self._G = np.empty((n, self.d), self.dtype)
        self._theta = np.empty((n, self.d), self.dtype)
        self._n = n

    def _source(self, x):
        """The directions theta_i = x_i / |x_i|, where attention is always evaluated.

        For post_ln states this is x itself up to round-off; evaluating at the
        directions makes the ambient extension of the fields 0-homogeneous in
        |x_i|, so stage values and auxiliary copies of integrators (tao2's)
        that leave the sphere do not see their logits inflated by |x_i|^2.
        """
        SK.directions(x, self._theta)
        return self._theta

    @staticmethod
    def _reraise(exc: SimulationError) -> SimulationError:
        return SimulationError(f"sphere model (logits x_i^T A x_j with A = beta Q^T K): {exc}", t=exc.t)

    # ----------------------------------------------------------------- fields
    def _combine_first_order(self, x, t, a, b, out):
        self._check_input(x)
        self._scratch(x.shape[0])
        src = self._source(x)
        try:
            F = self.attention.first_order(src, t, out=self._F)
        except SimulationError as exc:
            raise self._reraise(exc) from None
        bad = SK.finish_first_order(x, F, a, b, self.scheme, out)
        if bad:
            raise SimulationError(
                f"sphere model at t = {t:.6g}: the field is not finite in {bad} rows"
                + (" (a_i = 0: peri_ln divides by |a_i|)" if self.scheme == SK.PERI_LN else ""), t=t)

    def _combine_hamiltonian(self, x, y, t, ax, bx, ay, by, out_x, out_y):
        self._check_input(x)
        self._check_input(y)
        self._scratch(x.shape[0])
        try:
            F, G = self.attention.hamiltonian_field(self._source(x), y, t, out_x=self._F, out_y=self._G)
        except SimulationError as exc:
            raise self._reraise(exc) from None
        bad = SK.finish_hamiltonian(x, y, F, G, ax, bx, ay, by, out_x, out_y)
        if bad:
            raise SimulationError(f"sphere model at t = {t:.6g}: the field is not finite in {bad} rows", t=t)

    def _analytic_jacobian(self) -> bool:
        return not self.accelerated and self.params.summation == "exact"

    def _jacobian_first_order(self, x, t, J):
        """Dense Jacobian of the first-order field (every normalization, SA/USA, mask) into ``J`` ``(N d, N d)``.

        Attention is evaluated at the directions theta_i = x_i / |x_i|, so the
        Jacobian carries d theta_i / d x_i = P_{theta_i} / |x_i| and matches the
        field also off the sphere.
        """
        self._check_input(x)
        n, d = x.shape
        theta = np.empty((n, d))
        rinv = np.empty(n)
        SK.directions(x, theta)
        SK.norms_into(x, rinv)
        rinv = 1.0 / rinv
        att = self.attention
        zero = np.zeros((d, d))
        bad = JK.attention_jacobian(theta, rinv, att.A, att.V, zero, zero[0], self.scheme, True,
                                    self.normalized, self.causal, J, np.empty((n, d)))
        if bad:
            raise SimulationError(
                f"sphere model at t = {t:.6g}: the Jacobian of the first-order field is not finite in "
                f"{bad} row blocks" + (" (a_i = 0: peri_ln divides by |a_i|)" if self.scheme == SK.PERI_LN
                                        else ""), t=t)
        return J

    def mlp_field(self, at, base, layer, out):
        """The MLP at the directions of ``at``, as a field at ``base``, ``(N, d)``.

        Like attention: post_ln projects it to the tangent space at ``base``,
        pre_ln adds it to the residual stream as is, peri_ln normalizes it.
        """
        self._check_input(at)
        self._scratch(at.shape[0])
        raw = self.mlp(self._source(at), layer, self._G)
        bad = SK.finish_first_order(base, raw, 0.0, 1.0, self.scheme, out)
        if bad:
            raise SimulationError(f"sphere model: the MLP field is not finite in {bad} rows"
                                  + (" (MLP(theta_i) = 0: peri_ln divides by its norm)"
                                     if self.scheme == SK.PERI_LN else ""))
        return out

    def attention_vectors(self, x, t=0.0) -> np.ndarray:
        """The attention outputs ``a_i`` at the directions of ``x`` (no projection), ``(N, d)``.

        One layer of attention (SA or USA, masked under ``causal``); not
        counted as an oracle call. Used by the long-context checks.
        """
        return self._attention(x, t)

    def _attention(self, x, t, out=None):
        """a_i at the directions theta_i = x_i / |x_i| (SA or USA, masked under ``causal``), ``(N, d)``."""
        self._check_input(x)
        self._scratch(x.shape[0])
        return self.attention.first_order(self._source(x), t, out=out)

    # -------------------------------------------------------------- geometry
    def check_state(self, x, y) -> None:
        """Check (and snap) an initial state.

        post_ln / accelerated: every |x_i| must be 1 within 1e-6 (use the
        initial laws ``sphere_uniform`` or ``equiangular``, or unit vectors
        from a file); the rows are then normalized exactly, in place.
        pre_ln / peri_ln: every x_i must be non-zero. Accelerated: the momenta
        are projected to the tangent spaces in place, y_i <- y_i - (x_i . y_i) x_i
        (a Gaussian momentum law becomes its tangent part).

        Raises
        ------
        ParameterError
        """
        norms = np.linalg.norm(np.asarray(x, np.float64), axis=1)
        if self.on_sphere:
            err = float(np.max(np.abs(norms - 1.0))) if len(norms) else 0.0
            if not err <= 1e-6:
                raise ParameterError(
                    "initial.law", "points on the unit sphere for model sphere (law sphere_uniform or "
                    "equiangular, or unit vectors from a file)", f"max | |x_i| - 1 | = {err:.3g}")
            if y is None:
                SK.retract(x)
            else:
                SK.retract_tangent(x, y)
        elif len(norms) and not norms.min() > 0:
            raise ParameterError("initial.law", "non-zero tokens (their directions x_i/|x_i| are used)",
                                 "a zero row")

    def project(self, x, y) -> None:
        """Retraction after a step: x_i <- x_i/|x_i| and y_i <- P_{x_i} y_i (post_ln); identity otherwise."""
        if not self.on_sphere:
            return
        if y is None:
            SK.retract(x)
        else:
            SK.retract_tangent(x, y)

    def constraint_errors(self, x, y=None) -> tuple[float, float]:
        """``(max_i ||x_i| - 1|, max_i |x_i . y_i| / max(1, |y_i|))`` of a state."""
        yy = np.empty((0, self.d), x.dtype) if y is None else y
        return SK.constraint_errors(x, yy)

    # ----------------------------------------------------------- diagnostics
    def kinetic(self, x, y) -> float:
        """K = (1/N) sum_i |y_i|^2 / (2 z_i) (one pass over pairs for z)."""
        return self.attention.kinetic(x, y)

    def energies(self, x, y) -> dict:
        """``energy`` (H accelerated, else U), ``potential`` U, and ``kinetic`` when accelerated.

        U = -1/(2N^2) sum_ij exp(beta <Q theta_i, K theta_j>) (= -beta E_beta for Q = K = I).
        """
        self._check_input(x)
        self._scratch(x.shape[0])
        try:
            if self.accelerated:
                e = self.attention.energies(self._source(x), y)
            else:
                e = self.attention.energies(self._source(x), None)
        except SimulationError as exc:
            raise self._reraise(exc) from None
        return e

    def diagnostics(self, x, y) -> dict:
        """Per-save diagnostics (one O(N^2 d) serial pass over pairs, O(N d) memory).

        Under ``summation = "fourier"``: O(N log N), :func:`~meanfield.diagnostics.clustering.
        pair_statistics_fast` (``min_inner``, ``mean_inner``, ``n_clusters`` exact) and
        ``E_beta = mean_i z_i / (2 beta)`` from the Fourier z_i (relative accuracy ``summation_tol``).

        Returns
        -------
        dict
            ``E_beta`` (interaction energy 1/(2 beta N^2) sum_ij exp(beta <theta_i, theta_j>)),
            ``min_inner``, ``mean_inner`` (over pairs i != j), ``n_clusters``
            (connected components of <theta_i, theta_j> > 1 - cluster_tol),
            ``mean (d,)`` and ``cov (d, d)`` of the state, and for pre_ln / peri_ln
            ``mean_radius`` (mean |x_i|).
        """
        from ..diagnostics.clustering import pair_statistics, pair_statistics_fast

        if self.params.summation == "fourier":
            self._check_input(x)
            self._scratch(x.shape[0])
            st = pair_statistics_fast(x, tol=self.cluster_tol)
            try:
                st["E_beta"] = float(np.mean(self.attention.z(self._source(x)))) / (2.0 * self.beta)
            except SimulationError as exc:
                raise self._reraise(exc) from None
        else:
            st = pair_statistics(x, self.beta, tol=self.cluster_tol)
        xs = np.asarray(x, np.float64)
        mu = xs.mean(axis=0)
        xc = xs - mu
        out = {"E_beta": st["E_beta"], "min_inner": st["min_inner"], "mean_inner": st["mean_inner"],
               "n_clusters": np.int64(st["n_clusters"]), "mean": mu, "cov": xc.T @ xc / max(1, len(xs))}
        if not self.on_sphere:
            out["mean_radius"] = float(np.linalg.norm(xs, axis=1).mean())
        return out

    #: Below this many tokens :meth:`count_clusters` compares every pair (cheaper than the grid).
    DENSE_COUNT_BELOW = 128

    def set_diagnostics(self, diagnostics) -> None:
        """``[diagnostics] cluster_tol`` (checked in (0, 2) by the schema) sets :attr:`cluster_tol`."""
        if diagnostics.network is not None:
            super().set_diagnostics(diagnostics)
        if diagnostics.cluster_tol is not None:
            self.cluster_tol = float(diagnostics.cluster_tol)

    def count_clusters(self, x) -> int:
        """``n_clusters`` of positions ``x`` (N, d) at ``cluster_tol``, exact: every pair, or a grid (O(N))."""
        from .._kernels.grid import count_components, count_components_dense
        from ..diagnostics.clustering import _directions

        count = count_components_dense if x.shape[0] < self.DENSE_COUNT_BELOW else count_components
        return int(count(_directions(x), self.cluster_tol))

    def energy_infimum(self, x0) -> float | None:
        """-e^beta / 2 for Q^T K = I: the value of U (and H) at full clustering, its minimum.

        None when unknown (Q^T K != I) or beyond the float64 range (beta > ~710.5).
        """
        return clustered_energy(self.beta) if self.params.identity_qk else None

    def describe(self) -> dict:
        p = self.params
        out = {"name": self.name, "dynamics": self.dynamics, "d": self.d, "beta": self.beta,
               "Q": p.Q.tolist(), "K": p.K.tolist(), "causal": self.causal,
               "normalization": self.normalization}
        if not self.accelerated:
            out["V"] = p.V.tolist()
            out["normalized"] = self.normalized
        if p.summation == "fourier":
            out.update(summation="fourier", summation_tol=p.summation_tol)
        return out

    def attention_layer(self, x, t, out=None):
        """Attention outputs ``a_i`` at the directions ``theta_i = x_i / |x_i|``, ``(N, d)``; one oracle call.

        SA or USA, masked under ``causal``, no projection. ``out`` may be ``x``:
        the ``mean_shift`` integrator writes a_i into the state and the
        retraction of :meth:`project` makes it a_i / |a_i| (post_ln).
        """
        self.oracle_calls += 1
        try:
            return self._attention(x, t, out)
        except SimulationError as exc:
            raise self._reraise(exc) from None
