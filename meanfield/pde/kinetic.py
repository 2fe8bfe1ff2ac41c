"""The kinetic equation of the accelerated dynamics (docs/kinetic.md), semi-Lagrangian.

The accelerated particles converge, as N -> infinity, to a density f(t, x, y)
in phase space that solves (docs/models.md §9)

    d_t f + d_x(f B y / z) + d_y(f (G - alpha y)) = 0,
    z(x) = int E(x, x') rho(x') dx',  G(x, y) = a(x) + b(x) y^2,
    a = u + v / 2 - Q (x - m),  b = B u / (2 z^2),  u = dz/dx,  v = int dE/dx(x, x') S(x') dx',
    S(x') = int B y'^2 f(x', y') dy' / z(x')^2,

rho the x-marginal, in two geometries:

* :class:`CircleKinetic` -- the accelerated sphere model in d = 2 on the
  circle x [-P, P] (x = theta, y = omega the tangent momentum,
  E = exp(beta cos(theta - theta')), B = 1, Q = 0). Every nonlocal quantity
  is a convolution, evaluated from the Fourier coefficients of the marginals
  with the exact coefficients ``2 pi I_k(beta)`` of E (modified Bessel functions).
* :class:`LineKinetic` -- the accelerated softmax model in d = 1 on the box
  [lo, hi] x [-P, P] (E = exp(A x x'), dE/dx = A x' E, W = Q (x - m)^2 / 2):
  the moments are direct sums over the grid's cell centres (dense (M, M)
  matrices applied by BLAS: O(M^2) per evaluation), and what leaves the box
  is lost (``mass`` shows it, ``boundary_mass`` warns before it happens).

One step of ``strang`` (order 2) is the symmetric composition

    X(h/2)  Y(h)  X(h/2)

* X: x' = B y / z(x) with y fixed per momentum line; z depends on the moving
  marginal, so z is frozen at the trapezoid average of its values at the
  start and at a predicted end of the substep (local error O(h^3)); the
  characteristics of the frozen field are exact (``int z dx = B y t``,
  inverted by a fourth-order Hermite interpolant,
  :func:`meanfield._kernels.kinetic.position_flow`).
* Y: y' = a + b y^2 - alpha y with x fixed; the damping enters with its
  exact integral over the step, ``alpha = Delta eta / h``, so momenta
  contract by exactly ``e^{-Delta eta}`` (and the density grows by
  ``e^{Delta eta}``, one momentum component); rho (so z, u, b) does not
  move, a does through S: a is frozen at its value at a predicted half
  substep (midpoint rule, local error O(h^3)); the frozen Riccati flow is an
  exact Moebius map, damping included (:func:`meanfield._kernels.kinetic.momentum_flow`).

Each substep is a conservative 1-D remap of cell averages written as a
forward deposit (:func:`meanfield._kernels.kinetic.deposit_lines`): each
cell's mass moves to the exact image of its centre, spread by quintic
Lagrange weights limited towards cloud-in-cell weights where a cell would
turn negative. Mass is conserved to round-off (except what leaves the box),
the density stays >= 0, the first moment is transported exactly for affine
flows whatever the shape of f (the cold, monokinetic state included), and
the substeps need not be divergence-free. Quadratures (z, S, energies) use
the cell averages at cell centres: second order in space.

Oracle calls: one evaluation of the nonlocal moments (z, or the force moment
v) is one call; a strang step makes :attr:`_Kinetic.calls_per_step` = 7 of
them (z at the start and the predicted end of both X substeps, z and the
force twice in the Y substep).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import special

from .._kernels import kinetic as KK
from ..errors import ParameterError, SimulationError, check_real
from ..initial import as_typed, von_mises_params
from ..integrators.base import Integrator
from ..models.sphere import clustered_energy
from .densities import von_mises_pdf
from .finite_volume import (
    BOUNDARY_TOL,
    BoundaryMassWarning,
    boundary_layer,
    check_line_domain,
    check_line_grid,
    line_cell_masses,
)
from .grid import GridRun, GridSystem

#: Integrators of kinetic (accelerated) pde runs.
KINETIC_INTEGRATORS = ("strang",)
#: Largest initial mass allowed outside the momentum interval.
CLIP_TOLERANCE = 1e-8
#: A grid resolves beta when the kernel's Fourier tail at the Nyquist mode is below this ...
KERNEL_TAIL = 1e-8
#: ... and a kernel width beta^{-1/2} spans at least this many cells.
CELLS_PER_WIDTH = 2.0
#: The initial momentum law's scale spans at least this many momentum cells.
CELLS_PER_MOMENTUM_SCALE = 2.0
#: A warning when more than this much of the mass has left the box.
LOST_TOL = 1e-6
#: Most position cells of a kinetic run on the line (four dense (M, M) moment matrices).
LINE_CELLS_MAX = 4096


def position_density(section: dict, theta) -> np.ndarray:
    """Density per unit angle of the initial position law at ``theta`` (sphere_uniform, von_mises).

    The von Mises mixture is validated and evaluated as in the other pde
    runs (:func:`meanfield.initial.von_mises_params`,
    :func:`meanfield.pde.densities.von_mises_pdf`).
    """
    law = as_typed(section).law
    if law == "sphere_uniform":
        return np.full_like(theta, 1.0 / (2 * np.pi))
    if law == "von_mises":
        return von_mises_pdf(theta, *von_mises_params(as_typed(section), 2))
    raise ParameterError("initial.law", 'a position law with a density on the circle for a kinetic pde '
                         'run ("sphere_uniform", "von_mises")', law)


class _Kinetic:
    """The strang splitting, remaps, momentum law and energies shared by both geometries.

    A subclass sets the position grid (``x_edges (M + 1,)``, ``x (M,)``,
    ``dx``, ``periodic``, ``speed`` = B, ``grad_W (M,)``, ``W (M,)``) and
    implements

    * ``x_field(rho)`` -- the (linear in rho) field an X substep is frozen at; one oracle call;
    * ``_primitive(field)`` -- ``(T, z, int z)``: T = int z and z at the edges ``(M + 1,)`` of the X substep;
    * ``z_and_slope(rho)`` -- ``(z, u = dz/dx)`` at the centres, ``(M,)`` each; one oracle call;
    * ``_v(S)`` -- ``v = int dE/dx(x, x') S(x') dx'`` at the centres (part of a force call);
    * ``z(rho)`` -- z at the centres, not counted (diagnostics).
    """

    order = 2
    calls_per_step = 7
    speed = 1.0

    def _setup(self, x_edges, K: int, momentum_max: float) -> None:
        self.x_edges = np.asarray(x_edges, np.float64)
        self.M, self.K, self.P = self.x_edges.size - 1, int(K), float(momentum_max)
        self.dx = float(self.x_edges[-1] - self.x_edges[0]) / self.M
        self.x = self.x_edges[:-1] + 0.5 * self.dx
        self.domega = 2 * self.P / self.K
        self.cell_volume = self.dx * self.domega
        self.omega_edges = -self.P + np.arange(self.K + 1) * self.domega
        self.omega = self.omega_edges[:-1] + 0.5 * self.domega
        self.grid = {self.grid_names[0]: self.x, "momentum": self.omega}
        self.oracle_calls = 0
        self.layer = boundary_layer(self.K if self.periodic else min(self.M, self.K))
        self._warned = False
        # (lines, cells) buffers of the two remaps: theta lines are the transposed density
        self._fT, self._outT, self._imgT = (np.empty((self.K, self.M)) for _ in range(3))
        self._lowT, self._ratT = (np.empty((self.K, KK.scratch_width(self.M, self.periodic))) for _ in range(2))
        self._imgW = np.empty((self.M, self.K))
        self._lowW, self._ratW = (np.empty((self.M, KK.scratch_width(self.K, False))) for _ in range(2))
        self._img0 = np.empty((1, self.M))
        # midpoint weights of the momentum moments: for smooth laws sum omega_j^2 P_j exceeds
        # int omega^2 f by domega^2 / 12 (Sheppard); a piecewise-constant reading would double that
        self._omega2 = self.omega ** 2

    def marginal(self, f):
        """rho (M,): the position marginal density int f dy."""
        return f.sum(axis=1) * self.domega

    def watch_boundary(self, f, mass: float) -> float:
        """``boundary_mass`` of ``f`` (M, K); warns once when it exceeds BOUNDARY_TOL or more than
        LOST_TOL of the initial mass 1 has left the box, naming the keys to raise."""
        bm = self.boundary_mass(f)
        lost = 1.0 - mass
        if (bm > BOUNDARY_TOL or lost > LOST_TOL) and not self._warned:
            self._warned = True
            warnings.warn(f"{bm:.2g} of the mass is in the boundary layer of the box {self.box} and {max(lost, 0):.2g}"
                          f" has left it: {self.keys_to_raise}", BoundaryMassWarning, stacklevel=3)
        return bm

    # ------------------------------------------------------------ substeps
    def force(self, f, zc, u):
        """``a`` (M,) of G = a + b y^2 for the density ``f`` with z, u = z' at the centres; one oracle call."""
        S = self.speed * (f @ self._omega2) * self.domega / zc ** 2
        self.oracle_calls += 1
        return u + 0.5 * self._v(S) - self.grad_W

    def _x_images(self, field, tau, out):
        """Images ``(K, M)`` of the cell centres after an X substep of length ``tau`` with z frozen at ``field``."""
        T, zc, period_T = self._primitive(field)
        # T at the centres: the cubic Hermite midpoint of the edge values (slopes z), fourth order
        Tc = 0.5 * (T[:-1] + T[1:]) + 0.125 * self.dx * (zc[:-1] - zc[1:])
        args = (T, zc, self.x_edges[0], self.dx, period_T, self.periodic, Tc)
        KK.position_flow(*args, self.speed * self.omega * tau, out)
        # the interpolant's own image of the centres at zero shift: subtracting it makes the
        # displacement vanish with tau (else its O(dx^4) error would drift the density by O(dx^4 / h))
        KK.position_flow(*args, np.zeros(1), self._img0)
        out += (self.x - self._img0[0])[None, :]
        return out

    def _x_remap(self, f, field, tau, out):
        """X substep of length ``tau`` with z frozen at ``field``."""
        self._x_images(field, tau, self._imgT)
        np.copyto(self._fT, f.T)
        KK.deposit_lines(self._fT, self._imgT, self.periodic, self.x_edges[0], self.dx, self._lowT, self._ratT,
                         self._outT)
        np.copyto(out, self._outT.T)
        return out

    def x_step(self, f, tau, out):
        """X(tau): trapezoid average of z at the start and at a predicted end (order 2); two oracle calls."""
        c0 = self.x_field(self.marginal(f))
        self._x_remap(f, c0, tau, out)
        c1 = self.x_field(self.marginal(out))
        return self._x_remap(f, 0.5 * (c0 + c1), tau, out)

    def _omega_remap(self, f, a, b, c, tau, out):
        KK.momentum_flow(self.omega, a, b, c, tau, self._imgW)
        KK.deposit_lines(f, self._imgW, False, -self.P, self.domega, self._lowW, self._ratW, out)
        return out

    def omega_step(self, f, tau, deta, out):
        """Y(tau) with the damping: y' = a + b y^2 - (deta / tau) y; three oracle calls.

        ``deta`` = int alpha over the substep, so the damping contracts momenta by
        exactly ``e^{-deta}`` (and the density grows by ``e^{deta}``); a is frozen
        at a predicted half substep (midpoint rule, order 2).
        """
        c = -deta / tau
        zc, u = self.z_and_slope(self.marginal(f))
        b = 0.5 * self.speed * u / zc ** 2
        self._omega_remap(f, self.force(f, zc, u), b, c, 0.5 * tau, out)
        a_half = self.force(out, zc, u)
        return self._omega_remap(f, a_half, b, c, tau, out)

    def step(self, f, schedule, t, h, work):
        """One strang step of length h from time t: ``(new density, scratch)`` (the two buffers swap)."""
        self.x_step(f, 0.5 * h, work)
        self.omega_step(work, h, schedule.eta(t + h) - schedule.eta(t), f)
        self.x_step(f, 0.5 * h, work)
        return work, f

    # ------------------------------------------------------------ initial density
    def momentum_law(self, section: dict) -> np.ndarray:
        """Cell averages (K,) of the momentum law: gaussian y ~ N(0, s^2) or zero (the centre cell)."""
        mom = as_typed(section).momentum
        if mom == "gaussian":
            s = float(as_typed(section).momentum_scale)
            if not s > 0:
                raise ParameterError("initial.momentum_scale", "a number > 0 for a kinetic pde run", s)
            return np.diff(special.ndtr(self.omega_edges / s)) / self.domega
        if mom == "zero":
            if self.K % 2 == 0:
                raise ParameterError("solver.grid", "an odd number of momentum cells for momentum = "
                                     '"zero" (the resting law fills the centre cell)', [self.M, self.K])
            law = np.zeros(self.K)
            law[self.K // 2] = 1.0 / self.domega
            return law
        raise ParameterError("initial.momentum", 'a momentum law with a density for a kinetic pde run '
                             '("gaussian", "zero")', mom)

    def initial_density(self, section: dict) -> np.ndarray:
        """Cell averages (M, K) of position law x momentum law."""
        rho = self.position_law(section)
        return np.ascontiguousarray(rho[:, None] * self.momentum_law(section)[None, :])

    # ------------------------------------------------------------ diagnostics
    def kinetic(self, f) -> float:
        """K = int int B y^2 / (2 z(x)) f."""
        zc = self.z(self.marginal(f))
        return 0.5 * self.speed * float(((f @ self._omega2) / zc).sum() * self.cell_volume)

    def energies(self, f) -> dict:
        """``energy`` H = K + U, ``kinetic`` K, ``potential`` U = -1/2 int z rho + int W rho
        (= ``first_order_energy``), ``interaction`` -1/2 int z rho: the names and normalization
        of particle runs."""
        rho = self.marginal(f)
        zc = self.z(rho)
        inter = -0.5 * float(np.dot(zc, rho) * self.dx)
        U = inter + float(np.dot(self.W, rho) * self.dx)
        K = 0.5 * self.speed * float(((f @ self._omega2) / zc).sum() * self.cell_volume)
        return {"energy": K + U, "potential": U, "interaction": inter, "kinetic": K, "first_order_energy": U}

    def momentum_spread(self, f) -> float:
        """sqrt(int rho Var(y | x)): 0 while f lives on a graph y = Y(x) (a monokinetic
        state, up to the grid's numerical diffusion), and O(1) once trajectories have crossed."""
        rho = self.marginal(f)
        m1 = (f @ self.omega) * self.domega
        m2 = (f @ self._omega2) * self.domega
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(rho > 0, m2 - m1 * m1 / np.where(rho > 0, rho, 1.0), 0.0)
        return float(np.sqrt(max(var.sum() * self.dx, 0.0) / max(rho.sum() * self.dx, 1e-300)))


class CircleKinetic(_Kinetic):
    """Semi-Lagrangian solver of the kinetic equation on the circle x [-P, P] (see the module doc).

    Parameters
    ----------
    beta : float
        Inverse temperature of the sphere model.
    M, K : int
        Cells in theta and in omega.
    momentum_max : float
        P: the momentum interval is [-P, P].

    Attributes
    ----------
    theta, omega : (M,), (K,) cell centres; theta_edges, omega_edges : (M + 1,), (K + 1,)
    cell_volume : float
        dtheta * domega (``density.sum() * cell_volume`` is the mass).
    oracle_calls : int
        Evaluations of the nonlocal moments (each a few FFTs of length M), 7 per strang step.
    """

    grid_names = ("theta", "momentum")
    periodic = True

    def __init__(self, beta: float, M: int, K: int, momentum_max: float):
        self.beta = float(beta)
        self._setup(-np.pi + np.arange(int(M) + 1) * (2 * np.pi / int(M)), K, momentum_max)
        self.dtheta, self.theta_edges, self.theta = self.dx, self.x_edges, self.x
        self.grad_W = self.W = np.zeros(self.M)
        k = np.arange(self.M // 2 + 1)
        #: exact Fourier coefficients of E / (2 pi): I_k(beta); the Nyquist mode is dropped
        self.Ik = special.iv(k, self.beta)
        self.Ik[-1] = 0.0 if self.M % 2 == 0 else self.Ik[-1]
        self.k = k
        # rho_hat_k = dtheta sum_i rho_i exp(-i k theta_i) from rfft (theta_i = -pi + (i + 1/2) dtheta)
        self._phase = self.dtheta * np.exp(1j * k * (np.pi - 0.5 * self.dtheta))

    @classmethod
    def from_config(cls, cfg, model, M: int, K: int, P: float) -> CircleKinetic:
        """The solver of a run: Q = K = I and a grid that resolves beta (else ParameterError)."""
        params = model.params
        if not params.identity_qk:
            raise ParameterError("model.Q", "Q = K = identity for a kinetic pde run (the circle's kinetic "
                                 "equation has E = exp(beta cos))", "Q^T K != I")
        if cfg.solver.domain is not None:
            raise ParameterError("solver.domain", "no domain on the circle (it is [-pi, pi))",
                                 cfg.solver.domain)
        sol = cls(params.beta, M, K, P)
        width = 1.0 / math.sqrt(params.beta) / sol.dtheta
        if sol.tail() > KERNEL_TAIL or width < CELLS_PER_WIDTH:
            need = max(math.ceil(2 * np.pi * CELLS_PER_WIDTH * math.sqrt(params.beta)), 8)
            while special.ive(need // 2, params.beta) / special.ive(0, params.beta) > KERNEL_TAIL:
                need += 2
            raise ParameterError("solver.grid", f"at least {need} theta cells for beta = {params.beta:g} "
                                 f"(the kernel exp(beta cos) resolved)", [M, K])
        return sol

    def energy_infimum(self) -> float | None:
        """The known lower bound of the energy, -exp(beta) / 2 (the sphere model's, Q = K = I)."""
        return clustered_energy(self.beta)

    # ------------------------------------------------------------ resolution
    def tail(self) -> float:
        """I_{M/2}(beta) / I_0(beta): the kernel's Fourier tail at the grid's Nyquist mode."""
        return float(special.ive(self.M // 2, self.beta) / special.ive(0, self.beta))

    # ------------------------------------------------------------ Fourier tools
    def _coef(self, g):
        """Fourier coefficients ``int g exp(-i k theta)`` (k = 0..M/2) of cell averages ``g`` (M,)."""
        return np.fft.rfft(g) * self._phase

    def _eval(self, c, at_edges=False):
        """Values of ``Re sum_k c_k e^{ik theta}`` (two-sided, c_{-k} = conj c_k) on the centres or edges."""
        x0 = self.theta_edges[0] if at_edges else self.theta[0]
        X = self.M * c * np.exp(1j * self.k * x0)
        if self.M % 2 == 0:
            X[-1] = 0.0
        return np.fft.irfft(X, n=self.M)

    def z_coef(self, rho, count=True):
        """Coefficients of z = E * rho: I_k(beta) rho_hat_k; one oracle call (``count``)."""
        self.oracle_calls += count
        return self.Ik * self._coef(rho)

    x_field = z_coef

    def z(self, rho):
        """z (M,) at the cell centres (for diagnostics: not counted as an oracle call)."""
        return self._eval(self.z_coef(rho, count=False))

    def z_and_slope(self, rho):
        """``(z, dz/dx)`` at the cell centres, ``(M,)`` each, of the position density ``rho (M,)``; one oracle call."""
        zcoef = self.z_coef(rho)
        return self._eval(zcoef), self._eval(1j * self.k * zcoef)

    def _v(self, S):
        return self._eval(1j * self.k * self.Ik * self._coef(S))

    def _primitive(self, c):
        """``(T, z, int z)``: T = int z and z at the edges ``(M + 1,)`` from the coefficients ``c`` (exact)."""
        c0 = c[0].real
        prim = np.zeros_like(c)
        prim[1:] = c[1:] / (1j * self.k[1:])
        P = self._eval(prim, at_edges=True)
        P = np.append(P, P[0])
        T = c0 * (self.theta_edges - self.theta_edges[0]) + P - P[0]
        zc = self._eval(c, at_edges=True)
        return T, np.append(zc, zc[0]), 2 * np.pi * c0

    _theta_remap = _Kinetic._x_remap

    def position_law(self, section: dict) -> np.ndarray:
        """Cell averages (M,) of the position law (4-point Gauss-Legendre per cell), mass 1."""
        g, w = np.polynomial.legendre.leggauss(4)
        pts = self.theta[:, None] + 0.5 * self.dtheta * g[None, :]
        rho = position_density(section, pts) @ (0.5 * w)
        return rho / (rho.sum() * self.dtheta)

    # ------------------------------------------------------------ diagnostics
    def boundary_mass(self, f) -> float:
        """Mass in the boundary layer of the momentum interval (its outer ``layer`` cells at each end)."""
        n = self.layer
        return float((f[:, :n].sum() + f[:, -n:].sum()) * self.cell_volume)

    @property
    def box(self) -> str:
        """The phase-space box, as messages name it."""
        return f"circle x [{-self.P:g}, {self.P:g}]"

    keys_to_raise = "raise [solver] momentum_max"

    def diagnostics(self, f) -> dict:
        """``mass``, ``min_density``, ``E_beta``, ``mean`` (2,) of x = (cos, sin) theta, ``cov`` (2, 2),
        ``order_parameter`` |mean|, ``momentum_spread`` (:meth:`momentum_spread`), ``boundary_mass``
        (warned once with :meth:`_Kinetic.watch_boundary`)."""
        rho = self.marginal(f)
        c, s = np.cos(self.theta), np.sin(self.theta)
        mass = _remaining_mass(float(rho.sum() * self.dtheta), self.box)
        w = rho * self.dtheta
        mu = np.array([c @ w, s @ w]) / mass
        X = np.stack([c - mu[0], s - mu[1]])
        cov = (X * w) @ X.T / mass
        zc = self.z(rho)
        return {"mass": mass, "min_density": float(f.min()), "E_beta": float(np.dot(zc, w)) / (2 * self.beta),
                "mean": mu, "cov": cov, "order_parameter": float(np.hypot(*mu)),
                "momentum_spread": self.momentum_spread(f), "boundary_mass": self.watch_boundary(f, mass)}


class LineKinetic(_Kinetic):
    """Semi-Lagrangian solver of the kinetic equation of the softmax model, d = 1, on [lo, hi] x [-P, P].

    Parameters
    ----------
    A, B, Q, m : float
        The model's (1 x 1) matrices and centre: E = exp(A x x'), dx/dt = B y / z,
        W = Q (x - m)^2 / 2 (B > 0).
    lo, hi : float
        The position interval.
    M, K : int
        Cells in x and in y.
    momentum_max : float
        P: the momentum interval is [-P, P].

    Attributes
    ----------
    x, omega : (M,), (K,) cell centres; x_edges, omega_edges : (M + 1,), (K + 1,)
    cell_volume : float, dx * dy
    layer : int, cells of the boundary layer at each end of both axes (``boundary_mass``)
    oracle_calls : int
        Evaluations of the nonlocal moments (each one or two (M, M) matrix-vector products), 7 per step.
    """

    grid_names = ("x", "momentum")
    periodic = False

    def __init__(self, A: float, B: float, Q: float, m: float, lo: float, hi: float, M: int, K: int,
                 momentum_max: float):
        self.A, self.speed, self.Q, self.m = float(A), float(B), float(Q), float(m)
        self._setup(np.linspace(lo, hi, int(M) + 1), K, momentum_max)
        self.grad_W = self.Q * (self.x - self.m)
        self.W = 0.5 * self.Q * (self.x - self.m) ** 2
        x, xe, dx, a = self.x, self.x_edges, self.dx, self.A
        #: midpoint sums over the cell centres x_j: z(x) = sum_j exp(A x x_j) rho_j dx
        self._E = np.exp(a * np.outer(x, x)) * dx
        self._dE = self._E * (a * x)[None, :]
        Ee = np.exp(a * np.outer(xe, x))
        ax = a * x
        with np.errstate(invalid="ignore", divide="ignore"):
            # int_lo^{x_e} exp(A xi x_j) dxi, exactly (x_e - lo where A x_j = 0)
            prim = np.where(np.abs(ax) > 1e-300,
                            np.exp(a * lo * x)[None, :] * np.expm1(np.outer(xe - lo, ax)) / ax[None, :],
                            (xe - lo)[:, None])
        self._TZ = np.ascontiguousarray(np.vstack([prim, Ee]) * dx)

    @classmethod
    def from_config(cls, cfg, model, M: int, K: int, P: float) -> LineKinetic:
        """The solver of a run: B > 0, an interval with finite logits that M cells resolve."""
        p = model.params
        B = float(p.B[0, 0])
        if not B > 0:
            raise ParameterError("model.B", "B > 0 for a kinetic pde run (the kinetic energy y B y / 2z)", B)
        if M > LINE_CELLS_MAX:
            raise ParameterError("solver.grid", f"at most {LINE_CELLS_MAX} position cells for a kinetic run on the "
                                 f"line (its moments are dense M x M sums: {32 * LINE_CELLS_MAX ** 2 / 2 ** 30:.1f} "
                                 "GiB of matrices at the limit)", [M, K])
        lo, hi = check_line_domain(cfg.solver.domain)
        check_line_grid(float(p.A[0, 0]), lo, hi, M, [M, K])
        return cls(p.A[0, 0], B, p.Q[0, 0], p.m[0], lo, hi, M, K, P)

    def energy_infimum(self):
        """None, as for particle softmax runs (the energy has no infimum the flow approaches)."""
        return None

    # ------------------------------------------------------------ moments
    def x_field(self, rho):
        """``[T (M + 1,), z (M + 1,)]`` at the edges, T = int_lo^x z; one oracle call."""
        self.oracle_calls += 1
        return self._TZ @ rho

    def z(self, rho):
        """z (M,) at the cell centres (for diagnostics: not counted as an oracle call)."""
        return self._E @ rho

    def z_and_slope(self, rho):
        """``(z, dz/dx)`` at the cell centres, ``(M,)`` each, of the position density ``rho (M,)``; one oracle call."""
        self.oracle_calls += 1
        return self._E @ rho, self._dE @ rho

    def _v(self, S):
        return self._dE @ S

    def _primitive(self, field):
        """``(T, z, int z)`` at the edges ``(M + 1,)`` from the moment ``field`` = [T, z]."""
        n = self.M + 1
        return field[:n], field[n:], field[n - 1]

    def position_law(self, section: dict) -> np.ndarray:
        """Cell averages (M,) of the position law (``gaussian``), mass 1; ``solver.domain`` error
        when it reaches the boundary layer."""
        masses, width = line_cell_masses(section, self.x_edges, self.layer)
        if width < self.dx:
            raise ParameterError("solver.grid", f"cells narrower than the initial law's width {width:.3g} "
                                 f"(dx = {self.dx:.3g})", [self.M, self.K])
        return masses / (masses.sum() * self.dx)

    # ------------------------------------------------------------ diagnostics
    def boundary_mass(self, f) -> float:
        """Mass in the boundary layer of the box (the outer ``layer`` cells of both axes)."""
        n = self.layer
        inner = f[n:-n, n:-n].sum()
        return float((f.sum() - inner) * self.cell_volume)

    @property
    def box(self) -> str:
        """The phase-space box, as messages name it."""
        return f"[{self.x_edges[0]:g}, {self.x_edges[-1]:g}] x [{-self.P:g}, {self.P:g}]"

    keys_to_raise = "widen [solver] domain or raise momentum_max"

    def diagnostics(self, f) -> dict:
        """``mass``, ``min_density``, ``mean (1,)``, ``cov (1, 1)``, ``boundary_mass``, ``momentum_spread``.

        Warns once (:meth:`_Kinetic.watch_boundary`) when mass reaches the boundary layer or leaves.
        """
        rho = self.marginal(f)
        w = rho * self.dx
        mass = _remaining_mass(float(w.sum()), self.box)
        mean = float(w @ self.x) / mass
        var = float(w @ (self.x - mean) ** 2) / mass
        return {"mass": mass, "min_density": float(f.min()), "mean": np.array([mean]), "cov": np.array([[var]]),
                "boundary_mass": self.watch_boundary(f, mass), "momentum_spread": self.momentum_spread(f)}


def _remaining_mass(mass: float, box: str) -> float:
    """``mass``, or SimulationError when nothing is left in the box (the moments would divide by 0)."""
    if not mass > 0:
        raise SimulationError(f"the whole mass left the box {box} (mass {mass:.3g}): widen [solver] "
                              "domain or momentum_max, or reduce the step size")
    return mass


class KineticSystem(GridSystem):
    """A phase-space density (M, K) advanced by the strang splitting of a kinetic solver.

    A :class:`~meanfield.pde.grid.GridSystem` (state ``density``, saves, mass,
    blow-up check) whose step is the solver's own splitting instead of a
    method-of-lines integrator, and which has momenta (``kinetic()`` for the
    dissipation residual).
    """

    accelerated = True
    cheap_kinetic = True
    #: Grids below this many cells run their kernels on one thread: at 64 x 80 a strang step took
    #: 9 ms on one thread and 250 ms on two (a shared, loaded 2-core machine: waking the pool dominates).
    serial_below = 1 << 20

    def step(self, integrator, schedule, t, h) -> None:
        """One Strang step (theta h/2, omega h, theta h/2) of the kinetic equation, in place."""
        self.density, self._work = self.solver.step(self.density, schedule, t, h, self._work)

    def kinetic(self) -> float:
        """The kinetic energy of the phase-space density (float)."""
        return self.solver.kinetic(self.density)


class KineticStrang(Integrator):
    """The integrator a kinetic run declares: strang, order 2, the solver's oracle calls per step.

    The steps themselves are the solver's (:meth:`KineticSystem.step`); this
    object carries what the loop and the file need (``run.oracle_calls``
    budgets, ``oracle_calls_per_step``).
    """

    name = "strang"
    order = 2
    kind = "accelerated"

    def __init__(self, oracle_calls: int):
        super().__init__()
        self.oracle_calls = int(oracle_calls)

    def step(self, model, schedule, t, h, x, y):  # pragma: no cover - the system steps itself
        raise TypeError("a kinetic run is stepped by its solver")


class KineticRun(GridRun):
    """Set-up of a kinetic pde run: the circle x R (sphere, d = 2) or the line x R (softmax, d = 1).

    Checks the input: ``[integrator] name = "strang"``, a grid ``[M, K]``, the
    model and the grid's resolution (the solver's ``from_config``), the
    momentum law (>= :data:`CELLS_PER_MOMENTUM_SCALE` cells per momentum scale)
    and a momentum interval that holds it (mass outside <=
    :data:`CLIP_TOLERANCE`). ``momentum_max`` defaults to 8 momentum_scale
    (gaussian momenta) or 4 (momenta at rest). A :class:`~meanfield.pde.grid.GridRun`
    (``of``, ``attrs``) with its own checks, system and integrator.

    Parameters
    ----------
    solver_cls : CircleKinetic or LineKinetic
    cfg, model, integrator, base_dir : as for every pde set-up
    """

    def __init__(self, solver_cls, cfg, model, integrator, base_dir=None):
        if integrator.name not in KINETIC_INTEGRATORS:
            raise ParameterError("integrator.name", f"an integrator of kinetic pde runs "
                                 f"({', '.join(KINETIC_INTEGRATORS)}: Strang splitting of the transport)",
                                 integrator.name)
        sol = cfg.solver
        grid = sol.grid
        if not (isinstance(grid, list) and len(grid) == 2
                and all(isinstance(g, int) and not isinstance(g, bool) and g >= 4 for g in grid)):
            raise ParameterError("solver.grid", f"[cells in {solver_cls.grid_names[0]}, cells in momentum] "
                                 "(integers >= 4) for a kinetic pde run", grid)
        M, K = grid
        section = cfg.initial.given()
        s = None
        if cfg.initial.momentum == "gaussian":
            s = as_typed(section).momentum_scale
            s = check_real("initial.momentum_scale", s, "a finite number > 0 for a kinetic pde run",
                           lambda v: v > 0)
        P = sol.momentum_max if sol.momentum_max is not None else (8.0 * s if s else 4.0)
        P = check_real("solver.momentum_max", P, "a finite number > 0", lambda v: v > 0)
        self.solver = solver_cls.from_config(cfg, model, M, K, P)
        if s is not None:
            clipped = 2.0 * special.ndtr(-P / s)
            if clipped > CLIP_TOLERANCE:
                raise ParameterError("solver.momentum_max", f"an interval that holds the initial momentum "
                                     f"law (mass outside <= {CLIP_TOLERANCE:g}; momentum_max >= "
                                     f"{s * -special.ndtri(CLIP_TOLERANCE / 2):.4g})", P)
            if s / self.solver.domega < CELLS_PER_MOMENTUM_SCALE:
                raise ParameterError("solver.grid", f"at least {math.ceil(2 * P / s * CELLS_PER_MOMENTUM_SCALE)}"
                                     f" momentum cells (momentum_scale {s:g} over >= "
                                     f"{CELLS_PER_MOMENTUM_SCALE:g} cells)", grid)
        self.density0 = self.solver.initial_density(section)
        self.integrator = KineticStrang(self.solver.calls_per_step)

    def system(self, state=None) -> KineticSystem:
        """The kinetic system to advance: the initial (M, K) density, or that of a checkpoint's ``state``."""
        f = self.density0.copy() if state is None else np.ascontiguousarray(state["density"], np.float64)
        return KineticSystem(self.solver, f)

    def energy_infimum(self):
        """The known lower bound of the energy (float), or None (the solver's)."""
        return self.solver.energy_infimum()
