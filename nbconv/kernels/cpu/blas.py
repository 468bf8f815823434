"""Matrix products callable from inside @njit kernels, so that every thread of a parallel kernel runs its own.

Numba's np.dot inside @njit needs SciPy, which nbconv does not depend on. Instead, at import this module
registers two symbols with LLVM, `nbconv_sgemm` and `nbconv_dgemm`, with the CBLAS row-major signature
(64-bit integers), and kernels call them through `gemm` below:
- numpy's own OpenBLAS (`scipy_cblas_sgemm64_` and kin) when it can be found in the process, run
  single-threaded while nbconv's kernels use it (`single_threaded`), because the parallelism is Numba's;
- otherwise (another BLAS, or NBCONV_BLAS=numba) a plain compiled fallback, `reference_gemm`, so nbconv
  still runs, only slower.
The symbols are looked up by name when a kernel is compiled or loaded from the JIT cache, so cached kernels
follow whichever implementation this process registered.

Why single-threaded: OpenBLAS's worker threads spin for a while after each call, and Numba's threads
that run right after then fight them for the same cores (a LeNet-5 training step took 103 ms instead of
14 ms on 2 cores). The switch goes through OpenBLAS's C API for the duration of a kernel and is undone
afterwards, leaving the user's numpy as it was. Regions nest: a model's forward and backward pass
(nn.Sequential) enter one around all their layers, and the kernels' own regions inside it then cost a
counter, not two calls into OpenBLAS each (24 kernel regions a LeNet-5 training step).
"""
import ctypes
import os
import threading

import llvmlite.binding as llvm
from numba import carray, cfunc, njit, types

from .fastmath import CONTRACT

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

_INT, _ADDRESS = types.int64, types.intp


def _signature(real, pointer):
    return types.void(types.int32, types.int32, types.int32, _INT, _INT, _INT, real, pointer, _INT, pointer,
                      _INT, real, pointer, _INT)


sgemm_external = types.ExternalFunction("nbconv_sgemm", _signature(types.float32, _ADDRESS))
dgemm_external = types.ExternalFunction("nbconv_dgemm", _signature(types.float64, _ADDRESS))


@njit(cache=True, inline="always")
def address(array, offset):
    """The address of element `offset` (counted in elements) of a C-contiguous array's buffer."""
    return array.ctypes.data + offset * array.itemsize


