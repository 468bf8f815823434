"""What a process that runs only nbconv's kernels (the command line app) can leave out at start.

Numba initialises its typing registries on the first kernel it compiles or loads from its cache, and one of
them (numba.np.arraymath) imports SciPy's BLAS bindings, scipy.linalg, to learn whether np.dot may be used
inside @njit code: about 0.3 s of a LeNet-5 run's ~0.7 s start. nbconv's kernels never use np.dot or
np.linalg (their products go through kernels/cpu/blas.py, numpy's own OpenBLAS), so the app lets that import
fail. The only effect is that @njit code compiled later in the same process cannot call np.dot; nbconv as a
library (import nbconv) does not do this, so a user's own Numba code keeps SciPy's BLAS.
"""
import gc
import os
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


# Numba's import reads an optional `.numba_config.yaml` in the working directory, and imports PyYAML for it
# whether or not the file exists (20-80 ms). With no such file there is nothing to read.
NUMBA_CONFIG_FILE = ".numba_config.yaml"


def skip_numba_optional_imports():
    """Import Numba without PyYAML (when the working directory has no .numba_config.yaml) and without
    colorama, and initialise its cffi typing registry without cffi (nbconv's kernels call no cffi functions).
    Like skip_numba_scipy_blas, for the command line app only: the modules stay importable afterwards. Returns
    the names of the modules it kept out.

    colorama: with it, Numba colours the text of every typing error it formats, and its type inference formats
    one for each overload template that does not match a call, thousands per kernel compiled, each wrapping
    the standard streams anew (~1% of a cold start's compiling); without it, Numba's messages are plain."""
    blocked = []
    if "numba" not in sys.modules and not os.path.isfile(NUMBA_CONFIG_FILE):
        blocked.append("yaml")
    if "numba" not in sys.modules:
        blocked.append("colorama")
    if "numba.core.typing.cffi_utils" not in sys.modules:
        blocked.append("cffi")
    blocked = [name for name in blocked if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # `import name` raises ImportError while this is set
    try:
        import numba.core.typing.cffi_utils  # noqa: F401  (imports numba; notes "no cffi" for this process)
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return blocked


def skip_numba_extensions():
    """Tell Numba that its third-party extensions are loaded, without looking for them: on its first compile
    or cache load it reads the metadata of every installed distribution for `numba_extensions` entry points
    (127 distributions here: ~50 ms), and nbconv's kernels use none. For the command line app only. Returns
    False when Numba had already looked (nothing changes)."""
    from numba.core import entrypoints
    if getattr(entrypoints, "_already_initialized", True):
        return False
    entrypoints._already_initialized = True
    return True


def skip_numba_refresh_on_cache_load():
    """Load CPU kernels from Numba's disk cache without first refreshing its typing and lowering registries.

    Before each cache load Numba refreshes the CPU target's registries, which the first time imports and
    installs every module of implementations it has (linear algebra, random generators, typed containers,
    dates, ...: 60 modules): ~0.07 s of a LeNet-5 run's start, where every kernel comes from the cache and
    nothing is typed or lowered. A cache load needs only the runtime (its C functions, which the loaded code calls) and
    the symbols Numba installs when it starts; a compile refreshes the registries itself (Numba's compiler
    does so on every compile), so a kernel compiled later in the process sees them all. For the command line
    app only, like the other skips here; the CUDA target's loads are left as they are. Returns False when
    done before or when Numba's cache does not have the shape this relies on (then nothing changes)."""
    try:
        from numba.core import caching
        from numba.core.registry import cpu_target
        from numba.core.runtime import rtsys
    except ImportError:
        return False
    cache = caching.FunctionCache
    original = cache.load_overload
    if getattr(original, "skips_refresh", False) or not all(
            hasattr(cache, name) for name in ("_guard_against_spurious_io_errors", "_load_overload")):
        return False

    def load_overload(self, sig, target_context):
        if target_context is not cpu_target.target_context:
            return original(self, sig, target_context)
        rtsys.initialize(target_context)  # once a process: what loaded code calls to manage arrays
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    load_overload.skips_refresh = True
    cache.load_overload = load_overload
    return True


# Python's cyclic garbage collector, run during a start, scans again and again the ~180,000 objects that
# importing numpy, Numba and the kernels and loading kernels from Numba's cache create: ~0.2 s of CPU
# (~275 collections) on ResNet-20's warm start, which leaves ~1,000 unreachable objects. Compiling, on the
# other hand, leaves much cyclic garbage (Numba's IR, LLVM modules), so the collector comes back on for it.


_paused = []  # [True] while the collector is off by pause_garbage_collector()


def pause_garbage_collector():
    """Switch Python's cyclic garbage collector off for a process's start (imports nothing, so that it can come
    first); resume_garbage_collector() switches it on again, and so does the first kernel Numba compiles
    (not a cache load) once collect_when_numba_compiles() has been called. Does nothing when the collector
    is already off (somebody else's choice, left alone)."""
    if gc.isenabled() and not _paused:
        gc.disable()
        _paused.append(True)


def garbage_collector_paused():
    """True between pause_garbage_collector() and the collector's coming back on."""
    return bool(_paused)


def resume_garbage_collector():
    """Switch the collector on again if pause_garbage_collector() switched it off (else nothing changes)."""
    if _paused:
        _paused.clear()
        gc.enable()


_compile_listener = []


def collect_when_numba_compiles():
    """From now on, Numba's starting to compile a CPU kernel resumes a paused collector (imports Numba). Once
    per process. (numba-cuda announces its compiles elsewhere: `nbconv train --device cuda` resumes the
    collector itself.)"""
    if _compile_listener:
        return
    from numba.core import event

    class ResumeWhenCompiling(event.Listener):
        def on_start(self, ev):
            resume_garbage_collector()

        def on_end(self, ev):
            pass
    _compile_listener.append(ResumeWhenCompiling())
    event.register("numba:compile", _compile_listener[0])
