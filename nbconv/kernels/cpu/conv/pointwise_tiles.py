"""1x1 stride-1 unpadded ungrouped convolutions summed in vector registers, the input read where it lies: the
forward pass and the input gradient, each a product per image

    target[n, r, p] = bias[r] + sum_k matrix[r, k] * source[n, k, p]       (P = H*W positions)

with matrix = weight (D, C) for the forward pass (rows r the output channels, depth k the input channels) and
weight.T for the input gradient (rows the input channels, depth the output channels, no bias).

The matrix is packed per call into panels of ROWS = 8 rows, packed[(panel*depth + k)*8 + m] = matrix[row m of the
panel, k] (a few microseconds: 64 KB for a 256 -> 64 layer): panel i holds rows 8i to 8i + 7, and where the rows
are not a multiple of 8 a last panel holds the last 8 rows (overlapping the one before). A tile sums one panel x
3 wide vectors of positions (48 with AVX-512's 16 float32 lanes) over the whole depth in 24 accumulators: per
depth step 3 vector loads of the source's row k (a channel's positions, contiguous) and 8 broadcasts of
consecutive packed values for 24 fused multiply-adds. BLAS products (the 'pointwise' algorithm) copy the source's
columns into panels first; here the tile reads them in place and prefetches the next tile's while its first panel
sums (the source comes from memory once, then from L2 for the other panels). Positions past the last whole tile
go by one vector at a time; a last partial vector is the task's last WIDE_LANES positions (overlapping the one
before, as the last panel does its rows: the same sums, the same bits, written again). Every output is one sum
in one order (the bias, then depth 0, 1, ...) whoever computes it: the results do not depend on the thread count.

A task is one image, one block of positions (whole tiles but the last) and one slice of the rows (whole panels,
the last slice with the overlapping panel); enough images make one task each, else each image is cut along its
positions or, where the matrix is the larger of the two (deep layers on small maps: ResNet-50's 14x14 1x1
layers), its rows, so that each thread reads only its share of the larger. The threads claim tasks one at a time
(claims.py). After a task's sums, the forward pass applies the epilogue (scale_shift.epilogue_span: scale and
shift, the residual, the activation; the bias is already in) to what the task wrote, while it is in the cache:
with an epilogue, blocks are small enough that a task's output stays within TASK_OUTPUT_BYTES (ResNet-50's
widening layers at batch 1, 64 -> 256 on 56x56 with the residual, ran 0.9x BLAS with a quarter of the image's
3.2 MB a task).

At least ROWS rows and WIDE_LANES positions an image; the plan keeps it to float32 (a wide float64 vector takes
two registers, too many for 24 accumulators).
"""
import numpy as np
from numba import njit

from ..scale_shift import NO_ACTIVATION, epilogue_span, no_epilogue
from ..shared import chunk_bounds, flat_view
from ..threads import num_threads, parallel_parts
from ..vectors import WIDE_LANES, add_products, prefetch, store, wide_broadcast, wide_load
from .claims import claim, claims

ROWS = 8  # rows (output channels of the forward pass) a tile sums at once
TILE = 3 * WIDE_LANES  # positions a tile sums at once (three wide vectors)
TASKS_PER_THREAD = 2  # an image is cut into pieces when there are fewer images than this many a thread
TASK_OUTPUT_BYTES = 256 * 1024  # with an epilogue, a task's output at most this large (it reads it back from L2)


