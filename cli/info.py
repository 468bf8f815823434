"""`nbconv info`: versions, threading, CUDA availability and the JIT cache location."""
import os
import platform

import click


def jit_cache_location():
    """Where Numba writes the compiled kernels' cache for this installation."""
    configured = os.environ.get("NUMBA_CACHE_DIR")
    if configured:
        return f"{configured} (from NUMBA_CACHE_DIR)"
    import nbconv.kernels.cpu as cpu
    beside = os.path.join(os.path.dirname(cpu.__file__), "__pycache__")
    if os.access(os.path.dirname(cpu.__file__), os.W_OK):
        return f"{beside} (beside the kernels' source; set NUMBA_CACHE_DIR to move it)"
    return "a per-user cache directory chosen by Numba (the package directory is read-only; set NUMBA_CACHE_DIR)"


def default_device():
    from nbconv import backend
    requested = os.environ.get(backend.ENV_VARIABLE, "auto")
    try:
        return f"{backend.resolve(None)} ({backend.ENV_VARIABLE}={requested})"
    except Exception as error:
        return f"{requested} requested by {backend.ENV_VARIABLE}, but: {error}"


def collect():
    """The facts `nbconv info` prints, as a dict."""
    import llvmlite
    import numba
    import numpy as np

    import nbconv
    from nbconv import backend
    from nbconv.kernels.cpu import blas

    usable, reason = backend.cuda_status()
    try:
        import numba_cuda
        numba_cuda_version = getattr(numba_cuda, "__version__", "installed")
    except ImportError:
        numba_cuda_version = "not installed"
    return {
        "nbconv": nbconv.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "numba-cuda": numba_cuda_version,
        "threading layer": "nbconv.kernels.cpu.threads (Python threads running compiled kernels without the GIL)",
        "threads": f"{numba.get_num_threads()} (of {os.cpu_count()} CPUs; NUMBA_NUM_THREADS or --threads to change)",
        "matrix product": blas.status(),
        "cuda": f"usable: {reason}" if usable else f"not usable: {reason}",
        "default device": default_device(),
        "jit cache": jit_cache_location(),
        "mpi": mpi_status(),
    }


def mpi_status():
    """Which MPI library mpi4py runs on and how many processes the launcher started (without starting MPI)."""
    from nbconv import distributed
    library, reason = distributed.mpi_library()
    if library is None:
        return reason
    size = distributed.launched_size()
    processes = (f"{size} processes launched, this is rank {distributed.launched_rank()}" if size > 1 else
                 "1 process (start several with mpiexec -n K)")
    return f"{library}; {processes}"


@click.command()
def info():
    """Show versions, the threading layer, whether CUDA is usable (and why not), and the JIT cache."""
    for key, value in collect().items():
        click.echo(f"{key:>16}: {value}")
