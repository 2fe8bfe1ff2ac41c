"""Diagnostics of a transformer's residual stream that researchers compute on real networks.

Pure functions of arrays, recorded at every save of a network run by
:meth:`meanfield.models.network.Network.diagnostics`:

* :func:`cosine_statistics`: the distribution of the pairwise cosine
  similarities ``<x_i, x_j> / (|x_i| |x_j|)`` over pairs i != j (anisotropy,
  Ethayarajh 2019; over-smoothing, Shi et al. 2022), exact from blocked passes
  over pairs in O(N d) memory beyond one block.
* :func:`rank_collapse` ``||X - 1 xbar^T||_F / ||X||_F`` (Dong, Cordonnier &
  Loukas 2021) and :func:`effective_rank` (Roy & Vetterli 2007).
* :func:`head_statistics`: per head, the interaction energy of the logits the
  head sees and the number of clusters of what it writes.

No N x N array is formed: pairs are visited in blocks of rows.
"""

from __future__ import annotations

import math

import numpy as np

from .._logspace import exp_clipped
from .clustering import check_cluster_tol, n_clusters

#: Probabilities of the recorded quantiles of the cosine similarities (``cos_quantiles`` (5,)).
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: Above this many tokens :func:`cosine_statistics` uses a deterministic subsample of this many.
MAX_EXACT_TOKENS = 4096
#: Pair values (or logits) held at once by a block of rows.
BLOCK_VALUES = 1 << 20
#: Values a quantile search collects and sorts directly; a bin holding more is histogrammed again.
COLLECT_CAP = 1 << 18
#: Bins of each histogram pass of the quantile search.
BINS = 4096
#: An interval of the quantile search at most this many ulps wide has its distinct values counted.
TALLY_ULPS = 64


