"""Direct convolution blocked in registers, for narrow layers (a few dozen channels, maps 8-32 wide): no
unrolled matrix, no BLAS; each block of 4 output channels x 16 output positions is summed in 8 vector
registers (vectors.py) over every (input channel, tap) pair, then written out once.

The input of an image is copied once, zero-padded and split into stride x stride phase planes: padded
pixel (y, x) of channel c goes to plane (c, y % s, x % s) at (y // s, x // s), each plane Hq x Wq. Output
position (oh, ow) of tap (i, j) then reads plane (c, i*dh % s, j*dw % s) at (oh + i*dh // s, ow + j*dw // s):
over the flat grid q = oh*Wq + ow every tap reads consecutive values, at one offset, for stride 1 and 2
alike. The grid is Wq wide, wider than the output (OW); its extra columns are computed and dropped (6-20%
on ResNet-20's layers, 32-8 wide).

- forward: per image, per block of 4 output channels, per 16 grid positions: 8 accumulators (4 channels x
  2 vectors of 8 positions), each tap one pair of vector loads of the input and 4 broadcast weights, 8 fused
  multiply-adds. The weights are repacked once a call to (channel block, tap, 4) in the order the loop reads.
- input gradient: the transposed convolution, split by the input's phase (ry, rx) (ry = 0..s-1 rows mod
  s): the input pixels of one phase receive only the taps with (ry + ph - i*dh) % s == 0, a stride-1
  convolution of the zero-padded output gradient with that subset of the flipped filters (for stride 1 the
  one phase is the whole transposed convolution). Same 4 x 16 blocks, over input channels.
- weight gradient: per image, per block of 4 output channels and 3 taps, 12 accumulators over the grid, 8
  positions a step (the output gradient copied into the grid with zeros in its extra columns); partial sums
  per chunk of images, added in chunk order (blocks.max_chunks: independent of the thread count).

Only ungrouped layers (groups == 1); any stride, padding and dilation. Reads run up to 15 values past the
grid and are kept inside each buffer's slack (SLACK values and one more row).
"""
import functools

import numba
import numpy as np
from numba import njit

from ..shared import chunk_bounds, fill_zero, sum_partials
from ..threads import parallel_parts
from ..vectors import LANES, add_products, broadcast, lane_sum, load, store, zeros
from .blocks import max_chunks
from .rows import compact_rows

CHANNEL_BLOCK = 4  # output channels (input channels for the input gradient) a block sums at once
POSITIONS = 2 * LANES  # grid positions a block sums at once: two vectors
WEIGHT_TAPS = 3  # taps a weight-gradient block sums at once (x CHANNEL_BLOCK x one vector: 12 registers)
SLACK = 2 * POSITIONS  # values past a buffer's last plane that the last block may read


