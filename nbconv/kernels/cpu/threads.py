"""The CPU kernels' parallelism: serial compiled span kernels, run on slices of their outer loop by Python threads.

A parallel kernel is two parts: a serial `@njit(nogil=True)` kernel `NAME_span(part, parts, ...)` that runs
the part-th of `parts` near-equal contiguous slices of its outer loop (shared.chunk_bounds: the static
schedule a `prange` had), and a Python function `NAME(...)`, with the kernel's public name and parameters,
that calls `parallel_parts(NAME_span, thread_count(work), ...)`. parallel_parts runs part 0 on the calling
thread and the others on a persistent pool of worker threads, waits for all of them, and re-raises the
first exception any part raised. The span kernels release the GIL, so the parts run at once on different
cores. The thread count is `numba.get_num_threads()`, which `--threads` and NUMBA_NUM_THREADS set.

Why not `@njit(parallel=True)`: Numba lowers every `prange` loop into four LLVM modules, each optimised and
compiled on its own, about 1-1.5 s of compiling per parallel kernel whatever its loop holds, against
0.1-0.3 s for the same loop serial, and loading one from the cache costs more too (benchmarks/NOTES.md,
"Serial span kernels on Python threads instead of prange"). The span kernels compile with
error_model="numpy", as Numba compiles a prange loop's body.

Calls from several Python threads at once are safe here: each call waits only for its own parts, and the
calling thread always runs one part itself, so a busy pool delays a call but cannot deadlock it. (The
public kernels still run one at a time, under nbconv.kernels.serial.LAUNCH_LOCK, because the convolutions
share scratch buffers.)
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

# Below this much work (the caller's measure: elements for element-wise and per-plane kernels) a call runs on
# the calling thread alone. Handing a part to a worker and waiting for it costs 45-70 us on the loaded 2-core
# machine (benchmarks/NOTES.md; less on a quiet one); a ReLU over 128 K float32 values takes about 20 us on
# one core, so below that a second thread can hardly pay for its hand-off.
MIN_PARALLEL_WORK = 1 << 17

_pool = None
_pool_lock = threading.Lock()


def _workers():
    """The process's kernel worker threads, started on first use: one fewer than Numba's largest thread count
    (the calling thread runs a part itself)."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=max(1, numba.config.NUMBA_NUM_THREADS - 1),
                                           thread_name_prefix="nbconv-kernel")
    return _pool


def _forget_workers():
    """In a forked child the workers are gone: start new ones on first use."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def thread_count(work):
    """How many parts a call of `work` (see MIN_PARALLEL_WORK) is cut into: 1 below MIN_PARALLEL_WORK, else
    numba.get_num_threads()."""
    return 1 if work < MIN_PARALLEL_WORK else numba.get_num_threads()


def parallel_parts(span_kernel, parts, *args):
    """span_kernel(part, parts, *args) for every part in range(parts), at once: part 0 on the calling thread,
    the others on the worker threads. Returns when all are done; an exception from any part is raised here
    (the first part's before the workers')."""
    if parts <= 1:
        span_kernel(0, 1, *args)
        return
    pool = _workers()
    futures = [pool.submit(span_kernel, part, parts, *args) for part in range(1, parts)]
    try:
        span_kernel(0, parts, *args)
    finally:
        errors = [future.exception() for future in futures]  # waits for every part, even after an error
    for error in errors:
        if error is not None:
            raise error
