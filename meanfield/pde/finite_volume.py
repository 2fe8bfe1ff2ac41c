"""Finite-volume solvers of the first-order mean-field equations (docs/models.md §9).

Both solve the continuity equation ``d_t rho + d_x (rho v[rho]) = 0`` for the
density of the tokens, on a uniform grid of M cells whose unknowns are cell
averages ``rho_j`` (``sum_j rho_j dx = 1``):

* :class:`CircleFV` -- the sphere model in d = 2 with Q = K = V = I (tokens at
  angles theta), SA ``v = u / z`` or USA ``v = u``, with
  ``u(theta) = int exp(beta cos(theta' - theta)) sin(theta' - theta) rho(theta') dtheta'`` and
  ``z(theta) = int exp(beta cos(theta' - theta)) rho(theta') dtheta'``;
* :class:`LineFV` -- the softmax model in d = 1 (logits ``a x x'``), SA
  ``v = (int E V x' rho - B W'(x)) / z`` or USA ``v = int E V x' rho - B W'(x)``
  with ``E = exp(a x x')``, ``W = Q (x - m)^2 / 2``, on a truncated interval
  with zero flux at its ends.

Space: the positivity-preserving scheme of Carrillo, Chertock & Huang (2015)
(:mod:`meanfield._kernels.fv`): limited piecewise-linear reconstruction,
upwind fluxes at the cell interfaces, so ``sum_j rho_j`` is conserved to
round-off and a forward-Euler step with ``h <= dx / (2 max |v|)``
(:meth:`max_stable_step`) keeps ``rho >= 0``. The velocity at the interfaces
is the interaction integral of the piecewise-constant density, the kernel
integrated exactly over every cell (closed form for the odd circle kernel,
Gauss-Legendre otherwise), so it is second-order accurate. Time: any
method-of-lines stepper over :meth:`rhs`; the strong-stability-preserving
ones (forward Euler, Heun = SSP-RK2, SSP-RK3 of :mod:`meanfield.pde.stepping`)
inherit the forward-Euler positivity under the same step; classical rk4 is
not SSP (no positivity guarantee, see :mod:`meanfield.pde.stepping`).

Spatial order 2 (:attr:`order`) on smooth solutions, measured in L1 against a
fine-grid reference (tests/test_fv.py); the limiter clips slopes at extrema,
so the maximum-norm error converges more slowly there.

After collapse. A cluster narrower than a cell sits in one or two cells; it
moves only when its drift beats its own attraction at the neighbouring
interfaces (about dx / 2 for SA), so the slow drift of metastable clusters
towards each other is resolved at first order in dx (beta = 3, two clusters:
merging at t = 27, 25, 24.5 with M = 512, 1024, 2048; figures/circle_fv.py).
Mass and positivity are unaffected.

Interaction sums. On the circle they are circular correlations of rho with
the cell-integrated kernels: by FFT (O(M log M)) for ``beta <= FFT_BETA_MAX``;
above it the FFT's round-off (relative to the largest value, ~1e-16) exceeds
``z`` far from a cluster (~exp(-2 beta)), so a dense circulant product
(O(M^2), every term positive in z, so relative accuracy) is used instead. On
the line ``exp(a x x')`` is not translation invariant: the (M, M) matrices of
cell integrals are built once and applied by BLAS (O(M^2) per evaluation,
fine for M up to a few thousand), rows scaled by their largest exponential so
SA never overflows.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .._kernels import fv as FK
from ..errors import ParameterError, is_real
from ..models._params import MODEL
from ..models.softmax import SoftmaxParams
from ..models.sphere import SphereParams
from ..reductions.circle_pde import w1_circle_cdf
from .densities import cell_masses

TWO_PI = 2.0 * np.pi

#: The interaction kernel's width must span at least this many cells (``solver.grid`` check).
CELLS_PER_WIDTH = 3
#: Generalized minmod parameter theta in [1, 2] (positivity holds on all of it).
LIMITER_THETA = 1.5
#: Largest initial mass outside the interval or in its boundary layer (else ``solver.domain`` error).
INITIAL_CLIP_TOL = 1e-8
#: Mass in the boundary layer above which a line run warns (:class:`BoundaryMassWarning`).
BOUNDARY_TOL = 1e-6
#: Fraction of the interval (on each side, at least 2 cells) that forms the boundary layer.
BOUNDARY_LAYER = 0.02
#: Circle: FFT correlations for beta up to this, dense circulant products above.
FFT_BETA_MAX = 12.0
#: exp of the largest logit must stay finite.
LOGIT_MAX = 700.0
#: Default ``[solver] domain`` of line runs.
LINE_DOMAIN = (-6.0, 6.0)
#: Gauss-Legendre nodes per cell for kernel integrals without a closed form.
KERNEL_NODES = 8


class BoundaryMassWarning(UserWarning):
    """Mass of a line run reached the boundary layer of its interval: the truncation is felt."""


def _check_model(p: dict, name: str, d: int, what: str) -> None:
    given = MODEL.typed(p)
    if given.name != name:
        raise ParameterError("model.name", f"{name!r} for {what}", given.name)
    dyn = given.dynamics  # absent: a solver built from Python for its own (first-order) flow
    if dyn not in (None, "first_order"):
        raise ParameterError("model.dynamics", f"first_order for the finite-volume solver of {what}", dyn)
    if given.d != d:
        raise ParameterError("model.d", f"{d} for {what} (pde runs cover the sphere in d = 2 and softmax "
                             "in d = 1)", given.d)
    if given.causal not in (None, False):
        raise ParameterError("model.causal", "false for pde runs (a causal mask has no mean-field density)",
                             given.causal)


def _check_grid(grid) -> int:
    if not isinstance(grid, int) or isinstance(grid, bool) or grid < 8:
        raise ParameterError("solver.grid", "an integer >= 8 (cells)", grid)
    return grid


def _gauss_nodes(edges: np.ndarray, nodes: int = KERNEL_NODES):
    """Gauss-Legendre points ``(M, nodes)`` and weights ``(M, nodes)`` of the cells between edges."""
    g, w = np.polynomial.legendre.leggauss(nodes)
    a, b = edges[:-1, None], edges[1:, None]
    return 0.5 * (a + b) + 0.5 * (b - a) * g, 0.5 * (b - a) * w


def check_line_domain(domain):
    """``(lo, hi)`` of a ``[solver] domain`` (default :data:`LINE_DOMAIN`); ParameterError otherwise."""
    domain = LINE_DOMAIN if domain is None else domain
    ok = (isinstance(domain, (list, tuple)) and len(domain) == 2 and all(is_real(v) for v in domain)
          and domain[0] < domain[1])
    if not ok:
        raise ParameterError("solver.domain", "[lo, hi] with finite lo < hi", domain)
    return float(domain[0]), float(domain[1])


def check_line_grid(a: float, lo: float, hi: float, M: int, grid) -> None:
    """The interval keeps exp(a x x') finite and M cells resolve it (logit change <= 1/3 per cell)."""
    L = max(abs(lo), abs(hi))
    if abs(a) * L * L > LOGIT_MAX:
        raise ParameterError("solver.domain", f"an interval with |A| max|x|^2 <= {LOGIT_MAX:g} (exp(A x x') "
                             "must be finite on it)", [lo, hi])
    if abs(a) * L * (hi - lo) / M * CELLS_PER_WIDTH > 1.0:
        m_min = math.ceil(abs(a) * L * (hi - lo) * CELLS_PER_WIDTH)
        raise ParameterError(
            "solver.grid", f"at least {m_min} cells (the logit A x x' must change by at most "
            f"1/{CELLS_PER_WIDTH} per cell)", grid)


def boundary_layer(M: int) -> int:
    """Cells of the boundary layer at each end of a line of M cells."""
    return max(2, math.ceil(BOUNDARY_LAYER * M))


def line_cell_masses(section: dict, edges: np.ndarray, layer: int):
    """``(masses (M,), width)`` of the initial law on the line (:func:`cell_masses`).

    Raises ParameterError (``solver.domain``) when more than INITIAL_CLIP_TOL of the
    mass lies outside the interval or in its boundary layer (``layer`` cells per end).
    """
    masses, outside, width = cell_masses(section, 1, edges, False)
    clipped = outside + float(masses[:layer].sum() + masses[-layer:].sum())
    if clipped > INITIAL_CLIP_TOL:
        raise ParameterError(
            "solver.domain", f"an interval holding the initial law (at most {INITIAL_CLIP_TOL:g} of its mass "
            f"outside or in the outer {layer} cells)", f"[{edges[0]:g}, {edges[-1]:g}] clips {clipped:.2g} of it")
    return masses, width


class _FiniteVolume:
    """Shared machinery: grid, limited upwind right-hand side, CFL step, mass.

    Subclasses set ``edges`` (M + 1,), ``grid`` and implement ``_velocity(rho, out)``
    (interface velocities, entry j at the right interface of cell j).
    """

    kind = "pde"
    order = 2
    periodic: bool
    grid_names: tuple

    def _setup_grid(self, edges: np.ndarray) -> None:
        self.edges = edges
        self.M = edges.size - 1
        self.dx = float(edges[1] - edges[0])
        self.cell_volume = self.dx
        self.centres = 0.5 * (edges[:-1] + edges[1:])
        self.grid = {self.grid_names[0]: self.centres}
        self.oracle_calls = 0
        self._vel = np.zeros(self.M)
        self._flux = np.empty(self.M)
        self._cached = None  # the rho whose interface velocities are in self._vel

    # ------------------------------------------------------------ velocity and rhs
    def _velocity_of(self, rho: np.ndarray) -> np.ndarray:
        if self._cached is None or not np.array_equal(rho, self._cached):
            self._velocity(rho, self._vel)
            self._cached = rho.copy()
        return self._vel

    def velocity(self, rho: np.ndarray) -> np.ndarray:
        """Velocity at the right interface of every cell, ``(M,)`` (on the line the last is the wall, 0)."""
        return self._velocity_of(np.ascontiguousarray(rho, dtype=np.float64)).copy()

    def rhs(self, rho: np.ndarray, t: float, out: np.ndarray | None = None) -> np.ndarray:
        """``d rho / dt`` of the finite-volume scheme, ``(M,)``; one oracle call.

        Parameters
        ----------
        rho : (M,) cell averages
        t : time (the equations are autonomous)
        out : (M,) float64 output, allocated when None
        """
        rho = np.ascontiguousarray(rho, dtype=np.float64)
        if out is None:
            out = np.empty(self.M)
        vel = self._velocity_of(rho)
        FK.continuity_rhs(rho, vel, 1.0 / self.dx, LIMITER_THETA, self.periodic, self._flux, out)
        self.oracle_calls += 1
        return out

    def max_stable_step(self, rho: np.ndarray) -> float:
        """Largest forward-Euler step keeping ``rho >= 0``: ``dx / (2 max |v|)`` (inf when v = 0)."""
        vmax = float(np.abs(self._velocity_of(np.ascontiguousarray(rho, dtype=np.float64))).max())
        return math.inf if vmax == 0.0 else 0.5 * self.dx / vmax

    def mass(self, rho: np.ndarray) -> float:
        """``sum_j rho_j dx``."""
        return float(np.sum(rho) * self.dx)

    def _from_masses(self, masses: np.ndarray, width: float) -> np.ndarray:
        if width < self.dx:
            raise ParameterError(
                "solver.grid", f"cells narrower than the initial law's width {width:.3g} (dx = "
                f"{self.dx:.3g})", self.M)
        rho = masses / self.dx
        return rho / (rho.sum() * self.dx)


class _Correlator:
    """``c_k = sum_j rho_j w[(j - k) mod M]`` for a fixed ``(M,)`` kernel w, by FFT or densely."""

    def __init__(self, w: np.ndarray, dense: bool):
        self.dense = dense
        M = w.size
        if dense:
            idx = (np.arange(M)[None, :] - np.arange(M)[:, None]) % M
            self.C = np.ascontiguousarray(w[idx])
        else:
            self.M = M
            self.what = np.conj(np.fft.rfft(w))

    def __call__(self, rho: np.ndarray, rho_hat: np.ndarray | None = None) -> np.ndarray:
        if self.dense:
            return self.C @ rho
        if rho_hat is None:
            rho_hat = np.fft.rfft(rho)
        return np.fft.irfft(rho_hat * self.what, n=self.M)


class CircleFV(_FiniteVolume):
    """Sphere model, d = 2, Q = K = V = I: the continuity equation for the angle density.

    Parameters
    ----------
    model_params : dict
        The ``[model]`` section: ``name = "sphere"``, ``d = 2``, ``beta``, ``normalized``.
    grid : int
        Number of cells M; cell j is ``[j dx, (j + 1) dx]``, ``dx = 2 pi / M``.
    domain : None
        The circle has no domain to choose.

    Attributes
    ----------
    grid : {"theta": (M,)} cell centres
    cell_volume : float, dx
    oracle_calls : int, rhs evaluations so far
    dense : bool, dense circulant products instead of FFT (beta > FFT_BETA_MAX)
    """

    grid_names = ("theta",)
    periodic = True

    def __init__(self, model_params: dict, grid: int, domain=None):
        p = dict(model_params)
        _check_model(p, "sphere", 2, "pde runs of the sphere model (the circle)")
        prm = SphereParams.from_dict(p, "first_order")
        eye = np.eye(2)
        for key in ("Q", "K", "V"):
            if not np.array_equal(getattr(prm, key), eye):
                raise ParameterError(f"model.{key}", "the identity for pde runs on the circle (docs/models.md §9 "
                                     "covers Q = K = V = I)", p.get(key))
        if prm.normalization != "post_ln":
            raise ParameterError("model.normalization", '"post_ln" for pde runs on the circle',
                                 prm.normalization)
        if domain is not None:
            raise ParameterError("solver.domain", "no domain on the circle (it is [0, 2 pi))", domain)
        M = _check_grid(grid)
        self.beta = beta = prm.beta
        self.normalized = prm.normalized
        if beta > LOGIT_MAX:
            raise ParameterError("model.beta", f"beta <= {LOGIT_MAX:g} for pde runs (exp(beta) must be finite)",
                                 beta)
        width = min(1.0, beta ** -0.5)
        m_min = math.ceil(CELLS_PER_WIDTH * TWO_PI / width)
        if M < m_min:
            raise ParameterError(
                "solver.grid", f"at least {m_min} cells (the kernel width min(1, beta^-1/2) = {width:.3g} "
                f"must span {CELLS_PER_WIDTH} cells)", grid)
        self._setup_grid(np.linspace(0.0, TWO_PI, M + 1))
        self.dense = beta > FFT_BETA_MAX
        dx = self.dx
        off = dx * np.arange(M + 1)

        def k0(p):  # exp(beta (cos p - 1)): the kernel scaled by exp(-beta)
            return np.exp(beta * (np.cos(p) - 1.0))

        def cell_kernels(lo):
            """Integrals of the scaled K0 and K1 over [lo + m dx, lo + (m + 1) dx], m = 0..M-1."""
            e = lo + off
            pts, wts = _gauss_nodes(e)
            w0 = np.sum(k0(pts) * wts, axis=1)
            w1 = (k0(e[:-1]) - k0(e[1:])) / beta  # d/dp k0 = -beta sin(p) k0: exact
            return _Correlator(w0, self.dense), _Correlator(w1, self.dense)

        # interface k+1/2 = (k+1) dx sees cell k+m at offsets [(m-1) dx, m dx]; centres at [(m-1/2) dx, ...]
        self._z_if, self._u_if = cell_kernels(-dx)
        self._z_c, self._u_c = cell_kernels(-0.5 * dx)
        self._scale = math.exp(beta)

    def _velocity(self, rho, out):
        rh = None if self.dense else np.fft.rfft(rho)
        u = self._u_if(rho, rh)
        if self.normalized:
            np.divide(u, self._z_if(rho, rh), out=out)
        else:
            np.multiply(u, self._scale, out=out)

    def fields(self, rho: np.ndarray) -> dict:
        """``u`` and ``z`` of docs/models.md §9 at the cell centres, ``(M,)`` each (unscaled)."""
        rho = np.asarray(rho, np.float64)
        rh = None if self.dense else np.fft.rfft(rho)
        return {"u": self._scale * self._u_c(rho, rh), "z": self._scale * self._z_c(rho, rh)}

    def w1(self, angles: np.ndarray, rho: np.ndarray) -> float:
        """Wasserstein-1 distance on the circle between particles at ``angles (N,)`` and the
        piecewise-constant density ``rho (M,)`` (exact: its CDF is linear in every cell)."""
        F = np.concatenate([[0.0], np.cumsum(rho) * self.dx])
        return w1_circle_cdf(angles, self.edges, F)

    def initial_density(self, initial_section: dict) -> np.ndarray:
        """Cell averages ``(M,)`` of the initial law (``sphere_uniform`` or ``von_mises``); ``sum * dx = 1``."""
        masses, _, width = cell_masses(initial_section, 2, self.edges, True)
        return self._from_masses(masses, width)

    def energies(self, rho: np.ndarray) -> dict:
        """``energy`` = ``potential`` = ``interaction`` = -1/2 int int exp(beta cos(theta - theta')) rho rho
        (= -beta E_beta; the sphere model's first-order energy)."""
        inter = -0.5 * self.dx * float(np.dot(rho, self.fields(rho)["z"]))
        return {"energy": inter, "potential": inter, "interaction": inter}

    def diagnostics(self, rho: np.ndarray) -> dict:
        """``mass``, ``order_parameter`` = |int e^{i theta} rho|, ``mean (2,)`` and ``cov (2, 2)`` of
        x = (cos theta, sin theta), ``E_beta`` and ``min_density``."""
        rho = np.asarray(rho, np.float64)
        th = self.centres
        X = np.stack([np.cos(th), np.sin(th)], axis=1)
        w = rho * self.dx
        mass = float(w.sum())
        mean = w @ X
        cov = (X * w[:, None]).T @ X - np.outer(mean, mean)
        return {"mass": mass, "order_parameter": float(np.hypot(*mean)), "mean": mean, "cov": cov,
                "E_beta": -self.energies(rho)["interaction"] / self.beta, "min_density": float(rho.min())}


class LineFV(_FiniteVolume):
    """Softmax model, d = 1: the continuity equation on a truncated interval, zero flux at its ends.

    Parameters
    ----------
    model_params : dict
        The ``[model]`` section: ``name = "softmax"``, ``d = 1``, ``A``, ``B``, ``V`` (default B A),
        ``Q``, ``m`` (W = Q (x - m)^2 / 2), ``normalized``.
    grid : int
        Number of cells M.
    domain : [lo, hi], optional
        The interval (default [-6, 6]).

    Attributes
    ----------
    grid : {"x": (M,)} cell centres
    cell_volume : float, dx
    oracle_calls : int, rhs evaluations so far
    layer : int, cells of the boundary layer at each end
    """

    grid_names = ("x",)
    periodic = False

    def __init__(self, model_params: dict, grid: int, domain=None):
        p = dict(model_params)
        _check_model(p, "softmax", 1, "pde runs of the softmax model (the line)")
        prm = SoftmaxParams.from_dict(p, "first_order")
        M = _check_grid(grid)
        lo, hi = check_line_domain(domain)
        self.a, self.b, self.v = float(prm.A[0, 0]), float(prm.B[0, 0]), float(prm.V[0, 0])
        self.q, self.m = float(prm.Q[0, 0]), float(prm.m[0])
        self.normalized = prm.normalized
        check_line_grid(self.a, lo, hi, M, grid)
        self._setup_grid(np.linspace(lo, hi, M + 1))
        self.layer = boundary_layer(M)
        self._warned = False
        pts, wts = _gauss_nodes(self.edges)
        # interior interfaces x_{j+1/2}, j = 0..M-2 (the right wall M-1 has zero flux)
        self._K0_if, self._K1_if, self._s_if = self._kernel_matrices(self.edges[1:-1], pts, wts)
        self._K0_c, self._K1_c, self._s_c = self._kernel_matrices(self.centres, pts, wts)
        self._gradW_if = self.b * self.q * (self.edges[1:-1] - self.m)  # B W' at the interfaces
        self._e_if = np.exp(self._s_if)
        self._gradW_scaled = self._gradW_if / self._e_if

    def _kernel_matrices(self, targets, pts, wts):
        """Cell integrals of exp(a t x' - s_t) and of that times x', ``(T, M)`` each, and s_t ``(T,)``.

        s_t = max over the interval of a t x' keeps every entry <= 1 (no overflow in SA).
        """
        a = self.a
        s = np.maximum(a * targets * self.edges[0], a * targets * self.edges[-1])
        K0 = np.zeros((targets.size, self.M))
        K1 = np.zeros((targets.size, self.M))
        for g in range(pts.shape[1]):
            E = np.exp(a * targets[:, None] * pts[None, :, g] - s[:, None]) * wts[None, :, g]
            K0 += E
            K1 += E * pts[None, :, g]
        return K0, K1, s

    def _velocity(self, rho, out):
        u = self.v * (self._K1_if @ rho)
        if self.normalized:
            z = self._K0_if @ rho
            out[:-1] = (u - self._gradW_scaled) / z
        else:
            out[:-1] = u * self._e_if - self._gradW_if
        out[-1] = 0.0

    def fields(self, rho: np.ndarray) -> dict:
        """At the cell centres, ``(M,)`` each: ``u = int E V x' rho``, ``z = int E rho``, ``grad_W = Q (x - m)``."""
        rho = np.asarray(rho, np.float64)
        e = np.exp(self._s_c)
        return {"u": self.v * e * (self._K1_c @ rho), "z": e * (self._K0_c @ rho),
                "grad_W": self.q * (self.centres - self.m)}

    def initial_density(self, initial_section: dict) -> np.ndarray:
        """Cell averages ``(M,)`` of the initial law (``gaussian``); ``sum * dx = 1``.

        Raises ParameterError (``solver.domain``) when more than INITIAL_CLIP_TOL of the
        mass lies outside the interval or in its boundary layer.
        """
        masses, width = line_cell_masses(initial_section, self.edges, self.layer)
        return self._from_masses(masses, width)

    def energies(self, rho: np.ndarray) -> dict:
        """``interaction`` = -1/2 int int exp(a x x') rho rho, ``energy`` = ``potential`` =
        interaction + int W rho (the softmax model's first-order energy Ecal)."""
        rho = np.asarray(rho, np.float64)
        inter = -0.5 * self.dx * float(np.dot(rho, self.fields(rho)["z"]))
        W = 0.5 * self.q * self.dx * float(np.dot(rho, (self.centres - self.m) ** 2))
        return {"energy": inter + W, "potential": inter + W, "interaction": inter}

    def boundary_mass(self, rho: np.ndarray) -> float:
        """Mass in the boundary layer (the outer ``layer`` cells at each end)."""
        return float((np.sum(rho[: self.layer]) + np.sum(rho[-self.layer:])) * self.dx)

    def diagnostics(self, rho: np.ndarray) -> dict:
        """``mass``, ``mean (1,)``, ``cov (1, 1)``, ``boundary_mass``, ``min_density``.

        Warns once (:class:`BoundaryMassWarning`) when boundary_mass exceeds BOUNDARY_TOL.
        """
        rho = np.asarray(rho, np.float64)
        w = rho * self.dx
        mass = float(w.sum())
        mean = float(w @ self.centres)
        var = float(w @ (self.centres - mean) ** 2)
        bm = self.boundary_mass(rho)
        if bm > BOUNDARY_TOL and not self._warned:
            self._warned = True
            warnings.warn(f"{bm:.2g} of the mass reached the boundary layer of [{self.edges[0]:g}, "
                          f"{self.edges[-1]:g}]: widen [solver] domain", BoundaryMassWarning, stacklevel=2)
        return {"mass": mass, "mean": np.array([mean]), "cov": np.array([[var]]), "boundary_mass": bm,
                "min_density": float(rho.min())}
