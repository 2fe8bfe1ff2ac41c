"""Model "softmax": softmax self-attention and its accelerated Hamiltonian (docs/models.md §3, §6).

With ``E_ij = exp(x_i^T A x_j)`` and ``z_i = (1/N) sum_j E_ij``:

First-order flow (classical attention, value ``V``, default ``V = B A``)::

    dx_i/dt = sum_j E_ij V x_j / sum_j E_ij - B grad W(x_i) / z_i     (SA, normalized = true)
    dx_i/dt = (1/N) sum_j E_ij V x_j - B grad W(x_i)                  (USA, normalized = false)

The confining term (absent by default, Q = 0) is the one of the gradient
flow: with V = B A and symmetric A, SA is the descent of
Ecal = -1/(2N^2) sum_ij E_ij + (1/N) sum_i W(x_i) with mobility 1/z_i
(docs/models.md §3), USA the descent with unit mobility, so the reported first-order
energy decreases along both when B is positive semidefinite.

Accelerated flow (damped Hamiltonian with mobility 1/z_i, A and B symmetric)::

    H = (1/N) sum_i y_i^T B y_i / (2 z_i) - 1/(2N^2) sum_ij E_ij + (1/N) sum_i W(x_i)
    dx_i/dt = B y_i / z_i
    dy_i/dt = -alpha y_i + 1/(2N) sum_j E_ij (s_i + s_j + 2) A x_j - Q (x_i - m),
    s_i = y_i^T B y_i / z_i^2

Under a causal mask (``causal = true``) every sum over j runs over j <= i and
its 1/N becomes 1/i (docs/models.md §6); the energies are then computed from the masked
z_i (``interaction = -1/(2N) sum_i z_i``) and are not expected to be monotone.

One oracle call is O(N^2 d): one pass over pairs for SA/USA (online softmax),
two for the accelerated field (z_i, then the force with s_i); see
:mod:`meanfield._kernels.pairwise`. For a symmetric A without a mask, every
pass computes each unordered pair's logit and exponential once (``E_ij = E_ji``,
:func:`~meanfield._kernels.pairwise.symmetric_pass`) while every
x_i^T |A| x_i / 2 <= ``mu_max_for(dtype)`` (170 in float64, 20 in float32), and
goes row by row otherwise. Quantities that are intrinsically
unnormalized (USA, z_i, the accelerated force, the energy) raise
:class:`~meanfield.errors.SimulationError` when they overflow.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .._kernels import jacobian as JK
from .._kernels import moments as MK
from .._kernels import pairwise as PK
from .._kernels._config import chunk_bounds
from .._logspace import LOG_MAX, exp_clipped, log_mean_exp
from ..errors import ParameterError, SimulationError
from ._fourier import FourierSums, psd_factor
from ._params import MODEL, as_matrix, as_vector, require_symmetric
from .base import AnalyticJacobian, Model


def _symmetric_for_accelerated(M: np.ndarray, key: str) -> None:
    require_symmetric(M, key, expected=(
        "a symmetric matrix for accelerated softmax dynamics (the Hamiltonian of docs/models.md §3 "
        "needs symmetric A and B; first-order runs accept any A and V)"))


def reject_first_order_options(s, normalized: bool, fixed_by: str) -> None:
    """V and normalized = false belong to first-order runs: ParameterError under accelerated dynamics.

    Shared by the softmax and sphere models; ``fixed_by`` names what fixes the force.
    """
    if s.V is not None:  # ``s``: the [model] table read without V's default
        raise ParameterError(
            "model.V", f"no V for accelerated dynamics (the force is fixed by {fixed_by}; "
            "V is the first-order value matrix)", s.V)
    if not normalized:
        raise ParameterError(
            "model.normalized", "true for accelerated dynamics (the mobility 1/z_i is "
            "part of the Hamiltonian; USA is a first-order flow)", normalized)


@dataclass(frozen=True)
class SoftmaxParams:
    """Validated parameters of the softmax model.

    Attributes
    ----------
    d : int
    A : (d, d) query-key matrix (inverse temperature folded in), logits x_i^T A x_j
    B : (d, d) preconditioner (symmetric for accelerated dynamics)
    V : (d, d) value matrix of the first-order flow (default ``B A``)
    Q : (d, d) symmetric Hessian of W(x) = 1/2 (x - m)^T Q (x - m) (default 0: no potential)
    m : (d,) minimiser of W
    normalized : bool, SA (True) or USA (False), first-order only
    causal : bool, token i interacts with j <= i only
    summation : {"exact", "fourier"}, the backend of the interaction sums
    summation_tol : float, relative accuracy asked of the fourier backend
    """

    d: int
    A: np.ndarray
    B: np.ndarray
    V: np.ndarray
    Q: np.ndarray
    m: np.ndarray
    normalized: bool
    causal: bool
    summation: str = "exact"
    summation_tol: float = 1e-10

    @functools.cached_property
    def has_potential(self) -> bool:
        """True when a confining potential W is set (Q != 0); computed once (parameters are frozen)."""
        return bool(np.any(self.Q != 0.0))

    @classmethod
    def from_dict(cls, p: dict, dynamics: str = "accelerated") -> SoftmaxParams:
        """Validated parameters from a ``[model]`` section for ``dynamics`` (a ParameterError names a bad key)."""
        s = MODEL.read(p, "softmax")
        d = s.d
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise ParameterError("model.d", "a positive integer", d)
        A = as_matrix(s.A, d, "model.A")
        B = as_matrix(s.B, d, "model.B")
        Q = as_matrix(s.Q, d, "model.Q")
        require_symmetric(Q, "model.Q")
        m = as_vector(s.m, d, "model.m")
        causal, normalized = s.causal, s.normalized
        if dynamics == "accelerated":
            _symmetric_for_accelerated(A, "model.A")
            _symmetric_for_accelerated(B, "model.B")
            reject_first_order_options(s, normalized, "A and B")
            V = B @ A
        else:  # V = B A unless given (a default derived from other keys: model.V in the schema)
            V = as_matrix(s.V, d, "model.V") if s.V is not None else B @ A
        summation, tol = s.summation, float(s.summation_tol)
        if summation == "fourier":
            check_fourier(d, A, causal, "model.d", "model.A")
        return cls(d=d, A=A, B=B, V=V, Q=Q, m=m, normalized=normalized, causal=causal,
                   summation=summation, summation_tol=tol)


def check_fourier(d: int, A: np.ndarray, causal: bool, key_d: str, key_A: str, d_max: int = 3) -> None:
    """ParameterError unless summation = "fourier" applies: no mask, d <= d_max, A symmetric PSD."""
    if causal:
        raise ParameterError("model.summation", 'summation = "exact" under a causal mask (masked sums '
                             "are prefix sums: no Fourier summation for them)", "fourier")
    if d > d_max:
        raise ParameterError(key_d, f'd <= {d_max} for summation = "fourier" (the number of Fourier '
                             "modes grows exponentially with the dimension)", d)
    psd_factor(A, key_A)


class Softmax(AnalyticJacobian, Model):
    """Softmax attention (SA / USA) and its accelerated damped Hamiltonian; O(N^2 d) per call.

    Parameters
    ----------
    params : SoftmaxParams
    dynamics : {"first_order", "accelerated"}
    dtype : float64 (default) or float32
    """

    name = "softmax"
    cheap_kinetic = False  # K needs every z_i: one pass over pairs
    #: True when V defaults to B A in every layer of per-layer A files (then V is not described).
    V_is_BA = False
    keys = MODEL.accept("softmax", "name", "dynamics", "d", "A", "B", "V", "Q", "m", "normalized", "causal",
                        "summation", "summation_tol")

    @property
    def thread_invariant(self) -> bool:
        """False under summation = "fourier": FINUFFT's sums change in the last bits with its thread count."""
        return self._fourier is None

    def __init__(self, params: SoftmaxParams, dynamics="accelerated", dtype=np.float64):
        super().__init__(params.d, dynamics, dtype)
        self.params = params
        self.A = np.ascontiguousarray(params.A, dtype=np.float64)
        self.B = np.ascontiguousarray(params.B, dtype=np.float64)
        self.V = np.ascontiguousarray(params.V, dtype=np.float64)
        self.Q = np.ascontiguousarray(params.Q, dtype=np.float64)
        self.m = np.ascontiguousarray(params.m, dtype=np.float64)
        self.q = self.Q @ self.m
        self._BQ = self.B @ self.Q
        self._Bq = self.B @ self.q
        self._Q_state = np.ascontiguousarray(self.Q, dtype=self.dtype)
        self._m_state = np.ascontiguousarray(self.m, dtype=self.dtype)
        self.normalized = params.normalized
        self.causal = params.causal
        self._zero = self.dtype.type(0)
        self._big = self.dtype.type(PK.big_for(self.dtype))
        #: Summation backend: None (the exact pair passes below) or a FourierSums (docs/models.md §8).
        self._fourier = (FourierSums(self.A, params.summation_tol, self.dtype)
                         if params.summation == "fourier" else None)
        #: Exact passes on a dask cluster (:meth:`shard_over`): None, or a ShardedSums.
        self._sharded = None
        #: Row-wise passes only (:meth:`use_row_passes`): the reference of the sharded passes.
        self._rows_only = False
        #: Passes over pairs compute each unordered pair once (symmetric A, no mask; used while
        #: max_i x_i^T |A| x_i / 2 <= PK.mu_max_for(dtype)). Set to False to force the row passes.
        self.symmetric_pairs, absA = self._pair_layout(self.A)
        if self.symmetric_pairs:
            self._absA = absA
        self._mu_limit = PK.mu_max_for(self.dtype)
        self._sym = False  # whether the current state's symmetric tiles are laid out (_prepare)
        self._layers = None  # per-layer (A, V, symmetric_pairs, |A|) of set_layers
        self._sym_scratch = False  # whether _scratch allocated the symmetric-pair arrays
        self._layer = 0
        self._work_n = -1
        #: The pass a save ran for the energies (PK.MODE_SOFTMAX or MODE_Z; None: nothing kept)
        #: and its state, for the next oracle call at the same state (:meth:`_reuse`).
        self._kept = None
        #: First order: saves run the softmax pass (z_i from it) so the next step reuses it;
        #: switched off once such a pass goes unused (a step starting elsewhere, another pass first).
        #: Not under summation = "fourier", whose backend keeps a state's z pass itself (the
        #: sphere model's diagnostics ask it for z_i again at each save).
        self._keep_softmax = not self.accelerated and self._fourier is None

    def _pair_layout(self, A):
        """``(symmetric_pairs, |A|)`` for query-key matrix ``A`` (d, d); ``|A|`` is None when not symmetric.

        Each unordered pair is computed once for a symmetric A without a mask
        under exact summation; ``|A| = U |lambda| U^T`` bounds the logits' shift.
        """
        if self.causal or self._fourier is not None or self._rows_only or not np.array_equal(A, A.T):
            return False, None
        lam, U = np.linalg.eigh(A)
        return True, np.ascontiguousarray((U * np.abs(lam)) @ U.T)

    @classmethod
    def from_dict(cls, p: dict, dtype=np.float64):
        """The model of a ``[model]`` section, computing in ``dtype``."""
        dynamics = MODEL.read(p, "softmax").dynamics
        return cls(SoftmaxParams.from_dict(p, dynamics), dynamics, dtype)

    def use_row_passes(self) -> None:
        """Compute every exact pass row by row (:func:`PK.loop_pass`), never by unordered pairs.

        The symmetric passes (symmetric A, no mask) sum each pair once and
        differ from the row-wise ones in the last bits; the row-wise pass is
        the reference that :meth:`shard_over` reproduces bit for bit.
        """
        self._rows_only = True
        self.symmetric_pairs = False
        if self._layers is not None:
            self._layers = [(Al, Vl, False, None) for Al, Vl, _, _ in self._layers]

    def shard_over(self, client) -> None:
        """Compute the exact pair passes on the dask cluster of ``client``, sharded by row blocks.

        The results are those of the row-wise passes in this process (:meth:`use_row_passes`),
        bit for bit, at any number of workers (:mod:`meanfield.models._sharded`).
        """
        from ._sharded import ShardedSums

        if self._fourier is not None:
            raise ValueError('shard_over: summation = "exact" only (the Fourier backend sums in one process)')
        self.use_row_passes()
        self._sharded = ShardedSums(client, self.causal)
        self._sharded.warm_up(self.d, self.dtype)
        self._work_n = -1  # the work arrays without the tiles

    # ------------------------------------------------------- per-layer weights
    def set_layers(self, A, V) -> None:
        """Per-layer attention matrices: step k of a run uses ``A[l], V[l]``, l = k mod L.

        Parameters
        ----------
        A, V : (L, d, d) arrays
            Query-key and value matrices of each layer (the caller checks them:
            symmetric A and V = B A for accelerated dynamics; exact summation).
        """
        self.n_layers = int(A.shape[0])
        self._layers = []
        for Al, Vl in zip(A, V):
            Al = np.ascontiguousarray(Al, dtype=np.float64)
            sym, absA = self._pair_layout(Al)
            self._layers.append((Al, np.ascontiguousarray(Vl, dtype=np.float64), sym, absA))
        self._layer = -1
        self.use_layer(0)

    def use_layer(self, layer: int) -> None:
        """Make layer ``layer``'s A and V current (no-op without per-layer matrices)."""
        if self._layers is None or layer == self._layer:
            return
        self.A, self.V, self.symmetric_pairs, absA = self._layers[layer]
        if absA is not None:
            self._absA = absA
        self._layer = layer
        self._kept = None  # a save's pass was summed with the previous layer's A
        if self.symmetric_pairs and not self._sym_scratch:
            self._work_n = -1  # allocate the symmetric-pair scratch this layer needs

    # ---------------------------------------------------------------- scratch
    def _scratch(self, n: int) -> None:
        """Allocate the model-owned work arrays for ``n`` particles (once per size)."""
        if n == self._work_n:
            return
        d, dt = self.d, self.dtype
        self._tj = PK.tile_width(d, dt.itemsize)
        # fourier, or a cluster (its workers lay out their own): no tiles here
        nt = PK.n_tiles(n, self._tj) if self._fourier is None and self._sharded is None else 0
        self._XT = PK.empty_aligned((nt, d, self._tj), dt)  # source tiles (64-byte aligned rows)
        self._no_ST = np.zeros((1, 1), dt)  # placeholder s_j tiles for the softmax and z passes
        self._QA = np.empty((n if nt else 0, d), dt)  # query rows q_i = A^T x_i
        self._acc = np.empty((n, d), np.float64)
        self._mrow = np.empty(n, np.float64)
        self._lrow = np.empty(n, np.float64)
        self._z = np.empty(n, np.float64)
        self._F = np.empty((n, d), dt)
        self._sym_scratch = self.symmetric_pairs
        self._kept_x = np.empty((n, d), dt)
        self._kept = None
        if self.symmetric_pairs:
            self._mu, self._w = np.empty(n, np.float64), np.empty(n, np.float64)
            self._XWT = PK.empty_aligned((nt, d + 1, self._tj), dt)  # w_j x_j and w_j
            self._MUT = PK.empty_aligned((nt, self._tj), dt)
            self._rowacc = np.empty((n, d + 1), np.float64)
            self._colacc = np.empty((n, d + 1), np.float64)
        if self.accelerated:
            self._ST = PK.empty_aligned((nt, self._tj), dt)
            self._yBy = np.empty(n, np.float64)
            self._s = np.empty(n, np.float64)
            self._c = np.empty(n, np.float64)
            self._G = np.empty((n, d), dt)
        self._bounds = chunk_bounds(n)
        nc = self._bounds.shape[0] - 1
        self._partial = np.empty((nc, d, d), dt)
        self._partial1 = np.empty((nc, d), dt)
        self._partial_e = np.empty(nc, np.float64)
        self._work_n = n

    def _overflow(self, what: str, t=None) -> SimulationError:
        mmax = float(np.max(self._mrow))
        where = "" if t is None else f" at t = {t:.6g}"
        advice = "reduce the logits (A, the inverse temperature), the initial spread or the step size"
        if not self.accelerated and not self.normalized:
            advice += ", or use normalized = true (SA normalizes the field)"
        return SimulationError(
            f"softmax overflow{where}: {what} exceeds the float range (largest logit "
            f"x_i^T A x_j ~ {mmax:.6g}, exp overflows above {LOG_MAX:.2f}); this quantity is "
            f"intrinsically unnormalized, so the run stopped: {advice}",
            t=t,
        )

    # ----------------------------------------------------------------- passes
    def _prepare(self, x, t=None) -> int:
        self._check_input(x)
        n = x.shape[0]
        self._scratch(n)
        if self._fourier is not None:
            self._fourier.set_points(x, t)
            return n
        if self._sharded is not None:  # the workers lay out their own tiles
            self._sharded.set_points(x)
            return n
        PK.prepare(x, self.A, self._XT, self._QA)
        self._sym = self.symmetric_pairs and self._prepare_symmetric(x)
        return n

    def _prepare_symmetric(self, x) -> bool:
        """mu_i, w_i and the weighted tiles of :func:`PK.symmetric_pass`; False when mu is out of its range."""
        PK.half_quadratic(x, self._absA, self._mu, self._w)
        self._mu_max = float(np.max(self._mu))
        if not self._mu_max <= self._mu_limit:  # also False for NaN
            return False
        PK.prepare_symmetric(x, self._mu, self._w, self._XWT, self._MUT)
        return True

    def _pairs(self, mode, n, ST=None, cvec=None) -> None:
        """One pass over pairs (``PK.MODE_*``) into ``_mrow``, ``_lrow``, ``_acc``.

        From the Fourier backend when ``summation = "fourier"``; else each
        unordered pair once (:func:`PK.symmetric_pass`) when :meth:`_prepare`
        laid out the symmetric tiles, else row by row (:func:`PK.loop_pass`).
        """
        if self._kept == PK.MODE_SOFTMAX:  # a save's softmax pass went unused: saves go back to the z pass
            self._keep_softmax = False
        self._kept = None  # the work arrays are overwritten
        if self._fourier is not None:
            self._fourier_pass(mode, cvec)
            return
        if self._sharded is not None:
            self._sharded.run_pass(mode, self.A, self._acc, self._mrow, self._lrow, s=self._s if ST is not None
                                   else None, cvec=cvec)
            return
        ST = self._no_ST if ST is None else ST
        cvec = self._mrow if cvec is None else cvec
        if self._sym:
            PK.symmetric_pass(mode, self._QA, self._XT, self._XWT, self._MUT, ST, cvec, self._mu,
                              self._mu_max, n, self._zero, self._rowacc, self._colacc,
                              self._acc, self._mrow, self._lrow)
        else:
            PK.loop_pass(mode, self._QA, self._XT, ST, cvec, n, self.causal, self._zero, self._big,
                         0, PK.n_blocks(n), self._acc, self._mrow, self._lrow)

    def _keep(self, x, mode) -> None:
        """Note that the work arrays hold pass ``mode`` at state ``x`` (a save's pass, see :meth:`_reuse`)."""
        self._kept_x[...] = x
        self._kept = mode

    def _reuse(self, x, mode) -> bool:
        """True when the work arrays hold pass ``mode`` at exactly this state; consumes the kept pass.

        A save computes z_i at the state the next step starts from, so the
        step's first oracle call finds the sums of that state already there:
        accelerated runs skip the z pass, first-order runs (whose saves run the
        softmax pass, z_i coming from its row sums) skip the pass altogether.
        The state is compared bit for bit, so a reused pass is the pass the call
        would have made.
        """
        kept, self._kept = self._kept, None
        if kept is None:
            return False
        same = np.array_equal(x, self._kept_x)
        if not same and kept == PK.MODE_SOFTMAX:
            self._keep_softmax = False  # the integrator starts elsewhere (e.g. nesterov's look-ahead)
        return same and kept == mode

    def _fourier_pass(self, mode, cvec) -> None:
        """The same pass sums from the Fourier backend (:mod:`meanfield.models._fourier`)."""
        if mode == PK.MODE_SOFTMAX:
            self._fourier.softmax_pass(self._acc, self._mrow, self._lrow)
        elif mode == PK.MODE_Z:
            self._fourier.z_pass(self._mrow, self._lrow)
        else:
            self._fourier.force_pass(self._s, cvec, self._mrow, self._acc)

    def z(self, x, t=None) -> np.ndarray:
        """z_i = (1/n_i) sum_j E_ij (masked under ``causal``), shape ``(N,)`` float64; one pass.

        Raises
        ------
        SimulationError
            If some z_i overflows (or underflows to 0).
        """
        n = self._prepare(x, t)
        return self._z_after_prepare(x, n, t).copy()

    def _z_after_prepare(self, x, n, t=None, mode=PK.MODE_Z) -> np.ndarray:
        self._pairs(mode, n)
        bad = PK.z_from_rows(self._mrow, self._lrow, self.causal, n, self._z)
        if bad:
            raise self._overflow(f"z_i = (1/N) sum_j exp(x_i^T A x_j) ({bad} rows)", t)
        return self._z

    # ----------------------------------------------------------------- fields
    def _combine_first_order(self, x, t, a, b, out):
        self._check_input(x)
        if self._reuse(x, PK.MODE_SOFTMAX):
            n = x.shape[0]
        else:
            n = self._prepare(x, t)
            self._pairs(PK.MODE_SOFTMAX, n)
        bad = PK.finish_first_order(x, self._acc, self._mrow, self._lrow, self.V, self._BQ, self._Bq,
                                    self.params.has_potential, self.normalized, self.causal, n, self._F)
        if bad:
            raise self._overflow(
                f"the unnormalized attention (USA) field (1/N) sum_j E_ij V x_j ({bad} rows)"
                if not self.normalized else f"the attention field ({bad} rows)", t)
        PK.axpby(a, x, b, self._F, out)

    def _combine_hamiltonian(self, x, y, t, ax, bx, ay, by, out_x, out_y):
        self._check_input(y)
        self._check_input(x)
        reuse = self._reuse(x, PK.MODE_Z)
        n = self._prepare(x, t)
        z = self._z if reuse else self._z_after_prepare(x, n, t)
        PK.kinetic_terms(y, self.B, z, self._yBy, self._s, self._c)
        if self._sharded is None:
            PK.prepare_values(self._s, self._ST)
        self._pairs(PK.MODE_FORCE, n, self._ST, self._c)
        bad = PK.finish_hamiltonian(x, y, self._acc, self._mrow, z, self.A, self.B, self.Q, self.q,
                                    self.causal, n, self._F, self._G)
        if bad:
            raise self._overflow(f"the accelerated force sum_j E_ij (s_i + s_j + 2) A x_j ({bad} rows)", t)
        PK.axpby2(ax, x, bx, self._F, ay, y, by, self._G, out_x, out_y)

    def _analytic_jacobian(self) -> bool:
        return not self.accelerated and self._fourier is None

    def _jacobian_first_order(self, x, t, J):
        """Dense Jacobian of the first-order field (SA/USA, mask, confining term) into ``J`` ``(N d, N d)``."""
        self._check_input(x)
        n, d = x.shape
        bad = JK.attention_jacobian(np.ascontiguousarray(x, np.float64), np.ones(n), self.A, self.V,
                                    self._BQ, self._Bq, JK.PRE_LN, False, self.normalized, self.causal,
                                    J, np.empty((n, d)))
        if bad:
            raise SimulationError(f"softmax model at t = {t:.6g}: the Jacobian of the first-order field "
                                  f"is not finite in {bad} row blocks (USA overflow)", t=t)
        return J

    # ----------------------------------------------------------- diagnostics
    def potential_W(self, x) -> float:
        """(1/N) sum_i W(x_i) (0 without a confining potential)."""
        if not self.params.has_potential:
            return 0.0
        self._scratch(x.shape[0])
        return float(MK.quadratic_mean(x, self._Q_state, self._m_state, self._bounds, self._partial_e))

    def interaction(self, x) -> float:
        """-1/(2N^2) sum_ij E_ij = -1/(2N) sum_i z_i (masked z_i under ``causal``); -inf past float64."""
        return self._interaction_and_inv_z(x)[0]

    def _interaction_and_inv_z(self, x, keep=False):
        """``(-1/(2N) sum_i z_i, 1 / z (N,) float64)`` from one pass over pairs; never raises.

        The z_i are formed as usual when they are representable (the numbers
        are then those of :meth:`z`); otherwise ``log z_i = m_i + log l_i - log n_i``
        comes from the shifted row sums of the same pass and the mean by
        log-sum-exp, so a state whose z_i overflow (or underflow) still has an
        interaction energy, which is -inf only when the energy itself exceeds
        the float64 range.

        With ``keep`` (the loop's saves) the pass is kept for the next oracle
        call at the same state (:meth:`_reuse`); first-order runs then make it
        the softmax pass, whose row sums give z_i as well.
        """
        n = self._prepare(x)
        mode = PK.MODE_SOFTMAX if keep and self._keep_softmax else PK.MODE_Z
        try:
            z = self._z_after_prepare(x, n, mode=mode)
        except SimulationError:
            z = None
        if keep and z is not None and (self.accelerated or mode == PK.MODE_SOFTMAX):
            self._keep(x, mode)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            if z is not None:
                inter = -0.5 * float(np.mean(z))
                if math.isfinite(inter):
                    return inter, 1.0 / z
            counts = np.arange(1, n + 1, dtype=np.float64) if self.causal else float(n)
            log_z = self._mrow + np.log(self._lrow) - np.log(counts)
            return -0.5 * exp_clipped(log_mean_exp(log_z)), np.exp(-log_z)

    def kinetic(self, x, y) -> float:
        """K = (1/N) sum_i y_i^T B y_i / (2 z_i) (one pass over pairs for z); inf past float64."""
        return self._kinetic_from_inv_z(y, self._interaction_and_inv_z(x, keep=True)[1])

    def _kinetic_from_inv_z(self, y, inv_z) -> float:
        PK.quadratic_forms(y, self.B, self._yBy)
        with np.errstate(over="ignore", invalid="ignore"):
            return float(np.mean(self._yBy * inv_z / 2.0))

    def energies(self, x, y) -> dict:
        """``energy``, ``potential``, ``interaction`` (and ``kinetic``, ``first_order_energy`` if accelerated).

        Never raises on overflow: the terms are computed from log z_i (see
        :meth:`_interaction_and_inv_z`) and a value beyond the float64 range
        is returned as -inf / +inf for the caller to report.
        """
        inter, inv_z = self._interaction_and_inv_z(x, keep=True)
        U = inter + self.potential_W(x)
        out = {"energy": U, "potential": U, "interaction": inter}
        if not self.accelerated:
            return out
        K = self._kinetic_from_inv_z(y, inv_z)
        with np.errstate(invalid="ignore"):
            out.update(energy=K + U, kinetic=K, first_order_energy=U)
        return out

    def diagnostics(self, x, y) -> dict:
        self._scratch(x.shape[0])
        mu = np.empty(self.d, self.dtype)
        MK.column_mean(x, self._bounds, self._partial1, mu)
        xc = x - mu
        cov = np.empty((self.d, self.d), self.dtype)
        MK.cross_moment(xc, xc, self._bounds, self._partial, cov)
        return {"mean": mu.astype(np.float64), "cov": cov.astype(np.float64), "spread": float(np.trace(cov))}

    def describe(self) -> dict:
        out = {
            "name": self.name, "dynamics": self.dynamics, "d": self.d,
            "A": self.A.tolist(), "B": self.B.tolist(), "Q": self.Q.tolist(), "m": self.m.tolist(),
            "causal": self.causal,
        }
        if not self.accelerated:
            if not self.V_is_BA:
                out["V"] = self.V.tolist()
            out["normalized"] = self.normalized
        if self._fourier is not None:
            out.update(summation="fourier", summation_tol=self.params.summation_tol)
        return out

    def attention_layer(self, x, t, out=None):
        """Output of one pure attention layer, ``a_i = sum_j E_ij V x_j / sum_j E_ij``, ``(N, d)``.

        One oracle call (the first-order field, which is ``a_i`` when there is
        no confining W; USA gives ``(1/n_i) sum_j E_ij V x_j``). ``out`` may be
        ``x`` (the layer x <- a of the ``mean_shift`` integrator).
        """
        if self.params.has_potential:
            raise ValueError("an attention layer has no confining W term (the model has Q != 0)")
        return self.first_order(x, t, out)
