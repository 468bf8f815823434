"""Backend selection (`cpu`, `cuda`, `auto`), array allocation and host/device transfer.

numpy arrays live on the CPU backend; Numba device arrays (or anything exposing
`__cuda_array_interface__`) live on the CUDA backend. `kernels(backend)` returns the module of
kernels for that backend; both modules share one contract (see nbconv.kernels).
"""
import os
import sys
from functools import lru_cache

import numpy as np

BACKENDS = ("cpu", "cuda", "auto")
ENV_VARIABLE = "NBCONV_DEVICE"


class CudaUnavailableError(RuntimeError):
    """Raised when the CUDA backend is asked for but cannot run here."""


@lru_cache(maxsize=1)
def cuda_status():
    """(usable, reason): whether the CUDA backend can run, and if not, why."""
    try:
        from numba import cuda
    except Exception as error:  # pragma: no cover - numba-cuda is a declared dependency
        return False, f"numba-cuda is not importable ({error}); install it with `pip install numba-cuda`"
    if simulated():
        return True, "Numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1): correct but very slow"
    try:
        if not cuda.is_available():
            reason = "no usable CUDA driver or device"
            try:
                cuda.detect()
            except Exception as error:
                reason = " ".join(str(error).split())
            return False, reason
        device = cuda.get_current_device()
        name = device.name.decode() if isinstance(device.name, bytes) else device.name
        return True, f"{name} (compute capability {device.compute_capability[0]}.{device.compute_capability[1]})"
    except Exception as error:
        return False, " ".join(str(error).split())


@lru_cache(maxsize=1)
def _driver_library_present():
    """Whether an NVIDIA driver library (libcuda / nvcuda) can be found: a GPU cannot be usable without one."""
    if sys.platform.startswith("linux") and not os.path.exists("/usr/lib/wsl"):
        return os.path.exists("/proc/driver/nvidia")  # present whenever the NVIDIA kernel driver is loaded
    import ctypes.util
    return any(ctypes.util.find_library(name) for name in ("cuda", "nvcuda"))


def simulated():
    """True when Numba's CUDA simulator stands in for a GPU: Numba's own setting, read from
    NUMBA_ENABLE_CUDASIM when numba was first imported (a later change to the variable does not switch it)."""
    import numba
    return bool(numba.config.ENABLE_CUDASIM)


def resolve(device=None):
    """Turn 'cpu' / 'cuda' / 'auto' / None (read NBCONV_DEVICE, default auto) into 'cpu' or 'cuda'."""
    if device is None:
        device = os.environ.get(ENV_VARIABLE, "auto")
    device = str(device).lower()
    if device not in BACKENDS:
        raise ValueError(f"device must be one of {', '.join(BACKENDS)}, got {device!r}")
    if device == "auto":
        # the simulator is usable on request, but far too slow to be picked automatically; without a
        # driver library there is no GPU, which we can tell without importing numba.cuda (0.5 s)
        if simulated() or not _driver_library_present():
            return "cpu"
        return "cuda" if cuda_status()[0] else "cpu"
    if device == "cuda":
        usable, reason = cuda_status()
        if not usable:
            raise CudaUnavailableError(
                f"the CUDA backend is not usable here: {reason}. "
                f"Use device='cpu' (or --device cpu, or {ENV_VARIABLE}=cpu), or 'auto' to fall back automatically.")
    return device


_cpu_kernels = None
_cuda_kernels = None


def kernels(backend):
    """The kernels for 'cpu' or 'cuda': the module's public functions, one call at a time across Python
    threads (see nbconv.kernels.serial)."""
    global _cpu_kernels, _cuda_kernels
    if backend == "cpu":
        if _cpu_kernels is None:  # imported on first use (it compiles or loads kernels), then kept
            from .kernels.cpu import unchecked  # the callers here build their arrays: no per-call checks
            from .kernels.serial import Serialized
            _cpu_kernels = Serialized(unchecked)
        return _cpu_kernels
    if backend == "cuda":
        if _cuda_kernels is None:  # checked usable once (every launch comes through here), then kept
            resolve("cuda")
            from .kernels.cuda import unchecked  # the callers here build their arrays: no per-call checks
            from .kernels.serial import Serialized
            _cuda_kernels = Serialized(unchecked)
        return _cuda_kernels
    raise ValueError(f"backend must be 'cpu' or 'cuda', got {backend!r}")


