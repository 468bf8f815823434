"""Direct convolution with output channels in the vector lanes, for narrow layers (a few dozen channels,
maps 32 wide or less: ResNet-20's): no unrolled matrix, no BLAS; each block sums 4 output positions x 16
output channels (input channels for the input gradient) in 8 vector registers (vectors.py) over every (input
channel, tap) pair. Every position a block computes is an output: a plane's positions are taken flat, 4 a
block, so a 10-wide row costs 2.5 blocks, not 3; the weight gradient sums whole images per register with no
lane sums. (An earlier algorithm, 'blocked', held 16 positions of the padded rows in the lanes instead: on
8-wide maps 20% of its sums fell on the padding columns and its weight gradient ended in lane sums; this one
took every layer it ran.)

The forward pass and the weight gradient copy an image zero-padded (Hp x Wp, copy_image: the padding is zeroed
once a call and never written again, the rows moved 8 values a vector), or, unpadded, read the input itself:
output position (oh, ow) of tap t reads offsets[t] + oh*sh*Wp + ow*sw (taps.tap_offsets). A block's 4
positions are 4 broadcasts, as cheap `sw` values apart as 1 (or a row apart), so a stride-2 layer needs no
split into phase planes (the strided 8-value row copies of such a split took about a third of a stride-2
forward's time).

- forward: per image, per block of 16 output channels, per 4 positions of the plane: 8 accumulators
  (4 positions x 2 vectors of 8 channels), each tap 4 broadcast input values and 2 vector loads of the
  weights, packed per call as (channel block, tap, 16); then the bias, and the 8 vectors are transposed in
  registers into 16 runs of 4 positions (store_columns), stored straight into the output where the channels
  come in whole blocks of 16 and planes have 4 or more positions (a plane's last block may overlap the one
  before), else into a grid (D rounded up to 16, OH*OW, at least 4) whose planes are then copied.
- input gradient: the transposed convolution by input phase (taps.transposed_taps): each phase is a
  stride-1 convolution of the zero-padded output gradient with a subset of the flipped filters, run as the
  forward's blocks over input channels: at stride 1 straight into the input gradient as the forward, else
  each phase through the grid.
- weight gradient: the output gradient of an image is copied transposed, (OH*OW, D rounded up to 16), by
  8 x 8 transposes in registers (spread_image); per block of 6 taps x 16 output channels, 12 accumulators run
  over the positions of images_per_block images (1 from 16 x 16 up, 4 at 8 x 8), 6 broadcast input values and 2
  vector loads a position, then add into the chunk's sums (taps, D rounded up to 16); partial
  sums per chunk of images, added in chunk order (blocks.max_chunks: independent of the thread count).

The threads claim their tasks one at a time (claims.py): images for the forward pass and the input gradient,
each thread in its own buffers; chunks of images for the weight gradient, each chunk in its own. Only
ungrouped layers; any stride, padding and dilation. Every read lies in an output position's window.
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ..shared import chunk_bounds, fill_zero, flat_view, sum_partials
from ..threads import num_threads, parallel_parts
from ..vectors import LANES, add, add_products, broadcast, load, store, zeros
from .blocks import max_chunks
from .claims import claim, claims
from .taps import tap_offsets, transposed_geometry, transposed_taps

CHANNELS = 2 * LANES  # channels a forward / input-gradient block sums at once: two vectors
POSITIONS = 4  # output positions of one row a block sums at once
WEIGHT_CHANNELS = 2 * LANES  # output channels a weight-gradient block sums at once: two vectors
WEIGHT_TAPS = 6  # taps a weight-gradient block sums at once (x 2 vectors: 12 registers)
SLACK = 2 * CHANNELS  # values past the input gradient's padded output gradient (its blocks read none of them)
UNUSED = 1  # the size of a buffer a pass does not use (a plan's buffers hold at least one value)
WEIGHT_POSITIONS = 256  # the weight gradient sums at least this many positions a block: images of fewer go in groups


def images_per_block(OH, OW):
    """Images the weight gradient sums at once: enough for WEIGHT_POSITIONS output positions (1 from 16 x 16 up,
    4 at 8 x 8), so that a block's set-up and final adds are spread over as many."""
    return max(1, -(-WEIGHT_POSITIONS // (OH * OW)))


def _round_up(count, multiple):
    return -(-count // multiple) * multiple


@njit(cache=True, inline="always")
def copy_image(images, n, target, top, left, plane_h, plane_w):
    """target[c*Hp*Wp + (top + h)*Wp + left + w] = images[n, c, h, w]: image n into the inside of a zero-padded
    copy whose padding the caller has zeroed once (nothing else is written there, so it stays zero from image to
    image). Rows are moved 8 values a vector (images C-contiguous; top + H <= Hp, left + W <= Wp)."""
    _, C, H, W = images.shape
    plane = plane_h * plane_w
    whole = W // LANES * LANES
    at = n * C * H * W  # flat index of images[n, 0, 0, 0]
    for c in range(C):
        row = c * plane + top * plane_w + left
        for h in range(H):
            for w in range(0, whole, LANES):
                store(target, row + w, load(images, at + w))
            for w in range(whole, W):
                target[row + w] = images[n, c, h, w]
            row += plane_w
            at += W


@intrinsic
def store_columns(typingctx, array, index, stride, first, second, third, fourth):
    """array[index + v*stride + k] = (first, second, third, fourth)[k][v] for lanes v < 8 and k < 4: four Vectors
    of 8 channels (one a position) stored as 8 runs of 4 positions, one a channel, transposed in registers (a
    flat array; no check of the indices)."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        stride = context.cast(builder, args[2], signature.args[2], types.intp)
        a, b, c, d = args[3:]
        pairs = [builder.shuffle_vector(x, y, _mask(q for v in range(LANES) for q in (v, LANES + v)))
                 for x, y in ((a, b), (c, d))]  # (a0, b0, a1, b1, ...) and (c0, d0, c1, d1, ...)
        run_type = ir.VectorType(a.type.element, 4)
        align = context.get_abi_sizeof(a.type.element)
        for v in range(LANES):
            run = builder.shuffle_vector(pairs[0], pairs[1], _mask((2 * v, 2 * v + 1, 2 * LANES + 2 * v,
                                                                    2 * LANES + 2 * v + 1)))
            at = builder.add(index, builder.mul(stride, ir.Constant(stride.type, v)))
            builder.store(run, builder.bitcast(builder.gep(data, [at]), run_type.as_pointer()), align=align)
        return context.get_dummy_value()

    return types.void(array, index, stride, first, second, third, fourth), codegen


def _mask(lanes):
    lanes = list(lanes)
    return ir.Constant(ir.VectorType(ir.IntType(32), len(lanes)), lanes)


@njit(cache=True, inline="always")
def block_sums(source, offsets, taps, packed, packed_start, bias, has_bias, target, at, channel_stride, start0,
               start1, start2, start3):
    """target[at + v*channel_stride + k] = bias[v] + sum over taps t of packed[packed_start + 16t + v] *
    source[offsets[t] + start_k], for positions k < 4 and channels v < 16: 8 vector accumulators, stored as 16
    runs of 4 positions (bias: 16 values, read only when has_bias)."""
    a00 = zeros(source)
    a01 = zeros(source)
    a10 = zeros(source)
    a11 = zeros(source)
    a20 = zeros(source)
    a21 = zeros(source)
    a30 = zeros(source)
    a31 = zeros(source)
    # a tap's four reads are its offset plus each position's start (an add each, as cheap as constant
    # displacements; four views of the source, one a position, cost more a block to set up)
    for t in range(taps):
        k = packed_start + CHANNELS * t
        w0 = load(packed, k)
        w1 = load(packed, k + LANES)
        x = offsets[t]
        v = broadcast(source, x + start0)
        a00 = add_products(a00, v, w0)
        a01 = add_products(a01, v, w1)
        v = broadcast(source, x + start1)
        a10 = add_products(a10, v, w0)
        a11 = add_products(a11, v, w1)
        v = broadcast(source, x + start2)
        a20 = add_products(a20, v, w0)
        a21 = add_products(a21, v, w1)
        v = broadcast(source, x + start3)
        a30 = add_products(a30, v, w0)
        a31 = add_products(a31, v, w1)
    if has_bias:
        b0 = load(bias, 0)
        b1 = load(bias, LANES)
        a00 = add(a00, b0)
        a10 = add(a10, b0)
        a20 = add(a20, b0)
        a30 = add(a30, b0)
        a01 = add(a01, b1)
        a11 = add(a11, b1)
        a21 = add(a21, b1)
        a31 = add(a31, b1)
    store_columns(target, at, channel_stride, a00, a10, a20, a30)
    store_columns(target, at + LANES * channel_stride, channel_stride, a01, a11, a21, a31)


@njit(cache=True, inline="always")
def _position_start(position, positions, cols, row_stride, step):
    """Where output position `position` (of rows x cols, flat; clamped to the last) starts reading."""
    position = min(position, positions - 1)
    return position // cols * row_stride + position % cols * step


@njit(cache=True, inline="always")
def _next_position(y, x, cols):
    """(row, column) of the position after (y, x) in rows of `cols`."""
    x += 1
    if x == cols:
        return y + 1, 0
    return y, x


@njit(cache=True, inline="always")
def plane_products(source, base, offsets, taps, packed, bias, has_bias, rounded, rows, cols, row_stride, step,
                   target, target_start, channel_stride):
    """target[target_start + v*channel_stride + q] = bias[v] + sum over taps t of packed[(v // 16)*taps*16 + 16t
    + v % 16] * source[base + offsets[t] + (q // cols)*row_stride + (q % cols)*step], for v < rounded and the
    rows*cols output positions q of a plane taken flat, 4 a block whatever the rows' width (a 10-wide row is
    2.5 blocks, not 3): the last block starts at rows*cols - 4, overlapping the one before, whose values it
    writes again (the same bits); a plane of fewer than 4 positions writes 4, the last repeated
    (channel_stride >= 4 there). Every read is of an output position's window: no slack past the source."""
    positions = rows * cols
    last = max(0, positions - POSITIONS)
    for block in range(rounded // CHANNELS):
        block_bias = bias[block * CHANNELS:]
        at = target_start + block * CHANNELS * channel_stride
        y, x = 0, 0  # the row and column of position q, kept as q moves (no divisions in whole blocks)
        for q in range(0, positions, POSITIONS):
            if q + POSITIONS <= positions and x + POSITIONS <= cols:  # a block inside one row
                start0 = base + y * row_stride + x * step
                start1 = start0 + step
                start2 = start1 + step
                start3 = start2 + step
                x += POSITIONS
                if x == cols:
                    y, x = y + 1, 0
            elif q + POSITIONS <= positions:  # a block across the end of a row
                start0 = base + y * row_stride + x * step
                y, x = _next_position(y, x, cols)
                start1 = base + y * row_stride + x * step
                y, x = _next_position(y, x, cols)
                start2 = base + y * row_stride + x * step
                y, x = _next_position(y, x, cols)
                start3 = base + y * row_stride + x * step
                y, x = _next_position(y, x, cols)
            else:  # the last block, moved back to overlap the one before (or a plane of fewer than 4 positions)
                q = last
                start0 = base + _position_start(q, positions, cols, row_stride, step)
                start1 = base + _position_start(q + 1, positions, cols, row_stride, step)
                start2 = base + _position_start(q + 2, positions, cols, row_stride, step)
                start3 = base + _position_start(q + 3, positions, cols, row_stride, step)
            block_sums(source, offsets, taps, packed, block * taps * CHANNELS, block_bias, has_bias, target, at + q,
                       channel_stride, start0, start1, start2, start3)


def pack_filters(filters, multiple):
    """filters (channels, taps) as packed[(block*taps + t)*multiple + v] = filters[block*multiple + v, t], zero
    past the last channel: the order block_sums reads."""
    channels, taps = filters.shape
    padded = np.zeros((_round_up(channels, multiple), taps), filters.dtype)
    padded[:channels] = filters
    return np.ascontiguousarray(padded.reshape(-1, multiple, taps).transpose(0, 2, 1)).reshape(-1)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_forward_lanes_span(span_part, span_parts, input, flat_input, bias, output, flat_output, padded, grid,
                              offsets, packed, stride_h, stride_w, padding_h, padding_w, padded_h, padded_w, counter):
    """conv2d_forward_lanes, part span_part of span_parts: images claimed one at a time from counter (claims.py),
    into part span_part's buffers (span_parts <= their number). flat_input, flat_output: input and output as 1-D
    views (flattened by the caller: see shared.flat_view)."""
    N, C, H, W = input.shape
    D, OH, OW = output.shape[1], output.shape[2], output.shape[3]
    taps = offsets.shape[0]
    rounded = (D + CHANNELS - 1) // CHANNELS * CHANNELS
    has_bias = bias.shape[0] > 0
    # whole channel blocks and planes of 4 or more positions straight into the output; else into the grid
    # (rounded, max(OH*OW, 4)), then copied
    straight = D % CHANNELS == 0 and OH * OW >= POSITIONS
    plane = max(OH * OW, POSITIONS)
    unpadded = padding_h == 0 and padding_w == 0  # the blocks read the input itself: no copy
    source, sums = padded[span_part], grid[span_part]
    if not unpadded:
        fill_zero(source)  # the padding, which copy_image leaves alone
    while True:
        n = claim(counter)
        if n >= N:
            break
        if unpadded:
            image, base = flat_input, n * C * H * W
        else:
            copy_image(input, n, source, padding_h, padding_w, padded_h, padded_w)
            image, base = source, np.int64(0)
        # one call site (plane_products is inlined: each call site compiles it again)
        products, products_start, products_stride = (flat_output, n * D * OH * OW, OH * OW) if straight else (
            sums, np.int64(0), plane)
        plane_products(image, base, offsets, taps, packed, bias, has_bias, rounded, OH, OW, stride_h * padded_w,
                       stride_w, products, products_start, products_stride)
        if straight:
            continue
        for d in range(D):
            target = flat_output[(n * D + d) * OH * OW:]
            at = d * plane
            for q in range(OH * OW):
                target[q] = sums[at + q]


def _contiguous_output(kernel, output, *args):
    """kernel(*args, output) into a C-contiguous copy of output where it is not, copied back (the kernels
    write their outputs by flat index)."""
    if output.flags.c_contiguous:
        return kernel(*args, output)
    written = np.empty(output.shape, output.dtype)
    kernel(*args, written)
    output[...] = written


def _packed_bias(bias, rounded, dtype):
    """bias (D,) zero-padded to `rounded` values, or an empty array for none."""
    packed = np.zeros(rounded if bias.shape[0] else 0, dtype)
    packed[:bias.shape[0]] = bias
    return packed


def conv2d_forward_lanes(input, weight, bias, output, padded, grid, stride_h, stride_w, padding_h, padding_w,
                         dilation_h, dilation_w):
    """output[n, d] = bias[d] + sum_{c, i, j} weight[d, c, i, j] * padded_input[n, c, oh*sh + i*dh, ow*sw + j*dw],
    an image a task."""
    D, C, KH, KW = weight.shape
    padded_h, padded_w = input.shape[2] + 2 * padding_h, input.shape[3] + 2 * padding_w
    offsets = tap_offsets(C, KH, KW, dilation_h, dilation_w, padded_h, padded_w)
    packed = pack_filters(weight.reshape(D, C * KH * KW), CHANNELS)
    bias = _packed_bias(bias, _round_up(D, CHANNELS), output.dtype)

    input = np.ascontiguousarray(input)

    def run(output):
        parallel_parts(conv2d_forward_lanes_span, min(num_threads(), padded.shape[0]), input, flat_view(input),
                       bias, output, flat_view(output), padded, grid, offsets, packed, stride_h, stride_w,
                       padding_h, padding_w, padded_h, padded_w, claims())
    _contiguous_output(run, output)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_input_lanes_span(span_part, span_parts, grad_output, grad_input, flat_grad_input, padded, grid,
                                     offsets, packed, counts, stride_h, stride_w, top, left, source_h, source_w,
                                     counter):
    """conv2d_backward_input_lanes, part span_part of span_parts: images claimed one at a time from counter
    (claims.py), into part span_part's buffers (span_parts <= their number)."""
    N, C, H, W = grad_input.shape
    rounded = (C + CHANNELS - 1) // CHANNELS * CHANNELS
    no_bias = packed[0, :0]
    has_bias = no_bias.shape[0] > 0  # False
    # stride 1, whole channel blocks and planes of 4 or more positions: straight into grad_input; else each
    # phase into the grid (rounded, max(rows*cols, 4)), then copied to its pixels
    straight = stride_h == 1 and stride_w == 1 and C % CHANNELS == 0 and H * W >= POSITIONS
    source, sums = padded[span_part], grid[span_part]
    fill_zero(source)  # the padding, which copy_image leaves alone
    while True:
        n = claim(counter)
        if n >= N:
            break
        copy_image(grad_output, n, source, top, left, source_h, source_w)
        for ry in range(min(stride_h, H)):
            rows = (H - ry + stride_h - 1) // stride_h
            for rx in range(min(stride_w, W)):
                cols = (W - rx + stride_w - 1) // stride_w
                plane = max(rows * cols, POSITIONS)
                phase = ry * stride_w + rx
                # one call site (plane_products is inlined: each call site compiles it again); straight: the one
                # phase of a stride-1 layer, into grad_input itself
                products, products_start, products_stride = (
                    (flat_grad_input, n * C * H * W, H * W) if straight else (sums, np.int64(0), plane))
                plane_products(source, np.int64(0), offsets[phase], counts[phase], packed[phase], no_bias,
                               has_bias, rounded, rows, cols, source_w, np.int64(1), products, products_start,
                               products_stride)
                if straight:
                    continue
                for c in range(C):
                    for yy in range(rows):
                        target = grad_input[n, c, ry + yy * stride_h]
                        at = c * plane + yy * cols
                        for xx in range(cols):
                            target[rx + xx * stride_w] = sums[at + xx]


def conv2d_backward_input_lanes(grad_output, weight, grad_input, padded, grid, stride_h, stride_w, padding_h,
                                padding_w, dilation_h, dilation_w):
    """grad_input = the transposed convolution of grad_output with weight, by input phase, an image a task."""
    D, C, KH, KW = weight.shape
    H, W, OH, OW = grad_input.shape[2], grad_input.shape[3], grad_output.shape[2], grad_output.shape[3]
    top, left, source_h, source_w = transposed_geometry(H, W, OH, OW, KH, KW, stride_h, stride_w, padding_h,
                                                        padding_w, dilation_h, dilation_w)
    offsets, columns, counts = transposed_taps(D, KH, KW, stride_h, stride_w, padding_h, padding_w, dilation_h,
                                               dilation_w, top, left, source_w, source_h * source_w)
    by_input = weight.transpose(1, 0, 2, 3).reshape(C, D * KH * KW)
    packed = np.zeros((counts.shape[0], _round_up(C, CHANNELS) * D * KH * KW), weight.dtype)
    for phase, count in enumerate(counts):
        if count == 0:  # a filter smaller than the stride: no tap reaches this phase, its gradient stays 0
            continue
        filters = pack_filters(by_input[:, columns[phase, :count]], CHANNELS)
        packed[phase, :filters.shape[0]] = filters

    def run(grad_input):
        parallel_parts(conv2d_backward_input_lanes_span, min(num_threads(), padded.shape[0]),
                       np.ascontiguousarray(grad_output), grad_input, flat_view(grad_input), padded, grid, offsets,
                       packed, counts, stride_h, stride_w, top, left, source_h, source_w, claims())
    _contiguous_output(run, grad_input)


@njit(cache=True, inline="always")
def weight_block_sums(spread, d0, rounded, source, offsets, t, taps, images, image_stride, OH, OW, row_stride, step,
                      sums):
    """sums[(t + u)*rounded + d0 + v] += sum over images m and positions (oh, ow) of source[offsets[t + u] +
    m*image_stride + oh*row_stride + ow*step] * spread[((m*OH + oh)*OW + ow)*rounded + d0 + v], for u < 6 (taps
    t + u < taps) and v < 16: 12 vector accumulators, 2 vector loads and 6 broadcasts a position (15 of the 16
    registers)."""
    a00 = zeros(source)
    a01 = zeros(source)
    a10 = zeros(source)
    a11 = zeros(source)
    a20 = zeros(source)
    a21 = zeros(source)
    a30 = zeros(source)
    a31 = zeros(source)
    a40 = zeros(source)
    a41 = zeros(source)
    a50 = zeros(source)
    a51 = zeros(source)
    o0 = offsets[t]
    o1 = offsets[min(t + 1, taps - 1)]
    o2 = offsets[min(t + 2, taps - 1)]
    o3 = offsets[min(t + 3, taps - 1)]
    o4 = offsets[min(t + 4, taps - 1)]
    o5 = offsets[min(t + 5, taps - 1)]
    g = d0
    for m in range(images):
        for oh in range(OH):
            ow = m * image_stride + oh * row_stride
            for _ in range(OW):
                g0 = load(spread, g)
                g1 = load(spread, g + LANES)
                x = broadcast(source, o0 + ow)
                a00 = add_products(a00, x, g0)
                a01 = add_products(a01, x, g1)
                x = broadcast(source, o1 + ow)
                a10 = add_products(a10, x, g0)
                a11 = add_products(a11, x, g1)
                x = broadcast(source, o2 + ow)
                a20 = add_products(a20, x, g0)
                a21 = add_products(a21, x, g1)
                x = broadcast(source, o3 + ow)
                a30 = add_products(a30, x, g0)
                a31 = add_products(a31, x, g1)
                x = broadcast(source, o4 + ow)
                a40 = add_products(a40, x, g0)
                a41 = add_products(a41, x, g1)
                x = broadcast(source, o5 + ow)
                a50 = add_products(a50, x, g0)
                a51 = add_products(a51, x, g1)
                g += rounded
                ow += step
    at = t * rounded + d0
    store(sums, at, add(load(sums, at), a00))
    store(sums, at + LANES, add(load(sums, at + LANES), a01))
    if t + 1 < taps:
        at += rounded
        store(sums, at, add(load(sums, at), a10))
        store(sums, at + LANES, add(load(sums, at + LANES), a11))
    if t + 2 < taps:
        at += rounded
        store(sums, at, add(load(sums, at), a20))
        store(sums, at + LANES, add(load(sums, at + LANES), a21))
    if t + 3 < taps:
        at += rounded
        store(sums, at, add(load(sums, at), a30))
        store(sums, at + LANES, add(load(sums, at + LANES), a31))
    if t + 4 < taps:
        at += rounded
        store(sums, at, add(load(sums, at), a40))
        store(sums, at + LANES, add(load(sums, at + LANES), a41))
    if t + 5 < taps:
        at += rounded
        store(sums, at, add(load(sums, at), a50))
        store(sums, at + LANES, add(load(sums, at + LANES), a51))


@intrinsic
def transpose_8x8(typingctx, source, source_index, source_stride, target, target_index, target_stride):
    """target[target_index + k*target_stride + i] = source[source_index + i*source_stride + k] for i, k < 8:
    8 vector loads, a transpose in registers, 8 vector stores (flat arrays; no check of the indices)."""
    def codegen(context, builder, signature, args):
        source_data = context.make_array(signature.args[0])(context, builder, args[0]).data
        target_data = context.make_array(signature.args[3])(context, builder, args[3]).data
        source_index, source_stride, target_index, target_stride = (
            context.cast(builder, args[i], signature.args[i], types.intp) for i in (1, 2, 4, 5))
        vector_type = ir.VectorType(source_data.type.pointee, LANES)
        align = context.get_abi_sizeof(source_data.type.pointee)

        def at(data, index, stride, i):
            offset = builder.add(index, builder.mul(stride, ir.Constant(stride.type, i)))
            return builder.bitcast(builder.gep(data, [offset]), vector_type.as_pointer())

        rows = [builder.load(at(source_data, source_index, source_stride, i), align=align) for i in range(LANES)]
        width = 1  # rows[j] holds `width` consecutive source rows interleaved, element by element
        while len(rows) > 1:
            size = width * LANES
            mask = _mask(q for k in range(LANES) for q in list(range(k * width, (k + 1) * width))
                         + list(range(size + k * width, size + (k + 1) * width)))
            rows = [builder.shuffle_vector(rows[j], rows[j + 1], mask) for j in range(0, len(rows), 2)]
            width *= 2
        for k in range(LANES):
            column = builder.shuffle_vector(rows[0], rows[0], _mask(range(k * LANES, (k + 1) * LANES)))
            builder.store(column, at(target_data, target_index, target_stride, k), align=align)
        return context.get_dummy_value()

    return types.void(source, source_index, source_stride, target, target_index, target_stride), codegen


@njit(cache=True, inline="always")
def spread_image(grad_output, n, spread, rounded):
    """spread[(oh*OW + ow)*rounded + d] = grad_output[n, d, oh, ow]: image n's output gradient transposed to
    (positions, channels), by 8 x 8 transposes in registers where channels and positions come in whole eights
    (grad_output C-contiguous)."""
    _, D, OH, OW = grad_output.shape
    positions = OH * OW
    image = n * D * positions  # flat index of grad_output[n, 0, 0, 0]
    if D % LANES == 0 and positions % LANES == 0:
        for d in range(0, D, LANES):
            for p in range(0, positions, LANES):
                transpose_8x8(grad_output, image + d * positions + p, positions, spread, p * rounded + d, rounded)
        return
    for d in range(D):
        for oh in range(OH):
            at = oh * OW * rounded + d
            for ow in range(OW):
                spread[at + ow * rounded] = grad_output[n, d, oh, ow]


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_weight_lanes_span(span_part, span_parts, grad_output, input, flat_input, padded, grid, partial,
                                      offsets, stride_h, stride_w, padding_h, padding_w, padded_h, padded_w, group,
                                      counter):
    """conv2d_backward_weight_lanes, part span_part of span_parts: chunks claimed one at a time from counter
    (claims.py), summed in part span_part's buffers (span_parts <= their number) into the chunk's partial sums;
    a chunk's images are fixed and its sums start from zero, so they do not depend on the part that ran it.
    group: the images summed at once, images_per_block(OH, OW), which sized padded and grid (the caller passes it,
    so that the kernel and its buffers agree whatever WEIGHT_POSITIONS was when the kernel compiled)."""
    N = input.shape[0]
    D, OH, OW = grad_output.shape[1], grad_output.shape[2], grad_output.shape[3]
    taps = offsets.shape[0]
    rounded = (D + WEIGHT_CHANNELS - 1) // WEIGHT_CHANNELS * WEIGHT_CHANNELS
    image_len = input.shape[1] * padded_h * padded_w
    spread_len = group * OH * OW * rounded
    unpadded = padding_h == 0 and padding_w == 0  # the blocks read the input itself: no copy
    chunks = partial.shape[0]
    source, work = padded[span_part], grid[span_part]  # the part's own: the cache holds one set
    spread = work[:spread_len]
    sums = work[spread_len:spread_len + taps * rounded]
    fill_zero(spread)  # the channels past D stay zero
    if not unpadded:
        fill_zero(source)  # the padding, which copy_image leaves alone
    while True:
        chunk = claim(counter)
        if chunk >= chunks:
            break
        chunk_sums = partial[chunk, 0]
        fill_zero(sums)
        first, last = chunk_bounds(chunk, chunks, N)
        for n0 in range(first, last, group):
            images = min(group, last - n0)
            for m in range(images):
                if not unpadded:
                    copy_image(input, n0 + m, source[m * image_len:], padding_h, padding_w, padded_h, padded_w)
                spread_image(grad_output, n0 + m, spread[m * OH * OW * rounded:], rounded)
            images_source = flat_input[n0 * image_len:] if unpadded else source
            for block in range(rounded // WEIGHT_CHANNELS):
                for t in range(0, taps, WEIGHT_TAPS):
                    weight_block_sums(spread, block * WEIGHT_CHANNELS, rounded, images_source, offsets, t, taps,
                                      images, image_len, OH, OW, stride_h * padded_w, stride_w, sums)
        for t in range(taps):
            target = chunk_sums[t]
            for d in range(D):
                target[d] = sums[t * rounded + d]


def conv2d_backward_weight_lanes(grad_output, input, grad_weight, padded, grid, partial, stride_h, stride_w,
                                 padding_h, padding_w, dilation_h, dilation_w):
    """grad_weight = sum over images of the products of grad_output with the padded input, as transposed
    partial sums per chunk of images (chunks, 1, C*KH*KW, D) added in chunk order."""
    D, C, KH, KW = grad_weight.shape
    padded_h, padded_w = input.shape[2] + 2 * padding_h, input.shape[3] + 2 * padding_w
    offsets = tap_offsets(C, KH, KW, dilation_h, dilation_w, padded_h, padded_w)
    input = np.ascontiguousarray(input)
    parallel_parts(conv2d_backward_weight_lanes_span, min(num_threads(), padded.shape[0]),
                   np.ascontiguousarray(grad_output), input, flat_view(input), padded, grid, partial, offsets,
                   stride_h, stride_w, padding_h, padding_w, padded_h, padded_w,
                   images_per_block(grad_output.shape[2], grad_output.shape[3]), claims())
    sum_partials(partial, grad_weight)


# The plan's surface: applies, buffers and the three passes (see plan.py).
def applies(pass_, convolution):
    """Ungrouped layers, any stride, padding and dilation."""
    return convolution.groups == 1


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer, one of each per thread's part (at most one an image; the weight
    gradient's partial_sums one per chunk of whole images): the padded source (the zero-padded image, C*Hp*Wp,
    images_per_block of them back to back for the weight gradient, UNUSED for unpadded layers, whose blocks read the
    input itself; or the input gradient's padded output gradient, D*Hs*Ws + Ws + SLACK); the grid, (channels rounded
    up to 16, positions of a plane, at least 4) for the forward pass and the input gradient where their blocks do
    not go straight to the output (UNUSED where they do), the spread output gradient (images_per_block x OH*OW, D
    rounded up to 16) and the sums (C*KH*KW, D rounded up to 16) for the weight gradient, whose partial_sums are
    (chunks, 1, C*KH*KW, D)."""
    N, C, H, W = convolution.input_shape
    D, _, KH, KW = convolution.weight_shape
    _, _, OH, OW = convolution.output_shape
    hyper = _hyper(convolution)
    taps = C * KH * KW
    image = C * (H + 2 * convolution.padding_h) * (W + 2 * convolution.padding_w)  # a zero-padded image
    if pass_ == "backward_input":
        _, _, source_h, source_w = transposed_geometry(H, W, OH, OW, KH, KW, *hyper)
        source = D * source_h * source_w + source_w + SLACK
        rows, cols = -(-H // convolution.stride_h), -(-W // convolution.stride_w)
        straight = convolution.stride_h == convolution.stride_w == 1 and C % CHANNELS == 0 and H * W >= POSITIONS
        grid = UNUSED if straight else max(rows * cols, POSITIONS) * _round_up(C, CHANNELS)
    elif pass_ == "forward":
        # unpadded layers' blocks read the input itself
        source = UNUSED if convolution.padding_h == convolution.padding_w == 0 else image
        straight = D % CHANNELS == 0 and OH * OW >= POSITIONS
        grid = UNUSED if straight else max(OH * OW, POSITIONS) * _round_up(D, CHANNELS)
    else:
        # the padded images back to back (none unpadded: the blocks read the input itself)
        source = UNUSED if convolution.padding_h == convolution.padding_w == 0 else images_per_block(OH, OW) * image
        grid = (images_per_block(OH, OW) * OH * OW + taps) * _round_up(D, WEIGHT_CHANNELS)
    partial_bytes = taps * D * itemsize
    chunks = max(1, min(max(1, N), max_chunks(pass_, threads, partial_bytes)))
    if pass_ == "backward_weight":  # the work buffers are a thread's, the partial sums a chunk's
        parts = min(chunks, max(1, threads))
        return (("padded", "padded", (parts, source)), ("grid", "col", (parts, grid)),
                ("partial_sums", "partial", (chunks, 1, taps, D)))
    return (("padded", "padded", (chunks, source)), ("grid", "col", (chunks, grid)))


def _hyper(convolution):
    """(stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w): Convolution.hyper without the groups,
    since lanes runs ungrouped layers only."""
    return convolution.hyper[:-1]


def forward(input, weight, bias, output, buffers, plan):
    conv2d_forward_lanes(input, weight, bias, output, buffers["padded"], buffers["grid"], *_hyper(plan.convolution))


def backward_input(grad_output, weight, grad_input, buffers, plan):
    conv2d_backward_input_lanes(grad_output, weight, grad_input, buffers["padded"], buffers["grid"],
                                *_hyper(plan.convolution))


def backward_weight(grad_output, input, grad_weight, buffers, plan):
    conv2d_backward_weight_lanes(grad_output, input, grad_weight, buffers["padded"], buffers["grid"],
                                 buffers["partial_sums"], *_hyper(plan.convolution))