@njit(cache=True, inline="always")
def tile_sums(source, start, depth, positions, packed, panel_at, first_row, bias, target, at, ahead):
    """target[at + m*positions + j] = bias[first_row + m] + sum over k < depth of packed[panel_at + k*ROWS + m] *
    source[start + k*positions + j] for m < ROWS and j < TILE. Prefetches source[start + ahead + k*positions ...]
    for each k when ahead > 0 (the next tile's columns)."""
    a0 = b0 = c0 = wide_broadcast(bias, first_row)
    a1 = b1 = c1 = wide_broadcast(bias, first_row + 1)
    a2 = b2 = c2 = wide_broadcast(bias, first_row + 2)
    a3 = b3 = c3 = wide_broadcast(bias, first_row + 3)
    a4 = b4 = c4 = wide_broadcast(bias, first_row + 4)
    a5 = b5 = c5 = wide_broadcast(bias, first_row + 5)
    a6 = b6 = c6 = wide_broadcast(bias, first_row + 6)
    a7 = b7 = c7 = wide_broadcast(bias, first_row + 7)
    for k in range(depth):
        row = start + k * positions
        if ahead > 0:
            prefetch(source, row + ahead)
            prefetch(source, row + ahead + WIDE_LANES)
            prefetch(source, row + ahead + 2 * WIDE_LANES)
        x0, x1, x2 = wide_load(source, row), wide_load(source, row + WIDE_LANES), \
            wide_load(source, row + 2 * WIDE_LANES)
        w = panel_at + k * ROWS
        m = wide_broadcast(packed, w)
        a0, b0, c0 = add_products(a0, x0, m), add_products(b0, x1, m), add_products(c0, x2, m)
        m = wide_broadcast(packed, w + 1)
        a1, b1, c1 = add_products(a1, x0, m), add_products(b1, x1, m), add_products(c1, x2, m)
        m = wide_broadcast(packed, w + 2)
        a2, b2, c2 = add_products(a2, x0, m), add_products(b2, x1, m), add_products(c2, x2, m)
        m = wide_broadcast(packed, w + 3)
        a3, b3, c3 = add_products(a3, x0, m), add_products(b3, x1, m), add_products(c3, x2, m)
        m = wide_broadcast(packed, w + 4)
        a4, b4, c4 = add_products(a4, x0, m), add_products(b4, x1, m), add_products(c4, x2, m)
        m = wide_broadcast(packed, w + 5)
        a5, b5, c5 = add_products(a5, x0, m), add_products(b5, x1, m), add_products(c5, x2, m)
        m = wide_broadcast(packed, w + 6)
        a6, b6, c6 = add_products(a6, x0, m), add_products(b6, x1, m), add_products(c6, x2, m)
        m = wide_broadcast(packed, w + 7)
        a7, b7, c7 = add_products(a7, x0, m), add_products(b7, x1, m), add_products(c7, x2, m)
    _store_tile(target, at, a0, b0, c0)
    _store_tile(target, at + positions, a1, b1, c1)
    _store_tile(target, at + 2 * positions, a2, b2, c2)
    _store_tile(target, at + 3 * positions, a3, b3, c3)
    _store_tile(target, at + 4 * positions, a4, b4, c4)
    _store_tile(target, at + 5 * positions, a5, b5, c5)
    _store_tile(target, at + 6 * positions, a6, b6, c6)
    _store_tile(target, at + 7 * positions, a7, b7, c7)


@njit(cache=True, inline="always")
def _store_tile(target, at, first, second, third):
    """A tile's row of three wide vectors to target[at:at + TILE]."""
    store(target, at, first)
    store(target, at + WIDE_LANES, second)
    store(target, at + 2 * WIDE_LANES, third)


@njit(cache=True, inline="always")
def vector_sums(source, start, depth, positions, packed, panel_at, first_row, bias, target, at):
    """tile_sums for one wide vector of positions (j < WIDE_LANES): 8 accumulators."""
    a0, a1 = wide_broadcast(bias, first_row), wide_broadcast(bias, first_row + 1)
    a2, a3 = wide_broadcast(bias, first_row + 2), wide_broadcast(bias, first_row + 3)
    a4, a5 = wide_broadcast(bias, first_row + 4), wide_broadcast(bias, first_row + 5)
    a6, a7 = wide_broadcast(bias, first_row + 6), wide_broadcast(bias, first_row + 7)
    for k in range(depth):
        x = wide_load(source, start + k * positions)
        w = panel_at + k * ROWS
        a0, a1 = add_products(a0, x, wide_broadcast(packed, w)), add_products(a1, x, wide_broadcast(packed, w + 1))
        a2, a3 = add_products(a2, x, wide_broadcast(packed, w + 2)), add_products(a3, x, wide_broadcast(packed, w + 3))
        a4, a5 = add_products(a4, x, wide_broadcast(packed, w + 4)), add_products(a5, x, wide_broadcast(packed, w + 5))
        a6, a7 = add_products(a6, x, wide_broadcast(packed, w + 6)), add_products(a7, x, wide_broadcast(packed, w + 7))
    store(target, at, a0)
    store(target, at + positions, a1)
    store(target, at + 2 * positions, a2)
    store(target, at + 3 * positions, a3)
    store(target, at + 4 * positions, a4)
    store(target, at + 5 * positions, a5)
    store(target, at + 6 * positions, a6)
    store(target, at + 7 * positions, a7)


