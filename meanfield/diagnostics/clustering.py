"""Clustering diagnostics of tokens on the sphere: energy, inner products, clusters, clustering time.

Everything is computed from the unit directions ``theta_i = x_i / |x_i|``
(for post_ln states x_i = theta_i), in O(N^2 d) time and O(N d) memory: no
N x N array is formed. The cluster count is the number of connected
components of the graph with an edge i ~ j when ``<theta_i, theta_j> > 1 - tol``;
it is read off a maximum spanning tree of the similarity graph (Prim's dense
algorithm, :func:`meanfield._kernels.sphere.prim_pass`): the components of a
threshold graph are those of its maximum spanning tree with the edges at or
below the threshold removed (single linkage), so one sweep gives the counts at
every tolerance.

Large N (:func:`pair_statistics_fast`, used by the sphere model under
``summation = "fourier"``): the same diagnostics without the O(N^2) sweep.
``min_inner`` is exact (a k-d tree finds, for every token, the token nearest
to its antipode -theta_i, i.e. the smallest inner product with it),
``mean_inner`` is exact (from the mean direction), ``n_clusters`` is exact
(cells of a grid, :func:`meanfield._kernels.grid.count_components`), and
``E_beta`` is the mean of the model's z_i, which the Fourier backend returns
to relative accuracy ``summation_tol``.
"""

from __future__ import annotations

import math

import numpy as np

from .._kernels import sphere as SK
from .._kernels.grid import count_components
from .._logspace import LOG_MAX, exp_clipped
from ..errors import ParameterError, check_real


def _directions(x) -> np.ndarray:
    x = np.ascontiguousarray(x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"expected an (N, d) array of tokens with N >= 1, got shape {x.shape}")
    if x.dtype not in (np.float64, np.float32):
        x = x.astype(np.float64)
    theta = np.empty(x.shape, np.float64)
    if not SK.directions(x, theta) > 0:
        raise ValueError("a token is zero: its direction x_i / |x_i| is undefined")
    return theta


def check_cluster_tol(tol) -> float:
    """Validate a cluster tolerance (``[diagnostics] cluster_tol``): a number in (0, 2)."""
    return check_real("diagnostics.cluster_tol", tol, "a number in (0, 2)", lambda v: 0 < v < 2)


def spanning_tree(x, beta: float = 1.0) -> dict:
    """Maximum spanning tree of the similarity graph, plus the pair sums of the same sweep.

    Parameters
    ----------
    x : (N, d) tokens (normalized internally)
    beta : float > 0, for the energy sum

    Returns
    -------
    dict
        ``u, v`` ((N-1,) int64) and ``w`` ((N-1,) float64): tree edges and their
        inner products <theta_u, theta_v>; ``sum_exp`` = sum_{i<j} exp(beta (<theta_i, theta_j> - 1));
        ``min_inner`` = min_{i != j} <theta_i, theta_j> (1 for N = 1); ``theta`` (N, d).
    """
    theta = _directions(x)
    n, d = theta.shape
    W = np.empty((d, n))
    s = np.empty(n)
    best = np.empty(n)
    parent = np.empty(n, np.int64)
    idx = np.empty(n, np.int64)
    xc = np.empty(d)
    u = np.empty(max(n - 1, 0), np.int64)
    v = np.empty(max(n - 1, 0), np.int64)
    w = np.empty(max(n - 1, 0))
    total, gmin = SK.prim_pass(theta, float(beta), W, s, best, parent, idx, xc, u, v, w)
    return {"u": u, "v": v, "w": w, "sum_exp": float(total), "min_inner": float(gmin), "theta": theta}


def labels_from_tree(tree: dict, tol: float) -> tuple[np.ndarray, int]:
    """Cluster labels (N,) int64 and their number, at tolerance ``tol``, from :func:`spanning_tree`."""
    tol = check_cluster_tol(tol)
    n = tree["theta"].shape[0]
    labels = np.empty(n, np.int64)
    k = SK.components_from_tree(n, tree["u"], tree["v"], tree["w"], 1.0 - tol, labels)
    return labels, int(k)


def cluster_labels(x, tol: float = 1e-3) -> tuple[np.ndarray, int]:
    """Connected components of the graph <theta_i, theta_j> > 1 - tol.

    Parameters
    ----------
    x : (N, d) tokens
    tol : float in (0, 2)

    Returns
    -------
    labels : (N,) int64, 0..k-1 in order of each cluster's first token
    k : int, number of clusters
    """
    return labels_from_tree(spanning_tree(x), tol)


def n_clusters(x, tol: float = 1e-3) -> int:
    """Number of connected components of the graph <theta_i, theta_j> > 1 - tol."""
    return cluster_labels(x, tol)[1]


def interaction_energy(x, beta: float) -> float:
    """E_beta = 1/(2 beta N^2) sum_{i,j} exp(beta <theta_i, theta_j>) (diagonal included)."""
    return pair_statistics(x, beta)["E_beta"]


