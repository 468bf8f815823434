"""Argument validation shared by the public API: every failure names the argument and what was expected."""
import numbers

import numpy as np

from . import backend

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def arrays(**named):
    """Validate arrays given by name (None values are skipped).

    All must be on one backend (not a mix), of one floating dtype (float32 or float64): numpy arrays
    and device arrays, or other libraries' arrays that backend.as_array views without a copy (PyTorch
    tensors, CuPy arrays, DLPack and buffer-protocol exporters). Returns (backend_name, dtype,
    {name: C-contiguous numpy or Numba device array}).
    """
    present = {name: value for name, value in named.items() if value is not None}
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


def integer(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def pair(name, value, minimum, size=2):
    """An int or a tuple of `size` ints, each >= minimum, as a tuple."""
    if isinstance(value, (tuple, list)):
        if len(value) != size:
            raise ValueError(f"{name} must be an int or a tuple of {size} ints, got {value!r}")
        return tuple(integer(name, item, minimum) for item in value)
    return (integer(name, value, minimum),) * size


def real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)
