"""Slow NumPy references for the softmax model: the full N x N formulas of docs/models.md §3 and §6.

Everything is float64 and forms ``E = exp(X A X^T)`` explicitly; only for
small N (tests). Under ``causal=True`` token i (0-based) sees j <= i and the
mean-field factor 1/N becomes 1/(i + 1).
"""

from __future__ import annotations

import numpy as np


def _E_mask_counts(X, A, causal):
    X = np.asarray(X, np.float64)
    N = X.shape[0]
    E = np.exp(X @ A @ X.T)  # E_ij = exp(x_i^T A x_j)
    if causal:
        E = np.tril(E)
        counts = np.arange(1, N + 1, dtype=np.float64)
    else:
        counts = np.full(N, float(N))
    return X, E, counts


def _confining(X, B, Q, m):
    return (X - m) @ Q.T @ B.T  # rows B Q (x_i - m) = B grad W(x_i)


def sa(X, A, V, causal=False, B=None, Q=None, m=None):
    """SA field sum_j E_ij V x_j / sum_j E_ij - B grad W(x_i) / z_i, shape (N, d)."""
    X, E, counts = _E_mask_counts(X, A, causal)
    f = (E @ X @ V.T) / E.sum(1)[:, None]
    if Q is not None:
        f -= _confining(X, B, Q, m) / (E.sum(1) / counts)[:, None]
    return f


def usa(X, A, V, causal=False, B=None, Q=None, m=None):
    """USA field (1/n_i) sum_j E_ij V x_j - B grad W(x_i), shape (N, d)."""
    X, E, counts = _E_mask_counts(X, A, causal)
    f = (E @ X @ V.T) / counts[:, None]
    if Q is not None:
        f -= _confining(X, B, Q, m)
    return f


def z(X, A, causal=False):
    """z_i = (1/n_i) sum_j E_ij, shape (N,)."""
    X, E, counts = _E_mask_counts(X, A, causal)
    return E.sum(1) / counts


def hamiltonian_field(X, Y, A, B, Q=None, m=None, causal=False):
    """(F, G) of the accelerated flow, G without the damping term; each (N, d).

    F_i = B y_i / z_i,
    G_i = 1/(2 n_i) sum_j E_ij (s_i + s_j + 2) A x_j - Q (x_i - m),  s_i = y_i^T B y_i / z_i^2.
    """
    X, E, counts = _E_mask_counts(X, A, causal)
    Y = np.asarray(Y, np.float64)
    d = X.shape[1]
    Q = np.zeros((d, d)) if Q is None else Q
    m = np.zeros(d) if m is None else m
    zi = E.sum(1) / counts
    yBy = np.einsum("ik,kl,il->i", Y, B, Y)
    s = yBy / zi**2
    Wgt = E * (s[:, None] + s[None, :] + 2.0)
    G = (Wgt @ X @ A.T) / (2.0 * counts[:, None]) - (X - m) @ Q.T
    F = (Y @ B.T) / zi[:, None]
    return F, G


def energy(X, Y, A, B, Q=None, m=None, causal=False):
    """H = (1/N) sum_i y_i^T B y_i / (2 z_i) - 1/(2N) sum_i z_i + (1/N) sum_i W(x_i).

    Without a mask the middle term is -1/(2N^2) sum_ij E_ij (docs/models.md §3). ``Y=None``
    gives the first-order energy (no kinetic term).
    """
    X, E, counts = _E_mask_counts(X, A, causal)
    N, d = X.shape
    Q = np.zeros((d, d)) if Q is None else Q
    m = np.zeros(d) if m is None else m
    zi = E.sum(1) / counts
    W = 0.5 * np.einsum("ik,kl,il->i", X - m, Q, X - m).mean()
    U = -0.5 * zi.sum() / N + W
    if Y is None:
        return U
    yBy = np.einsum("ik,kl,il->i", Y, B, Y)
    return float((yBy / (2.0 * zi)).mean() + U)


def first_order_jacobian(X, A, V, normalized=True, causal=False, B=None, Q=None, m=None):
    """Dense Jacobian of the SA / USA field (:func:`sa`, :func:`usa`), ``(N d, N d)``.

    By the product rule on the explicit weight tensor: with logits l_ij = x_i^T A x_j,
    dl_ij/dx_k = delta_ik A x_j + delta_jk A^T x_i, the weights W_ij (E_ij / sum_j E_ij,
    or E_ij / n_i) and z_i = (1/n_i) sum_j E_ij are differentiated entry by entry
    (an (N, N, N, d) tensor: small N only), then f_i = sum_j W_ij V x_j - mob_i g_i.
    """
    X, E, counts = _E_mask_counts(X, A, causal)
    N, d = X.shape
    mask = E > 0
    eye = np.eye(N)
    # dl[i, j, k, :] = d l_ij / d x_k
    dl = (eye[:, None, :, None] * (X @ A.T)[None, :, None, :]
          + eye[None, :, :, None] * (X @ A)[:, None, None, :]) * mask[:, :, None, None]
    dz = np.einsum("ij,ijkb->ikb", E, dl) / counts[:, None, None]
    zz = E.sum(1) / counts
    if normalized:
        W = E / E.sum(1)[:, None]
        dW = W[:, :, None, None] * (dl - np.einsum("im,imkb->ikb", W, dl)[:, None])
    else:
        W = E / counts[:, None]
        dW = W[:, :, None, None] * dl
    VX = X @ V.T
    J = np.einsum("ja,ijkb->iakb", VX, dW) + np.einsum("ik,ab->iakb", W, V)
    if Q is not None:
        g = _confining(X, B, Q, m)
        mob = 1.0 / zz if normalized else np.ones(N)
        dmob = -dz / zz[:, None, None] ** 2 if normalized else np.zeros_like(dz)
        J -= np.einsum("ia,ikb->iakb", g, dmob)
        J -= np.einsum("i,ik,ab->iakb", mob, eye, B @ Q)
    return J.reshape(N * d, N * d)
