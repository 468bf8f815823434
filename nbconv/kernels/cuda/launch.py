"""Grid/block choice shared by the CUDA launchers."""
THREADS_PER_BLOCK = 256


def grid_for(count, threads=THREADS_PER_BLOCK):
    """(blocks, threads) covering `count` work items with one thread each."""
    return (max(1, (count + threads - 1) // threads), threads)
