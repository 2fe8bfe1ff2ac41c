"""The kinetic equation of the accelerated dynamics on the circle (docs/models.md §9), semi-Lagrangian.

The accelerated sphere model in d = 2 converges, as N -> infinity, to a
density f(t, theta, omega) in phase space (omega the tangent momentum):

    d_t f + d_theta(f omega / z) + d_omega(f (G - alpha omega)) = 0,
    z(theta) = int E(theta - theta') rho(theta') dtheta',  E(p) = exp(beta cos p),
    G(theta, omega) = a(theta) + b(theta) omega^2,
    a = u + v / 2,  b = u / (2 z^2),  u = z',  v = (E * S)',  S(theta) = int omega^2 f domega / z^2,

rho the theta-marginal (``u = int E beta sin(theta' - theta) rho`` is the
derivative of z). Every nonlocal quantity is a convolution on the circle,
evaluated from the Fourier coefficients of the marginals with the exact
coefficients ``2 pi I_k(beta)`` of E (modified Bessel functions).

One step of ``strang`` (order 2) is the symmetric composition

    Theta(h/2)  Omega(h)  Theta(h/2)

* Theta: theta' = omega / z(theta) with omega fixed per momentum line; z
  depends on the moving marginal, so z is frozen at the trapezoid average of
  its values at the start and at a predicted end of the substep (local
  error O(h^3)); the characteristics of the frozen field are exact
  (``int z dtheta = omega t``, inverted by a fourth-order Hermite
  interpolant, :func:`meanfield._kernels.kinetic.theta_feet`).
* Omega: omega' = a + b omega^2 - alpha omega with theta fixed; the damping
  enters with its exact integral over the step, ``alpha = Delta eta / h``,
  so momenta contract by exactly ``e^{-Delta eta}`` and the density grows by
  ``e^{Delta eta}`` (k = 1 on the circle); rho (so z, u, b) does not
  move, a does through S: a is frozen at its value at a predicted half
  substep (midpoint rule, local error O(h^3)); the frozen Riccati flow is an
  exact Moebius map, damping included (:func:`meanfield._kernels.kinetic.momentum_feet`).

Each substep is a conservative 1-D remap of cell averages through the
monotone primitive (:func:`meanfield._kernels.kinetic.remap_lines`): mass
is conserved to round-off (except what leaves the momentum interval, shown
by ``mass``), the density stays >= 0 without any fix, and the splitting's
substeps need not be divergence-free. Quadratures (z, S, energies) use the
cell averages at cell centres: second order in space.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from .._kernels import kinetic as KK
from ..errors import ParameterError
from ..initial import von_mises_params
from .densities import von_mises_pdf
from .grid import GridSystem

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


def position_density(section: dict, theta) -> np.ndarray:
    """Density per unit angle of the initial position law at ``theta`` (sphere_uniform, von_mises).

    The von Mises mixture is validated and evaluated as in the other pde
    runs (:func:`meanfield.initial.von_mises_params`,
    :func:`meanfield.pde.densities.von_mises_pdf`).
    """
    law = section.get("law", "gaussian")
    if law == "sphere_uniform":
        return np.full_like(theta, 1.0 / (2 * np.pi))
    if law == "von_mises":
        return von_mises_pdf(theta, *von_mises_params(section, 2))
    raise ParameterError("initial.law", 'a position law with a density on the circle for a kinetic pde '
                         'run ("sphere_uniform", "von_mises")', law)


class CircleKinetic:
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
        Evaluations of the nonlocal moments during steps (each a few FFTs of length M):
        7 per strang step (z at the start and the predicted end of both theta substeps,
        z and the force twice in the momentum substep).
    """

    order = 2
    grid_names = ("theta", "momentum")

    def __init__(self, beta: float, M: int, K: int, momentum_max: float):
        self.beta, self.M, self.K, self.P = float(beta), int(M), int(K), float(momentum_max)
        self.dtheta = 2 * np.pi / self.M
        self.domega = 2 * self.P / self.K
        self.cell_volume = self.dtheta * self.domega
        self.theta_edges = -np.pi + np.arange(self.M + 1) * self.dtheta
        self.theta = self.theta_edges[:-1] + 0.5 * self.dtheta
        self.omega_edges = -self.P + np.arange(self.K + 1) * self.domega
        self.omega = self.omega_edges[:-1] + 0.5 * self.domega
        self.grid = {"theta": self.theta, "momentum": self.omega}
        k = np.arange(self.M // 2 + 1)
        #: exact Fourier coefficients of E / (2 pi): I_k(beta); the Nyquist mode is dropped
        self.Ik = special.iv(k, self.beta)
        self.Ik[-1] = 0.0 if self.M % 2 == 0 else self.Ik[-1]
        self.k = k
        # rho_hat_k = dtheta sum_i rho_i exp(-i k theta_i) from rfft (theta_i = -pi + (i + 1/2) dtheta)
        self._phase = self.dtheta * np.exp(1j * k * (np.pi - 0.5 * self.dtheta))
        self.oracle_calls = 0
        # scratch
        self._fT = np.empty((self.K, self.M))
        self._outT = np.empty((self.K, self.M))
        self._feetT = np.empty((self.K, self.M + 1))
        self._slopesT = np.empty((self.K, self.M + 1))
        self._feetW = np.empty((self.M, self.K + 1))
        self._slopesW = np.empty((self.M, self.K + 1))
        # midpoint weights of the momentum moments: for smooth laws sum omega_j^2 P_j exceeds
        # int omega^2 f by domega^2 / 12 (Sheppard); a piecewise-constant reading would double that
        self._omega2 = self.omega ** 2

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

    def marginal(self, f):
        """rho (M,): the theta-marginal density int f domega."""
        return f.sum(axis=1) * self.domega

    def z_coef(self, rho, count=True):
        """Coefficients of z = E * rho: I_k(beta) rho_hat_k; one oracle call (``count``)."""
        self.oracle_calls += count
        return self.Ik * self._coef(rho)

    def z(self, rho):
        """z (M,) at the cell centres (for diagnostics: not counted as an oracle call)."""
        return self._eval(self.z_coef(rho, count=False))

    def force(self, f, zc, u):
        """``a`` (M,) of G = a + b omega^2 for the density ``f`` with z, u = z' at the centres."""
        S = (f @ self._omega2) * self.domega / zc ** 2
        v = self._eval(1j * self.k * self.Ik * self._coef(S))
        self.oracle_calls += 1
        return u + 0.5 * v

    # ------------------------------------------------------------ substeps
    def _theta_remap(self, f, zc_coef, tau, out):
        """Theta substep with z frozen at the field of coefficients ``zc_coef``."""
        c = zc_coef.copy()
        c0 = c[0].real
        prim = np.zeros_like(c)
        prim[1:] = c[1:] / (1j * self.k[1:])
        P = self._eval(prim, at_edges=True)
        P = np.append(P, P[0])
        T = c0 * (self.theta_edges - self.theta_edges[0]) + P - P[0]
        zc = self._eval(c, at_edges=True)
        zc = np.append(zc, zc[0])
        period_T = 2 * np.pi * c0
        KK.theta_feet(T, zc, self.theta_edges[0], self.dtheta, period_T, self.omega * tau, self._feetT)
        np.copyto(self._fT, f.T)
        KK.remap_lines(self._fT, self._feetT, True, self.theta_edges[0], self.dtheta, self._slopesT,
                       self._outT)
        np.copyto(out, self._outT.T)
        return out

    def theta_step(self, f, tau, out):
        """Theta(tau): trapezoid average of z at the start and at a predicted end (order 2)."""
        c0 = self.z_coef(self.marginal(f))
        self._theta_remap(f, c0, tau, out)
        c1 = self.z_coef(self.marginal(out))
        return self._theta_remap(f, 0.5 * (c0 + c1), tau, out)

    def _omega_remap(self, f, a, b, c, tau, out):
        KK.momentum_feet(self.omega_edges, a, b, c, tau, self._feetW)
        KK.remap_lines(f, self._feetW, False, -self.P, self.domega, self._slopesW, out)
        return out

    def omega_step(self, f, tau, deta, out):
        """Omega(tau) with the damping: omega' = a + b omega^2 - (deta / tau) omega.

        ``deta`` = int alpha over the substep, so the damping contracts momenta by
        exactly ``e^{-deta}`` (and the density grows by ``e^{deta}``); a is frozen
        at a predicted half substep (midpoint rule, order 2).
        """
        c = -deta / tau
        zcoef = self.z_coef(self.marginal(f))
        zc = self._eval(zcoef)
        u = self._eval(1j * self.k * zcoef)
        b = 0.5 * u / zc ** 2
        self._omega_remap(f, self.force(f, zc, u), b, c, 0.5 * tau, out)
        a_half = self.force(out, zc, u)
        return self._omega_remap(f, a_half, b, c, tau, out)

    def step(self, f, schedule, t, h, work):
        """One strang step of length h from time t: ``(new density, scratch)`` (the two buffers swap)."""
        self.theta_step(f, 0.5 * h, work)
        self.omega_step(work, h, schedule.eta(t + h) - schedule.eta(t), f)
        self.theta_step(f, 0.5 * h, work)
        return work, f

    # ------------------------------------------------------------ initial density
    def initial_density(self, section: dict) -> np.ndarray:
        """Cell averages (M, K) of position law x momentum law (gaussian omega ~ N(0, s^2) or zero)."""
        # 4-point Gauss-Legendre in every theta cell
        g, w = np.polynomial.legendre.leggauss(4)
        pts = self.theta[:, None] + 0.5 * self.dtheta * g[None, :]
        rho = position_density(section, pts) @ (0.5 * w)
        rho /= rho.sum() * self.dtheta
        mom = section.get("momentum", "zero")
        if mom == "gaussian":
            s = float(section.get("momentum_scale", 1.0))
            if not s > 0:
                raise ParameterError("initial.momentum_scale", "a number > 0 for a kinetic pde run", s)
            cdf = special.ndtr(self.omega_edges / s)
            law = np.diff(cdf) / self.domega
        elif mom == "zero":
            if self.K % 2 == 0:
                raise ParameterError("solver.grid", "an odd number of momentum cells for momentum = "
                                     '"zero" (the resting law fills the centre cell)', [self.M, self.K])
            law = np.zeros(self.K)
            law[self.K // 2] = 1.0 / self.domega
        else:
            raise ParameterError("initial.momentum", 'a momentum law with a density for a kinetic pde run '
                                 '("gaussian", "zero")', mom)
        return np.ascontiguousarray(rho[:, None] * law[None, :])

    # ------------------------------------------------------------ diagnostics
    def kinetic(self, f) -> float:
        """K = int int omega^2 / (2 z(theta)) f."""
        zc = self.z(self.marginal(f))
        return 0.5 * float(((f @ self._omega2) / zc).sum() * self.cell_volume)

    def energies(self, f) -> dict:
        """``energy`` H, ``kinetic``, ``potential`` U = -1/2 int z rho (= ``interaction``,
        ``first_order_energy``), the names and normalization of particle sphere runs."""
        rho = self.marginal(f)
        zc = self.z(rho)
        U = -0.5 * float(np.dot(zc, rho) * self.dtheta)
        K = 0.5 * float(((f @ self._omega2) / zc).sum() * self.cell_volume)
        return {"energy": K + U, "potential": U, "interaction": U, "kinetic": K, "first_order_energy": U}

    def diagnostics(self, f) -> dict:
        """``mass``, ``min_density``, ``E_beta``, ``mean`` (2,) of x = (cos, sin) theta, ``cov`` (2, 2),
        ``order_parameter`` |mean|, ``momentum_spread`` (:meth:`momentum_spread`)."""
        rho = self.marginal(f)
        c, s = np.cos(self.theta), np.sin(self.theta)
        mass = float(rho.sum() * self.dtheta)
        w = rho * self.dtheta
        mu = np.array([c @ w, s @ w]) / mass
        X = np.stack([c - mu[0], s - mu[1]])
        cov = (X * w) @ X.T / mass
        zc = self.z(rho)
        return {"mass": mass, "min_density": float(f.min()), "E_beta": float(np.dot(zc, w)) / (2 * self.beta),
                "mean": mu, "cov": cov, "order_parameter": float(np.hypot(*mu)),
                "momentum_spread": self.momentum_spread(f)}

    def momentum_spread(self, f) -> float:
        """sqrt(int rho Var(omega | theta)): 0 while f lives on a graph omega = W(theta) (a monokinetic
        state, up to the grid's numerical diffusion), and O(1) once trajectories have crossed."""
        rho = self.marginal(f)
        m1 = (f @ self.omega) * self.domega
        m2 = (f @ self._omega2) * self.domega
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(rho > 0, m2 - m1 * m1 / np.where(rho > 0, rho, 1.0), 0.0)
        return float(np.sqrt(max(var.sum() * self.dtheta, 0.0) / max(rho.sum() * self.dtheta, 1e-300)))


class KineticSystem(GridSystem):
    """A phase-space density (M, K) advanced by the strang splitting of :class:`CircleKinetic`.

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


class KineticRun:
    """Set-up of a kinetic pde run of the accelerated sphere model in d = 2 (the circle x R).

    Checks the input: ``[integrator] name = "strang"``, Q = K = I, a grid
    ``[M, K]`` that resolves beta (kernel tail at the Nyquist mode <=
    :data:`KERNEL_TAIL`, >= :data:`CELLS_PER_WIDTH` cells per width
    beta^{-1/2}) and the momentum law, and a momentum interval that holds the
    initial law (mass outside <= :data:`CLIP_TOLERANCE`). ``momentum_max``
    defaults to 8 momentum_scale (gaussian momenta) or 4 (momenta at rest).
    """

    def __init__(self, cfg, model, integrator, base_dir=None):
        if integrator.name not in KINETIC_INTEGRATORS:
            raise ParameterError("integrator.name", f"an integrator of kinetic pde runs "
                                 f"({', '.join(KINETIC_INTEGRATORS)}: Strang splitting of the transport)",
                                 integrator.name)
        if cfg["run"].get("oracle_calls") is not None:
            raise ParameterError("run.oracle_calls", "run.t1 or run.steps for a kinetic pde run (its steps "
                                 "count nonlocal moment evaluations, not the particle integrator's calls)",
                                 cfg["run"]["oracle_calls"])
        params = model.params
        if not params.identity_qk:
            raise ParameterError("model.Q", "Q = K = identity for a kinetic pde run (the circle's kinetic "
                                 "equation has E = exp(beta cos))", "Q^T K != I")
        sol = cfg["solver"]
        grid = sol["grid"]
        if not (isinstance(grid, list) and len(grid) == 2):
            raise ParameterError("solver.grid", "[cells in theta, cells in momentum] for a kinetic pde run",
                                 grid)
        M, K = (int(g) for g in grid)
        section = cfg["initial"]
        s = None
        if section.get("momentum") == "gaussian":
            s = section.get("momentum_scale", 1.0)
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or not s > 0:
                raise ParameterError("initial.momentum_scale", "a finite number > 0 for a kinetic pde run", s)
            s = float(s)
        P = float(sol.get("momentum_max", 8.0 * s if s else 4.0))
        self.solver = CircleKinetic(params.beta, M, K, P)
        tail = self.solver.tail()
        width = 1.0 / math.sqrt(params.beta) / self.solver.dtheta
        if tail > KERNEL_TAIL or width < CELLS_PER_WIDTH:
            need = max(math.ceil(2 * np.pi * CELLS_PER_WIDTH * math.sqrt(params.beta)), 8)
            while special.ive(need // 2, params.beta) / special.ive(0, params.beta) > KERNEL_TAIL:
                need += 2
            raise ParameterError("solver.grid", f"at least {need} theta cells for beta = {params.beta:g} "
                                 f"(the kernel exp(beta cos) resolved)", grid)
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

    def system(self, state=None) -> KineticSystem:
        """The kinetic system to advance: the initial (M, K) density, or that of a checkpoint's ``state``."""
        f = self.density0.copy() if state is None else np.ascontiguousarray(state["density"], np.float64)
        return KineticSystem(self.solver, f)

    def energy_infimum(self):
        """The known lower bound of the energy, -exp(beta) / 2 (float)."""
        return -0.5 * math.exp(self.solver.beta)

    def attrs(self) -> dict:
        """Extra file attributes of the run (``spatial_order``)."""
        return {"spatial_order": int(self.solver.order)}
