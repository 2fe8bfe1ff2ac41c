"""Initial laws with a density, as cell masses on the grid of a pde run.

The same ``[initial]`` section that particle runs sample (:mod:`meanfield.initial`)
is evaluated here on the cells of a grid, so a parameter file with
``[solver] kind`` switched gives a comparable particle / pde pair:

* ``gaussian`` (``mean``, ``cov``) on the line (d = 1): exact cell masses from
  the normal CDF; the mass outside the interval is reported so the solver can
  refuse a domain that clips the law.
* ``sphere_uniform`` on the circle (d = 2): the density 1 / (2 pi).
* ``von_mises`` on the circle (d = 2): the mixture
  ``sum_c w_c exp(kappa_c cos(theta - mu_c)) / (2 pi I_0(kappa_c))``, cell masses by
  Gauss-Legendre quadrature (16 nodes per cell, asked to resolve every component:
  ``1 / sqrt(kappa_c)`` at least one cell).

``n`` and ``seed`` are read by particle runs only.
"""

from __future__ import annotations

import numpy as np
from scipy.special import i0e, ndtr

from ..errors import ParameterError
from ..initial import (
    COMMON_KEYS,
    LAW_KEYS,
    MOMENTUM_KEYS,
    _mean_and_factor,
    as_typed,
    choices,
    von_mises_params,
)

TWO_PI = 2.0 * np.pi

#: Gauss-Legendre nodes per cell for laws without a closed-form CDF.
QUAD_NODES = 16


def _gl_cell_masses(pdf, edges: np.ndarray, nodes: int = QUAD_NODES) -> np.ndarray:
    """int_{edges[j]}^{edges[j+1]} pdf for every cell, ``(M,)`` (Gauss-Legendre per cell)."""
    g, w = np.polynomial.legendre.leggauss(nodes)
    a, b = edges[:-1, None], edges[1:, None]
    pts = 0.5 * (a + b) + 0.5 * (b - a) * g[None, :]
    return 0.5 * (b[:, 0] - a[:, 0]) * (pdf(pts) @ w)


def _gaussian(section: dict, d: int, edges: np.ndarray, periodic: bool):
    if periodic or d != 1:
        raise ParameterError("initial.law", "sphere_uniform or von_mises for pde runs on the circle "
                             "(tokens of the sphere model start on it)", "gaussian")
    mean, F = _mean_and_factor(section, 1)
    sigma = float(abs(F[0, 0]))
    if sigma == 0.0:
        raise ParameterError("initial.cov", "a variance > 0 (a pde run needs a density)", section.cov)
    s = (edges - mean[0]) / sigma
    # differences of upper tails right of the mean: no cancellation in either tail
    masses = np.where(s[:-1] >= 0, ndtr(-s[:-1]) - ndtr(-s[1:]), ndtr(s[1:]) - ndtr(s[:-1]))
    outside = float(ndtr(s[0]) + ndtr(-s[-1]))
    return masses, outside, sigma


def _sphere_uniform(section: dict, d: int, edges: np.ndarray, periodic: bool):
    if not periodic or d != 2:
        raise ParameterError("initial.law", "gaussian for pde runs on the line (sphere_uniform in d = 1 is "
                             "two atoms at +-1, without a density)", "sphere_uniform")
    return np.diff(edges) / TWO_PI, 0.0, np.inf


def von_mises_pdf(theta, mu, kappa, weights) -> np.ndarray:
    """Density per unit angle of the mixture sum_c w_c vM(mu_c, kappa_c) at ``theta`` (any shape).

    ``mu, kappa, weights`` as returned by :func:`meanfield.initial.von_mises_params`.
    """
    out = np.zeros_like(theta, dtype=np.float64)
    for m, k, w in zip(mu, kappa, weights):
        # exp(k cos) / I_0(k) = exp(k (cos - 1)) / i0e(k): no overflow at large kappa
        out += w * np.exp(k * (np.cos(theta - m) - 1.0)) / (TWO_PI * i0e(k))
    return out


def _von_mises(section: dict, d: int, edges: np.ndarray, periodic: bool):
    mu, kappa, weights = von_mises_params(section, d)
    width = float(np.min(1.0 / np.sqrt(np.maximum(kappa, 1e-300))))
    return _gl_cell_masses(lambda th: von_mises_pdf(th, mu, kappa, weights), edges), 0.0, width


#: Laws with a density: name -> f(section, d, edges, periodic) -> (cell masses (M,), mass outside, width).
DENSITY_LAWS = {"gaussian": _gaussian, "sphere_uniform": _sphere_uniform, "von_mises": _von_mises}


def cell_masses(section: dict, d: int, edges: np.ndarray, periodic: bool):
    """Masses of the initial law in the cells ``[edges[j], edges[j+1]]``.

    Parameters
    ----------
    section : the ``[initial]`` section of a parameter file
    d : model dimension (1: the line, 2: the circle)
    edges : (M + 1,) increasing cell edges (on the circle from 0 to 2 pi)
    periodic : True on the circle

    Returns
    -------
    masses : (M,) float64, mass of each cell (sums to 1 - outside up to quadrature error)
    outside : float, mass of the law outside ``[edges[0], edges[-1]]`` (0 on the circle)
    width : float, the smallest length scale of the law (std / kappa^{-1/2}), for resolution checks

    Raises
    ------
    ParameterError
        A law without a density on this geometry, or an unknown key.
    """
    law, mom = choices(section)
    if not isinstance(law, str) or law not in DENSITY_LAWS:
        raise ParameterError("initial.law", f"a law with a density for pde runs: one of {sorted(DENSITY_LAWS)}",
                             law)
    allowed = set(COMMON_KEYS) | set(LAW_KEYS[law]) | set(MOMENTUM_KEYS.get(mom, ()))
    for key in section:
        if key not in allowed and not key.startswith("_"):
            raise ParameterError(f"initial.{key}", f"a key for law {law!r} (valid: {', '.join(sorted(allowed))})",
                                 key)
    return DENSITY_LAWS[law](as_typed(section), d, np.asarray(edges, np.float64), periodic)