@njit(cache=True, no_cfunc_wrapper=True)
def task_sums(source, start, depth, positions, first_position, last_position, packed, first_panel, last_panel,
              rows, bias, target, at):
    """The sums of one task: the packed panels [first_panel, last_panel) (panel i: rows 8i to 8i + 7; the
    overlapping last panel, index rows // ROWS, rows - 8 to rows - 1) x positions [first_position,
    last_position) of one image, whose source starts at `start` and target at `at` (row 0, position 0); at least
    WIDE_LANES positions. Whole tiles first, each panel in turn (the first prefetching the next tile's columns),
    then vectors, a last partial one overlapping the one before."""
    p = first_position
    while p + TILE <= last_position:
        ahead = TILE if p + 2 * TILE <= last_position else 0
        for panel in range(first_panel, last_panel):
            row = min(panel * ROWS, rows - ROWS)
            tile_sums(source, start + p, depth, positions, packed, panel * depth * ROWS, row, bias, target,
                      at + row * positions + p, ahead if panel == first_panel else 0)
        p += TILE
    while p < last_position:
        p = min(p, last_position - WIDE_LANES)
        for panel in range(first_panel, last_panel):
            row = min(panel * ROWS, rows - ROWS)
            vector_sums(source, start + p, depth, positions, packed, panel * depth * ROWS, row, bias,
                        target, at + row * positions + p)
        p += WIDE_LANES


