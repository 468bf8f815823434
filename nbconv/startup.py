"""What a process that runs only nbconv's kernels (the command line app) can leave out at start.

Numba initialises its typing registries on the first kernel it compiles or loads from its cache, and one of
them (numba.np.arraymath) imports SciPy's BLAS bindings, scipy.linalg, to learn whether np.dot may be used
inside @njit code: about 0.3 s of a LeNet-5 run's ~0.7 s start. nbconv's kernels never use np.dot or
np.linalg (their products go through kernels/cpu/blas.py, numpy's own OpenBLAS), so the app lets that import
fail. The only effect is that @njit code compiled later in the same process cannot call np.dot; nbconv as a
library (import nbconv) does not do this, so a user's own Numba code keeps SciPy's BLAS.
"""
import sys


def skip_numba_scipy_blas():
    """Initialise Numba's array-math registry without importing scipy.linalg. Returns True when it did so,
    False when that registry was already loaded (then nothing changes)."""
    if "numba.np.arraymath" in sys.modules:
        return False
    blocked = "scipy.linalg" not in sys.modules
    if blocked:
        sys.modules["scipy.linalg"] = None  # `import scipy.linalg...` raises ImportError while this is set
    try:
        import numba.np.arraymath  # noqa: F401  (caches "no BLAS for np.dot" for this process)
    finally:
        if blocked and sys.modules.get("scipy.linalg", 0) is None:
            del sys.modules["scipy.linalg"]
    return blocked