def _round_up(count, multiple):
    return -(-count // multiple) * multiple


def phase_geometry(H, W, KH, KW, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w):
    """(Hq, Wq, OH, OW): the phase planes' size and the output's for the forward pass and weight gradient."""
    padded_h, padded_w = H + 2 * padding_h, W + 2 * padding_w
    out_h = (padded_h - dilation_h * (KH - 1) - 1) // stride_h + 1
    out_w = (padded_w - dilation_w * (KW - 1) - 1) // stride_w + 1
    return -(-padded_h // stride_h), -(-padded_w // stride_w), out_h, out_w


def transposed_geometry(H, W, OH, OW, KH, KW, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w):
    """(top, left, Hs, Ws): the zero rows above and columns left of the output gradient in the input
    gradient's source, and that source's size: every phase's taps read rows top + (ry + ph - i*dh) // s + yy,
    all inside it."""
    top = max(0, -((padding_h - dilation_h * (KH - 1)) // stride_h))
    left = max(0, -((padding_w - dilation_w * (KW - 1)) // stride_w))
    rows = top + max(OH, (H - 1) // stride_h + (stride_h - 1 + padding_h) // stride_h + 1)
    cols = left + max(OW, (W - 1) // stride_w + (stride_w - 1 + padding_w) // stride_w + 1)
    return top, left, rows, cols


@njit(cache=True, no_cfunc_wrapper=True)
def split_pad(image, target, stride_h, stride_w, padding_h, padding_w, plane_h, plane_w):
    """target[((c*sh + y % sh)*sw + x % sw)*Hq*Wq + (y // sh)*Wq + x // sw] = image[c, y - ph, x - pw] for
    padded pixels (y, x) inside the image, zero elsewhere (and in the slack).

    No integer division per row (a division by a run-time stride costs more than a 16-value row's copy): the
    rows' phase and plane row are counted along, each phase column's bounds worked out once."""
    C, H, W = image.shape
    fill_zero(target)
    plane = plane_h * plane_w
    for px in range(stride_w):  # phase px holds padded columns k*s + px, image columns k*s + px - pw
        first = max(0, (padding_w - px + stride_w - 1) // stride_w)
        last = (W - 1 + padding_w - px) // stride_w + 1
        if last <= first:
            continue
        count = last - first
        image_start = first * stride_w + px - padding_w
        for c in range(C):
            phase_row, plane_row = padding_h % stride_h, padding_h // stride_h  # of padded row y = h + ph
            for h in range(H):
                start = ((c * stride_h + phase_row) * stride_w + px) * plane + plane_row * plane_w + first
                for k in range(count):
                    target[start + k] = image[c, h, image_start + k * stride_w]
                phase_row += 1
                if phase_row == stride_h:
                    phase_row, plane_row = 0, plane_row + 1


@njit(cache=True, no_cfunc_wrapper=True)
def block_sums(source, offsets, taps, packed, packed_start, grid, grid_stride, row, q):
    """grid[(row + k)*grid_stride + q + p] = sum over taps t of packed[packed_start + 4t + k] *
    source[offsets[t] + q + p], for k < 4 and p < 16: 8 vector accumulators."""
    a00 = zeros(source)
    a01 = zeros(source)
    a10 = zeros(source)
    a11 = zeros(source)
    a20 = zeros(source)
    a21 = zeros(source)
    a30 = zeros(source)
    a31 = zeros(source)
    for t in range(taps):
        at = offsets[t] + q
        x0 = load(source, at)
        x1 = load(source, at + LANES)
        k = packed_start + CHANNEL_BLOCK * t
        w = broadcast(packed, k)
        a00 = add_products(a00, x0, w)
        a01 = add_products(a01, x1, w)
        w = broadcast(packed, k + 1)
        a10 = add_products(a10, x0, w)
        a11 = add_products(a11, x1, w)
        w = broadcast(packed, k + 2)
        a20 = add_products(a20, x0, w)
        a21 = add_products(a21, x1, w)
        w = broadcast(packed, k + 3)
        a30 = add_products(a30, x0, w)
        a31 = add_products(a31, x1, w)
    at = row * grid_stride + q
    store(grid, at, a00)
    store(grid, at + LANES, a01)
    at += grid_stride
    store(grid, at, a10)
    store(grid, at + LANES, a11)
    at += grid_stride
    store(grid, at, a20)
    store(grid, at + LANES, a21)
    at += grid_stride
    store(grid, at, a30)
    store(grid, at + LANES, a31)


@njit(cache=True, no_cfunc_wrapper=True)
def grid_products(source, offsets, taps, packed, channels, grid, grid_len):
    """block_sums over every block of 4 channels and every 16 of the grid_len positions."""
    blocks = (channels + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
    grid_stride = grid.shape[0] // (blocks * CHANNEL_BLOCK)
    for block in range(blocks):
        for q in range(0, grid_len, POSITIONS):
            block_sums(source, offsets, taps, packed, block * taps * CHANNEL_BLOCK, grid, grid_stride,
                       block * CHANNEL_BLOCK, q)


@functools.lru_cache(maxsize=256)
def tap_offsets(C, KH, KW, stride_h, stride_w, dilation_h, dilation_w, plane_h, plane_w):
    """offsets[(c*KH + i)*KW + j]: where tap (c, i, j) starts reading in the phase planes (int64; kept per
    geometry, never written)."""
    c, i, j = np.meshgrid(np.arange(C), np.arange(KH), np.arange(KW), indexing="ij")
    y, x = i * dilation_h, j * dilation_w
    offsets = (((c * stride_h + y % stride_h) * stride_w + x % stride_w) * (plane_h * plane_w)
               + (y // stride_h) * plane_w + x // stride_w)
    return np.ascontiguousarray(offsets.reshape(-1), dtype=np.int64)


def pack_filters(filters):
    """filters (channels, taps) as packed[(block*taps + t)*4 + k] = filters[block*4 + k, t], zero past the
    last channel: the order block_sums reads."""
    channels, taps = filters.shape
    padded = np.zeros((_round_up(channels, CHANNEL_BLOCK), taps), filters.dtype)
    padded[:channels] = filters
    return padded.reshape(-1, CHANNEL_BLOCK, taps).transpose(0, 2, 1).reshape(-1)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_forward_blocked_span(span_part, span_parts, input, bias, output, phases, grid, offsets, packed, stride_h,
                                stride_w, padding_h, padding_w, plane_h, plane_w):
    """conv2d_forward_blocked over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N = input.shape[0]
    D, OH = output.shape[1], output.shape[2]
    taps = offsets.shape[0]
    grid_len = OH * plane_w
    rounded = (D + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK * CHANNEL_BLOCK
    grid_stride = grid.shape[1] // rounded
    chunks = phases.shape[0]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        source, sums = phases[chunk], grid[chunk]
        by_channel = sums[:rounded * grid_stride].reshape((rounded, grid_stride))
        first, last = chunk_bounds(chunk, chunks, N)
        for n in range(first, last):
            split_pad(input[n], source, stride_h, stride_w, padding_h, padding_w, plane_h, plane_w)
            grid_products(source, offsets, taps, packed, D, sums, grid_len)
            compact_rows(by_channel, output, n, 0, OH, plane_w, bias)


def conv2d_forward_blocked(input, weight, bias, output, phases, grid, stride_h, stride_w, padding_h, padding_w,
                           dilation_h, dilation_w):
    """output[n, d] = bias[d] + sum_{c, i, j} weight[d, c, i, j] * padded_input[n, c, oh*sh + i*dh, ow*sw + j*dw],
    an image a task."""
    D, C, KH, KW = weight.shape
    plane_h, plane_w, _, _ = phase_geometry(input.shape[2], input.shape[3], KH, KW, stride_h, stride_w, padding_h,
                                            padding_w, dilation_h, dilation_w)
    offsets = tap_offsets(C, KH, KW, stride_h, stride_w, dilation_h, dilation_w, plane_h, plane_w)
    packed = pack_filters(weight.reshape(D, C * KH * KW))
    parallel_parts(conv2d_forward_blocked_span, numba.get_num_threads(), input, bias, output, phases, grid, offsets,
                   packed, stride_h, stride_w, padding_h, padding_w, plane_h, plane_w)


@functools.lru_cache(maxsize=256)
def transposed_taps(D, KH, KW, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, top, left,
                    source_w, source_plane):
    """The taps of each input phase (ry, rx), phase = ry*sw + rx: the (d, i, j) with (ry + ph - i*dh) and
    (rx + pw - j*dw) multiples of the stride, as (offsets (phases, D*KH*KW): where each reads in the padded
    output gradient; columns (phases, D*KH*KW): its index d*KH*KW + i*KW + j; counts (phases,)). Kept per
    geometry, never written."""
    phases = stride_h * stride_w
    offsets = np.zeros((phases, D * KH * KW), np.int64)
    columns = np.zeros((phases, D * KH * KW), np.int64)
    counts = np.zeros(phases, np.int64)
    for ry in range(stride_h):
        for rx in range(stride_w):
            phase = ry * stride_w + rx
            rows = [(i, (ry + padding_h - i * dilation_h) // stride_h) for i in range(KH)
                    if (ry + padding_h - i * dilation_h) % stride_h == 0]
            cols = [(j, (rx + padding_w - j * dilation_w) // stride_w) for j in range(KW)
                    if (rx + padding_w - j * dilation_w) % stride_w == 0]
            taps = [(d * source_plane + (a + top) * source_w + b + left, (d * KH + i) * KW + j)
                    for d in range(D) for i, a in rows for j, b in cols]
            counts[phase] = len(taps)
            if taps:
                offsets[phase, :len(taps)], columns[phase, :len(taps)] = zip(*taps)
    return offsets, columns, counts


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_input_blocked_span(span_part, span_parts, grad_output, grad_input, padded, grid, offsets, packed,
                                       counts, stride_h, stride_w, top, left, source_h, source_w):
    """conv2d_backward_input_blocked over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = grad_input.shape
    grid_stride = grid.shape[1] // ((C + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK * CHANNEL_BLOCK)
    chunks = padded.shape[0]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        source, sums = padded[chunk], grid[chunk]
        first, last = chunk_bounds(chunk, chunks, N)
        for n in range(first, last):
            # int64 strides, not literal 1s: the forward's and weight gradient's overload, not one more to compile
            split_pad(grad_output[n], source, np.int64(1), np.int64(1), top, left, source_h, source_w)
            for ry in range(min(stride_h, H)):
                rows = (H - ry + stride_h - 1) // stride_h
                for rx in range(min(stride_w, W)):
                    cols = (W - rx + stride_w - 1) // stride_w
                    phase = ry * stride_w + rx
                    grid_products(source, offsets[phase], counts[phase], packed[phase], C, sums, rows * source_w)
                    for c in range(C):
                        for yy in range(rows):
                            start = c * grid_stride + yy * source_w
                            row = sums[start:start + cols]
                            target = grad_input[n, c, ry + yy * stride_h]
                            if stride_w == 1:
                                for xx in range(cols):
                                    target[xx] = row[xx]
                            else:
                                for xx in range(cols):
                                    target[rx + xx * stride_w] = row[xx]


def conv2d_backward_input_blocked(grad_output, weight, grad_input, padded, grid, stride_h, stride_w, padding_h,
                                  padding_w, dilation_h, dilation_w):
    """grad_input = the transposed convolution of grad_output with weight, by input phase, an image a task."""
    D, C, KH, KW = weight.shape
    H, W, OH, OW = grad_input.shape[2], grad_input.shape[3], grad_output.shape[2], grad_output.shape[3]
    top, left, source_h, source_w = transposed_geometry(H, W, OH, OW, KH, KW, stride_h, stride_w, padding_h,
                                                        padding_w, dilation_h, dilation_w)
    offsets, columns, counts = transposed_taps(D, KH, KW, stride_h, stride_w, padding_h, padding_w, dilation_h,
                                               dilation_w, top, left, source_w, source_h * source_w)
    by_input = weight.transpose(1, 0, 2, 3).reshape(C, D * KH * KW)
    packed = np.zeros((counts.shape[0], _round_up(C, CHANNEL_BLOCK) * D * KH * KW), weight.dtype)
    for phase, count in enumerate(counts):
        if count == 0:  # a filter smaller than the stride: no tap reaches this phase, its gradient stays 0
            continue
        filters = pack_filters(by_input[:, columns[phase, :count]])
        packed[phase, :filters.shape[0]] = filters
    parallel_parts(conv2d_backward_input_blocked_span, numba.get_num_threads(), grad_output, grad_input, padded, grid,
                   offsets, packed, counts, stride_h, stride_w, top, left, source_h, source_w)


@njit(cache=True, no_cfunc_wrapper=True)
def weight_block_sums(spread, spread_stride, row, source, offsets, t, grid_len, partial, taps, D):
    """partial[t + u, row + k] += sum over q < grid_len of spread[(row + k)*spread_stride + q] *
    source[offsets[t + u] + q], for k < 4 and u < 3 (taps t + u < taps, channels row + k < D): 12 vector
    accumulators, 8 positions a step."""
    a00 = zeros(source)
    a01 = zeros(source)
    a02 = zeros(source)
    a10 = zeros(source)
    a11 = zeros(source)
    a12 = zeros(source)
    a20 = zeros(source)
    a21 = zeros(source)
    a22 = zeros(source)
    a30 = zeros(source)
    a31 = zeros(source)
    a32 = zeros(source)
    o0 = offsets[t]
    o1 = offsets[min(t + 1, taps - 1)]
    o2 = offsets[min(t + 2, taps - 1)]
    g0 = row * spread_stride
    g1 = g0 + spread_stride
    g2 = g1 + spread_stride
    g3 = g2 + spread_stride
    for q in range(0, grid_len, LANES):
        x0 = load(source, o0 + q)
        x1 = load(source, o1 + q)
        x2 = load(source, o2 + q)
        g = load(spread, g0 + q)
        a00 = add_products(a00, g, x0)
        a01 = add_products(a01, g, x1)
        a02 = add_products(a02, g, x2)
        g = load(spread, g1 + q)
        a10 = add_products(a10, g, x0)
        a11 = add_products(a11, g, x1)
        a12 = add_products(a12, g, x2)
        g = load(spread, g2 + q)
        a20 = add_products(a20, g, x0)
        a21 = add_products(a21, g, x1)
        a22 = add_products(a22, g, x2)
        g = load(spread, g3 + q)
        a30 = add_products(a30, g, x0)
        a31 = add_products(a31, g, x1)
        a32 = add_products(a32, g, x2)
    sums = ((a00, a01, a02), (a10, a11, a12), (a20, a21, a22), (a30, a31, a32))
    for k in range(CHANNEL_BLOCK):
        if row + k < D:
            partial[t, row + k] += lane_sum(sums[k][0])
            if t + 1 < taps:
                partial[t + 1, row + k] += lane_sum(sums[k][1])
            if t + 2 < taps:
                partial[t + 2, row + k] += lane_sum(sums[k][2])


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_weight_blocked_span(span_part, span_parts, grad_output, input, phases, spread, partial, offsets,
                                        stride_h, stride_w, padding_h, padding_w, plane_h, plane_w):
    """conv2d_backward_weight_blocked over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N = input.shape[0]
    D, OH, OW = grad_output.shape[1], grad_output.shape[2], grad_output.shape[3]
    taps = offsets.shape[0]
    grid_len = (OH * plane_w + LANES - 1) // LANES * LANES
    blocks = (D + CHANNEL_BLOCK - 1) // CHANNEL_BLOCK
    spread_stride = spread.shape[1] // (blocks * CHANNEL_BLOCK)
    chunks = phases.shape[0]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        source, gradient, sums = phases[chunk], spread[chunk], partial[chunk, 0]
        fill_zero(sums.reshape(sums.size))
        fill_zero(gradient)  # the extra columns and the rows past D stay zero
        first, last = chunk_bounds(chunk, chunks, N)
        for n in range(first, last):
            split_pad(input[n], source, stride_h, stride_w, padding_h, padding_w, plane_h, plane_w)
            for d in range(D):
                for oh in range(OH):
                    start = d * spread_stride + oh * plane_w
                    target = gradient[start:start + OW]
                    row = grad_output[n, d, oh]
                    for ow in range(OW):
                        target[ow] = row[ow]
            for block in range(blocks):
                for t in range(0, taps, WEIGHT_TAPS):
                    weight_block_sums(gradient, spread_stride, block * CHANNEL_BLOCK, source, offsets, t, grid_len,
                                      sums, taps, D)


def conv2d_backward_weight_blocked(grad_output, input, grad_weight, phases, spread, partial, stride_h, stride_w,
                                   padding_h, padding_w, dilation_h, dilation_w):
    """grad_weight = sum over images of the products of grad_output with the padded input, as transposed
    partial sums per chunk of images (chunks, 1, C*KH*KW, D) added in chunk order."""
    D, C, KH, KW = grad_weight.shape
    plane_h, plane_w, _, _ = phase_geometry(input.shape[2], input.shape[3], KH, KW, stride_h, stride_w, padding_h,
                                            padding_w, dilation_h, dilation_w)
    offsets = tap_offsets(C, KH, KW, stride_h, stride_w, dilation_h, dilation_w, plane_h, plane_w)
    parallel_parts(conv2d_backward_weight_blocked_span, numba.get_num_threads(), grad_output, input, phases, spread,
                   partial, offsets, stride_h, stride_w, padding_h, padding_w, plane_h, plane_w)
    sum_partials(partial, grad_weight)


# The plan's surface: applies, buffers and the three passes (see plan.py).
def applies(pass_, convolution):
    """Ungrouped layers, any stride, padding and dilation."""
    return convolution.groups == 1


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer, one of each per parallel chunk (a chunk: whole images):
    the forward pass and weight gradient's phase planes (C*sh*sw*Hq*Wq + SLACK,), the input gradient's padded
    output gradient (D*Hs*Ws + SLACK,); the grid of sums (or of the spread output gradient), (channels rounded
    up to 4, grid positions rounded up to 16); the weight gradient's partial_sums (chunks, 1, C*KH*KW, D)."""
    N, C, H, W = convolution.input_shape
    D, _, KH, KW = convolution.weight_shape
    _, _, OH, OW = convolution.output_shape
    hyper = (convolution.stride_h, convolution.stride_w, convolution.padding_h, convolution.padding_w,
             convolution.dilation_h, convolution.dilation_w)
    plane_h, plane_w, _, _ = phase_geometry(H, W, KH, KW, *hyper)
    if pass_ == "backward_input":
        top, left, source_h, source_w = transposed_geometry(H, W, OH, OW, KH, KW, *hyper)
        source = D * source_h * source_w + source_w
        stride_h = convolution.stride_h
        channels, positions = C, ((H + stride_h - 1) // stride_h) * source_w
    else:
        source = C * convolution.stride_h * convolution.stride_w * plane_h * plane_w + plane_w + KW * convolution.dilation_w
        channels, positions = D, OH * plane_w
    tasks = max(1, N)
    partial_bytes = C * KH * KW * D * itemsize
    chunks = max(1, min(tasks, max_chunks(pass_, threads, partial_bytes)))
    own = (("padded", "padded", (chunks, source + SLACK)),
           ("grid", "col", (chunks, _round_up(channels, CHANNEL_BLOCK) * (_round_up(positions, POSITIONS) + SLACK))))
    if pass_ == "backward_weight":
        return own + (("partial_sums", "partial", (chunks, 1, C * KH * KW, D)),)
    return own


def hyper_parameters(plan):
    """The plan's (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w), in the kernels' order."""
    convolution = plan.convolution
    return (convolution.stride_h, convolution.stride_w, convolution.padding_h, convolution.padding_w,
            convolution.dilation_h, convolution.dilation_w)


def forward(input, weight, bias, output, buffers, plan):
    conv2d_forward_blocked(input, weight, bias, output, buffers["padded"], buffers["grid"], *hyper_parameters(plan))


def backward_input(grad_output, weight, grad_input, buffers, plan):
    conv2d_backward_input_blocked(grad_output, weight, grad_input, buffers["padded"], buffers["grid"],
                                  *hyper_parameters(plan))


def backward_weight(grad_output, input, grad_weight, buffers, plan):
    conv2d_backward_weight_blocked(grad_output, input, grad_weight, buffers["padded"], buffers["grid"],
                                   buffers["partial_sums"], *hyper_parameters(plan))
