"""Sums over a convolution's taps kept in vector registers until the last tap, and 2x2 max pooling a vector
of outputs at a time: loops over vectors.py's Vector values.

The loops LLVM vectorises by itself run tap by tap over a whole output row, so every tap (or every few
taps) loads and stores the row again: for LeNet-5's first layer (25 taps, 6 channels) that is more memory
traffic than arithmetic. `tap_sums_2x32` and `tap_sums_1x32` instead hold 32 consecutive outputs of 2
channels (or 1) in registers, add one multiply-add per tap to each, and store them once: four loads of the
image and 2 (or 1) of the weights per tap for 8 (or 4) vector multiply-adds. `tap_dots_4x3` (and its 4x1,
1x3, 1x1 forms for the remainders) keeps the partial dot products of four taps' runs with three
output-gradient rows in twelve vectors: seven loads for twelve multiply-adds.

Callers guarantee that every value read and written lies inside its (flat, C-contiguous) array; nothing is
checked here. Each output is summed over the taps in order 0, 1, ..., taps - 1 with multiply-adds, so its
value does not depend on the block or on the thread that computes it.
"""
from numba import njit

from .vectors import (LANES, add, add_products, any_nan, broadcast, lane_sum, load, load_pairs, maximum, ramp,
                      select_equal, splat, store, zeros)

VECTORS = 4  # vectors per channel in one block: 32 outputs (2 channels x 4 vectors: 8 independent sums, as
# many as two multiply-add units with a latency of 4 cycles keep busy; 2x16 and 3x16 ran 10-15% slower, 3x32 50%)
WIDTH = LANES * VECTORS


@njit(cache=True, no_cfunc_wrapper=True)
def tap_sums_2x32(output, output_start, output_stride, image, image_start, starts, weights, weight_start, taps):
    """output[output_start + c*output_stride + k] = sum over t < taps of weights[weight_start + c*taps + t] *
    image[image_start + starts[t] + k], for c < 2, k < 32."""
    a0 = zeros(image)
    a1 = zeros(image)
    a2 = zeros(image)
    a3 = zeros(image)
    b0 = zeros(image)
    b1 = zeros(image)
    b2 = zeros(image)
    b3 = zeros(image)
    for t in range(taps):
        at = image_start + starts[t]
        x0 = load(image, at)
        x1 = load(image, at + LANES)
        x2 = load(image, at + 2 * LANES)
        x3 = load(image, at + 3 * LANES)
        first = broadcast(weights, weight_start + t)
        second = broadcast(weights, weight_start + taps + t)
        a0 = add_products(a0, first, x0)
        a1 = add_products(a1, first, x1)
        a2 = add_products(a2, first, x2)
        a3 = add_products(a3, first, x3)
        b0 = add_products(b0, second, x0)
        b1 = add_products(b1, second, x1)
        b2 = add_products(b2, second, x2)
        b3 = add_products(b3, second, x3)
    store(output, output_start, a0)
    store(output, output_start + LANES, a1)
    store(output, output_start + 2 * LANES, a2)
    store(output, output_start + 3 * LANES, a3)
    row = output_start + output_stride
    store(output, row, b0)
    store(output, row + LANES, b1)
    store(output, row + 2 * LANES, b2)
    store(output, row + 3 * LANES, b3)


@njit(cache=True, no_cfunc_wrapper=True)
def tap_sums_1x32(output, output_start, output_stride, image, image_start, starts, weights, weight_start, taps):
    """tap_sums_2x32 for one channel: output[output_start + k] = sum over t < taps of
    weights[weight_start + t] * image[image_start + starts[t] + k], for k < 32 (output_stride unused)."""
    a0 = zeros(image)
    a1 = zeros(image)
    a2 = zeros(image)
    a3 = zeros(image)
    for t in range(taps):
        at = image_start + starts[t]
        weight = broadcast(weights, weight_start + t)
        a0 = add_products(a0, weight, load(image, at))
        a1 = add_products(a1, weight, load(image, at + LANES))
        a2 = add_products(a2, weight, load(image, at + 2 * LANES))
        a3 = add_products(a3, weight, load(image, at + 3 * LANES))
    store(output, output_start, a0)
    store(output, output_start + LANES, a1)
    store(output, output_start + 2 * LANES, a2)
    store(output, output_start + 3 * LANES, a3)


