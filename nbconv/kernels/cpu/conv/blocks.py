"""How the CPU convolutions cut their work: blocks of output rows that stay in the cache, and parallel
chunks of tasks, each owning one set of scratch buffers."""
CACHE_BYTES = 1024 * 1024  # a col block's budget: a core's L2 (measured best of 0.25-4 MB on VGG/ResNet layers)
WEIGHT_CHUNKS = 16  # partial weight gradients summed in a fixed order, whatever the thread count
PARTIAL_BYTES = 8 * 1024 * 1024  # ... but fewer (at least 2) when they would take more than this together
CHUNKS_PER_THREAD = 4  # forward and input gradient: enough chunks to even out uneven tasks


def block_rows(depth, row_width, out_h, itemsize):
    """How many of out_h rows, each depth x row_width values, fit the cache budget (at least one)."""
    return max(1, min(out_h, CACHE_BYTES // (depth * row_width * itemsize)))


def max_chunks(pass_, threads, partial_bytes=0):
    """The most parallel chunks a pass cuts its tasks into: for the weight gradient, a number set by the
    shape alone, so the order of its sum does not depend on the thread count: WEIGHT_CHUNKS, or fewer (at
    least 2) when that many partial sums of partial_bytes each would outgrow PARTIAL_BYTES; beyond the cache
    they are written and summed from memory (a 512-channel stride-2 layer, 8 x 256 x 14 x 14: 410 ms with 8
    partials of 4.7 MB, 68 ms with 2, one thread). A few per thread for the other passes."""
    if pass_ == "backward_weight":
        return max(2, min(WEIGHT_CHUNKS, PARTIAL_BYTES // max(1, partial_bytes)))
    return CHUNKS_PER_THREAD * threads

MIN_PART_CHANNELS = 64  # a slice of output channels a task may be cut into keeps at least this many


def channel_parts(tasks, channels, threads):
    """How many slices of its output channels each task is cut into, so that a pass with fewer tasks than
    threads (batch 1 on 7x7 to 14x14 maps: one task) still keeps every thread busy: 1 when there are tasks
    enough, else up to one slice a thread, each of at least MIN_PART_CHANNELS channels. A slice repeats its
    task's unrolling or transform, which costs about 1/(2 x channels) of its products."""
    if tasks >= threads or tasks == 0:  # (an empty batch has no tasks)
        return 1
    return max(1, min(-(-threads // tasks), channels // MIN_PART_CHANNELS))


def balanced_rows(rows, out_h, images, channels, threads):
    """The rows per block to use instead of block_rows' `rows` (which fill the cache budget) for the forward
    pass and the input gradient, whose blocks are independent tasks: the same number of blocks of near-equal
    height (not full blocks and a short last one), and, while there are only a few tasks, enough more blocks
    that every thread gets as many tasks: with 2 threads, 28 rows in blocks of 18 gave one thread 18 rows and
    the other 10 (78% of two threads' speed); 14 and 14 use both. A single task that channel_parts will cut
    into slices of output channels is left whole: a slice repeats only its task's unrolling, while a block of
    fewer rows repeats the packing of every weight in the product. Not for weight gradients: their partial
    sums' order must not depend on the thread count."""
    blocks = -(-out_h // rows)
    tasks = images * blocks
    if tasks < threads and channel_parts(tasks, channels, threads) * tasks >= threads:
        return -(-out_h // blocks)
    if tasks < CHUNKS_PER_THREAD * threads:
        while blocks < out_h and (images * blocks) % threads:
            blocks += 1
    return -(-out_h // blocks)
