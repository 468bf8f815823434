"""Reusable scratch buffers for the CPU kernels, so hot loops never allocate.

Each named buffer grows to the largest size asked for and is handed out as a view of the requested
shape. Buffers with different names never alias; a kernel must not hold a view across calls.
"""
import numpy as np

_buffers = {}


def scratch(name, shape, dtype):
    """A C-contiguous array of `shape` and `dtype`, uninitialised, backed by the buffer `name`."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64))
    key = (name, dtype)
    buffer = _buffers.get(key)
    if buffer is None or buffer.size < size:
        buffer = np.empty(max(size, 1), dtype)
        _buffers[key] = buffer
    return buffer[:size].reshape(shape)


def release():
    """Free all scratch buffers."""
    _buffers.clear()
