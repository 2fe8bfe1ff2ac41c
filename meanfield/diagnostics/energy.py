"""Energy diagnostics."""

from __future__ import annotations

import numpy as np

from ..models.bilinear import linear_map_infimum


def bilinear_energy_infimum(model, x0) -> float | None:
    """Infimum of (1/N) sum_i W(U x_i) over linear maps U, for the bilinear model.

    Both bilinear flows move particles by a linear map, x_i(t) = U(t) x_i(0)
    (docs/models.md §2), so their energy is bounded below by
    ``min_U (1/N) sum_i W(U x_i) = 1/2 m^T Q m (1 - mu^T M^{-1} mu)``
    with mu, M the initial mean and second moment (Q positive definite,
    M invertible). The minimiser U = m mu^T M^{-1} has rank one: the flows
    approach it but never reach it.

    Parameters
    ----------
    model : Bilinear
    x0 : (N, d) initial positions

    Returns
    -------
    float or None
        None when Q is not positive definite or M is singular
        (:func:`meanfield.models.bilinear.linear_map_infimum`).
    """
    x0 = np.asarray(x0, dtype=np.float64)
    return linear_map_infimum(model.m, model.Q, x0.mean(axis=0), x0.T @ x0 / x0.shape[0])
