"""Compilation flags shared by every numba kernel (one place to change them).

``contract`` lets LLVM fuse multiply-adds (AVX2 FMA here); we do not enable
reassociation, so results do not depend on the vector width, and kernels
partition work by particle count only, so results do not depend on the
number of threads either.

A kernel compiled in this process and the same kernel loaded from numba's
on-disk cache must give the same bits (dask workers load what the client
compiled; a resumed run loads what the first run compiled). numba links a copy
of every helper a kernel calls into the kernel's module and optimizes it again
there; a call that LLVM does not inline goes through a weak symbol, which the
JIT binds to the first definition loaded in the process: the helper's own
library in a process that compiled it, the kernel's copy in one that loaded the
kernel from the cache. Under re-association the second optimization reorders
sums, so the helpers of the pair, sphere and Jacobian kernels are inlined into
their callers (:func:`inline_into_callers`). numba still keeps a parallel
region's body in two copies (the kernel calls it through a function pointer):
the pair kernels' bodies give the same bits in both; the Jacobian's did not, so
it does not re-associate (tests/test_numba_cache.py compares a compiling and a
cache-loading process).
"""

FASTMATH = {"contract"}
NJIT = dict(cache=True, fastmath=FASTMATH, nogil=True)
NJIT_PARALLEL = dict(NJIT, parallel=True)
#: Entries (N x width) below which a token-wise pass (LayerNorm, an MLP activation) runs on one
#: thread: handing rows to a second thread (meanfield._kernels.workers) costs tens of microseconds,
#: a pass over 2^16 entries two or three times that. (It was 2^22 while these passes were numba pranges, whose
#: OpenMP workers spin after the region and took a core from the BLAS product that follows.)
TOKENWISE_SERIAL_BELOW = 1 << 16


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


class compile_clock:
    """Context manager: seconds this thread spends in numba's compiler while it is active.

    A kernel's first call compiles it (seconds to tens of seconds; from numba's
    on-disk cache later, still tens of milliseconds each): the time loop
    subtracts this from its wall clock, so ``/scales/wall_time`` measures the
    computation. Everything numba does under its compiler lock counts:
    compiling, loading from and writing to the cache, and waiting for another
    thread's compilation. Nested compilations (a kernel compiling its helpers)
    count once.

    Attributes
    ----------
    seconds : float
        Time spent so far (read it at any moment, inside or after the block).
    """

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        import threading
        import time

        from numba.core import event

        clock = self
        owner = threading.get_ident()

        class _Listener(event.Listener):
            depth = 0
            start = 0.0

            def on_start(self, ev):
                if threading.get_ident() == owner:
                    if self.depth == 0:
                        self.start = time.perf_counter()
                    self.depth += 1

            def on_end(self, ev):
                if threading.get_ident() == owner and self.depth > 0:
                    self.depth -= 1
                    if self.depth == 0:
                        clock.seconds += time.perf_counter() - self.start

        self._listener = _Listener()
        event.register("numba:compiler_lock", self._listener)
        return self

    def __exit__(self, *exc):
        from numba.core import event

        event.unregister("numba:compiler_lock", self._listener)
        return False


def _wide_vectors_intrinsic():
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def wide_vectors(typingctx):
        """Ask LLVM for 512-bit vectors in the calling function (a no-op at run time).

        LLVM's x86 cost model prefers 256-bit vectors on AVX-512 CPUs (to avoid
        the clock drop of older Xeons); the pairwise kernels are arithmetic-bound,
        and with 512-bit vectors the softmax pass over pairs took 2.9 instead of
        3.5 ns per pair on one thread of this project's AVX-512 Xeon. The function attribute
        ``"prefer-vector-width"="512"`` is per function (numba vectorizes each
        helper when it compiles it, so every helper with a hot loop calls this);
        on CPUs without AVX-512 the widest legal vectors are used as before.
        """

        def codegen(context, builder, sig, args):
            attrs = builder.function.attributes
            # llvmlite validates attribute names against a fixed list; a string
            # attribute is written verbatim into the IR, so add it past the check
            set.add(attrs, '"prefer-vector-width"="512"')
            return context.get_dummy_value()

        return types.none(), codegen

    return wide_vectors


wide_vectors = _wide_vectors_intrinsic()


def _inline_intrinsic():
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def inline_into_callers(typingctx):
        """Have LLVM inline the calling function into every caller (a no-op at run time).

        A helper that stays a call runs as the first copy the process loaded,
        which differs between a compiling and a cache-loading process (see the
        module docstring); inlined, it is part of the kernel's own code, the
        same in both.
        """

        def codegen(context, builder, sig, args):
            builder.function.attributes.add("alwaysinline")
            return context.get_dummy_value()

        return types.none(), codegen

    return inline_into_callers


inline_into_callers = _inline_intrinsic()
