"""A caching pool for the CUDA backend's output arrays, so that a steady training step allocates nothing.

Every step of a training loop asks for the same arrays again: activations, gradients, the loss's buffers.
Each request through Numba is a cuMemAlloc, and each free a deferred cuMemFree that, once enough are
pending, synchronises the device. The pool keeps one block per array it ever handed out, keyed by element
type and element count, and hands a block out again once nothing uses its memory any more: the arrays it
returned and every view made of them (reshapes, slices, flat views, arrays of other libraries viewing it
through __cuda_array_interface__) are gone. So an array is never handed out while any of them lives, and
the semantics are those of fresh allocations; only the memory is recycled, as PyTorch's caching
allocator does.

When is a block unused? Exactly when Numba would have freed it: on a GPU, Numba counts the views of a
block's memory (its `refct`, which every slice and every hand-out raises and their finalisers lower, with
reshapes sharing their parent's pointer object); under the simulator, views are numpy views whose `base`
is the block, so Python's reference count of the block tells. Reuse is safe on the one stream nbconv
launches on: a kernel writing a recycled block is queued after every kernel that used it before.

Blocks are kept until `release()` (or a failed allocation, which releases the unused ones and retries);
memory stays at the peak of what was alive at once, plus one block per other size seen (e.g. a smaller
last batch). Thread-safe: one lock around the search and the hand-out. `NBCONV_DEVICE_POOL=0` turns it off.
"""
import math
import os
import sys
import threading

import numpy as np

ENV_VARIABLE = "NBCONV_DEVICE_POOL"


def enabled():
    return os.environ.get(ENV_VARIABLE, "1") != "0"


class DevicePool:
    """Blocks of device memory by (dtype, element count), handed out again when nothing uses them."""

    def __init__(self, allocate=None, simulated=None):
        from . import backend
        self._simulated = backend.simulated() if simulated is None else simulated
        self._allocate = allocate or _numba_allocate
        self._blocks = {}  # (dtype, size) -> [block, ...]
        self._lock = threading.Lock()
        self.allocations = 0  # blocks allocated (cache misses), for the benchmarks
        self.reuses = 0
        self.usable = None  # whether the liveness check works here (checked on the first block)
        probe = [object()]
        self._free_references = self._references(probe[0])  # a block held by the pool alone

    def _references(self, block):
        return sys.getrefcount(block)

    def _unused(self, block):
        if self._simulated:  # numpy views keep their base, the block's own numpy array, referenced
            return self._references(block._ary) <= self._free_references
        return block.gpu_data._mem.refct <= 1  # the block's own pointer; each hand-out and slice adds one

    def empty(self, shape, dtype):
        """An uninitialised C-contiguous device array of `shape` and `dtype`, from an unused block when one
        of that element type and count exists."""
        dtype = np.dtype(dtype)
        shape = tuple(map(int, shape))
        size = math.prod(shape)
        key = (dtype, size)
        if size == 0 and not self._simulated:  # Numba puts no memory behind an empty array: nothing to pool
            return self._allocate(0, dtype).reshape(shape)
        if self.usable is None:
            self._check_liveness(dtype)
        if not self.usable:  # another Numba's internals: plain allocations, never a wrong reuse
            self.allocations += 1
            return self._allocate(size, dtype).reshape(shape)
        with self._lock:
            blocks = self._blocks.get(key)
            if blocks is None:
                blocks = self._blocks[key] = []
            for block in blocks:
                if self._unused(block):
                    self.reuses += 1
                    return self._hand_out(block, size, shape)
            block = self._allocate_block(size, dtype)
            blocks.append(block)
            self.allocations += 1
            return self._hand_out(block, size, shape)

    def _check_liveness(self, dtype):
        """Whether this Numba's arrays show their views as the pool expects: a block reads unused alone, used
        while a hand-out (or a reshape of it) lives, unused again after."""
        with self._lock:
            if self.usable is not None:
                return
            try:
                block = self._allocate(4, dtype)
                alone = self._unused(block)
                handed = self._hand_out(block, 4, (2, 2))
                view = handed.reshape(4)
                del handed
                while_viewed = self._unused(block)
                del view
                self.usable = alone and not while_viewed and self._unused(block)
            except Exception:  # noqa: BLE001 - any surprise means: do not pool
                self.usable = False
            if not self.usable:
                import warnings
                warnings.warn("nbconv's device pool cannot tell when arrays die with this Numba; allocating "
                              "every array afresh", RuntimeWarning, stacklevel=3)

    def _hand_out(self, block, size, shape):
        # a slice, not the block itself: on a GPU it takes its own reference to the memory (refct), which
        # every reshape or view of the returned array keeps alive; under the simulator a numpy view of it
        if self._simulated:
            return type(block)(block._ary[:size].reshape(shape))
        # the view a slice block[0:size] would take, shaped directly: one device-array construction instead
        # of a slice and a reshape (each costs microseconds of Python a launch)
        itemsize = block.dtype.itemsize
        strides = _c_strides(shape, itemsize)
        return type(block)(shape, strides, block.dtype, gpu_data=block.gpu_data.view(0, size * itemsize))

    def _allocate_block(self, size, dtype):
        try:
            return self._allocate(max(size, 1), dtype)
        except Exception as error:
            if not _out_of_memory(error):
                raise
            self._release_unused()  # give the cached blocks back and try once more
            return self._allocate(max(size, 1), dtype)

    def _release_unused(self):
        for key, blocks in list(self._blocks.items()):
            kept = [block for block in blocks if not self._unused(block)]
            if kept:
                self._blocks[key] = kept
            else:
                del self._blocks[key]

    def release(self):
        """Drop every cached block nothing uses (arrays still alive keep theirs)."""
        with self._lock:
            self._release_unused()

    def cached_bytes(self):
        with self._lock:
            return sum(max(size, 1) * dtype.itemsize * len(blocks) for (dtype, size), blocks in self._blocks.items())


def _c_strides(shape, itemsize):
    strides = []
    step = itemsize
    for extent in reversed(shape):
        strides.append(step)
        step *= max(extent, 1)
    return tuple(reversed(strides))


def _numba_allocate(size, dtype):
    from numba import cuda
    return cuda.device_array(size, dtype)


def _out_of_memory(error):
    return "OUT_OF_MEMORY" in str(error) or isinstance(error, MemoryError)


_pool = None
_pool_lock = threading.Lock()


def pool():
    """The process's pool for the CUDA backend (made on first use)."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = DevicePool()
    return _pool


def release():
    """Give the pool's unused blocks back to the device."""
    if _pool is not None:
        _pool.release()
