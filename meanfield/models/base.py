"""The model interface: a model owns its equations, the loop and integrators only call it.

A model evaluates its interaction sums (one *oracle call*) through four
methods, and counts every call in ``oracle_calls``:

* ``first_order(x, t)`` -> f(x), shape ``(N, d)`` (first-order dynamics),
* ``hamiltonian_field(x, y, t)`` -> ``(F, G)`` with ``F = dx/dt`` and ``G = dy/dt``
  *without* the damping term ``-alpha y`` (accelerated dynamics),
* and their fused forms ``combine_first_order`` (``out = a x + b f(x)``) and
  ``combine_hamiltonian`` (``out_x = ax x + bx F``, ``out_y = ay y + by G``),
  which let a model write an explicit step in a single pass over particles
  (outputs may alias inputs).

Subclasses implement ``_combine_first_order`` and ``_combine_hamiltonian``.
"""

from __future__ import annotations

import math

import numpy as np

from .._kernels._config import serial_if_small
from ..errors import ParameterError

DYNAMICS = ("first_order", "accelerated")


class Model:
    """Base class of all models.

    Attributes
    ----------
    name : str
        Registry name (``"bilinear"``, ``"softmax"``, ``"sphere"``).
    dynamics : str
        ``"first_order"`` or ``"accelerated"``.
    d : int
        Dimension of a token.
    dtype : numpy dtype
        Floating type of the state (float64 or float32).
    oracle_calls : int
        Number of interaction-sum evaluations made so far (a dense Jacobian
        counts as the field evaluations its wall time equals, see
        :class:`AnalyticJacobian`).
    jacobian_calls : int
        Number of dense Jacobians evaluated so far.
    cheap_kinetic : bool
        True when ``kinetic(x, y)`` costs much less than an oracle call, so the
        loop may evaluate it every step for the dissipation residual.
    """

    name = "base"
    cheap_kinetic = False
    #: The token-wise MLP of the block (:class:`~meanfield.models.mlp.TokenMLP`), or None (attention only).
    mlp = None
    #: Layers with their own weights (step k uses layer k mod n_layers).
    n_layers = 1
    #: ``{key: absolute path}`` of the weight files read (``mlp``, per-layer ``A``, ``V``).
    block_files: dict = {}
    #: Below this many particles the kernels run on one thread (pool wake-up costs more).
    serial_below = 1024
    #: Whether the fields' bits do not depend on numba's thread count (the loop may then change it).
    thread_invariant = True

    def __init__(self, d: int, dynamics: str, dtype=np.float64):
        if dynamics not in DYNAMICS:
            raise ParameterError("model.dynamics", f"one of {list(DYNAMICS)}", dynamics)
        self.d = int(d)
        self.dynamics = dynamics
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise ParameterError("run.dtype", '"float64" or "float32"', str(self.dtype))
        self.oracle_calls = 0
        self.jacobian_calls = 0

    # ------------------------------------------------------------------ fields
    @property
    def has_jacobian(self) -> bool:
        """True when :meth:`jacobian_first_order` gives the analytic dense Jacobian (see
        :class:`AnalyticJacobian`); otherwise a stiff method differentiates numerically."""
        return False

    @property
    def accelerated(self) -> bool:
        """True for accelerated (damped Hamiltonian) dynamics."""
        return self.dynamics == "accelerated"

    def first_order(self, x, t, out=None):
        """First-order velocity field f(x), shape ``(N, d)``; one oracle call."""
        return self.combine_first_order(x, t, 0.0, 1.0, out)

    def combine_first_order(self, x, t, a, b, out=None):
        """``out = a x + b f(x)`` in one pass, shape ``(N, d)``; one oracle call.

        ``out`` may be ``x`` itself (in-place step).
        """
        if out is None:
            out = np.empty_like(x)
        self.oracle_calls += 1
        with serial_if_small(x.shape[0], self.serial_below):
            self._combine_first_order(x, t, float(a), float(b), out)
        return out

    def hamiltonian_field(self, x, y, t, out_x=None, out_y=None):
        """Hamiltonian field ``(F, G) = (N dH/dy, -N dH/dx)``, each ``(N, d)``; one oracle call."""
        return self.combine_hamiltonian(x, y, t, 0.0, 1.0, 0.0, 1.0, out_x, out_y)

    def combine_hamiltonian(self, x, y, t, ax, bx, ay, by, out_x=None, out_y=None):
        """``out_x = ax x + bx F(x, y)``, ``out_y = ay y + by G(x, y)``; one oracle call.

        Outputs may alias the inputs (in-place step); both are computed from
        the state before the call.
        """
        if out_x is None:
            out_x = np.empty_like(x)
        if out_y is None:
            out_y = np.empty_like(y)
        self.oracle_calls += 1
        with serial_if_small(x.shape[0], self.serial_below):
            self._combine_hamiltonian(x, y, t, float(ax), float(bx), float(ay), float(by), out_x, out_y)
        return out_x, out_y

    def _combine_first_order(self, x, t, a, b, out):  # pragma: no cover - abstract
        raise NotImplementedError(f"model {self.name!r} has no first-order dynamics")

    def _combine_hamiltonian(self, x, y, t, ax, bx, ay, by, out_x, out_y):  # pragma: no cover
        raise NotImplementedError(f"model {self.name!r} has no accelerated dynamics")

    def use_layer(self, layer: int) -> None:
        """Make the attention matrices of ``layer`` current (models without per-layer weights: no-op)."""

    def mlp_field(self, at, base, layer: int, out):
        """Token-wise MLP field evaluated at ``at``, as a velocity at ``base``; each ``(N, d)``.

        Euclidean models: ``out = MLP_layer(at)`` (``base`` unused); the sphere
        model projects or normalizes it as it does the attention field. Not an
        oracle call (no interaction); ``out`` must not alias ``at``.
        """
        return self.mlp(at, layer, out)

    # ------------------------------------------------------------ diagnostics
    def kinetic(self, x, y) -> float:
        """Kinetic energy K(x, y) (accelerated dynamics)."""
        raise NotImplementedError

    def energies(self, x, y) -> dict:
        """Scalar energies at a state: at least ``energy`` and ``potential``.

        For accelerated dynamics also ``kinetic`` (``energy = H``) and
        ``first_order_energy``.
        """
        raise NotImplementedError

    def diagnostics(self, x, y) -> dict:
        """Array diagnostics recorded at every save (e.g. ``mean (d,)``, ``cov (d, d)``)."""
        return {}

    def energy_infimum(self, x0) -> float | None:
        """A known lower bound of the energy that the flows approach (None when unknown)."""
        return None

    def energy_floor(self, x0) -> float | None:
        """The lower bound a run watches: :meth:`energy_infimum`, None for a block with an MLP.

        The MLP field is no gradient: the attention energy has no floor then.

        Parameters
        ----------
        x0 : (N, d) initial positions
        """
        return None if self.mlp is not None else self.energy_infimum(x0)

    def check_state(self, x, y) -> None:
        """Hook for geometry checks; the Euclidean models accept any finite state."""

    def _check_input(self, x) -> None:
        """ValueError unless ``x`` is what the kernels take: a C-contiguous ``(N, d)`` array of the model's dtype."""
        if x.dtype != self.dtype or x.ndim != 2 or x.shape[1] != self.d or not x.flags.c_contiguous:
            raise ValueError(
                f"{self.name} model expects a C-contiguous ({self.d},)-wide {self.dtype} state, "
                f"got {x.dtype} array of shape {x.shape}")

    def project(self, x, y) -> None:
        """Retraction / projection after a step (identity in R^d)."""

    def post_norm(self, x, sublayer: str) -> None:
        """Normalization after a block's ``sublayer`` ("attention" or "mlp"); none but post-LN networks'."""

    def set_diagnostics(self, diagnostics) -> None:
        """Take the model-specific keys of ``[diagnostics]`` (``cluster_tol``, ``network``).

        ``diagnostics`` is the section as :mod:`meanfield.schema` types it (None: absent keys).
        Models that count clusters or record network diagnostics override this; the others
        reject the keys with the models that take them.
        """
        if diagnostics.cluster_tol is not None:
            raise ParameterError("diagnostics.cluster_tol", "the sphere model or a network from weights "
                                 "(clusters are counted on a sphere)", self.name)
        if diagnostics.network is not None:
            raise ParameterError("diagnostics.network", "a network from weights (model.weights)", self.name)

    def readout(self, x):
        """A network's read-out of the state ``x (N, d)`` (its final LayerNorm); None: the model has none."""
        return None

    def describe(self) -> dict:
        """JSON-able description of the model's resolved parameters."""
        return {"name": self.name, "dynamics": self.dynamics, "d": self.d}


