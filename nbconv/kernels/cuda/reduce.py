"""Block-wide sums shared by the CUDA kernels that reduce one channel (or filter tap) per block."""
from numba import cuda

from .launch import small_blocks

# threads a block; the simulator runs each as a Python thread, so it gets few
REDUCE_THREADS = 32 if small_blocks() else 256


@cuda.jit(device=True)
def block_sum(shared, value):
    """The sum of `value` over the block's REDUCE_THREADS threads (a tree in `shared`, float64 of that many
    entries, in a fixed order), returned to every thread."""
    t = cuda.threadIdx.x
    shared[t] = value
    cuda.syncthreads()
    step = REDUCE_THREADS // 2
    while step > 0:
        if t < step:
            shared[t] += shared[t + step]
        cuda.syncthreads()
        step //= 2
    total = shared[0]
    cuda.syncthreads()  # every thread has read the total before the array is reused
    return total
