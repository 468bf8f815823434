"""Convolutions with windows larger than one pixel, and some 1x1 ones (any stride, padding and dilation;
ungrouped), as products with the weight packed once, for inference: output[n, d, p] = sum_k weight[d, k] *
window[n, k, p] over the K = C*KH*KW taps k = (c*KH + i)*KW + j of each output position p's window.

The weight (D, C, KH, KW) is packed into panels of PANEL output channels (two wide vectors, vectors.py: 32
where the CPU has AVX-512, else 16), packed[(g*K + k)*PANEL + m] = weight[g*PANEL + m, k] (zero past D), the
order the micro-kernel reads; a caller that keeps it for as long as the weight does not change (nn.infer's
prepared layer, dispatch.conv2d_forward_prepared) packs it once.

A task is one image, one block of its output positions and one slice of the panels. The image is copied
once into a zero-padded buffer (C x Hp x Wp; no bounds to test after it), and nothing is unrolled: the
micro-kernel reads each window value from it at tap_offsets[k] + the start of each of its positions' windows
(bases, per block), where the BLAS path copies every window value twice (im2col, then OpenBLAS's packing of
the columns) and an im2col, even into the micro-kernel's order, cost about a fifth of the products. For each
panel and each DEPTH taps (PANEL x DEPTH weights stay in L1), each sub-block of POSITIONS positions (7, or 6
on a CPU with 16 vector registers) is summed in 14 (12) vector registers, the panel's channels (two wide
vectors) x 7 (6) positions: two vector loads of weights and 7 (6) broadcast window values for 14 (12) fused
multiply-adds a tap. With AVX-512 these are 512-bit: a CPU that runs them as two 256-bit halves (AMD Zen 4)
does the same arithmetic in half the instructions, which ran ResNet-50's layers 1.16-1.21x faster than 16
channels in 256-bit vectors (benchmarks/NOTES.md, section 93). The output channels lie in the vector lanes:
the image, which lives in L2, is read as 28 (24) bytes a tap for PANEL channels, where 'packed' (packed.py,
1x1 layers: positions in the lanes, 6 channels x 16 positions) reads 64 bytes for 6. (A 12-channel x
8-position panel, positions in the lanes, spilled registers once LLVM unrolled its loop: benchmarks/NOTES.md,
section 61. In float64 a wide vector takes two 512-bit registers: as fast as the 16-channel panel was.) The
sums go to a tile (block positions x PANEL channels), which also holds the partial sums between DEPTHs, and are
finished from there (bias, scale and shift as one multiply-add, the residual, the activation) and turned to
the output's (D, P) order after the block's last sub-block.

Blocks hold at most PACK_BYTES of taps x positions (at least MIN_POSITIONS positions): the image's rows a
block reads stay in L2 while each panel reads them again; with only a few tasks (batch 1) the panels are cut
into one slice a thread instead, as in packed.py, or with CLAIMED_SLICES into up to TASKS_PER_THREAD slices a
thread. Slices are claimed one at a time (claims.py): a worker that starts late, or whose core another process
holds, then leaves the caller only the slices it has not claimed (benchmarks/NOTES.md, section 81; off until
measured on a quiet machine). Whole blocks stay a run of tasks a thread, so that each image is padded by one
thread. Where the padded image is large (panel_group), a few panels are summed together, sub-block by
sub-block, their sums side by side in the tile.
"""
import numpy as np
from numba import njit

from ..scale_shift import RELU, RELU6, no_epilogue
from ..shared import chunk_bounds, fill_zero
from ..threads import num_threads, parallel_parts
from ..vectors import (LANES, REGISTERS, WIDE_LANES, add, add_products, broadcast, load, multiply, prefetch, relu,
                       relu6, store, wide_broadcast, wide_load, wide_zeros)
from .claims import claim, claims
from .lanes import transpose_8x8
from .packed import activated, panel_slices