#: Largest ``N d`` of a dense Jacobian: its ``(N d)^2`` float64 entries take 512 MB there.
JACOBIAN_MAX = 8192


class AnalyticJacobian:
    """Mixin of models whose first-order field has an analytic dense Jacobian.

    A model provides ``_jacobian_first_order(x, t, out)`` (writes the ``(N d, N d)`` matrix) and
    ``_analytic_jacobian`` (whether its current configuration has one); this
    class checks the size, and counts the calls.
    """

    def jacobian_cost(self, n: int) -> int:
        """Field evaluations one dense Jacobian of ``n`` particles counts as: ``ceil(d min(n d / 300, 12))``.

        Its wall time in first-order field evaluations, fitted on this
        project's Xeon (one thread; docs/models.md has the table): the
        Jacobian writes ``(n d)^2`` entries where the field makes ``n^2 d``
        multiply-adds (ratio ~12 d for large n), and the field's fixed cost
        (~40 us) dominates small n. Measured ratios at d = 3, one thread
        (``benchmarks/bench_jacobian.py``): 2.3 (n = 64), 8.2 (256), 36 (1024);
        counted 2, 8, 31.
        """
        return max(1, math.ceil(self.d * min(n * self.d / 300.0, 12.0)))

    @property
    def has_jacobian(self) -> bool:
        """True when :meth:`jacobian_first_order` applies (first-order dynamics, exact summation)."""
        return self._analytic_jacobian()

    def jacobian_first_order(self, x, t, out=None):
        """The dense Jacobian of the first-order field at ``x``, ``(N d, N d)`` float64.

        ``J[i d + a, j d + b] = d f_{i,a} / d x_{j,b}``, the derivative of exactly
        the field :meth:`first_order` evaluates (``z' = F(z)``, ``z = x.ravel()``).
        Counts :meth:`jacobian_cost` oracle calls and one ``jacobian_calls``.

        Parameters
        ----------
        x : (N, d) state
        t : float
        out : (N d, N d) C-contiguous float64 array, optional
            Written and returned instead of a new matrix (a reused buffer saves
            the first-touch cost of ~75 MB at N d = 3072).

        Raises
        ------
        NotImplementedError
            Without an analytic Jacobian (:attr:`has_jacobian` False).
        ParameterError
            When ``N d`` exceeds :data:`JACOBIAN_MAX` (the method, ``integrator.name``, needs one).
        """
        if not self.has_jacobian:
            raise NotImplementedError(f"model {self.name!r} ({self.dynamics}) has no analytic Jacobian")
        nd = int(np.prod(x.shape))
        if nd > JACOBIAN_MAX:
            raise ParameterError(
                "integrator.name", f"a method without a dense Jacobian for N d > {JACOBIAN_MAX} (an "
                "(N d)^2 matrix takes over 512 MB)", f"a dense Jacobian of N d = {nd}")
        if out is None:
            out = np.empty((nd, nd))
        elif out.shape != (nd, nd) or out.dtype != np.float64 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous ({nd}, {nd}) float64 array, got {out.dtype} "
                             f"array of shape {out.shape}")
        J = self._jacobian_first_order(x, t, out)
        self.oracle_calls += self.jacobian_cost(x.shape[0])
        self.jacobian_calls += 1
        return J
