"""How the CPU convolutions cut their work: blocks of output rows that stay in the cache, and parallel
chunks of tasks, each owning one set of scratch buffers."""
CACHE_BYTES = 1024 * 1024  # a col block's budget: a core's L2 (measured best of 0.25-4 MB on VGG/ResNet layers)
WEIGHT_CHUNKS = 16  # partial weight gradients summed in a fixed order, whatever the thread count
CHUNKS_PER_THREAD = 4  # forward and input gradient: enough chunks to even out uneven tasks


def block_rows(depth, row_width, out_h, itemsize):
    """How many of out_h rows, each depth x row_width values, fit the cache budget (at least one)."""
    return max(1, min(out_h, CACHE_BYTES // (depth * row_width * itemsize)))


def max_chunks(pass_, threads):
    """The most parallel chunks a pass cuts its tasks into: a fixed number for the weight gradient, so the
    order of its sum does not depend on the thread count; a few per thread for the other passes."""
    return WEIGHT_CHUNKS if pass_ == "backward_weight" else CHUNKS_PER_THREAD * threads
