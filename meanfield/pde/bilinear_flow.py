"""The exact mean-field solution of the bilinear model: the affine flow map (docs/models.md §2).

Every particle of the accelerated bilinear flow moves by one affine map of
phase space, ``z(t) = Phi(t) z(t0) + c(t)`` with ``z = (x, y)``, whose
coefficients depend on the law only through its means and second moments;
the first-order flow moves particles by ``x(t) = U(t) x(t0)``. So pushing the
initial law forward with ``(Phi, c)`` (or ``U``) solves the mean-field
equation for *any* initial law.

The flow map is advanced as a tiny particle system whose rows are its
columns: row ``j < 2d`` holds ``Phi e_j`` (split into x and y halves), row
``2d`` holds ``c``. Rows move by the particle field with ``Mxy`` taken from
the pushed-forward law instead of the empirical measure; the constant
``Q m`` of the momentum equation acts on the shift row only (the columns of
``Phi`` obey the homogeneous equation ``Phi' = J Phi``). Any integrator of
the dynamics then advances the flow map with the same discrete map it
applies to particles: particles started from a sample and the flow map
built from that sample's moments agree to round-off, at any step size.
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ..initial import Where, as_typed, choices, initial_state
from ..models.base import Model
from ..models.bilinear import linear_map_infimum
from ..systems import ParticleSystem


class BilinearFlowModel(Model):
    """Fields of the bilinear flow map; rows of the state are columns of ``(Phi, c)`` or ``U``.

    Parameters
    ----------
    model : Bilinear
        Supplies A, As = sym(A), Q, m and the dynamics.
    mean : (k,) array
        Initial mean of z = (x, y) (accelerated, k = 2d) or of x (first-order, k = d).
    second : (k, k) array
        Initial second moment E[z z^T] (not the covariance).
    """

    name = "bilinear"
    cheap_kinetic = True
    serial_below = 1 << 62  # a few d x d products: never wake the thread pool

    def __init__(self, model, mean, second):
        super().__init__(model.d, model.dynamics, np.float64)
        self.A, self.As, self.Q, self.m, self.q = model.A, model.As, model.Q, model.m, model.q
        self.mean0 = np.asarray(mean, dtype=np.float64)
        self.second0 = np.asarray(second, dtype=np.float64)

    # ------------------------------------------------------------ the map
    def identity(self):
        """State of the identity map: ``(X, Y)`` each ``(2d + 1, d)``, or ``(X, None)``, X ``(d, d)``."""
        d = self.d
        if not self.accelerated:
            return np.eye(d), None
        X = np.zeros((2 * d + 1, d))
        Y = np.zeros((2 * d + 1, d))
        X[:d] = np.eye(d)
        Y[d:2 * d] = np.eye(d)
        return X, Y

    def flow(self, X, Y):
        """``(Phi (2d, 2d), c (2d,))`` (accelerated) or ``(U (d, d), None)`` from the state."""
        if Y is None:
            return X.T, None
        n = 2 * self.d
        return np.hstack([X[:n], Y[:n]]).T, np.concatenate([X[n], Y[n]])

    def moments(self, X, Y):
        """Mean ``(k,)`` and second moment ``(k, k)`` of the pushed-forward law."""
        Phi, c = self.flow(X, Y)
        mu = Phi @ self.mean0
        M = Phi @ self.second0 @ Phi.T
        if c is not None:
            Pm = mu.copy()
            mu = mu + c
            M = M + np.outer(Pm, c) + np.outer(c, Pm) + np.outer(c, c)
        return mu, M

    # ------------------------------------------------------------- fields
    def _combine_first_order(self, x, t, a, b, out):
        mu, M = self.moments(x, None)
        L1 = -(self.Q @ M - np.outer(self.q, mu)) @ self.A   # dx/dt = -C A x
        F = x @ L1.T
        np.add(a * x, b * F, out=out)

    def _combine_hamiltonian(self, x, y, t, ax, bx, ay, by, out_x, out_y):
        d = self.d
        mu, M = self.moments(x, y)
        L = M[:d, d:].T @ self.As                             # Mxy^T As
        F = x @ L.T
        G = -(x @ self.Q.T) - y @ L
        G[2 * d] += self.q                                    # the shift row only
        np.add(ax * x, bx * F, out=out_x)
        np.add(ay * y, by * G, out=out_y)

    # -------------------------------------------------------- diagnostics
    def _xx(self, x, y):
        d = self.d
        mu, M = self.moments(x, y)
        return mu[:d], M[:d, :d], M

    def potential(self, x, y=None) -> float:
        """E[W(x)] = 1/2 tr(Q Mxx) - m^T Q mu_x + 1/2 m^T Q m."""
        mux, Mxx, _ = self._xx(x, y)
        return float(0.5 * np.sum(self.Q * Mxx) - self.q @ mux + 0.5 * self.m @ self.q)

    def kinetic(self, x, y) -> float:
        """K = 1/2 tr(As Mxy Mxy^T) of the pushed-forward law."""
        d = self.d
        Mxy = self.moments(x, y)[1][:d, d:]
        return 0.5 * float(np.sum((self.As @ Mxy) * Mxy))

    def energies(self, x, y) -> dict:
        U = self.potential(x, y)
        if not self.accelerated:
            return {"energy": U, "potential": U}
        K = self.kinetic(x, y)
        return {"energy": K + U, "kinetic": K, "potential": U, "first_order_energy": U}

    def diagnostics(self, x, y) -> dict:
        d = self.d
        mux, Mxx, M = self._xx(x, y)
        out = {"mean": mux, "cov": Mxx - np.outer(mux, mux)}
        if self.accelerated:
            out["Mxy"] = M[:d, d:].copy()
        return out


class FlowMapSystem(ParticleSystem):
    """The bilinear flow map as a system of the loop (state ``flow_x``, ``flow_y``).

    Saves ``flow_map`` ((2d, 2d) acting on z = (x, y), or (d, d) = U for the
    first-order flow) and ``flow_shift`` ((2d,), accelerated).
    """

    kind = "pde"
    names = ("flow_x", "flow_y")

    def fields(self, save) -> dict:
        Phi, c = self.model.flow(self.x, self.y)
        return {"flow_map": Phi} if c is None else {"flow_map": Phi, "flow_shift": c}

    def probe_args(self) -> tuple:
        """``(None, None)``: a flow-map run has no particles to hand to user probes."""
        return None, None


def push_forward(flow_map, flow_shift, x, y=None):
    """Apply a saved flow map to initial samples: ``z = Phi z0 + c`` (or ``x = U x0``).

    Parameters
    ----------
    flow_map : (2d, 2d) or (d, d) array
        ``/tasks/flow_map`` at one save.
    flow_shift : (2d,) array or None
        ``/tasks/flow_shift`` at the same save (accelerated runs).
    x, y : (N, d) arrays
        Initial positions (and momenta, accelerated runs).

    Returns
    -------
    x, y : (N, d) arrays (``y`` None for the first-order flow)
    """
    if flow_shift is None:
        return np.asarray(x) @ np.asarray(flow_map).T, None
    z = np.hstack([x, y]) @ np.asarray(flow_map).T + flow_shift
    d = z.shape[1] // 2
    return z[:, :d], z[:, d:]


# ------------------------------------------------------------------ initial laws
#: Position laws whose population mean and covariance are known in closed form.
POPULATION_LAWS = ("gaussian", "student_t", "uniform_ellipsoid", "elliptical", "sphere_uniform")


def _population_scatter_factor(section, law, d) -> float:
    """Covariance / scatter-matrix ratio of an elliptical law."""
    if law == "gaussian":
        return 1.0
    if law == "uniform_ellipsoid":
        return 1.0 / (d + 2)
    if law == "student_t":
        dof = section.dof
        if not dof > 2:
            raise ParameterError("initial.dof", "dof > 2 for a pde run (the flow map needs the law's "
                                 "second moments, infinite for dof <= 2)", dof)
        return dof / (dof - 2.0)
    if law == "elliptical":
        from scipy import stats

        name = section.radial
        args = section.radial_args if section.radial_args is not None else ([d] if name == "chi" else [])
        r2 = float(getattr(stats, name)(*args).moment(2))
        if not np.isfinite(r2):
            raise ParameterError("initial.radial", "a radial law with a finite second moment (pde run)",
                                 f"{name}{tuple(args)}")
        return r2 / d
    raise ValueError(law)


def initial_moments(section: dict, d: int, accelerated: bool, where=None):
    """Mean and second moment of the initial law: population moments where known, else sample.

    Population moments: gaussian, student_t (dof > 2), uniform_ellipsoid,
    elliptical (finite E r^2) and sphere_uniform positions, with momenta
    zero, affine (y = S x + b) or gaussian (independent, N(0, s^2 I)).
    File laws (positions or momenta), equiangular: the sample moments of the
    initial state the particle run would start from. ``where``: the folder of
    relative file names (:class:`meanfield.initial.Where`).

    Returns
    -------
    mean : (k,) array, second : (k, k) array
        k = 2d for accelerated dynamics (moments of z = (x, y)), d otherwise.
    """
    from ..models._params import as_matrix, as_vector

    law, mom = choices(section)
    mom = mom if accelerated else "zero"
    population = mom in ("zero", "affine", "gaussian") and law in POPULATION_LAWS
    if not population:
        x, y = initial_state(section, d, accelerated, where)
        z = x if y is None else np.hstack([x, y])
        return z.mean(axis=0), z.T @ z / z.shape[0]
    # validates every key with the laws' own checks (n is irrelevant here)
    initial_state({**section, "n": 2}, d, accelerated, where)
    s = as_typed(section)
    if law == "sphere_uniform":
        mux, cov = np.zeros(d), np.eye(d) / d
    else:
        mux = as_vector(s.mean, d, "initial.mean")
        cov = _population_scatter_factor(s, law, d) * as_matrix(s.cov, d, "initial.cov")
    Mxx = cov + np.outer(mux, mux)
    if not accelerated:
        return mux, Mxx
    if mom == "zero":
        muy, Mxy, Myy = np.zeros(d), np.zeros((d, d)), np.zeros((d, d))
    elif mom == "affine":
        S = as_matrix(s.S, d, "initial.S")
        b = as_vector(s.b, d, "initial.b")
        muy = S @ mux + b
        Mxy = Mxx @ S.T + np.outer(mux, b)
        Myy = S @ Mxx @ S.T + np.outer(S @ mux, b) + np.outer(b, S @ mux) + np.outer(b, b)
    else:  # gaussian momenta independent of positions
        sigma = float(s.momentum_scale)
        muy, Mxy, Myy = np.zeros(d), np.zeros((d, d)), sigma * sigma * np.eye(d)
    return np.concatenate([mux, muy]), np.block([[Mxx, Mxy], [Mxy.T, Myy]])


class BilinearFlow:
    """Set-up of a bilinear pde run: the flow-map model from the initial law's moments.

    Parameters
    ----------
    cfg : meanfield.schema.Config
        The resolved configuration, typed.
    model : Bilinear
    integrator : Integrator
        Any integrator of the dynamics (it advances the flow-map ODE).
    base_dir : str or None
        Directory of the parameter file (relative paths of file laws).
    """

    def __init__(self, cfg, model, integrator, base_dir=None):
        self.section = section = cfg.initial.given()
        self.mean0, self.second0 = initial_moments(section, model.d, model.accelerated, Where(base_dir))
        self.flow_model = BilinearFlowModel(model, self.mean0, self.second0)

    def system(self, state=None) -> FlowMapSystem:
        """The flow-map system to advance: the identity map, or the one of a checkpoint's ``state``."""
        if state is None:
            X, Y = self.flow_model.identity()
        else:
            X = np.ascontiguousarray(state["flow_x"], dtype=np.float64)
            Y = None if state.get("flow_y") is None else np.ascontiguousarray(state["flow_y"], np.float64)
        return FlowMapSystem(self.flow_model, X, Y)

    def energy_infimum(self):
        """inf over linear maps U of E[W(U x)] when positions move linearly (docs/models.md §2).

        Holds for the first-order flow and for affine (or zero) momenta; None otherwise
        or when Q is not positive definite or the second moment of x is singular.
        """
        fm = self.flow_model
        if fm.accelerated and as_typed(self.section).momentum not in ("zero", "affine"):
            return None
        d = fm.d
        return linear_map_infimum(fm.m, fm.Q, self.mean0[:d], self.second0[:d, :d])

    def attrs(self) -> dict:
        """Extra file attributes of the run."""
        return {}
