"""Reusable device buffers for the CUDA launchers, so that repeated calls never allocate.

Like nbconv.kernels.cpu.workspace: each named buffer grows to the largest size asked for and is handed
out as a view of the requested shape; a launcher must not hold a view across calls.
"""
import numpy as np

_buffers = {}


def device_scratch(name, shape, dtype):
    """A C-contiguous device array of `shape` and `dtype`, uninitialised, backed by the buffer `name`."""
    from numba import cuda
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64))
    key = (name, dtype)
    buffer = _buffers.get(key)
    if buffer is None or buffer.size < size:
        buffer = cuda.device_array(max(size, 1), dtype)
        _buffers[key] = buffer
    return buffer[:size].reshape(shape)


def release():
    """Free all device scratch buffers."""
    _buffers.clear()
