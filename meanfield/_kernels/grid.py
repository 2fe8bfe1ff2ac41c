"""Cluster counting on a grid of cells: connected components of a threshold graph in O(N log N).

The graph has an edge i ~ j when ``<theta_i, theta_j> > 1 - tol`` (unit
vectors in R^d), i.e. ``|theta_i - theta_j| < r = sqrt(2 tol)``. Points are
binned into cubic cells of side ``h < r / sqrt(d)``, so any two points of a
cell are joined (a cell is a clique and is one union-find node); two cells
can only be joined when their index offsets are at most ``ceil(r / h)`` per
axis, and then we test their point pairs until the first edge (early exit).
Exact, O(N log N) for the sort plus the pair tests between neighbouring
cells: a few per point for spread-out states, one per cell pair inside a
cluster; the worst case (two dense clumps just farther apart than r) tests
all their pairs.
"""

import math

import numpy as np
from numba import njit

from ._config import NJIT


@njit(**NJIT)
def _find(parent, a):
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@njit(**NJIT)
def _joined(theta, order, s0, e0, s1, e1, thr):
    d = theta.shape[1]
    for p in range(s0, e0):
        i = order[p]
        for q in range(s1, e1):
            j = order[q]
            g = 0.0
            for k in range(d):
                g += theta[i, k] * theta[j, k]
            if g > thr:
                return True
    return False


@njit(**NJIT)
def count_components_dense(theta, tol):
    """:func:`count_components` by every pair, O(N^2 d): faster below a few hundred tokens.

    Union-find over the pairs with ``<theta_i, theta_j> > 1 - tol``; same arguments and result.
    """
    n, d = theta.shape
    parent = np.arange(n)
    thr = 1.0 - tol
    comps = n
    for i in range(n):
        for j in range(i + 1, n):
            g = 0.0
            for k in range(d):
                g += theta[i, k] * theta[j, k]
            if g > thr:
                ri = _find(parent, i)
                rj = _find(parent, j)
                if ri != rj:
                    parent[ri] = rj
                    comps -= 1
    return comps


@njit(**NJIT)
def count_components(theta, tol):
    """Number of connected components of ``<theta_i, theta_j> > 1 - tol`` (unit rows of ``theta``).

    Parameters
    ----------
    theta : (N, d) float64 unit vectors
    tol : float in (0, 2)

    Returns
    -------
    int
    """
    n, d = theta.shape
    if n == 0:
        return 0
    r = math.sqrt(2.0 * tol)
    h = 0.999 * r / math.sqrt(d)
    nc = int(math.floor(2.0 / h)) + 3  # cells per axis over [-1 - h, 1 + h]
    keys = np.empty(n, np.int64)
    for i in range(n):
        key = 0
        for k in range(d):
            key = key * nc + int(math.floor((theta[i, k] + 1.0) / h)) + 1
        keys[i] = key
    order = np.argsort(keys, kind="mergesort")
    sk = keys[order]
    # unique cells and their [start, end) in the sorted order
    ncell = 1
    for p in range(1, n):
        if sk[p] != sk[p - 1]:
            ncell += 1
    ckey = np.empty(ncell, np.int64)
    start = np.empty(ncell + 1, np.int64)
    c = 0
    ckey[0] = sk[0]
    start[0] = 0
    for p in range(1, n):
        if sk[p] != sk[p - 1]:
            c += 1
            ckey[c] = sk[p]
            start[c] = p
    start[ncell] = n
    parent = np.arange(ncell)
    m = int(math.ceil(r / h))
    width = 2 * m + 1
    noff = width ** d
    thr = 1.0 - tol
    cidx = np.empty(d, np.int64)
    for a in range(ncell):
        key = ckey[a]
        for k in range(d - 1, -1, -1):
            cidx[k] = key % nc
            key //= nc
        for o in range(noff):
            rem = o
            nb = 0
            ok = True
            for k in range(d):
                # offsets of axis k in -m..m (digit k of o in base width, most significant first)
                digit = (rem // width ** (d - 1 - k)) % width
                ck = cidx[k] + digit - m
                if ck < 0 or ck >= nc:
                    ok = False
                nb = nb * nc + ck
            if not ok or nb <= ckey[a]:
                continue
            b = np.searchsorted(ckey, nb)
            if b >= ncell or ckey[b] != nb:
                continue
            ra = _find(parent, a)
            rb = _find(parent, b)
            if ra == rb:
                continue
            if _joined(theta, order, start[a], start[a + 1], start[b], start[b + 1], thr):
                parent[max(ra, rb)] = min(ra, rb)
    roots = 0
    for a in range(ncell):
        if _find(parent, a) == a:
            roots += 1
    return roots
