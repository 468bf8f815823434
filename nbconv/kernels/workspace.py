"""Reusable scratch buffers for the kernels' launchers, so that repeated calls never allocate.

Each named buffer grows to the largest size asked for and is handed out as a view of the requested
shape. Buffers with different names never alias; a kernel must not hold a view across calls. `generation`
changes whenever a buffer is replaced (grown or released): views taken at the same generation are still of
the current buffers, so a caller may keep them until it changes.
"""
import math

import numpy as np


class Scratch:
    """Named, growing buffers made by `allocate(size, dtype)` (numpy's or a device's)."""

    def __init__(self, allocate):
        self._allocate = allocate
        self._buffers = {}
        self.generation = 0

    def __call__(self, name, shape, dtype):
        """A C-contiguous array of `shape` and `dtype`, uninitialised, backed by the buffer `name`."""
        dtype = np.dtype(dtype)
        size = math.prod(shape)  # math.prod: numpy's reduction costs more than the rest of this call
        key = (name, dtype)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.size < size:
            buffer = self._allocate(max(size, 1), dtype)
            self._buffers[key] = buffer
            self.generation += 1
        return buffer[:size].reshape(shape)

    def release(self):
        """Free all buffers."""
        self._buffers.clear()
        self.generation += 1
