"""1x1 convolutions (any stride, unpadded, ungrouped) as products with the weight packed once, for inference:
output[n, d, p] = sum_c weight[d, c] * input[n, c, position p], summed in vector registers (vectors.py).

The weight (D, C) is packed into panels of PANEL = 6 output channels, packed[(g*C + c)*6 + m] =
weight[g*6 + m, c] (zero past D): the order the micro-kernel reads. A caller that keeps it for as long as the
weight does not change (nn.infer's prepared layer, dispatch.conv2d_forward_prepared) packs it once; BLAS
packs the weight matrix again at every call.

A task is one image, one block of its output positions and one slice of the panels. Its input block is
copied once into sub-blocks of 16 positions, source[(s*C + c)*16 + j] = input[n, c, position p0 + 16s + j]
(zero past the block; a stride reads every s-th pixel here, nothing is unrolled). The panels are taken a group
at a time (panel_group: as many as keep one DEPTH of their weights within GROUP_BYTES, from L2), and for each
DEPTH of the C channels and each sub-block, every panel of the group is summed over that sub-block in 12
vector registers: 6 channels x 2 vectors of 8 positions, 2 vector loads and 6 broadcast weights for 12 fused
multiply-adds a channel. The sub-block (16 x DEPTH values) is read from L2 once and from L1 by the group's
other panels, and one call sums the whole row of panels. A last sub-block of 8 positions or fewer uses one
vector (6 registers). After the last DEPTH, a full panel of a full sub-block is finished in the registers
(bias, scale and shift as one multiply-add, the residual, the activation) and stored to the output; partial
sums, a last partial panel and the last sub-block go through a tile (group x 6, block) and are finished from
there. Each output is one sum in one order whatever the group: the results do not depend on it.

Blocks hold at most PACK_BYTES of packed input (at least MIN_POSITIONS positions); with only a few tasks
(batch 1) the panels are cut into one slice a thread instead, so that every thread gets an equal share (a
slice repeats only the copy of its block, 1/D of its work); with CLAIMED_SLICES, into up to TASKS_PER_THREAD
slices a thread. Slices are claimed one at a time (claims.py): a worker that starts late then leaves the
caller only the slices it has not claimed (benchmarks/NOTES.md, section 81; off until measured on a quiet
machine).
"""
import numpy as np
from numba import njit

from ..scale_shift import RELU, RELU6, activated, no_epilogue
from ..shared import chunk_bounds, fill_zero
from ..threads import num_threads, parallel_parts
from ..vectors import LANES, add, add_products, broadcast, load, prefetch, relu, relu6, store, zeros
from .claims import claim, claims

PANEL = 6  # output channels a micro-kernel sums at once
POSITIONS = 2 * LANES  # output positions a micro-kernel sums at once (a sub-block)
DEPTH = 256  # input channels a micro-kernel call sums: its 6 x 256 weights stay in L1 for every sub-block
PACK_BYTES = 512 * 1024  # a block's packed input at most this large (a core's L2) ...
MIN_POSITIONS = 64  # ... but at least this many positions
GROUP_BYTES = 192 * 1024  # the weights (one DEPTH) of the panels summed together over one sub-block, from L2
REGISTER_EPILOGUE = True  # full panels of full sub-blocks finished in registers, not through the tile
TASKS_PER_THREAD = 4  # with fewer tasks than this a thread (and not a multiple of the threads), cut the panels
CLAIMED_SLICES = False  # into slices up to TASKS_PER_THREAD tasks a thread (else one slice a thread), claimed


