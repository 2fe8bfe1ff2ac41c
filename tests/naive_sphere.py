"""Slow NumPy references for the sphere model (docs/models.md §4, §6): full N x N formulas, float64, small N."""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components


def _mask_counts(N, causal):
    if causal:
        return np.tril(np.ones((N, N))), np.arange(1, N + 1, dtype=float)
    return np.ones((N, N)), np.full(N, float(N))


def attention(T, beta, Q=None, K=None, V=None, normalized=True, causal=False):
    """a_i = sum_j exp(beta <Q t_i, K t_j>) V t_j / Z_i (SA) or / n_i (USA); (N, d)."""
    T = np.asarray(T, float)
    N, d = T.shape
    Q = np.eye(d) if Q is None else Q
    K = np.eye(d) if K is None else K
    V = np.eye(d) if V is None else V
    E = np.exp(beta * (T @ Q.T) @ (T @ K.T).T)
    mask, counts = _mask_counts(N, causal)
    E = E * mask
    Z = E.sum(1) if normalized else counts
    return (E @ T @ V.T) / Z[:, None]


def first_order(X, beta, Q=None, K=None, V=None, normalized=True, causal=False, normalization="post_ln"):
    """The first-order sphere field of each normalization scheme, (N, d) (see models/sphere.py)."""
    X = np.asarray(X, float)
    T = X / np.linalg.norm(X, axis=1, keepdims=True)  # attention is evaluated at the directions
    a = attention(T, beta, Q, K, V, normalized, causal)
    if normalization == "post_ln":
        return a - np.sum(T * a, 1)[:, None] * T
    if normalization == "pre_ln":
        return a
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def hamiltonian_field(X, Y, beta):
    """Constrained field (F, G) on the sphere, A = beta I, B = I, G without damping; each (N, d).

    F_i = y_i / z_i,  G_i = P_{x_i} g_i - (|y_i|^2 / z_i) x_i on the constraint manifold, with
    g_i = 1/(2N) sum_j E_ij (s_i + s_j + 2) beta theta_j,  s_i = |y_i|^2 / z_i^2, everything
    evaluated at the directions theta = x / |x| (the model's ambient extension).
    """
    X = np.asarray(X, float)
    Y = np.asarray(Y, float)
    N = X.shape[0]
    T = X / np.linalg.norm(X, axis=1, keepdims=True)  # attention is evaluated at the directions
    E = np.exp(beta * T @ T.T)
    z = E.sum(1) / N
    s = np.sum(Y * Y, 1) / z**2
    g = (E * (s[:, None] + s[None, :] + 2.0)) @ T * beta / (2.0 * N)
    F = Y / z[:, None]
    xx = np.sum(X * X, 1)
    lam = (np.sum(X * g, 1) + np.sum(Y * F, 1)) / xx
    return F, g - lam[:, None] * X


def hamiltonian(X, Y, beta):
    """H = (1/N) sum |y_i|^2 / (2 z_i) - 1/(2N^2) sum_ij E_ij with E_ij = exp(beta <x_i, x_j>)."""
    N = X.shape[0]
    E = np.exp(beta * X @ X.T)
    z = E.sum(1) / N
    return float(np.mean(np.sum(Y * Y, 1) / (2 * z)) - E.sum() / (2.0 * N * N))


def pair_statistics(X, beta, tol):
    """E_beta, min/mean inner product (i != j) and cluster count via scipy.sparse.csgraph."""
    T = np.asarray(X, float)
    T = T / np.linalg.norm(T, axis=1, keepdims=True)
    N = T.shape[0]
    G = T @ T.T
    off = ~np.eye(N, dtype=bool)
    E = np.exp(beta * G).sum() / (2.0 * beta * N * N)
    adj = csr_matrix((G > 1.0 - tol) & off)
    k, labels = connected_components(adj, directed=False)
    return {"E_beta": E, "min_inner": G[off].min() if N > 1 else 1.0,
            "mean_inner": G[off].mean() if N > 1 else 1.0, "n_clusters": k, "labels": labels}


def kuramoto(theta, beta):
    """dtheta_i/dt = (1/N) sum_j exp(beta cos(th_j - th_i)) sin(th_j - th_i), (N,)."""
    D = theta[None, :] - theta[:, None]
    return np.mean(np.exp(beta * np.cos(D)) * np.sin(D), axis=1)


def first_order_jacobian(X, beta, Q=None, K=None, V=None, normalized=True, causal=False,
                         normalization="post_ln"):
    """Dense Jacobian of :func:`first_order` at a state X (on or off the sphere), ``(N d, N d)``.

    The chain rule through theta_i = x_i / |x_i| (d theta_i / d x_i = (I - theta_i theta_i^T) / |x_i|),
    the attention Jacobian of :func:`naive_softmax.first_order_jacobian` at the directions,
    and the scheme's map a -> f (post_ln: P_theta a, with its own dependence on theta;
    pre_ln: a; peri_ln: a / |a|), as explicit (d, d) blocks.
    """
    import naive_softmax

    X = np.asarray(X, float)
    N, d = X.shape
    Q = np.eye(d) if Q is None else Q
    K = np.eye(d) if K is None else K
    V = np.eye(d) if V is None else V
    r = np.linalg.norm(X, axis=1)
    T = X / r[:, None]
    Da = naive_softmax.first_order_jacobian(T, beta * Q.T @ K, V, normalized, causal).reshape(N, d, N, d)
    a = attention(T, beta, Q, K, V, normalized, causal)
    Dtheta = [(np.eye(d) - np.outer(t, t)) / ri for t, ri in zip(T, r)]
    J = np.zeros((N, d, N, d))
    for i in range(N):
        if normalization == "post_ln":
            Lf = np.eye(d) - np.outer(T[i], T[i])
            direct = -(T[i] @ a[i]) * np.eye(d) - np.outer(T[i], a[i])  # d f_i / d theta_i at fixed a_i
        elif normalization == "pre_ln":
            Lf, direct = np.eye(d), np.zeros((d, d))
        else:
            na = np.linalg.norm(a[i])
            Lf, direct = (np.eye(d) - np.outer(a[i], a[i]) / na**2) / na, np.zeros((d, d))
        for k in range(N):
            J[i, :, k, :] = Lf @ Da[i, :, k, :] @ Dtheta[k]
        J[i, :, i, :] += direct @ Dtheta[i]
    return J.reshape(N * d, N * d)
