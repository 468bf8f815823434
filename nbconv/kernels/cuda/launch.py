"""Grid/block choice shared by the CUDA launchers."""
import os

import numba

THREADS_PER_BLOCK = 256
GPU_BLOCKS_VARIABLE = "NBCONV_CUDASIM_GPU_BLOCKS"


def grid_for(count, threads=THREADS_PER_BLOCK):
    """(blocks, threads) covering `count` work items with one thread each."""
    return (max(1, (count + threads - 1) // threads), threads)


def small_blocks():
    """Whether launchers should use simulator-sized blocks: under Numba's simulator, which runs each thread
    as a Python thread, unless NBCONV_CUDASIM_GPU_BLOCKS=1 asks for the blocks a GPU gets (as the launch
    recorder of nbconv.cuda_launches does, so that it records the GPU's launch configurations)."""
    return bool(numba.config.ENABLE_CUDASIM) and os.environ.get(GPU_BLOCKS_VARIABLE) != "1"
