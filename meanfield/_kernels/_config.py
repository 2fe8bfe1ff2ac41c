"""Compilation flags shared by every numba kernel (one place to change them).

``contract`` lets LLVM fuse multiply-adds (AVX2 FMA here); we do not enable
reassociation, so results do not depend on the vector width, and kernels
partition work by particle count only, so results do not depend on the
number of threads either.
"""

FASTMATH = {"contract"}
NJIT = dict(cache=True, fastmath=FASTMATH, nogil=True)
NJIT_PARALLEL = dict(NJIT, parallel=True)


def n_chunks(n: int, min_chunk: int = 512, max_chunks: int = 64) -> int:
    """Number of particle chunks for a parallel pass: depends on ``n`` only (not on threads)."""
    return max(1, min(max_chunks, n // min_chunk))