def unit_rows(x) -> np.ndarray:
    """``x_i / |x_i|`` of ``x (N, d)`` in float64, ``(N, d)``; a zero row stays zero (cosine 0 with every row)."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def _upper_pairs(u: np.ndarray):
    """Yield the inner products ``<u_i, u_j>``, i < j, in blocks of rows: 1-D arrays, each pair once."""
    n = u.shape[0]
    rows = max(1, BLOCK_VALUES // max(n, 1))
    for a in range(0, n - 1, rows):
        b = min(a + rows, n - 1)
        g = u[a:b] @ u[a + 1:].T  # (b - a, n - a - 1): column c is token a + 1 + c
        i = np.arange(b - a)[:, None]
        yield g[np.arange(n - a - 1)[None, :] >= i]  # j = a + 1 + c > a + i


def select_ranks(blocks, total: int, ranks, lo: float, hi: float) -> np.ndarray:
    """The values at sorted positions ``ranks`` of a multiset streamed in blocks, exactly.

    Parameters
    ----------
    blocks : callable
        ``blocks()`` yields the multiset as 1-D float64 arrays (called once per pass).
    total : int
        Size of the multiset.
    ranks : (R,) int
        0-based positions in the sorted multiset.
    lo, hi : float
        Every value lies in ``[lo, hi)``.

    Returns
    -------
    (R,) float64

    Notes
    -----
    Each pass histograms the values of every unresolved interval into
    :data:`BINS` bins (edges as floats, membership ``e_b <= v < e_b+1``, so
    the next pass selects exactly the counted values) and keeps the bin that
    holds the rank. An interval with at most :data:`COLLECT_CAP` values is
    collected and sorted; one at most :data:`TALLY_ULPS` ulps wide (values
    equal up to round-off, e.g. cosines of collapsed tokens) has few distinct
    floats: the pass counts each. Memory: the blocks plus ``R x``
    :data:`COLLECT_CAP` values; passes: one when the multiset has at most
    COLLECT_CAP values, else typically two or three (an interval shrinks by
    BINS per pass).
    """
    ranks = np.asarray(ranks, dtype=np.int64)
    # per target: interval [lo, hi), the rank within it, the interval's count
    state = [[lo, hi, int(r), total] for r in ranks]
    out = np.full(len(ranks), np.nan)
    while True:
        todo = {}
        for t, (a, b, r, c) in enumerate(state):
            if np.isnan(out[t]):
                todo.setdefault((a, b, c), []).append(t)
        if not todo:
            return out
        kept = {key: [] for key in todo if key[2] <= COLLECT_CAP}
        tally = {key: {} for key in todo if key not in kept
                 and key[1] - key[0] <= TALLY_ULPS * np.spacing(max(abs(key[0]), abs(key[1])))}
        edges = {key: np.linspace(key[0], key[1], BINS + 1) for key in todo if key not in kept and key not in tally}
        counts = {key: np.zeros(BINS, np.int64) for key in edges}
        for v in blocks():
            for key in todo:
                w = v[(v >= key[0]) & (v < key[1])]
                if key in kept:
                    kept[key].append(w)
                elif key in tally:
                    for value, c in zip(*np.unique(w, return_counts=True)):
                        tally[key][value] = tally[key].get(value, 0) + int(c)
                else:
                    idx = np.searchsorted(edges[key], w, side="right") - 1
                    counts[key] += np.bincount(np.clip(idx, 0, BINS - 1), minlength=BINS)
        for key, targets in todo.items():
            if key in kept:
                vals = np.sort(np.concatenate(kept[key]))
                for t in targets:
                    out[t] = vals[state[t][2]]
            elif key in tally:
                vals = sorted(tally[key])
                cum = np.cumsum([tally[key][value] for value in vals])
                for t in targets:
                    out[t] = vals[int(np.searchsorted(cum, state[t][2], side="right"))]
            else:
                cum = np.cumsum(counts[key])
                e = edges[key]
                for t in targets:
                    r = state[t][2]
                    k = int(np.searchsorted(cum, r, side="right"))  # first bin with cum > r
                    below = int(cum[k - 1]) if k else 0
                    state[t] = [float(e[k]), float(e[k + 1]), r - below, int(counts[key][k])]


def _quantile_positions(m: int, probs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy's ``linear`` quantiles of the ordered pairs i != j, as ranks among the ``m`` unordered pairs.

    The ordered multiset holds each unordered value twice: its sorted position k is the
    unordered rank k // 2. Returns ``(lower rank, upper rank, fraction)``, each ``(P,)``.
    """
    pos = np.asarray(probs, dtype=np.float64) * (2 * m - 1)
    k = np.floor(pos).astype(np.int64)
    frac = pos - k
    return k // 2, np.minimum(k + 1, 2 * m - 1) // 2, frac


def cosine_statistics(x, probs=QUANTILES, max_exact: int = MAX_EXACT_TOKENS) -> dict:
    """Distribution of the pairwise cosine similarities of the tokens, over pairs i != j.

    Parameters
    ----------
    x : (N, d) array
        Tokens; a zero token has cosine 0 with every other.
    probs : (P,) floats in [0, 1]
        Quantile probabilities (default :data:`QUANTILES`).
    max_exact : int
        Above this many tokens the statistics are those of the pairs among
        ``max_exact`` tokens at evenly spaced indices ``round(linspace(0, N - 1,
        max_exact))`` (deterministic; the mean stays exact over all pairs).

    Returns
    -------
    dict
        ``mean``, ``min``, ``max`` (floats) and ``quantiles`` ``(P,)``: numpy's
        default (linear) quantiles of the N (N - 1) values c_ij, i != j. NaN
        for N < 2 (no pairs).

    Notes
    -----
    Cosines are clipped to [-1, 1] (round-off of normalized products). Time
    O(N^2 d) per pass over pairs (one pass for N <= ~724, typically two or
    three up to :data:`MAX_EXACT_TOKENS`), memory O(N d) plus one block
    (:data:`BLOCK_VALUES`) and :func:`select_ranks`'s collected values.
    """
    u = unit_rows(x)
    n = u.shape[0]
    probs = np.asarray(probs, dtype=np.float64)
    if n < 2:
        return {"mean": math.nan, "min": math.nan, "max": math.nan, "quantiles": np.full(probs.shape, np.nan)}
    s = u.sum(axis=0)
    mean = float((s @ s - np.einsum("ij,ij->", u, u)) / (n * (n - 1)))
    if n > max_exact:
        u = u[np.unique(np.round(np.linspace(0, n - 1, max_exact)).astype(np.int64))]
        n = u.shape[0]
    m = n * (n - 1) // 2
    lower, upper, frac = _quantile_positions(m, probs)
    ranks = np.unique(np.concatenate([[0, m - 1], lower, upper]))
    vals = select_ranks(lambda: (np.clip(g, -1.0, 1.0) for g in _upper_pairs(u)), m, ranks, -1.0,
                        float(np.nextafter(1.0, 2.0)))
    at = dict(zip(ranks.tolist(), vals))
    lo_v = np.array([at[r] for r in lower])
    hi_v = np.array([at[r] for r in upper])
    return {"mean": min(1.0, max(-1.0, mean)), "min": float(at[0]), "max": float(at[m - 1]),
            "quantiles": lo_v + frac * (hi_v - lo_v)}