@njit(cache=True, no_cfunc_wrapper=True)
def pack_matrix(matrix, row_step, depth_step, rows, depth, packed):
    """packed[(panel*depth + k)*ROWS + m] = matrix[r*row_step + k*depth_step] for row r = min(panel*ROWS, rows -
    ROWS) + m of each panel (see the module docstring): -(-rows // ROWS) panels."""
    for panel in range(-(-rows // ROWS)):
        first = min(panel * ROWS, rows - ROWS)
        for k in range(depth):
            for m in range(ROWS):
                packed[(panel * depth + k) * ROWS + m] = matrix[(first + m) * row_step + k * depth_step]


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def pointwise_tiles_span(span_part, span_parts, flat_source, depth, packed, bias, target, flat_target, row_slices,
                         position_blocks, scale, shift, residual, activation, counter):
    """pointwise_tiles, part span_part of span_parts (threads.py): tasks claimed one at a time from counter.
    flat_source: the (N, depth, P) source flat; target (N, rows, P) and flat_target, a flat view of it."""
    N, rows, positions = target.shape
    panels, tiles = rows // ROWS, positions // TILE  # whole ones; the last slice and block take the rest
    tasks = N * row_slices * position_blocks
    while True:
        task = claim(counter)
        if task >= tasks:
            break
        n, piece = task // (row_slices * position_blocks), task % (row_slices * position_blocks)
        first_panel, last_panel = chunk_bounds(piece // position_blocks, row_slices, panels)
        first_row, last_row = first_panel * ROWS, last_panel * ROWS
        if last_panel == panels and rows > last_row:  # the overlapping last panel
            last_panel, last_row = last_panel + 1, rows
        block = piece % position_blocks
        first_tile, last_tile = chunk_bounds(block, position_blocks, tiles)
        first_position = first_tile * TILE
        last_position = positions if block == position_blocks - 1 else last_tile * TILE
        task_sums(flat_source, n * depth * positions, depth, positions, first_position, last_position, packed,
                  first_panel, last_panel, rows, bias, flat_target, n * rows * positions)
        for row in range(first_row, last_row):
            epilogue_span(target, n, row, first_position, last_position, scale, shift, residual, activation)


def pieces(images, rows, depth, positions, threads, epilogue_bytes=None):
    """(row slices, position blocks) an image is cut into: none (1, 1) with TASKS_PER_THREAD images a thread;
    else enough pieces for that many tasks a thread, along the rows where the matrix (rows x depth) is larger
    than an image's source (depth x positions), else along the positions, in whole row panels and whole tiles
    (the last slice and block also take the rows and positions past the last whole ones). With epilogue_bytes
    (an image's output in bytes, given where an epilogue runs), blocks of positions small enough that a task's
    output stays within TASK_OUTPUT_BYTES, for the epilogue to read it from L2."""
    wanted = -(-TASKS_PER_THREAD * threads // max(1, images)) if threads > 1 else 1
    slices, blocks = 1, 1
    if wanted > 1 and rows >= positions:
        slices = min(wanted, rows // ROWS)
    elif wanted > 1:
        blocks = min(wanted, positions // TILE)
    if epilogue_bytes is not None:
        blocks = max(blocks, min(positions // TILE, -(-epilogue_bytes // (slices * TASK_OUTPUT_BYTES))))
    return slices, max(1, blocks)


def pointwise_tiles(source, packed, bias, target, scale, shift, residual, activation):
    """target (N, rows, P) = matrix @ source (N, depth, P) per image, the matrix (rows, depth) packed by
    pack_matrix, + bias (rows,) or (0,) for none, then the epilogue (scale_shift's epilogue_span arguments).
    rows >= ROWS, P >= WIDE_LANES; C-contiguous source and target (a ValueError otherwise)."""
    N, depth, positions = source.shape
    rows = target.shape[1]
    flat_source, flat_target = flat_view(source), flat_view(target)
    if bias.shape[0] == 0:  # the sums start from the bias: zeros (a branch in the tile slows it by ~20%)
        bias = np.zeros(rows, target.dtype)
    threads = num_threads()
    epilogue = scale.shape[0] > 0 or shift.shape[0] > 0 or residual.shape[0] > 0 or activation != NO_ACTIVATION
    row_slices, position_blocks = pieces(N, rows, depth, positions, threads,
                                         rows * positions * target.itemsize if epilogue else None)
    tasks = N * row_slices * position_blocks
    parallel_parts(pointwise_tiles_span, min(threads, tasks), flat_source, depth, packed, bias, target, flat_target,
                   row_slices, position_blocks, scale, shift, residual, activation, claims())


# The plan's surface: applies, buffers and the passes (see plan.py).
def applies(pass_, convolution):
    """The forward pass and input gradient of 1x1, stride-1, unpadded, ungrouped convolutions with at least
    WIDE_LANES positions an image and at least ROWS rows (output channels for the forward pass, input channels
    for the input gradient)."""
    _, C, H, W = convolution.input_shape
    D, _, KH, KW = convolution.weight_shape
    return (pass_ in ("forward", "backward_input") and KH == KW == 1 and convolution.groups == 1
            and convolution.stride_h == convolution.stride_w == 1
            and convolution.padding_h == convolution.padding_w == 0 and H * W >= WIDE_LANES
            and (D if pass_ == "forward" else C) >= ROWS)


def packed_size(rows, depth):
    """The values pack_matrix writes for a (rows, depth) matrix."""
    return -(-rows // ROWS) * ROWS * depth


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape): the packed matrix (the weight for the forward pass, its transpose for the
    input gradient)."""
    D, C = convolution.weight_shape[:2]
    rows, depth = (D, C) if pass_ == "forward" else (C, D)
    return (("packed_matrix", "packed", (packed_size(rows, depth),)),)


def pack_weight(weight):
    """The forward pass's packed weight (D, C, 1, 1), for a caller that keeps it while the weight does not change
    (nn.infer's prepared layers)."""
    D, C = weight.shape[:2]
    packed = np.empty(packed_size(D, C), weight.dtype)
    pack_matrix(flat_view(weight), C, 1, D, C, packed)
    return packed


def run_packed(input, packed, bias, output, buffers, plan, epilogue=None):
    """forward with the weight packed by pack_weight."""
    N, C, H, W = input.shape
    pointwise_tiles(flat_view(input, (N, C, H * W)), packed, bias, flat_view(output, (N, output.shape[1], H * W)),
                    *(epilogue or no_epilogue(output.dtype)))


def forward(input, weight, bias, output, buffers, plan, epilogue=None):
    """output = conv2d(input, weight) + bias, then `epilogue` (scale, shift, residual, activation as
    scale_shift.epilogue_span takes them) when given."""
    D, C = weight.shape[:2]
    packed = buffers["packed_matrix"]
    pack_matrix(flat_view(weight), C, 1, D, C, packed)
    run_packed(input, packed, bias, output, buffers, plan, epilogue)


def backward_input(grad_output, weight, grad_input, buffers, plan):
    """grad_input = weight.T @ grad_output per image."""
    N, C, H, W = grad_input.shape
    D = weight.shape[0]
    packed = buffers["packed_matrix"]
    pack_matrix(flat_view(weight), 1, C, C, D, packed)
    no_bias = np.empty(0, grad_input.dtype)
    pointwise_tiles(flat_view(grad_output, (N, D, H * W)), packed, no_bias, flat_view(grad_input, (N, C, H * W)),
                    *no_epilogue(grad_input.dtype))
