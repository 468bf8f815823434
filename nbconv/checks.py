"""Argument validation shared by the public API: every failure names the argument and what was expected."""
import functools
import math
import numbers
import os

import numpy as np

from . import backend

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Hyper-parameters (strides, paddings, sizes) are passed to the compiled kernels as 64-bit ints, and the
# index arithmetic multiplies them: anything past this bound is a mistake, never a layer.
MAX_HYPER_PARAMETER = 2 ** 31 - 1


class _Absent:
    """Marks an array argument that is not part of a call (unlike None, which a user passed)."""

    def __repr__(self):
        return "ABSENT"


ABSENT = _Absent()


def arrays(optional=(), **named):
    """Validate arrays given by name. ABSENT values are skipped, and so are None values of the names in
    `optional` (such as a bias); any other None is a TypeError naming the argument.

    All must be on one backend (not a mix), of one floating dtype (float32 or float64): numpy arrays
    and device arrays, or other libraries' arrays that backend.as_array views without a copy (PyTorch
    tensors, CuPy arrays, DLPack and buffer-protocol exporters). Returns (backend_name, dtype,
    {name: C-contiguous numpy or Numba device array}).
    """
    for name, value in named.items():
        if value is None and name not in optional:
            raise TypeError(f"{name} must be a numpy array or a CUDA device array, got None")
    present = {name: value for name, value in named.items() if value is not None and value is not ABSENT}
    first = next(iter(present.values()), None)
    if type(first) is np.ndarray and first.dtype in FLOAT_DTYPES and all(
            type(value) is np.ndarray and value.dtype == first.dtype and value.flags.c_contiguous
            for value in present.values()):
        return "cpu", first.dtype, present  # the common case, checked in one pass
    if hasattr(first, "is_c_contiguous") and getattr(first, "dtype", None) in FLOAT_DTYPES and all(
            type(value) is type(first) and value.dtype == first.dtype and value.is_c_contiguous()
            for value in present.values()):
        return "cuda", np.dtype(first.dtype), present  # the same for Numba device arrays
    present = {name: backend.as_array(value, name) for name, value in present.items()}  # views, never copies
    backends = {name: "cpu" if isinstance(value, np.ndarray) else "cuda" for name, value in present.items()}
    if len(set(backends.values())) > 1:
        described = ", ".join(f"{name} on {where}" for name, where in backends.items())
        raise TypeError(f"arrays must all be on one backend (all numpy or all CUDA device arrays); got {described}. "
                        "Move them with nbconv.backend.to_device or to_host first")
    dtypes = {}
    for name, value in present.items():
        dtype = np.dtype(value.dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} must have dtype float32 or float64, got {dtype}")
        dtypes[name] = dtype
    if len(set(dtypes.values())) > 1:
        described = ", ".join(f"{name} is {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"arrays must share one dtype; {described}. Cast them with .astype first")
    where = next(iter(backends.values()), "cpu")
    dtype = next(iter(dtypes.values()), np.dtype(np.float32))
    return where, dtype, {name: backend.contiguous(value) for name, value in present.items()}


def ndim(name, array, expected, layout):
    if array.ndim not in expected:
        wanted = " or ".join(f"{n}-D" for n in expected)
        raise ValueError(f"{name} must be {wanted} with layout {layout}, got shape {tuple(array.shape)}")


def shape(name, array, expected):
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(array.shape)}")


def integer(name, value, minimum, maximum=MAX_HYPER_PARAMETER):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def windows(size, kernel, stride, padding, dilation=1, ceil_mode=False):
    """How many windows of `kernel` taps `dilation` apart fit along `size` padded by `padding` on each side at
    `stride`: a convolution's or pooling's output size (ceil_mode: a last partial window too, as long as it starts
    inside the input or its left padding, PyTorch's rule); 0 when not even one fits."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def pair(name, value, minimum, size=2):
    """An int or a tuple of `size` ints, each >= minimum, as a tuple."""
    if isinstance(value, (tuple, list)):
        if len(value) != size:
            raise ValueError(f"{name} must be an int or a tuple of {size} ints, got {value!r}")
        return tuple(integer(name, item, minimum) for item in value)
    return (integer(name, value, minimum),) * size


def spatial(name, shape, first_axis=2):
    """Image inputs need planes with at least one pixel: a window over an empty plane has nothing to take
    (PyTorch refuses them too); empty batches are fine."""
    if any(size == 0 for size in tuple(shape)[first_axis:]):
        raise ValueError(f"{name} must have non-empty spatial dimensions (H, W >= 1), got shape {tuple(shape)}")


def nonempty(name, shape):
    """Filters need every axis non-empty: at least one output channel and one tap along each spatial axis."""
    if any(size == 0 for size in tuple(shape)):
        raise ValueError(f"{name} must not have a zero-size axis, got shape {tuple(shape)}")


def fits_in_memory(what, shape, dtype, culprits):
    """A ValueError naming the hyper-parameters in `culprits` ({name: value}) when an array of `shape`
    could never be allocated here (larger than the machine's physical memory), instead of a MemoryError
    or a page-faulting allocation later."""
    size = 1
    for extent in shape:
        size *= int(extent)
    needed = size * np.dtype(dtype).itemsize
    if needed > physical_memory():
        named = ", ".join(f"{name}={value}" for name, value in culprits.items())
        raise ValueError(f"{named} make {what} of shape {tuple(int(e) for e in shape)} "
                         f"({needed / 2 ** 30:.1f} GiB), more than this machine's memory")


@functools.lru_cache(maxsize=1)
def physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        return 2 ** 40


def int64_array(name, value, where):
    """An int64 array on backend `where` (for indices), else a TypeError naming the argument."""
    if not (isinstance(value, np.ndarray) or backend.is_device_array(value)):
        raise TypeError(f"{name} must be an int64 numpy array or CUDA device array, got {type(value).__name__}")
    if backend.backend_of(value) != where or np.dtype(value.dtype) != np.int64:
        raise TypeError(f"{name} must be an int64 array on the same backend as input ({where}), "
                        f"got {np.dtype(value.dtype)} on {backend.backend_of(value)}")
    return value


def generator(name, value):
    """A numpy random Generator or legacy RandomState, else a TypeError naming the argument."""
    if not isinstance(value, (np.random.Generator, np.random.RandomState)):
        raise TypeError(f"{name} must be a numpy random Generator (np.random.default_rng(seed)) or a "
                        f"RandomState, got {type(value).__name__}")
    return value


def uniform_float32(rng, size):
    """size float32 draws in [0, 1) from a Generator or a RandomState."""
    if isinstance(rng, np.random.Generator):
        return rng.random(size, dtype=np.float32)
    return rng.random_sample(size).astype(np.float32)


def real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def finite_real(name, value):
    """`value` as a finite float (of any sign), else a TypeError or ValueError naming it."""
    value = real(name, value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def finite(name, value, minimum=0.0, above=False, below=None):
    """`value` as a float, else a TypeError or ValueError naming it: finite, >= minimum (> with above=True),
    and < below when given."""
    value = real(name, value)
    if not math.isfinite(value) or value < minimum or (above and value == minimum) or \
            (below is not None and value >= below):
        bound = f"{'>' if above else '>='} {minimum:g}" + ("" if below is None else f" and < {below:g}")
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return value