@njit(cache=True, no_cfunc_wrapper=True)
def tap_dots_4x3(sums, first_tap, first_channel, channels_total, image, starts, grads, grad_stride, count):
    """sums[(first_tap + i)*channels_total + first_channel + c] += sum over q < count of
    image[starts[first_tap + i] + q] * grads[(first_channel + c)*grad_stride + q], for i < 4, c < 3; count a
    multiple of 8."""
    s0, s1, s2, s3 = starts[first_tap], starts[first_tap + 1], starts[first_tap + 2], starts[first_tap + 3]
    g0 = first_channel * grad_stride
    g1, g2 = g0 + grad_stride, g0 + 2 * grad_stride
    p00 = zeros(image)
    p01 = zeros(image)
    p02 = zeros(image)
    p10 = zeros(image)
    p11 = zeros(image)
    p12 = zeros(image)
    p20 = zeros(image)
    p21 = zeros(image)
    p22 = zeros(image)
    p30 = zeros(image)
    p31 = zeros(image)
    p32 = zeros(image)
    for q in range(0, count, LANES):
        x0 = load(image, s0 + q)
        x1 = load(image, s1 + q)
        x2 = load(image, s2 + q)
        x3 = load(image, s3 + q)
        y0 = load(grads, g0 + q)
        y1 = load(grads, g1 + q)
        y2 = load(grads, g2 + q)
        p00 = add_products(p00, x0, y0)
        p01 = add_products(p01, x0, y1)
        p02 = add_products(p02, x0, y2)
        p10 = add_products(p10, x1, y0)
        p11 = add_products(p11, x1, y1)
        p12 = add_products(p12, x1, y2)
        p20 = add_products(p20, x2, y0)
        p21 = add_products(p21, x2, y1)
        p22 = add_products(p22, x2, y2)
        p30 = add_products(p30, x3, y0)
        p31 = add_products(p31, x3, y1)
        p32 = add_products(p32, x3, y2)
    row = first_tap * channels_total + first_channel
    sums[row] += lane_sum(p00)
    sums[row + 1] += lane_sum(p01)
    sums[row + 2] += lane_sum(p02)
    row += channels_total
    sums[row] += lane_sum(p10)
    sums[row + 1] += lane_sum(p11)
    sums[row + 2] += lane_sum(p12)
    row += channels_total
    sums[row] += lane_sum(p20)
    sums[row + 1] += lane_sum(p21)
    sums[row + 2] += lane_sum(p22)
    row += channels_total
    sums[row] += lane_sum(p30)
    sums[row + 1] += lane_sum(p31)
    sums[row + 2] += lane_sum(p32)


@njit(cache=True, no_cfunc_wrapper=True)
def tap_dots_4x1(sums, first_tap, first_channel, channels_total, image, starts, grads, grad_stride, count):
    """tap_dots_4x3 for four taps and one channel."""
    s0, s1, s2, s3 = starts[first_tap], starts[first_tap + 1], starts[first_tap + 2], starts[first_tap + 3]
    g0 = first_channel * grad_stride
    p0 = zeros(image)
    p1 = zeros(image)
    p2 = zeros(image)
    p3 = zeros(image)
    for q in range(0, count, LANES):
        y0 = load(grads, g0 + q)
        p0 = add_products(p0, load(image, s0 + q), y0)
        p1 = add_products(p1, load(image, s1 + q), y0)
        p2 = add_products(p2, load(image, s2 + q), y0)
        p3 = add_products(p3, load(image, s3 + q), y0)
    row = first_tap * channels_total + first_channel
    sums[row] += lane_sum(p0)
    sums[row + channels_total] += lane_sum(p1)
    sums[row + 2 * channels_total] += lane_sum(p2)
    sums[row + 3 * channels_total] += lane_sum(p3)