@njit(cache=True, inline="always")
def gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, itemsize):
    """C = alpha * op(A) @ op(B) + beta * C, row-major: op(A) is m x k, op(B) k x n, C m x n.

    a, b, c are addresses (see `address`), lda/ldb/ldc row strides in elements, itemsize 4 (float32)
    or 8 (float64). With beta == 0, C may hold garbage (even NaN) beforehand.
    """
    if itemsize == 4:
        sgemm_external(ROW_MAJOR, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    else:
        dgemm_external(ROW_MAJOR, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


@njit(cache=True, fastmath=CONTRACT, no_cfunc_wrapper=True)
def reference_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """The fallback product over flat arrays, same meaning as `gemm` (layout is always row-major)."""
    for i in range(m):
        row = c[i * ldc:i * ldc + n]
        if beta == 0:
            row[:] = 0
        elif beta != 1:
            row[:] *= beta
        for p in range(k):
            scale = alpha * (a[p * lda + i] if trans_a == TRANS else a[i * lda + p])
            if trans_b == TRANS:
                for j in range(n):
                    row[j] += scale * b[j * ldb + p]
            else:
                source = b[p * ldb:p * ldb + n]
                for j in range(n):
                    row[j] += scale * source[j]


def _fallback(real):
    """A C-callable wrapper of reference_gemm for one dtype (compiled only when needed)."""
    pointer = types.CPointer(real)

    @cfunc(_signature(real, pointer), cache=True)
    def fallback_gemm(layout, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        rows_a = k if trans_a == TRANS else m
        rows_b = n if trans_b == TRANS else k
        reference_gemm(trans_a, trans_b, m, n, k, alpha, carray(a, max(rows_a * lda, 1)), lda,
                       carray(b, max(rows_b * ldb, 1)), ldb, beta, carray(c, max(m * ldc, 1)), ldc)

    return fallback_gemm


_OPENBLAS_NAMES = (  # (sgemm, dgemm, set_num_threads, get_num_threads), all ILP64 (64-bit integers)
    ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_",
     "scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("cblas_sgemm64_", "cblas_dgemm64_", "openblas_set_num_threads64_", "openblas_get_num_threads64_"),
)


def _loaded_openblas_paths():
    try:
        with open("/proc/self/maps") as maps:
            return sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    except OSError:
        return []


def _find_openblas():
    """(library path, ctypes CDLL, the four names) of the ILP64 OpenBLAS numpy loaded, or None."""
    for path in _loaded_openblas_paths():
        if not os.path.exists(path):
            continue
        library = ctypes.CDLL(path)
        for names in _OPENBLAS_NAMES:
            if all(hasattr(library, name) for name in names):
                return path, library, names
    return None


class _Blas:
    """What this process registered: a description, and OpenBLAS's thread controls when it is OpenBLAS."""

    def __init__(self):
        self.set_threads = self.get_threads = None
        forced = os.environ.get("NBCONV_BLAS", "").lower() == "numba"
        found = None if forced else _find_openblas()
        if found:
            path, library, (sgemm, dgemm, set_threads, get_threads) = found
            for symbol, name in (("nbconv_sgemm", sgemm), ("nbconv_dgemm", dgemm)):
                llvm.add_symbol(symbol, ctypes.cast(getattr(library, name), ctypes.c_void_p).value)
            self.set_threads, self.get_threads = getattr(library, set_threads), getattr(library, get_threads)
            self.set_threads.argtypes, self.set_threads.restype = [ctypes.c_int], None
            self.get_threads.restype = ctypes.c_int
            self.description = f"numpy's OpenBLAS ({os.path.basename(path)}), single-threaded inside nbconv's kernels"
        else:
            self._fallbacks = (_fallback(types.float32), _fallback(types.float64))  # kept alive
            llvm.add_symbol("nbconv_sgemm", self._fallbacks[0].address)
            llvm.add_symbol("nbconv_dgemm", self._fallbacks[1].address)
            why = "NBCONV_BLAS=numba" if forced else "numpy's BLAS is not an ILP64 OpenBLAS nbconv can find"
            self.description = f"nbconv's compiled fallback product ({why}); slower than a BLAS"


BLAS = _Blas()


def status():
    """A line for `nbconv info` on which matrix product the kernels call."""
    if BLAS.get_threads is None:
        return BLAS.description
    return f"{BLAS.description} (numpy's own setting: {BLAS.get_threads()} threads)"


class _SingleThreadedRegion:
    """The process's regions where OpenBLAS runs on one thread, counted across nesting and Python threads: the
    first to enter sets one thread (noting numpy's setting), the last to leave restores numpy's setting; in
    between, entering and leaving only count. The setting is process-wide, as OpenBLAS's own is."""

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._before = 1

    def __enter__(self):
        if BLAS.set_threads is None:
            return self
        with self._lock:
            if self._depth == 0:
                self._before = BLAS.get_threads()
                if self._before != 1:
                    BLAS.set_threads(1)
            self._depth += 1
        return self

    def __exit__(self, *exception):
        if BLAS.set_threads is None:
            return False
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._before != 1:
                BLAS.set_threads(self._before)
        return False


_REGION = _SingleThreadedRegion()


def single_threaded():
    """A context manager: OpenBLAS on one thread for the duration (no-op for the fallback). Nested and
    concurrent regions share one switch: numpy's own setting comes back when the last of them ends."""
    return _REGION