PANEL = 2 * WIDE_LANES  # output channels a micro-kernel sums at once (two wide vectors: 32 with AVX-512, else 16)
# Output positions a micro-kernel sums at once (a sub-block): 7 where the CPU has 32 vector registers (14
# accumulators; every map of a network on 224-pixel images, 7x7 to 112x112, is then whole sub-blocks: ResNet-50's
# 7x7 3x3 layers ran 12% faster in the network, its 512-channel stride-2 layer 14%), else 6 (7 spilled registers:
# 0.84-0.93x on an AVX2 target; benchmarks/NOTES.md, section 92).
POSITIONS = 7 if REGISTERS >= 32 else 6
SEVENTH = POSITIONS == 7  # the micro-kernel's seventh position (a constant where it is compiled)
DEPTH = 256  # taps a micro-kernel call sums: its PANEL x 256 weights (16 or 32 KB) stay in L1 for every sub-block
PACK_BYTES = 1024 * 1024  # a block's taps x positions x itemsize at most this large ...
MIN_POSITIONS = -(-49 // POSITIONS) * POSITIONS  # ... but at least this many positions (a 7x7 map in one block)
TASKS_PER_THREAD = 4  # with fewer tasks than this a thread (and not a multiple of the threads), cut the panels
CLAIMED_SLICES = False  # into slices up to TASKS_PER_THREAD tasks a thread (else one slice a thread), claimed
PANEL_GROUP = 4  # panels summed together, sub-block by sub-block, so that the windows they share come from L1 ...
GROUP_IMAGE_BYTES = 1024 * 1024  # ... where the padded image is larger than this (ResNet-50's 128 s2 on 56x56)


def _round_up(count, multiple):
    return -(-count // multiple) * multiple


def applies(pass_, convolution):
    """The forward pass of ungrouped convolutions (plan.choose_prepared sends it those whose windows are larger
    than one pixel, and 1x1 layers on maps its sub-blocks fit better than 'packed''s vectors)."""
    return pass_ == "forward" and convolution.groups == 1


def blocking(convolution, itemsize, threads):
    """(positions a block, blocks an image, panel slices a block) for this convolution and thread count: an
    image's sub-blocks shared out over the fewest blocks of at most PACK_BYTES of windows (at least
    MIN_POSITIONS positions), so that only an image's last block ends in a partial sub-block."""
    N = convolution.input_shape[0]
    D, C, KH, KW = convolution.weight_shape
    _, _, OH, OW = convolution.output_shape
    subs = max(1, -(-OH * OW // POSITIONS))
    taps = max(1, C * KH * KW)
    most = max(-(-MIN_POSITIONS // POSITIONS), PACK_BYTES // (taps * itemsize * POSITIONS))
    blocks = -(-subs // most)
    width = -(-subs // blocks) * POSITIONS
    blocks = -(-OH * OW // width)
    return width, blocks, panel_slices(N * blocks, -(-D // PANEL), threads, TASKS_PER_THREAD, CLAIMED_SLICES)


def panel_group(convolution, itemsize):
    """How many panels a task sums together, sub-block by sub-block (the tile holds their sums): PANEL_GROUP
    where the padded image is over GROUP_IMAGE_BYTES, else 1. Then each DEPTH of a sub-block's windows is
    read from L2 once for the group's panels and from L1 by the others, and each panel's weights from L2 (a
    sequential stream the prefetchers follow) instead of from L1 (benchmarks/NOTES.md, section 81)."""
    N, C, H, W = convolution.input_shape
    image = C * (H + 2 * convolution.padding_h) * (W + 2 * convolution.padding_w) * itemsize
    panels = -(-convolution.weight_shape[0] // PANEL)
    return max(1, min(PANEL_GROUP, panels)) if image > GROUP_IMAGE_BYTES else 1


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer, one of each per parallel chunk: the zero-padded image
    (chunks, C x (H + 2PH) x (W + 2PW)) and the tile of sums (chunks, panel_group x block positions x PANEL)."""
    N, C, H, W = convolution.input_shape
    _, _, KH, KW = convolution.weight_shape
    width, blocks, slices = blocking(convolution, itemsize, threads)
    chunks = max(1, min(N * blocks * slices, threads))
    padded = C * (H + 2 * convolution.padding_h) * (W + 2 * convolution.padding_w)
    group = panel_group(convolution, itemsize)
    return (("padded", "padded", (chunks, padded)), ("tile", "packed_tile", (chunks, group * PANEL * width)))


def pack_weight(weight):
    """weight (D, C, KH, KW) as panels: packed[(g*K + k)*PANEL + m] = weight[g*PANEL + m, k], zero past D."""
    D = weight.shape[0]
    K = weight[0].size
    panels = np.zeros((_round_up(D, PANEL), K), weight.dtype)
    panels[:D] = weight.reshape(D, K)
    return np.ascontiguousarray(panels.reshape(-1, PANEL, K).transpose(0, 2, 1)).reshape(-1)


@njit(cache=True, no_cfunc_wrapper=True)
def pad_image(image, padding_h, padding_w, padded):
    """padded (C*(H + 2PH)*(W + 2PW),) = image (C, H, W) with PH zero rows and PW zero columns each side."""
    C, H, W = image.shape
    Hp, Wp = H + 2 * padding_h, W + 2 * padding_w
    for c in range(C):
        plane = padded[c * Hp * Wp:(c + 1) * Hp * Wp]
        fill_zero(plane[:padding_h * Wp])
        fill_zero(plane[(padding_h + H) * Wp:])
        for r in range(H):
            row = plane[(padding_h + r) * Wp:(padding_h + r + 1) * Wp]
            fill_zero(row[:padding_w])
            fill_zero(row[padding_w + W:])
            inside = row[padding_w:padding_w + W]
            values = image[c, r]
            for q in range(W):
                inside[q] = values[q]


@njit(cache=True, no_cfunc_wrapper=True)
def block_bases(p0, p1, out_w, row_step, column_step, bases):
    """bases[q] = oh*row_step + ow*column_step for the block's output positions p0 + q = oh*OW + ow below p1,
    and the last one's again up to the end of the last sub-block (row_step = stride_h x the padded width,
    column_step = stride_w): where position q's window starts in the padded image."""
    count = p1 - p0
    oh, ow = p0 // out_w, p0 % out_w
    for q in range(count):
        bases[q] = oh * row_step + ow * column_step
        ow += 1
        if ow == out_w:
            ow, oh = 0, oh + 1
    for q in range(count, (count + POSITIONS - 1) // POSITIONS * POSITIONS):
        bases[q] = bases[count - 1]


@njit(cache=True, no_cfunc_wrapper=True)
def panel_sums(weights, weight_at, weight_step, padded, tap_offsets, k0, depth, bases, base_at, tile, tile_at, first):
    """The sums over k0 <= k < k0 + depth of weights[weight_at + PANEL(k - k0) + m] * padded[tap_offsets[k] +
    bases[base_at + j]] for m < PANEL, j < POSITIONS, in 2 x POSITIONS wide vector accumulators (two of PANEL / 2
    channels for each position j), started from zero when first, else from the tile's values; stored to
    tile[tile_at + PANEL j + m]. The window values are read from the padded image itself, nothing is unrolled.
    Each tap prefetches the next panel's weights at the same tap (weight_step values on): a block's first
    sub-block reads them from memory, and the 7x7 layers, whose few sub-blocks wait on that most, ran 7-10%
    faster in ResNet-50 at one thread (benchmarks/NOTES.md, section 93; with 16-channel panels it had changed
    nothing, section 81)."""
    b0 = bases[base_at]
    b1 = bases[base_at + 1]
    b2 = bases[base_at + 2]
    b3 = bases[base_at + 3]
    b4 = bases[base_at + 4]
    b5 = bases[base_at + 5]
    b6 = bases[base_at + 6] if SEVENTH else b5
    if first:
        a00 = wide_zeros(tile)
        a01 = wide_zeros(tile)
        a10 = wide_zeros(tile)
        a11 = wide_zeros(tile)
        a20 = wide_zeros(tile)
        a21 = wide_zeros(tile)
        a30 = wide_zeros(tile)
        a31 = wide_zeros(tile)
        a40 = wide_zeros(tile)
        a41 = wide_zeros(tile)
        a50 = wide_zeros(tile)
        a51 = wide_zeros(tile)
        a60 = wide_zeros(tile)
        a61 = wide_zeros(tile)
    else:
        a00 = wide_load(tile, tile_at)
        a01 = wide_load(tile, tile_at + WIDE_LANES)
        a10 = wide_load(tile, tile_at + PANEL)
        a11 = wide_load(tile, tile_at + PANEL + WIDE_LANES)
        a20 = wide_load(tile, tile_at + 2 * PANEL)
        a21 = wide_load(tile, tile_at + 2 * PANEL + WIDE_LANES)
        a30 = wide_load(tile, tile_at + 3 * PANEL)
        a31 = wide_load(tile, tile_at + 3 * PANEL + WIDE_LANES)
        a40 = wide_load(tile, tile_at + 4 * PANEL)
        a41 = wide_load(tile, tile_at + 4 * PANEL + WIDE_LANES)
        a50 = wide_load(tile, tile_at + 5 * PANEL)
        a51 = wide_load(tile, tile_at + 5 * PANEL + WIDE_LANES)
        a60 = wide_load(tile, tile_at + 6 * PANEL) if SEVENTH else a50
        a61 = wide_load(tile, tile_at + 6 * PANEL + WIDE_LANES) if SEVENTH else a51
    for k in range(depth):
        at = weight_at + k * PANEL
        prefetch(weights, at + weight_step)
        prefetch(weights, at + weight_step + WIDE_LANES)
        w0 = wide_load(weights, at)
        w1 = wide_load(weights, at + WIDE_LANES)
        offset = tap_offsets[k0 + k]
        x = wide_broadcast(padded, offset + b0)
        a00 = add_products(a00, w0, x)
        a01 = add_products(a01, w1, x)
        x = wide_broadcast(padded, offset + b1)
        a10 = add_products(a10, w0, x)
        a11 = add_products(a11, w1, x)
        x = wide_broadcast(padded, offset + b2)
        a20 = add_products(a20, w0, x)
        a21 = add_products(a21, w1, x)
        x = wide_broadcast(padded, offset + b3)
        a30 = add_products(a30, w0, x)
        a31 = add_products(a31, w1, x)
        x = wide_broadcast(padded, offset + b4)
        a40 = add_products(a40, w0, x)
        a41 = add_products(a41, w1, x)
        x = wide_broadcast(padded, offset + b5)
        a50 = add_products(a50, w0, x)
        a51 = add_products(a51, w1, x)
        if SEVENTH:
            x = wide_broadcast(padded, offset + b6)
            a60 = add_products(a60, w0, x)
            a61 = add_products(a61, w1, x)
    store(tile, tile_at, a00)
    store(tile, tile_at + WIDE_LANES, a01)
    store(tile, tile_at + PANEL, a10)
    store(tile, tile_at + PANEL + WIDE_LANES, a11)
    store(tile, tile_at + 2 * PANEL, a20)
    store(tile, tile_at + 2 * PANEL + WIDE_LANES, a21)
    store(tile, tile_at + 3 * PANEL, a30)
    store(tile, tile_at + 3 * PANEL + WIDE_LANES, a31)
    store(tile, tile_at + 4 * PANEL, a40)
    store(tile, tile_at + 4 * PANEL + WIDE_LANES, a41)
    store(tile, tile_at + 5 * PANEL, a50)
    store(tile, tile_at + 5 * PANEL + WIDE_LANES, a51)
    if SEVENTH:
        store(tile, tile_at + 6 * PANEL, a60)
        store(tile, tile_at + 6 * PANEL + WIDE_LANES, a61)


@njit(cache=True, no_cfunc_wrapper=True)
def write_panel(tile, output, n, d0, p0, p1, factors, offsets, residual, summed, activation, scratch):
    """output[n, d0 + m, p0 + q] = activation(tile[PANEL q + m] * factors[d] + offsets[d] + residual) for
    q < p1 - p0 and the panel's channels d = d0 + m below D (output and residual (N, D, P), the residual when
    summed). A full panel's positions are taken eight at a time: PANEL / 8 transposes of 8 x 8 in registers into
    scratch (PANEL x 8 values), then each channel's eight values finished as vectors and stored once; the rest (a
    partial panel, the last positions) one value at a time, in the same operations and order (the same bits).
    Read a value at a time with a stride of 16, the stem's write-back took a fifth of its time."""
    D, P = output.shape[1], output.shape[2]
    zero, six = output.dtype.type(0), output.dtype.type(6)
    count = p1 - p0
    vectored = count // LANES * LANES if d0 + PANEL <= D else 0
    if vectored:
        every_output = output.reshape(-1)
        every_residual = residual.reshape(-1)
        for q0 in range(0, vectored, LANES):
            for block in range(PANEL // LANES):
                transpose_8x8(tile, q0 * PANEL + block * LANES, PANEL, scratch, block * LANES * LANES, LANES)
            for m in range(PANEL):
                d = d0 + m
                at = (n * D + d) * P + p0 + q0
                value = add(multiply(load(scratch, m * LANES), broadcast(factors, d)), broadcast(offsets, d))
                if summed:
                    value = add(value, load(every_residual, at))
                if activation == RELU:
                    value = relu(value)
                elif activation == RELU6:
                    value = relu6(value)
                store(every_output, at, value)
    for m in range(min(PANEL, D - d0)):
        d = d0 + m
        factor, offset = factors[d], offsets[d]
        sums = tile[m:]
        target = output[n, d, p0:p1]
        if summed:
            added = residual[n, d, p0:p1]
            for q in range(vectored, count):
                target[q] = activated(sums[q * PANEL] * factor + offset + added[q], activation, zero, six)
        else:
            for q in range(vectored, count):
                target[q] = activated(sums[q * PANEL] * factor + offset, activation, zero, six)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_forward_windows_span(span_part, span_parts, input, packed_weight, output, padded_buffer, tile_buffer,
                                kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w, dilation_h,
                                dilation_w, width, slices, factors, offsets, residual, activation, counter):
    """conv2d_forward_windows, part span_part of span_parts (threads.py), one row of the buffers a chunk: a
    chunk's run of tasks, or, with slices of the panels, tasks claimed from counter (claims.py) until none
    are left."""
    N, C, H, W = input.shape
    D, OH, OW = output.shape[1], output.shape[2], output.shape[3]
    P = OH * OW
    Hp, Wp = H + 2 * padding_h, W + 2 * padding_w
    taps = C * kernel_h * kernel_w
    blocks = (P + width - 1) // width
    panels = (D + PANEL - 1) // PANEL
    flat_output = output.reshape((N, D, P))
    summed = residual.shape[0] > 0
    tap_offsets = np.empty(taps, np.int64)
    for c in range(C):
        for i in range(kernel_h):
            for j in range(kernel_w):
                tap_offsets[(c * kernel_h + i) * kernel_w + j] = (c * Hp + i * dilation_h) * Wp + j * dilation_w
    bases = np.empty(width, np.int64)  # one block's window starts, whole sub-blocks
    scratch = np.empty(PANEL * LANES, output.dtype)  # write_panel's transposed values
    group = max(1, tile_buffer.shape[1] // (PANEL * width))  # panels summed together: as many as the tile holds
    chunks = padded_buffer.shape[0]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        padded, tile = padded_buffer[chunk], tile_buffer[chunk]
        padded_image, based_task = -1, -1
        # a part's own run of tasks when they are whole blocks (each image padded by one part); claimed one at a
        # time when the blocks are cut into slices of the panels (batch 1: every slice reads the same image)
        claimed = slices > 1
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
            if n != padded_image:
                pad_image(input[n], padding_h, padding_w, padded)
                padded_image = n
            if block_task != based_task:
                block_bases(p0, p1, OW, stride_h * Wp, stride_w, bases)
                based_task = block_task
            subs = (p1 - p0 + POSITIONS - 1) // POSITIONS
            g0, g1 = chunk_bounds(task % slices, slices, panels)
            for first_panel in range(g0, g1, group):
                last_panel = min(g1, first_panel + group)
                for k0 in range(0, taps, DEPTH):
                    depth = min(DEPTH, taps - k0)
                    for s in range(subs):
                        for g in range(first_panel, last_panel):
                            tile_at = ((g - first_panel) * width + s * POSITIONS) * PANEL
                            panel_sums(packed_weight, (g * taps + k0) * PANEL, taps * PANEL, padded, tap_offsets, k0,
                                       depth, bases, s * POSITIONS, tile, tile_at, k0 == 0)
                for g in range(first_panel, last_panel):
                    write_panel(tile[(g - first_panel) * width * PANEL:], flat_output, n, g * PANEL, p0, p1, factors,
                                offsets, residual, summed, activation, scratch)


def conv2d_forward_windows(input, packed_weight, bias, output, padded_buffer, tile_buffer, kernel_h, kernel_w,
                           stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, width, slices, scale,
                           shift, residual, activation):
    """output (N, D, OH, OW) = the convolution of input (N, C, H, W) with the (D, C, KH, KW) weight packed by
    pack_weight, + bias (D,) or (0,), then the epilogue (scale, shift (D,) or (0,), residual (N, D, OH*OW) or
    (0, 0, 0), activation 0/1/2) as one multiply-add, output = sums * factor + offset with factor = scale and
    offset = bias * scale + shift. Buffers (chunks, ...) as `buffers` sizes them; width, slices: `blocking`."""
    D = output.shape[1]
    factors = scale if scale.shape[0] else np.ones(D, output.dtype)
    offsets = np.zeros(D, output.dtype) if bias.shape[0] == 0 else bias * factors
    if shift.shape[0]:
        offsets = offsets + shift
    parallel_parts(conv2d_forward_windows_span, num_threads(), input, packed_weight, output,
                   padded_buffer, tile_buffer, kernel_h, kernel_w, stride_h, stride_w, padding_h,
                   padding_w, dilation_h, dilation_w, width, slices, np.ascontiguousarray(factors, output.dtype),
                   np.ascontiguousarray(offsets, output.dtype), np.ascontiguousarray(residual), activation, claims())


def run_packed(input, packed_weight, bias, output, buffers, plan, epilogue=None):
    """The plan's convolution with a weight already packed (pack_weight), then `epilogue` when given."""
    convolution = plan.convolution
    _, _, KH, KW = convolution.weight_shape
    width, _, slices = blocking(convolution, output.itemsize, num_threads())
    stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, _ = convolution.hyper
    conv2d_forward_windows(np.ascontiguousarray(input), packed_weight, bias, output, buffers["padded"],
                           buffers["tile"], KH, KW, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w,
                           width, slices, *(epilogue or no_epilogue(output.dtype)))


def forward(input, weight, bias, output, buffers, plan, epilogue=None):
    """output = conv2d(input, weight) + bias, packing the weight for this call alone."""
    run_packed(input, pack_weight(weight), bias, output, buffers, plan, epilogue)


def backward_input(grad_output, weight, grad_input, buffers, plan):
    raise ValueError("the packed windowed convolution runs the forward pass only")


backward_weight = backward_input

__all__ = ["applies", "blocking", "buffers", "conv2d_forward_windows", "forward", "pack_weight", "run_packed"]