def _round_up(count, multiple):
    return -(-count // multiple) * multiple


def applies(pass_, convolution):
    """The forward pass of 1x1, unpadded, ungrouped convolutions, any stride."""
    _, _, KH, KW = convolution.weight_shape
    return (pass_ == "forward" and KH == KW == 1 and convolution.groups == 1
            and convolution.padding_h == convolution.padding_w == 0)


def blocking(convolution, itemsize, threads):
    """(positions a block, blocks an image, panel slices a block) for this convolution and thread count."""
    N, C = convolution.input_shape[:2]
    D = convolution.weight_shape[0]
    _, _, OH, OW = convolution.output_shape
    positions = OH * OW
    most = max(MIN_POSITIONS, PACK_BYTES // (max(1, C) * itemsize) // POSITIONS * POSITIONS)
    blocks = max(1, -(-positions // most))
    width = _round_up(max(1, -(-positions // blocks)), LANES)
    blocks = max(1, -(-positions // width))
    return width, blocks, panel_slices(N * blocks, -(-D // PANEL), threads, TASKS_PER_THREAD, CLAIMED_SLICES)


def panel_slices(tasks, panels, threads, tasks_per_thread, claimed_slices):
    """Slices a block's panels are cut into: 1 with enough tasks (tasks_per_thread a thread, or a multiple of
    the threads); else one slice a thread, or with claimed_slices up to tasks_per_thread a thread; never more
    than the panels."""
    if not 0 < tasks < tasks_per_thread * threads:
        return 1
    if claimed_slices and threads > 1:
        return max(1, min(panels, -(-tasks_per_thread * threads // tasks)))
    return max(1, min(panels, threads)) if tasks % threads else 1


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer, one of each per parallel chunk: the packed input block
    (chunks, sub-blocks x C x 16) and the tile of sums (chunks, 6 x sub-blocks x 16)."""
    N, C = convolution.input_shape[:2]
    width, blocks, slices = blocking(convolution, itemsize, threads)
    padded = _round_up(width, POSITIONS)
    chunks = max(1, min(N * blocks * slices, threads))
    group = panel_group(C, convolution.weight_shape[0], itemsize)
    return (("packed_input", "col", (chunks, padded * C)),
            ("tile", "packed_tile", (chunks, group * PANEL * padded)))


def panel_group(C, D, itemsize):
    """Panels summed together, sub-block by sub-block: as many as keep their weights of one DEPTH within
    GROUP_BYTES (at most all D's panels)."""
    per_panel = PANEL * min(C, DEPTH) * itemsize
    return max(1, min(-(-D // PANEL), GROUP_BYTES // max(1, per_panel)))


def pack_weight(weight):
    """weight (D, C, 1, 1) as panels: packed[(g*C + c)*6 + m] = weight[g*6 + m, c], zero past D."""
    D, C = weight.shape[0], weight.shape[1]
    panels = np.zeros((_round_up(D, PANEL), C), weight.dtype)
    panels[:D] = weight.reshape(D, C)
    return np.ascontiguousarray(panels.reshape(-1, PANEL, C).transpose(0, 2, 1)).reshape(-1)


@njit(cache=True, no_cfunc_wrapper=True)
def pack_input(input, n, p0, p1, stride_h, stride_w, out_w, source):
    """source[(s*C + c)*16 + j] = input[n, c, oh*sh, ow*sw] for the output position p0 + 16s + j = oh*OW + ow
    below p1, zero past it (to the end of the last sub-block)."""
    C = input.shape[1]
    count = p1 - p0
    subs = (count + POSITIONS - 1) // POSITIONS
    fill_zero(source[(subs - 1) * C * POSITIONS:subs * C * POSITIONS])
    for c in range(C):
        plane = input[n, c]
        if stride_h == 1 and stride_w == 1 and plane.shape[1] == out_w:
            flat = plane.reshape(-1)
            full = count // POSITIONS
            for s in range(full):  # whole sub-blocks: two vector copies
                first = p0 + s * POSITIONS
                at = (s * C + c) * POSITIONS
                store(source, at, load(flat, first))
                store(source, at + LANES, load(flat, first + LANES))
            if full < subs:
                first = p0 + full * POSITIONS
                at = (full * C + c) * POSITIONS
                for j in range(p1 - first):
                    source[at + j] = flat[first + j]
        else:
            oh, ow = p0 // out_w, p0 % out_w
            for q in range(count):
                source[((q // POSITIONS) * C + c) * POSITIONS + q % POSITIONS] = plane[oh * stride_h, ow * stride_w]
                ow += 1
                if ow == out_w:
                    ow = 0
                    oh += 1


@njit(cache=True, inline="always")
def finished(value, factor, offset, residual, summed, activation):
    """activation(value * factor + offset + residual) (the residual only when summed); vectors all, so that
    no array passes into this inlined function (each array passed would cost a reference count a call)."""
    value = add_products(offset, value, factor)
    if summed:
        value = add(value, residual)
    if activation == RELU:
        value = relu(value)
    elif activation == RELU6:
        value = relu6(value)
    return value


@njit(cache=True, no_cfunc_wrapper=True)
def panel_sums(weights, weight_at, weight_step, panels, source, source_at, depth, tile, tile_at, tile_step,
               tile_stride, first, finish, output, out_at, out_step, out_stride, factors, offsets, d0, D, residual,
               summed, activation):
    """For `panels` panels in a row, panel p's sums over c < depth of weights[w + 6c + m] *
    source[source_at + 16c + j] (w = weight_at + p*weight_step) for m < 6, j < 16 in 12 vector accumulators,
    started from zero when first, else from the tile's values at t = tile_at + p*tile_step; then either stored
    to tile[t + m*tile_stride + j], or, when finish and the panel is full (its channels d = d0 + 6p + m all
    below D), finished (the epilogue: factors, offsets (D,), residual flat like output when summed, activation)
    and stored to the flat output at out_at + p*out_step + m*out_stride + j. The source's sub-block stays in
    L1 for the whole row of panels, and no array is passed per panel (an inlined call with arrays costs their
    reference counts). Each step prefetches the next panel's weights at the same depth: on a block's first
    sub-block they come from memory (a network's weights leave the cache between forwards), where the CPU's
    own prefetching, restarted at every panel's run, left ResNet-50's 7x7 layers waiting (1.59 -> 1.31 ms for
    512 -> 2048 channels, one thread; benchmarks/NOTES.md, section 92)."""
    for p in range(panels):
        w_at = weight_at + p * weight_step
        t_at = tile_at + p * tile_step
        o_at = out_at + p * out_step
        d = d0 + p * PANEL
        fin = finish and d + PANEL <= D
        if first:
            a00 = zeros(tile)
            a01 = zeros(tile)
            a10 = zeros(tile)
            a11 = zeros(tile)
            a20 = zeros(tile)
            a21 = zeros(tile)
            a30 = zeros(tile)
            a31 = zeros(tile)
            a40 = zeros(tile)
            a41 = zeros(tile)
            a50 = zeros(tile)
            a51 = zeros(tile)
        else:
            a00 = load(tile, t_at)
            a01 = load(tile, t_at + LANES)
            a10 = load(tile, t_at + tile_stride)
            a11 = load(tile, t_at + tile_stride + LANES)
            a20 = load(tile, t_at + 2 * tile_stride)
            a21 = load(tile, t_at + 2 * tile_stride + LANES)
            a30 = load(tile, t_at + 3 * tile_stride)
            a31 = load(tile, t_at + 3 * tile_stride + LANES)
            a40 = load(tile, t_at + 4 * tile_stride)
            a41 = load(tile, t_at + 4 * tile_stride + LANES)
            a50 = load(tile, t_at + 5 * tile_stride)
            a51 = load(tile, t_at + 5 * tile_stride + LANES)
        for c in range(depth):
            at = source_at + c * POSITIONS
            x0 = load(source, at)
            x1 = load(source, at + LANES)
            k = w_at + c * PANEL
            prefetch(weights, k + weight_step)
            w = broadcast(weights, k)
            a00 = add_products(a00, x0, w)
            a01 = add_products(a01, x1, w)
            w = broadcast(weights, k + 1)
            a10 = add_products(a10, x0, w)
            a11 = add_products(a11, x1, w)
            w = broadcast(weights, k + 2)
            a20 = add_products(a20, x0, w)
            a21 = add_products(a21, x1, w)
            w = broadcast(weights, k + 3)
            a30 = add_products(a30, x0, w)
            a31 = add_products(a31, x1, w)
            w = broadcast(weights, k + 4)
            a40 = add_products(a40, x0, w)
            a41 = add_products(a41, x1, w)
            w = broadcast(weights, k + 5)
            a50 = add_products(a50, x0, w)
            a51 = add_products(a51, x1, w)
        if fin:
            at = o_at
            factor, offset = broadcast(factors, d), broadcast(offsets, d)
            store(output, at, finished(a00, factor, offset, load(residual, at) if summed else a00, summed, activation))
            store(output, at + LANES, finished(a01, factor, offset, load(residual, at + LANES) if summed else a01, summed, activation))
            at = o_at + 1 * out_stride
            factor, offset = broadcast(factors, d + 1), broadcast(offsets, d + 1)
            store(output, at, finished(a10, factor, offset, load(residual, at) if summed else a10, summed, activation))
            store(output, at + LANES, finished(a11, factor, offset, load(residual, at + LANES) if summed else a11, summed, activation))
            at = o_at + 2 * out_stride
            factor, offset = broadcast(factors, d + 2), broadcast(offsets, d + 2)
            store(output, at, finished(a20, factor, offset, load(residual, at) if summed else a20, summed, activation))
            store(output, at + LANES, finished(a21, factor, offset, load(residual, at + LANES) if summed else a21, summed, activation))
            at = o_at + 3 * out_stride
            factor, offset = broadcast(factors, d + 3), broadcast(offsets, d + 3)
            store(output, at, finished(a30, factor, offset, load(residual, at) if summed else a30, summed, activation))
            store(output, at + LANES, finished(a31, factor, offset, load(residual, at + LANES) if summed else a31, summed, activation))
            at = o_at + 4 * out_stride
            factor, offset = broadcast(factors, d + 4), broadcast(offsets, d + 4)
            store(output, at, finished(a40, factor, offset, load(residual, at) if summed else a40, summed, activation))
            store(output, at + LANES, finished(a41, factor, offset, load(residual, at + LANES) if summed else a41, summed, activation))
            at = o_at + 5 * out_stride
            factor, offset = broadcast(factors, d + 5), broadcast(offsets, d + 5)
            store(output, at, finished(a50, factor, offset, load(residual, at) if summed else a50, summed, activation))
            store(output, at + LANES, finished(a51, factor, offset, load(residual, at + LANES) if summed else a51, summed, activation))
            continue
        store(tile, t_at, a00)
        store(tile, t_at + LANES, a01)
        store(tile, t_at + tile_stride, a10)
        store(tile, t_at + tile_stride + LANES, a11)
        store(tile, t_at + 2 * tile_stride, a20)
        store(tile, t_at + 2 * tile_stride + LANES, a21)
        store(tile, t_at + 3 * tile_stride, a30)
        store(tile, t_at + 3 * tile_stride + LANES, a31)
        store(tile, t_at + 4 * tile_stride, a40)
        store(tile, t_at + 4 * tile_stride + LANES, a41)
        store(tile, t_at + 5 * tile_stride, a50)
        store(tile, t_at + 5 * tile_stride + LANES, a51)


@njit(cache=True, no_cfunc_wrapper=True)
def panel_sums_narrow(weights, weight_at, weight_step, source, source_at, depth, tile, tile_at, tile_stride, first):
    """panel_sums for the first 8 positions of a sub-block only (a block's last 8 or fewer): 6 accumulators; it
    prefetches the next panel's weights (weight_step values on) as panel_sums does."""
    if first:
        a0 = zeros(tile)
        a1 = zeros(tile)
        a2 = zeros(tile)
        a3 = zeros(tile)
        a4 = zeros(tile)
        a5 = zeros(tile)
    else:
        a0 = load(tile, tile_at)
        a1 = load(tile, tile_at + tile_stride)
        a2 = load(tile, tile_at + 2 * tile_stride)
        a3 = load(tile, tile_at + 3 * tile_stride)
        a4 = load(tile, tile_at + 4 * tile_stride)
        a5 = load(tile, tile_at + 5 * tile_stride)
    for c in range(depth):
        x0 = load(source, source_at + c * POSITIONS)
        k = weight_at + c * PANEL
        prefetch(weights, k + weight_step)
        a0 = add_products(a0, x0, broadcast(weights, k))
        a1 = add_products(a1, x0, broadcast(weights, k + 1))
        a2 = add_products(a2, x0, broadcast(weights, k + 2))
        a3 = add_products(a3, x0, broadcast(weights, k + 3))
        a4 = add_products(a4, x0, broadcast(weights, k + 4))
        a5 = add_products(a5, x0, broadcast(weights, k + 5))
    store(tile, tile_at, a0)
    store(tile, tile_at + tile_stride, a1)
    store(tile, tile_at + 2 * tile_stride, a2)
    store(tile, tile_at + 3 * tile_stride, a3)
    store(tile, tile_at + 4 * tile_stride, a4)
    store(tile, tile_at + 5 * tile_stride, a5)


@njit(cache=True, no_cfunc_wrapper=True)
def write_rows(tile, tile_stride, output, n, d0, p0, q0, p1, factors, offsets, residual, summed, activation):
    """output[n, d0 + m, p0 + q] = activation(tile[m*tile_stride + q] * factors[d] + offsets[d] + residual) for
    q0 <= q < p1 - p0 and the panel's channels d = d0 + m below D (the residual (N, D, P) when summed). One
    pass, each value stored once (packed_windows.write_panel says why)."""
    D = output.shape[1]
    zero, six = output.dtype.type(0), output.dtype.type(6)
    count = p1 - p0
    for m in range(min(PANEL, D - d0)):
        d = d0 + m
        factor, offset = factors[d], offsets[d]
        sums = tile[m * tile_stride + q0:m * tile_stride + count]
        target = output[n, d, p0 + q0:p1]
        if summed:
            added = residual[n, d, p0 + q0:p1]
            for q in range(count - q0):
                target[q] = activated(sums[q] * factor + offset + added[q], activation, zero, six)
        else:
            for q in range(count - q0):
                target[q] = activated(sums[q] * factor + offset, activation, zero, six)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_forward_packed_span(span_part, span_parts, input, packed_weight, output, source_buffer, tile_buffer,
                               stride_h, stride_w, width, slices, factors, offsets, residual, activation,
                               finishing, counter):
    """conv2d_forward_packed, part span_part of span_parts (threads.py), one row of the buffers a chunk: a
    chunk's run of tasks, or, with slices of the panels, tasks claimed from counter (claims.py) until none
    are left."""
    N, C = input.shape[0], input.shape[1]
    D, OH, OW = output.shape[1], output.shape[2], output.shape[3]
    P = OH * OW
    blocks = (P + width - 1) // width
    panels = (D + PANEL - 1) // PANEL
    flat_output = output.reshape((N, D, P))
    every_output = output.reshape(-1)
    summed = residual.shape[0] > 0
    every_residual = residual.reshape(-1)
    chunks = source_buffer.shape[0]
    tile_stride = (width + POSITIONS - 1) // POSITIONS * POSITIONS
    group = max(1, tile_buffer.shape[1] // (PANEL * tile_stride))
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        source, tile = source_buffer[chunk], tile_buffer[chunk]
        packed_task = -1
        claimed = slices > 1  # as packed_windows: claimed slices of the panels, else a run of whole blocks
        first, last = chunk_bounds(chunk, chunks, N * blocks * slices)
        task = first - 1
        while True:
            task = claim(counter) if claimed else task + 1
            if task >= (N * blocks * slices if claimed else last):
                break
            block_task = task // slices
            n, block = block_task // blocks, block_task % blocks
            p0 = block * width
            p1 = min(P, p0 + width)
            count = p1 - p0
            subs = (count + POSITIONS - 1) // POSITIONS
            full_subs = count // POSITIONS  # finished in registers in a full panel
            if block_task != packed_task:
                pack_input(input, n, p0, p1, stride_h, stride_w, OW, source)
                packed_task = block_task
            g0, g1 = chunk_bounds(task % slices, slices, panels)
            for group_first in range(g0, g1, group):
                group_last = min(g1, group_first + group)
                for c0 in range(0, C, DEPTH):
                    depth = min(DEPTH, C - c0)
                    last_depth = c0 + DEPTH >= C
                    for s in range(subs):
                        source_at = (s * C + c0) * POSITIONS
                        narrow = count - s * POSITIONS <= LANES
                        weight_at = (group_first * C + c0) * PANEL
                        if narrow:
                            for g in range(group_first, group_last):
                                panel_sums_narrow(packed_weight, weight_at + (g - group_first) * C * PANEL,
                                                  C * PANEL, source, source_at, depth, tile,
                                                  (g - group_first) * PANEL * tile_stride + s * POSITIONS,
                                                  tile_stride, c0 == 0)
                        else:
                            d0 = group_first * PANEL
                            panel_sums(packed_weight, weight_at, C * PANEL, group_last - group_first, source,
                                       source_at, depth, tile, s * POSITIONS, PANEL * tile_stride, tile_stride,
                                       c0 == 0, finishing and last_depth and s < full_subs, every_output,
                                       (n * D + d0) * P + p0 + s * POSITIONS, PANEL * P, P, factors, offsets, d0, D,
                                       every_residual, summed, activation)
                for g in range(group_first, group_last):
                    d0 = g * PANEL
                    write_rows(tile[(g - group_first) * PANEL * tile_stride:], tile_stride, flat_output, n, d0, p0,
                               full_subs * POSITIONS if finishing and d0 + PANEL <= D else 0, p1, factors, offsets,
                               residual, summed, activation)


def conv2d_forward_packed(input, packed_weight, bias, output, source_buffer, tile_buffer, stride_h, stride_w,
                          width, slices, scale, shift, residual, activation):
    """output (N, D, OH, OW) = the 1x1 convolution of input (N, C, H, W) with the weight packed by
    pack_weight, + bias (D,) or (0,), then the epilogue (scale, shift (D,) or (0,), residual (N, D, OH*OW) or
    (0, 0, 0), activation 0/1/2), applied as one multiply-add, output = sums * factor + offset with
    factor = scale and offset = bias * scale + shift. Buffers (chunks, ...) as `buffers` sizes them; width,
    slices: `blocking`."""
    D = output.shape[1]
    factors = scale if scale.shape[0] else np.ones(D, output.dtype)
    offsets = np.zeros(D, output.dtype) if bias.shape[0] == 0 else bias * factors
    if shift.shape[0]:
        offsets = offsets + shift
    parallel_parts(conv2d_forward_packed_span, num_threads(), input, packed_weight, output,
                   source_buffer, tile_buffer, stride_h, stride_w, width, slices,
                   np.ascontiguousarray(factors, output.dtype), np.ascontiguousarray(offsets, output.dtype),
                   np.ascontiguousarray(residual), activation, REGISTER_EPILOGUE, claims())


def run_packed(input, packed_weight, bias, output, buffers, plan, epilogue=None):
    """The plan's convolution with a weight already packed (pack_weight), then `epilogue` when given."""
    convolution = plan.convolution
    width, _, slices = blocking(convolution, output.itemsize, num_threads())  # width: any thread count
    conv2d_forward_packed(np.ascontiguousarray(input), packed_weight, bias, output, buffers["packed_input"],
                          buffers["tile"],
                          convolution.stride_h, convolution.stride_w, width, slices,
                          *(epilogue or no_epilogue(output.dtype)))


def forward(input, weight, bias, output, buffers, plan, epilogue=None):
    """output = conv2d(input, weight) + bias, packing the weight for this call alone."""
    run_packed(input, pack_weight(weight), bias, output, buffers, plan, epilogue)


def backward_input(grad_output, weight, grad_input, buffers, plan):
    raise ValueError("the packed 1x1 convolution runs the forward pass only")


backward_weight = backward_input

__all__ = ["applies", "blocking", "buffers", "conv2d_forward_packed", "forward", "pack_weight", "run_packed"]