_DLPACK_CPU, _DLPACK_CUDA, _DLPACK_CUDA_HOST, _DLPACK_CUDA_MANAGED = 1, 2, 3, 13  # DLPack device types


def _dlpack_device_type(array):
    """The DLPack device type `array` reports (None when it does not speak DLPack)."""
    report = getattr(array, "__dlpack_device__", None)
    if report is None or not hasattr(array, "__dlpack__"):
        return None
    try:
        return int(report()[0])
    except Exception:  # a broken or exotic exporter: not usable through DLPack
        return None


def is_device_array(array):
    """True for Numba device arrays, objects with __cuda_array_interface__ (PyTorch CUDA tensors, CuPy
    arrays) and DLPack exporters whose memory lives on a CUDA device."""
    if isinstance(array, np.ndarray):
        return False
    if hasattr(array, "__cuda_array_interface__"):
        return True
    if type(array).__name__ == "FakeCUDAArray":  # the simulator's device array
        return True
    return _dlpack_device_type(array) in (_DLPACK_CUDA, _DLPACK_CUDA_MANAGED)


def as_array(value, name="array"):
    """`value` as a numpy array or a Numba device array, viewing its memory (never copying).

    The one place where arrays from other libraries come in:
    - numpy arrays and Numba device arrays are returned as they are;
    - objects with __cuda_array_interface__ (PyTorch CUDA tensors, CuPy arrays) become Numba device arrays
      over the same memory; if the exporter names a stream, Numba synchronises it first (its
      NUMBA_CUDA_ARRAY_INTERFACE_SYNC setting, on by default), so work queued on it is finished;
    - DLPack exporters on a CUDA device likewise (read through cuda.core's StridedMemoryView), and on
      the CPU (PyTorch CPU tensors, JAX/TensorFlow host arrays) numpy views via np.from_dlpack;
    - anything with the buffer protocol (array.array, memoryview, bytes-like) a numpy view via np.asarray.
    Anything else raises TypeError naming `name`, and so does a PyTorch tensor with its negative bit set, whose
    memory holds the values' negatives.
    """
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "copy_to_host") and hasattr(value, "is_c_contiguous"):
        return value  # a Numba device array (real or simulated)
    is_negated = getattr(value, "is_neg", None)
    if callable(is_negated) and is_negated():  # PyTorch exports such a tensor's memory as if it held the values
        raise TypeError(f"{name} is a PyTorch tensor with its negative bit set (a lazy negation, such as "
                        f"z.conj().imag gives), which DLPack and __cuda_array_interface__ do not carry: pass "
                        f"{name}.resolve_neg()")
    if hasattr(value, "__cuda_array_interface__") or type(value).__name__ == "FakeCUDAArray":
        return as_device_array(value)
    kind = _dlpack_device_type(value)
    if kind in (_DLPACK_CUDA, _DLPACK_CUDA_MANAGED):
        return _device_array_from_dlpack(value, name)
    if kind in (_DLPACK_CPU, _DLPACK_CUDA_HOST):
        try:
            return np.from_dlpack(value)
        except Exception as error:
            hint = " (a PyTorch tensor that requires grad needs .detach() first)" if \
                getattr(value, "requires_grad", False) else ""
            raise TypeError(f"{name} could not be viewed as a numpy array through DLPack: {error}{hint}") from error
    if kind is None:
        try:
            memoryview(value)
        except TypeError:
            pass
        else:
            return np.asarray(value)
    raise TypeError(f"{name} must be a numpy array or a CUDA device array (or an array exposing "
                    f"__cuda_array_interface__, DLPack or the buffer protocol), got {type(value).__name__}")