def mean_cosine(x) -> float:
    """The mean pairwise cosine similarity over i != j of ``x (N, d)`` in O(N d): (|sum_i u_i|^2 - N') / (N (N-1)).

    ``u_i`` are the unit rows (zero rows stay zero: N' counts the others); 1 for N = 1.
    """
    u = unit_rows(x)
    n = u.shape[0]
    if n < 2:
        return 1.0
    s = u.sum(axis=0)
    nonzero = float(np.count_nonzero(np.any(u != 0, axis=1)))
    return float((s @ s - nonzero) / (n * (n - 1)))


def centred(x) -> np.ndarray:
    """``X - 1 xbar^T``: the tokens less their mean token, ``(N, d)`` float64."""
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(axis=0)


def rank_collapse(x) -> float:
    """``||X - 1 xbar^T||_F / ||X||_F`` of ``x (N, d)``: 0 when every token is the mean token (0 for X = 0)."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x)
    return float(np.linalg.norm(centred(x)) / norm) if norm > 0 else 0.0


def effective_rank(x) -> float:
    """Entropy effective rank ``exp(-sum_k p_k log p_k)``, ``p_k = sigma_k / sum sigma`` (Roy & Vetterli 2007).

    Parameters
    ----------
    x : (N, d) array

    Returns
    -------
    float
        In [1, min(N, d)] for X != 0 (1: rank one; min(N, d): equal singular
        values); 0 for X = 0. Time O(N d min(N, d)) (an SVD).
    """
    sv = np.linalg.svd(np.asarray(x, dtype=np.float64), compute_uv=False)
    total = sv.sum()
    if not total > 0:
        return 0.0
    p = sv[sv > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def row_centred_directions(x) -> np.ndarray:
    """The tokens on the LayerNorm sphere as directions: ``(x_i - mean_k x_ik) / |...|``, ``(N, d)``.

    LayerNorm without gain and bias maps x_i to sqrt(d) times this direction
    (up to its eps); a constant token (zero after centring) stays zero.
    """
    x = np.asarray(x, dtype=np.float64)
    return unit_rows(x - x.mean(axis=1, keepdims=True))


def count_clusters(x, tol: float) -> int:
    """Clusters of the directions of the rows of ``x (N, d)`` (components of <theta_i, theta_j> > 1 - tol).

    Zero rows have no direction: together they count as one more cluster.
    """
    x = np.asarray(x, dtype=np.float64)
    zero = ~np.any(x != 0, axis=1)
    k = n_clusters(x[~zero], tol) if not zero.all() else 0
    return int(k + (1 if zero.any() else 0))


def head_pass(q, k, v, causal: bool) -> tuple[float, np.ndarray]:
    """One head's pass over pairs: the log of its logits' exponential sum and its outputs.

    Parameters
    ----------
    q, k, v : (N, d_h) arrays
        The head's queries, keys and values.
    causal : bool
        Outputs sum over sources j <= i.

    Returns
    -------
    log_sum : float
        ``log sum_{i,j} exp(<q_i, k_j> / sqrt(d_h))`` over every pair (no mask).
    out : (N, d_h) float64
        ``o_i = sum_j softmax_j(<q_i, k_j> / sqrt(d_h)) v_j`` (j <= i when causal).

    Notes
    -----
    One exponential per pair, shifted by the row's max over every source; a
    causal row whose visible logits all underflow after that shift (more than
    ~575 below the row's max) is recomputed with its own max. Time O(N^2 d_h),
    memory one block of :data:`BLOCK_VALUES` logits.
    """
    n, dh = q.shape
    scale = 1.0 / math.sqrt(dh)
    rows = max(1, BLOCK_VALUES // n)
    out = np.empty((n, v.shape[1]))
    peak, total = -math.inf, 0.0  # sum exp(logits) = e^peak * total, overflow-free
    for a in range(0, n, rows):
        b = min(a + rows, n)
        z = q[a:b] @ k.T  # (b - a, n) logits
        z *= scale
        zmax = z.max(axis=1, keepdims=True)
        z -= zmax
        np.exp(z, out=z)  # one exponential per pair serves the energy and the softmax
        row = zmax[:, 0] + np.log(z.sum(axis=1))  # log sum_j exp(logit_ij), every j
        top = float(row.max())
        if top > peak:
            total *= math.exp(peak - top)
            peak = top
        total += float(np.exp(row - peak).sum())
        if causal:
            z = np.tril(z, a)  # sources j <= i = a + local row
        norm = z.sum(axis=1)
        for r in np.nonzero(norm < 1e-250)[0]:
            zr = (q[a + r] @ k[: a + r + 1].T) * scale
            z[r, : a + r + 1] = np.exp(zr - zr.max())
            norm[r] = z[r, : a + r + 1].sum()
        z /= norm[:, None]
        np.matmul(z, v, out=out[a:b])
    return peak + math.log(total), out


def head_statistics(q, k, v, causal: bool, tol: float = 1e-3) -> dict:
    """Per head: the interaction energy of its logits and the clusters of its outputs.

    Parameters
    ----------
    q, k, v : (N, H, d_h) arrays
        Each head's queries, keys and values (the projections of LN1(x), biases included).
    causal : bool
        Head outputs sum over sources j <= i (as the model does).
    tol : float in (0, 2)
        Cluster tolerance.

    Returns
    -------
    dict
        ``E_beta`` ``(H,)``: ``1/(2 N^2) sum_{i,j} exp(<q_i, k_j> / sqrt(d_h))``
        over every pair (the causal mask does not enter: as the sphere model's
        E_beta, an energy of the configuration; inf beyond the float64 range).
        ``n_clusters`` ``(H,)`` int64: clusters (:func:`count_clusters`) of the
        directions of the head outputs ``o_i = sum_j softmax_j(<q_i, k_j> /
        sqrt(d_h)) v_j`` (j <= i when causal), in R^{d_h}: 1 when the head writes
        the same direction to every token.

    Notes
    -----
    Time O(H N^2 d_h) (:func:`head_pass` per head), memory O(N H d_h) plus one block of logits.
    """
    tol = check_cluster_tol(tol)
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    n, heads, _ = q.shape
    energy = np.empty(heads)
    clusters = np.empty(heads, np.int64)
    for h in range(heads):
        log_sum, out = head_pass(q[:, h], k[:, h], v[:, h], causal)
        energy[h] = exp_clipped(log_sum - math.log(2.0 * n * n))
        clusters[h] = count_clusters(out, tol)
    return {"E_beta": energy, "n_clusters": clusters}


__all__ = ["QUANTILES", "centred", "cosine_statistics", "count_clusters", "effective_rank", "head_pass", "head_statistics", "mean_cosine",
           "rank_collapse", "row_centred_directions", "select_ranks", "unit_rows"]