@njit(cache=True, no_cfunc_wrapper=True)
def tap_dots_1x3(sums, first_tap, first_channel, channels_total, image, starts, grads, grad_stride, count):
    """tap_dots_4x3 for one tap and three channels."""
    s0 = starts[first_tap]
    g0 = first_channel * grad_stride
    g1, g2 = g0 + grad_stride, g0 + 2 * grad_stride
    p0 = zeros(image)
    p1 = zeros(image)
    p2 = zeros(image)
    for q in range(0, count, LANES):
        x0 = load(image, s0 + q)
        p0 = add_products(p0, x0, load(grads, g0 + q))
        p1 = add_products(p1, x0, load(grads, g1 + q))
        p2 = add_products(p2, x0, load(grads, g2 + q))
    row = first_tap * channels_total + first_channel
    sums[row] += lane_sum(p0)
    sums[row + 1] += lane_sum(p1)
    sums[row + 2] += lane_sum(p2)


@njit(cache=True, no_cfunc_wrapper=True)
def tap_dots_1x1(sums, first_tap, first_channel, channels_total, image, starts, grads, grad_stride, count):
    """tap_dots_4x3 for one tap and one channel."""
    s0 = starts[first_tap]
    g0 = first_channel * grad_stride
    p0 = zeros(image)
    for q in range(0, count, LANES):
        p0 = add_products(p0, load(image, s0 + q), load(grads, g0 + q))
    sums[first_tap * channels_total + first_channel] += lane_sum(p0)


@njit(cache=True, no_cfunc_wrapper=True)
def max_pool_2x2_planes(input, output, indices, first_plane, last_plane, lanes, record):
    """2x2, stride-2 max pooling of the planes first_plane <= p < last_plane of C-contiguous input (N, C, H, W)
    into output (N, C, OH, OW), OW >= lanes, `lanes` outputs at a time: each output is the maximum of its
    window's four values (Numba's max(): y when y > x), and when `record`, indices (like output) holds the flat
    position in the plane of the first of them (row-major) equal to it. A row's last block starts at
    OW - lanes (redoing a few outputs: the same values). Returns 1 when any window value is NaN (then those
    outputs and positions are not the pooling's: the caller redoes the planes), else 0. lanes: 8 or 4, a
    constant at the call; indices: ignored unless record."""
    H, W = input.shape[2], input.shape[3]
    OH, OW = output.shape[2], output.shape[3]
    nan = 0  # the arrays are indexed flat (vectors.py): a plane or row view costs two atomic reference count
    # updates, as much as a small plane's arithmetic
    for plane in range(first_plane, last_plane):
        for oh in range(OH):
            top = plane * H * W + 2 * oh * W
            bottom = top + W
            row = (plane * OH + oh) * OW
            ow = 0
            while ow < OW:
                first = min(ow, OW - lanes)
                a, b = load_pairs(input, top + 2 * first, lanes)
                c, d = load_pairs(input, bottom + 2 * first, lanes)
                top_max = maximum(maximum(a, b), maximum(c, d))
                store(output, row + first, top_max)
                if record:  # the first tap (row-major) equal to the maximum, as in the scalar loop
                    offset = select_equal(c, top_max, splat(W, top_max), splat(W + 1, top_max))
                    offset = select_equal(b, top_max, splat(1, top_max), offset)
                    offset = select_equal(a, top_max, splat(0, top_max), offset)
                    store(indices, row + first, add(ramp(2 * oh * W + 2 * first, 2, top_max), offset))
                nan |= any_nan(a, b) | any_nan(c, d)
                ow += lanes
    return nan