class _InterfaceOf:
    """__cuda_array_interface__ for a DLPack export read through cuda.core, keeping the export alive."""

    def __init__(self, view):
        self.view = view
        itemsize = np.dtype(view.dtype).itemsize
        strides = None if view.strides is None else tuple(stride * itemsize for stride in view.strides)
        self.__cuda_array_interface__ = {"shape": tuple(view.shape), "strides": strides,
                                         "typestr": np.dtype(view.dtype).str, "data": (int(view.ptr), False),
                                         "version": 3, "stream": None}


def _device_array_from_dlpack(value, name):
    from cuda.core.utils import StridedMemoryView
    from numba import cuda
    try:
        view = StridedMemoryView.from_dlpack(value, stream_ptr=-1)  # -1: no stream ordering is asked
    except Exception as error:
        raise TypeError(f"{name} could not be viewed as a CUDA device array through DLPack: {error}") from error
    return cuda.as_cuda_array(_InterfaceOf(view))


def backend_of(array):
    return "cuda" if is_device_array(array) else "cpu"


def as_device_array(array):
    """A Numba device array viewing `array` (which exposes __cuda_array_interface__)."""
    if hasattr(array, "copy_to_host") and hasattr(array, "is_c_contiguous"):
        return array  # already a Numba device array (real or simulated)
    if simulated():  # the simulator's device memory is host memory: view it as numpy does
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
        return FakeCUDAArray(np.asarray(_HostInterface(array)))
    from numba import cuda
    return cuda.as_cuda_array(array)


class _HostInterface:
    """__array_interface__ over the memory an object's __cuda_array_interface__ describes (the simulator's
    device memory lives on the host); keeps the object alive."""

    def __init__(self, owner):
        interface = owner.__cuda_array_interface__
        self.owner = owner
        self.__array_interface__ = {key: interface[key] for key in ("shape", "typestr", "data", "strides")
                                    if key in interface} | {"version": 3}


def empty(shape, dtype, backend):
    """An uninitialised array; on the CUDA backend from the device pool (nbconv.device_pool), which
    recycles the memory of arrays nothing uses any more."""
    if backend == "cpu":
        return np.empty(shape, dtype=dtype)
    from . import device_pool
    if device_pool.enabled():
        return device_pool.pool().empty(shape, dtype)
    from numba import cuda
    return cuda.device_array(shape, dtype=dtype)


def zeros(shape, dtype, backend):
    if backend == "cpu":
        return np.zeros(shape, dtype=dtype)
    return to_device(np.zeros(shape, dtype=dtype))


def to_device(array):
    """Copy a host array to the GPU (device arrays are returned as they are)."""
    if is_device_array(array):
        return array
    from numba import cuda
    return cuda.to_device(np.ascontiguousarray(array))


def to_host(array):
    """A numpy array holding `array`'s values (numpy arrays are returned as they are)."""
    if isinstance(array, np.ndarray):
        return array
    if is_device_array(array):
        return as_array(array).copy_to_host()
    return np.asarray(as_array(array))


def transfer(array, backend):
    """`array` on the given backend ('cpu' or 'cuda'; anything else is a ValueError, not the host)."""
    if backend == "cuda":
        return to_device(array)
    if backend != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda' (nbconv.backend.resolve turns 'auto' into one), "
                         f"got {backend!r}")
    return to_host(array)


def contiguous(array):
    """A C-contiguous version of `array` on its own backend, copying only when needed; 0-d stays 0-d (which
    np.ascontiguousarray would make 1-d)."""
    device = as_array(array)
    if isinstance(device, np.ndarray):
        return device if device.flags.c_contiguous else np.ascontiguousarray(device)
    if device.is_c_contiguous():
        return device
    return to_device(device.copy_to_host())


def flat(array):
    """A 1-D view of a contiguous array on either backend."""
    return array.reshape(-1) if isinstance(array, np.ndarray) else array.reshape(array.size)
