"""Slow, obviously-correct NumPy references for the kernels (pairwise O(N^2) forms)."""

import numpy as np


def sym(A):
    return 0.5 * (A + A.T)


def bilinear_first_order(X, A, Q, m):
    """dx_i/dt = -(1/N) sum_j k(x_i, x_j) grad W(x_j), k(x, x') = x'^T A x; pairwise, (N, d)."""
    N = X.shape[0]
    K = X @ A @ X.T  # K[j, i] = x_j^T A x_i
    gradW = (X - m) @ Q.T
    return -(K.T @ gradW) / N


def bilinear_H(X, Y, A, Q, m):
    """H = 1/(2N^2) sum_ij (x_j^T As x_i)(y_i . y_j) + (1/N) sum_i W(x_i), pairwise."""
    N = X.shape[0]
    As = sym(A)
    Kx = X @ As @ X.T
    Ky = Y @ Y.T
    W = 0.5 * np.einsum("ik,kl,il->i", X - m, Q, X - m)
    return np.sum(Kx * Ky) / (2 * N * N) + W.mean()


def bilinear_hamiltonian_field(X, Y, A, Q, m):
    """(F, G) = (N dH/dy_i, -N dH/dx_i) written pairwise; each (N, d)."""
    N = X.shape[0]
    As = sym(A)
    Kx = X @ As @ X.T  # (x_j^T As x_i)
    Ky = Y @ Y.T  # (y_i . y_j)
    F = Kx @ Y / N
    G = -(Ky @ (X @ As.T)) / N - (X - m) @ Q.T
    return F, G


def finite_difference_grad(f, Z, eps=1e-6):
    """Central finite-difference gradient of a scalar function of an array Z."""
    g = np.zeros_like(Z)
    it = np.nditer(Z, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        Zp = Z.copy()
        Zm = Z.copy()
        Zp[idx] += eps
        Zm[idx] -= eps
        g[idx] = (f(Zp) - f(Zm)) / (2 * eps)
    return g


def bilinear_causal_first_order(X, A, Q, m):
    """Masked first-order field: dx_i = -(1/i) sum_{j<=i} (x_j^T A x_i) grad W(x_j), i 1-based."""
    N = X.shape[0]
    out = np.zeros_like(X)
    gradW = (X - m) @ Q.T
    for i in range(N):
        for j in range(i + 1):
            out[i] -= (X[j] @ A @ X[i]) * gradW[j]
        out[i] /= i + 1
    return out


def bilinear_causal_hamiltonian_field(X, Y, A, Q, m):
    """Masked accelerated field: F_i = (1/i) sum_{j<=i} (x_j^T As x_i) y_j, G_i = -(1/i) sum As x_j (y_i.y_j) - Q(x_i - m)."""
    N = X.shape[0]
    As = sym(A)
    F = np.zeros_like(X)
    G = -(X - m) @ Q.T
    for i in range(N):
        f = np.zeros(X.shape[1])
        g = np.zeros(X.shape[1])
        for j in range(i + 1):
            f += (X[j] @ As @ X[i]) * Y[j]
            g += (As @ X[j]) * (Y[i] @ Y[j])
        F[i] = f / (i + 1)
        G[i] -= g / (i + 1)
    return F, G