def pair_statistics(x, beta: float, tol: float = 1e-3) -> dict:
    """All per-save sphere diagnostics from one O(N^2 d) sweep over pairs.

    Parameters
    ----------
    x : (N, d) tokens (any non-zero rows; their directions are used)
    beta : float > 0
    tol : float in (0, 2), tolerance of the cluster graph

    Returns
    -------
    dict
        ``E_beta``, ``min_inner``, ``mean_inner`` (mean over i != j; 1 for N = 1),
        ``n_clusters``.
    """
    check_real("model.beta", beta, "a number > 0", lambda v: v > 0)
    tree = spanning_tree(x, beta)
    theta = tree["theta"]
    n = theta.shape[0]
    # sum_ij exp(beta g_ij) = e^beta (sum_i exp(beta (|theta_i|^2 - 1)) + 2 sum_{i<j} ...), |theta_i| = 1;
    # formed from its log: e^beta alone overflows for beta > 709.8 (E_beta is then inf)
    S = n + 2.0 * tree["sum_exp"]
    E = (math.exp(beta) * (S / (2.0 * beta * n * n)) if beta <= LOG_MAX
         else exp_clipped(beta + math.log(S) - math.log(2.0 * beta * n * n)))
    ssum = theta.sum(axis=0)
    sq = float(np.einsum("ij,ij->", theta, theta))
    mean_inner = (float(ssum @ ssum) - sq) / (n * (n - 1)) if n > 1 else 1.0
    _, k = labels_from_tree(tree, tol)
    return {"E_beta": E, "min_inner": tree["min_inner"], "mean_inner": mean_inner, "n_clusters": k}


def min_inner_kdtree(theta: np.ndarray, workers: int = 1) -> float:
    """Exact ``min_{i != j} <theta_i, theta_j>`` of unit rows in O(N log N) (1 for N = 1).

    The smallest inner product with theta_i is reached at the token nearest to
    -theta_i (``|theta_j + theta_i|^2 = 2 + 2 <theta_i, theta_j>``), found with a k-d tree.
    """
    from scipy.spatial import cKDTree

    n = theta.shape[0]
    if n < 2:
        return 1.0
    _, j = cKDTree(theta).query(-theta, k=1, workers=workers)
    return float(np.einsum("ij,ij->i", theta, theta[j]).min())


def pair_statistics_fast(x, tol: float = 1e-3) -> dict:
    """``min_inner``, ``mean_inner``, ``n_clusters`` of :func:`pair_statistics` in O(N log N), exact.

    ``E_beta`` needs the pair sum itself: the sphere model adds it from its
    (Fourier) z_i. Parameters and conventions as in :func:`pair_statistics`.
    """
    import numba

    tol = check_cluster_tol(tol)
    theta = _directions(x)
    n = theta.shape[0]
    ssum = theta.sum(axis=0)
    sq = float(np.einsum("ij,ij->", theta, theta))
    mean_inner = (float(ssum @ ssum) - sq) / (n * (n - 1)) if n > 1 else 1.0
    return {"min_inner": min_inner_kdtree(theta, numba.get_num_threads()), "mean_inner": mean_inner,
            "n_clusters": int(count_components(theta, tol))}


# ------------------------------------------------------ post-processing


def time_to_clustering(tr, eps: float = 1e-3, k: int = 1, x="sim_time") -> float:
    """First saved time (or oracle-call count) at which the tokens are eps-clustered.

    With ``k = 1`` (default): the first save where all tokens lie in one
    eps-cluster, ``1 - min_i<j <theta_i, theta_j> <= eps`` (read from the
    recorded ``min_inner``, or computed from ``x``). With ``k > 1``: the first
    save where the graph <theta_i, theta_j> > 1 - eps has at most k connected
    components (needs the trajectory ``x``; one O(N^2 d) sweep per save).

    Parameters
    ----------
    tr : Trajectory / RunResult / dict
        With ``tr["sim_time"]`` (or ``tr[x]``) and ``tr["min_inner"]`` or ``tr["x"]`` ``(T, N, d)``.
    eps : float in (0, 2)
    k : int >= 1
    x : {"sim_time", "oracle_calls", "iteration"}
        What to return.

    Returns
    -------
    float
        NaN if the run never clusters.
    """
    eps = check_cluster_tol(eps)
    xs = np.asarray(tr[x], dtype=float)
    if k == 1 and "min_inner" in tr:
        gap = 1.0 - np.asarray(tr["min_inner"], dtype=float)
        hit = np.nonzero(gap <= eps)[0]
        return float(xs[hit[0]]) if len(hit) else float("nan")
    if "x" not in tr:
        raise ParameterError("output.save", 'a run that saved "x" (or min_inner for k = 1)', "neither")
    X = np.asarray(tr["x"])
    for s in range(X.shape[0]):
        if n_clusters(X[s], eps) <= k:
            return float(xs[s])
    return float("nan")


def clustering_time_from_min_inner(t, min_inner, eps: float = 1e-3) -> float:
    """First time with 1 - min_inner <= eps, linearly interpolated in log(1 - min_inner); NaN if never."""
    t = np.asarray(t, float)
    g = np.maximum(1.0 - np.asarray(min_inner, float), 1e-300)
    hit = np.nonzero(g <= eps)[0]
    if not len(hit):
        return float("nan")
    j = hit[0]
    if j == 0:
        return float(t[0])
    a, b = math.log(g[j - 1]), math.log(g[j])
    f = (a - math.log(eps)) / (a - b) if a != b else 1.0
    return float(t[j - 1] + f * (t[j] - t[j - 1]))
