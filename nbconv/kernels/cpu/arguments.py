"""Checks of the arrays a public CPU kernel is called with, where a wrong one would not fail on its own: the
kernels that address memory directly (BLAS products through raw pointers, vector loads and stores, positions
scattered into a plane) read a strided view as if it were contiguous and an array of another dtype as if it were
of theirs, and write wherever a wrong shape or position leads. Each check is a ValueError naming the argument,
raised before anything is written; inputs that are merely strided are read through a contiguous copy. Shapes
and dimensions are checked with nbconv.checks' own `shape` and `ndim`."""
import numpy as np

from ...checks import FLOAT_DTYPES


def contiguous(array):
    """The array itself when C-contiguous, else a C-contiguous copy (for arrays the kernel only reads)."""
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


def check_read(dtype, **named):
    """`dtype` is float32 or float64 and every named array read has it."""
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"the arrays must be float32 or float64, got {np.dtype(dtype).name}")
    for name, array in named.items():
        if array.dtype != dtype:
            raise ValueError(f"{name} must be {np.dtype(dtype).name} like the others, got {array.dtype.name}")


def check_written(name, array, shape, dtype):
    """The array the kernel writes is C-contiguous, writeable, of `shape` and of `dtype` (the inputs', or int64
    for positions)."""
    if array.shape != tuple(shape) or array.dtype != dtype or not (array.flags.c_contiguous
                                                                  and array.flags.writeable):
        raise ValueError(f"{name} must be a writeable C-contiguous {np.dtype(dtype).name} array of shape "
                         f"{tuple(shape)}, got {array.dtype.name} of shape {array.shape}"
                         f"{'' if array.flags.c_contiguous else ', not C-contiguous'}"
                         f"{'' if array.flags.writeable else ', read-only'}")

