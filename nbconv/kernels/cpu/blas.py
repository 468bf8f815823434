"""Matrix products for the CPU kernels through numpy's BLAS, without thread fights.

numpy's OpenBLAS spins its worker threads for a while after each call; Numba's parallel kernels that
run right after then compete with them for the same cores (measured on 2 cores: a LeNet-5 training step
took 103 ms instead of 14 ms). So nbconv's own products run OpenBLAS single-threaded — switched through
OpenBLAS's C API for the duration of the call and restored afterwards, leaving the user's numpy as it
was — and large products are split by rows over a small pool of Python threads (numpy releases the GIL).
"""
import ctypes
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numba
import numpy as np

SPLIT_FLOPS = 1e8  # below this a product is not worth splitting across threads (measured on LeNet-5 layers)
SPLIT_ROWS = 32   # nor when the rows to split are too few
_controls = None
_pool = None


def _find_openblas():
    """(set_num_threads, get_num_threads) of the OpenBLAS numpy loaded, or None where it cannot be found."""
    names = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
             ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
             ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
             ("openblas_set_num_threads", "openblas_get_num_threads"))
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        if not os.path.exists(path):
            continue
        library = ctypes.CDLL(path)
        for set_name, get_name in names:
            if hasattr(library, set_name) and hasattr(library, get_name):
                setter, getter = getattr(library, set_name), getattr(library, get_name)
                setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                return setter, getter
    return None


def controls():
    global _controls
    if _controls is None:
        _controls = _find_openblas() or False
    return _controls


def status():
    """A line for `nbconv info` on how nbconv runs numpy's BLAS."""
    found = controls()
    if not found:
        return "numpy's BLAS (thread count not controllable: not OpenBLAS, or not found)"
    return f"numpy's OpenBLAS, single-threaded inside nbconv's kernels (numpy's own setting: {found[1]()} threads)"


@contextmanager
def single_threaded():
    found = controls()
    if not found:
        yield
        return
    setter, getter = found
    before = getter()
    if before != 1:
        setter(1)
    try:
        yield
    finally:
        if before != 1:
            setter(before)


def _executor(workers):
    global _pool
    if _pool is None or _pool._max_workers != workers:
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nbconv-gemm")
    return _pool


def gemm(a, b, out):
    """out = a @ b for 2-D arrays (a and b may be transposed views; out is C-contiguous)."""
    rows = a.shape[0]
    workers = min(numba.get_num_threads(), rows)
    with single_threaded():
        if workers < 2 or rows < SPLIT_ROWS or 2.0 * rows * a.shape[1] * b.shape[1] < SPLIT_FLOPS:
            np.matmul(a, b, out=out)
            return
        bounds = np.linspace(0, rows, workers + 1).astype(int)
        jobs = [_executor(workers).submit(np.matmul, a[lo:hi], b, out=out[lo:hi])
                for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
        for job in jobs:
            job.result()
