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


def chunk_bounds(n: int):
    """Chunk boundaries ``(n_chunks(n) + 1,)`` int64 over ``n`` particles, as the kernels take them."""
    import numpy as np

    return np.linspace(0, n, n_chunks(n) + 1).round().astype(np.int64)


class serial_if_small:
    """Context manager: run numba parallel regions on one thread when ``n < threshold``.

    Waking the thread pool costs tens of microseconds on an idle machine and
    milliseconds on a loaded one, which dominates kernels over a few hundred
    particles; ``numba.set_num_threads`` is thread-local and cheap.
    """

    def __init__(self, n: int, threshold: int):
        self.serial = n < threshold

    def __enter__(self):
        if self.serial:
            import numba

            self._old = numba.get_num_threads()
            if self._old != 1:
                numba.set_num_threads(1)
            else:
                self.serial = False
        return self

    def __exit__(self, *exc):
        if self.serial:
            import numba

            numba.set_num_threads(self._old)
        return False
