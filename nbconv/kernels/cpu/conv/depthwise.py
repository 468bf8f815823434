"""Depthwise 3x3 convolution, stride 1 (MobileNet's layer): one filter per channel, every tap unrolled.

Each thread claims planes (image, channel) one at a time from a shared counter (claims.py), copies the plane
into its own zero-bordered flat scratch buffer (only the interior is written per plane: the border, zeroed
once per call, stays zero), and computes the plane's outputs 8 columns at a time in vector registers
(vectors.py): two output rows per step, so each of the four input rows they read is loaded once per
column shift (12 loads, 18 fused multiply-adds and 2 stores per 16 outputs). A row whose width is not a
multiple of 8 ends with a block that overlaps the one before (the same values written twice). The input
gradient is the same loop over the output gradient padded by 2 - padding, with the filter turned by 180
degrees; the weight gradient keeps its nine sums per channel in nine vector registers, reduced at the end.

Shapes as in nbconv.kernels.cpu.conv.dispatch, with C input channels, D = M C output channels (M = 1 for
the input gradient), weight (D, 1, 3, 3), C-contiguous arrays; padded: (chunks, (H + 4) * (W + 4)) scratch,
one zero-bordered plane per thread (room for the input padded by up to 2, and for the output gradient padded
by 2 - padding).
"""
import numpy as np
from numba import njit

from ..fastmath import REDUCE as _REDUCE
from ..shared import fill_zero
from ..threads import num_threads, parallel_parts
from ..vector_blocks import BLOCK, copy_block
from ..vectors import LANES, add_product, add_products, broadcast, lane_sum, load, store, zeros
from .claims import claim, claims


@njit(cache=True, inline="always")
def copy_interior(plane, H, W, buffer, pad_h, pad_w, padded_w):
    """buffer[(h + pad_h) * padded_w + pad_w + w] = plane[h * W + w] (plane: flat (H * W,)); the border is left
    as it is (zero)."""
    for h in range(H):
        source, target = h * W, (h + pad_h) * padded_w + pad_w
        q = 0
        while q + BLOCK <= W:
            copy_block(buffer, target + q, plane, source + q)
            q += BLOCK
        for k in range(q, W):
            buffer[target + k] = plane[source + k]


@njit(cache=True, inline="always")
def correlate_plane(buffer, padded_w, taps, offset, output, OH, OW):
    """output[oh * OW + q] = offset[0] + sum_{i,j} taps[i, j] * buffer[(oh + i) * padded_w + q + j]
    (output: flat (OH * OW,); offset: an array whose first value is added, taps: (3, 3))."""
    t00, t01, t02 = taps[0, 0], taps[0, 1], taps[0, 2]
    t10, t11, t12 = taps[1, 0], taps[1, 1], taps[1, 2]
    t20, t21, t22 = taps[2, 0], taps[2, 1], taps[2, 2]
    if OW < LANES:  # too narrow for a vector block
        for oh in range(OH):
            top, middle, bottom = oh * padded_w, (oh + 1) * padded_w, (oh + 2) * padded_w
            for q in range(OW):
                output[oh * OW + q] = (offset[0] + t00 * buffer[top + q] + t01 * buffer[top + q + 1]
                                       + t02 * buffer[top + q + 2] + t10 * buffer[middle + q]
                                       + t11 * buffer[middle + q + 1] + t12 * buffer[middle + q + 2]
                                       + t20 * buffer[bottom + q] + t21 * buffer[bottom + q + 1]
                                       + t22 * buffer[bottom + q + 2])
        return
    start = broadcast(offset, 0)
    oh = 0
    while oh + 2 <= OH:  # rows oh and oh + 1 from buffer rows oh .. oh + 3
        r0 = oh * padded_w
        r1, r2, r3 = r0 + padded_w, r0 + 2 * padded_w, r0 + 3 * padded_w
        o0 = oh * OW
        q = 0
        while True:
            if q + LANES > OW:
                q = OW - LANES
            x0, x1, x2 = load(buffer, r1 + q), load(buffer, r1 + q + 1), load(buffer, r1 + q + 2)
            first = add_product(add_product(add_product(start, x0, t10), x1, t11), x2, t12)
            second = add_product(add_product(add_product(start, x0, t00), x1, t01), x2, t02)
            x0, x1, x2 = load(buffer, r2 + q), load(buffer, r2 + q + 1), load(buffer, r2 + q + 2)
            first = add_product(add_product(add_product(first, x0, t20), x1, t21), x2, t22)
            second = add_product(add_product(add_product(second, x0, t10), x1, t11), x2, t12)
            x0, x1, x2 = load(buffer, r0 + q), load(buffer, r0 + q + 1), load(buffer, r0 + q + 2)
            first = add_product(add_product(add_product(first, x0, t00), x1, t01), x2, t02)
            x0, x1, x2 = load(buffer, r3 + q), load(buffer, r3 + q + 1), load(buffer, r3 + q + 2)
            second = add_product(add_product(add_product(second, x0, t20), x1, t21), x2, t22)
            store(output, o0 + q, first)
            store(output, o0 + OW + q, second)
            if q + LANES >= OW:
                break
            q += LANES
        oh += 2
    if oh < OH:  # the last row of an odd count
        r0 = oh * padded_w
        r1, r2 = r0 + padded_w, r0 + 2 * padded_w
        q = 0
        while True:
            if q + LANES > OW:
                q = OW - LANES
            total = add_product(add_product(add_product(start, load(buffer, r0 + q), t00), load(buffer, r0 + q + 1),
                                            t01), load(buffer, r0 + q + 2), t02)
            total = add_product(add_product(add_product(total, load(buffer, r1 + q), t10), load(buffer, r1 + q + 1),
                                            t11), load(buffer, r1 + q + 2), t12)
            total = add_product(add_product(add_product(total, load(buffer, r2 + q), t20), load(buffer, r2 + q + 1),
                                            t21), load(buffer, r2 + q + 2), t22)
            store(output, oh * OW + q, total)
            if q + LANES >= OW:
                break
            q += LANES


@njit(cache=True, inline="always")
def thread_planes(span_part, padded, source, pad_w):
    """This thread's buffer padded[span_part] with its border zeroed once (copy_interior writes only the interior),
    the buffer's row width W + 2 pad_w, and source (N, C, H, W) as N * C planes of H * W values."""
    N, C, H, W = source.shape
    buffer = padded[span_part]
    fill_zero(buffer)
    return buffer, W + 2 * pad_w, source.reshape((N * C, H * W))


@njit(cache=True, inline="always")
def correlate_planes(span_part, counter, source, taps, offsets, output, padded, pad_h, pad_w):
    """For each plane (n, d) this thread claims: output[n, d] = offsets[d] (0 without offsets) + the 3x3
    correlation of source[n, d // M] zero-padded by (pad_h, pad_w) with taps[d] (3, 3), M = D // C filters
    a channel. source (N, C, H, W), output (N, D, OH, OW) with OH = H + 2 pad_h - 2, likewise OW."""
    N, C, H, W = source.shape
    D, OH, OW = output.shape[1], output.shape[2], output.shape[3]
    multiplier = D // C
    if span_part >= padded.shape[0]:  # more threads than buffers: the others claim every plane
        return
    buffer, padded_w, sources = thread_planes(span_part, padded, source, pad_w)
    outputs = output.reshape((N * D, OH * OW))
    offset = np.zeros(1, output.dtype)
    while True:
        task = claim(counter)
        if task >= N * D:
            return
        d = task % D
        if offsets.shape[0] > 0:
            offset[0] = offsets[d]
        copy_interior(sources[task // D * C + d // multiplier], H, W, buffer, pad_h, pad_w, padded_w)
        correlate_plane(buffer, padded_w, taps[d], offset, outputs[task], OH, OW)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_forward_depthwise3x3_span(span_part, span_parts, input, weight, bias, output, padded, padding_h, padding_w,
                                     counter):
    """conv2d_forward_depthwise3x3's planes claimed by one of span_parts threads (threads.py, claims.py)."""
    correlate_planes(span_part, counter, input, weight[:, 0], bias, output, padded, padding_h, padding_w)


def into_contiguous(kernel, output):
    """kernel(output), through a C-contiguous copy where output is not one (the kernels index planes flat)."""
    if output.flags.c_contiguous:
        return kernel(output)
    written = np.empty(output.shape, output.dtype)
    kernel(written)
    output[...] = written


def conv2d_forward_depthwise3x3(input, weight, bias, output, padded, padding_h, padding_w):
    """output[n, d] = bias[d] + the 3x3 correlation of input[n, d // M] (zero-padded) with weight[d, 0], M = D // C."""
    into_contiguous(lambda target: parallel_parts(
        conv2d_forward_depthwise3x3_span, num_threads(), np.ascontiguousarray(input), weight, bias, target, padded,
        padding_h, padding_w, claims()), output)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def turn_filters(weight, turned):
    """turned[c, i, j] = weight[c, 0, 2 - i, 2 - j]."""
    for c in range(weight.shape[0]):
        for i in range(3):
            for j in range(3):
                turned[c, i, j] = weight[c, 0, 2 - i, 2 - j]


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_input_depthwise3x3_span(span_part, span_parts, grad_output, turned, grad_input, padded,
                                            padding_h, padding_w, counter):
    """conv2d_backward_input_depthwise3x3's planes claimed by one of span_parts threads (threads.py, claims.py)."""
    correlate_planes(span_part, counter, grad_output, turned, turned[0:0, 0, 0], grad_input, padded,
                     2 - padding_h, 2 - padding_w)


def conv2d_backward_input_depthwise3x3(grad_output, weight, grad_input, turned, padded, padding_h, padding_w):
    """grad_input[n, c] = the 3x3 correlation of grad_output[n, c], padded by 2 - padding, with weight[c, 0]
    turned by 180 degrees (turned: (C, 3, 3) scratch for those filters). Needs padding <= 2."""
    turn_filters(weight, turned)
    into_contiguous(lambda target: parallel_parts(
        conv2d_backward_input_depthwise3x3_span, num_threads(), np.ascontiguousarray(grad_output), turned, target,
        padded, padding_h, padding_w, claims()), grad_input)


@njit(cache=True, inline="always")
def weight_sums_tail(buffer, padded_w, values, oh, OW, first, tail):
    """tail[3 i + j] += values[oh * OW + q] * buffer[(oh + i) * padded_w + q + j] for columns first <= q < OW."""
    t00, t01, t02, t10, t11, t12, t20, t21, t22 = tail
    r0 = oh * padded_w
    r1, r2, o = r0 + padded_w, r0 + 2 * padded_w, oh * OW
    for q in range(first, OW):
        g = values[o + q]
        t00 += g * buffer[r0 + q]
        t01 += g * buffer[r0 + q + 1]
        t02 += g * buffer[r0 + q + 2]
        t10 += g * buffer[r1 + q]
        t11 += g * buffer[r1 + q + 1]
        t12 += g * buffer[r1 + q + 2]
        t20 += g * buffer[r2 + q]
        t21 += g * buffer[r2 + q + 1]
        t22 += g * buffer[r2 + q + 2]
    return (t00, t01, t02, t10, t11, t12, t20, t21, t22)


@njit(cache=True, inline="always")
def weight_sums_plane(buffer, padded_w, values, OH, OW, sums, tail):
    """sums[3 i + j] (vectors, lane-wise partial sums) += values[oh * OW + q] * buffer[(oh + i) * padded_w + q + j]
    over the columns in whole blocks of 8, tail[3 i + j] (scalars) over the rest; returns both updated.
    Two output rows a step: each of the four buffer rows they meet is loaded once per column shift (14 loads
    for 18 multiply-adds, against 20 a row at a time)."""
    s00, s01, s02, s10, s11, s12, s20, s21, s22 = sums
    whole = OW - OW % LANES
    oh = 0
    while oh + 2 <= OH:
        r0 = oh * padded_w
        r1, r2, r3, o = r0 + padded_w, r0 + 2 * padded_w, r0 + 3 * padded_w, oh * OW
        for q in range(0, whole, LANES):
            upper, lower = load(values, o + q), load(values, o + OW + q)
            x0, x1, x2 = load(buffer, r0 + q), load(buffer, r0 + q + 1), load(buffer, r0 + q + 2)
            s00, s01, s02 = add_products(s00, upper, x0), add_products(s01, upper, x1), add_products(s02, upper, x2)
            x0, x1, x2 = load(buffer, r1 + q), load(buffer, r1 + q + 1), load(buffer, r1 + q + 2)
            s00, s01, s02 = add_products(s00, lower, x0), add_products(s01, lower, x1), add_products(s02, lower, x2)
            s10, s11, s12 = add_products(s10, upper, x0), add_products(s11, upper, x1), add_products(s12, upper, x2)
            x0, x1, x2 = load(buffer, r2 + q), load(buffer, r2 + q + 1), load(buffer, r2 + q + 2)
            s10, s11, s12 = add_products(s10, lower, x0), add_products(s11, lower, x1), add_products(s12, lower, x2)
            s20, s21, s22 = add_products(s20, upper, x0), add_products(s21, upper, x1), add_products(s22, upper, x2)
            x0, x1, x2 = load(buffer, r3 + q), load(buffer, r3 + q + 1), load(buffer, r3 + q + 2)
            s20, s21, s22 = add_products(s20, lower, x0), add_products(s21, lower, x1), add_products(s22, lower, x2)
        tail = weight_sums_tail(buffer, padded_w, values, oh, OW, whole, tail)
        tail = weight_sums_tail(buffer, padded_w, values, oh + 1, OW, whole, tail)
        oh += 2
    if oh < OH:  # the last row of an odd count
        r0 = oh * padded_w
        r1, r2, o = r0 + padded_w, r0 + 2 * padded_w, oh * OW
        for q in range(0, whole, LANES):
            g = load(values, o + q)
            s00 = add_products(s00, g, load(buffer, r0 + q))
            s01 = add_products(s01, g, load(buffer, r0 + q + 1))
            s02 = add_products(s02, g, load(buffer, r0 + q + 2))
            s10 = add_products(s10, g, load(buffer, r1 + q))
            s11 = add_products(s11, g, load(buffer, r1 + q + 1))
            s12 = add_products(s12, g, load(buffer, r1 + q + 2))
            s20 = add_products(s20, g, load(buffer, r2 + q))
            s21 = add_products(s21, g, load(buffer, r2 + q + 1))
            s22 = add_products(s22, g, load(buffer, r2 + q + 2))
        tail = weight_sums_tail(buffer, padded_w, values, oh, OW, whole, tail)
    return (s00, s01, s02, s10, s11, s12, s20, s21, s22), tail


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_REDUCE, no_cfunc_wrapper=True)
def conv2d_backward_weight_depthwise3x3_span(span_part, span_parts, grad_output, input, grad_weight, padded, padding_h,
                                             padding_w, counter):
    """conv2d_backward_weight_depthwise3x3's channels claimed by one of span_parts threads (threads.py, claims.py)."""
    N, C, H, W = input.shape
    D, OH, OW = grad_output.shape[1], grad_output.shape[2], grad_output.shape[3]
    multiplier = D // C
    if span_part >= padded.shape[0]:  # more threads than buffers: the others claim every filter
        return
    buffer, padded_w, sources = thread_planes(span_part, padded, input, padding_w)
    values = grad_output.reshape((N * D, OH * OW))
    zero = zeros(buffer)
    nought = grad_weight.dtype.type(0)
    while True:
        d = claim(counter)
        if d >= D:
            return
        sums = (zero, zero, zero, zero, zero, zero, zero, zero, zero)
        tail = (nought, nought, nought, nought, nought, nought, nought, nought, nought)
        for n in range(N):
            copy_interior(sources[n * C + d // multiplier], H, W, buffer, padding_h, padding_w, padded_w)
            sums, tail = weight_sums_plane(buffer, padded_w, values[n * D + d], OH, OW, sums, tail)
        s00, s01, s02, s10, s11, s12, s20, s21, s22 = sums
        t00, t01, t02, t10, t11, t12, t20, t21, t22 = tail
        target = grad_weight[d, 0]
        target[0, 0], target[0, 1], target[0, 2] = lane_sum(s00) + t00, lane_sum(s01) + t01, lane_sum(s02) + t02
        target[1, 0], target[1, 1], target[1, 2] = lane_sum(s10) + t10, lane_sum(s11) + t11, lane_sum(s12) + t12
        target[2, 0], target[2, 1], target[2, 2] = lane_sum(s20) + t20, lane_sum(s21) + t21, lane_sum(s22) + t22


def conv2d_backward_weight_depthwise3x3(grad_output, input, grad_weight, padded, padding_h, padding_w):
    """grad_weight[d, 0, i, j] = sum over n, oh, q of grad_output[n, d, oh, q] * padded input[n, d // M][oh + i, q + j]
    (M = D // C). A task is a filter (its nine sums over the whole batch), so the result does not depend on the
    threads."""
    parallel_parts(conv2d_backward_weight_depthwise3x3_span, num_threads(), np.ascontiguousarray(grad_output),
                   np.ascontiguousarray(input), grad_weight, padded, padding_h, padding_w, claims())


# The plan's surface: applies, buffers and the three passes (see plan.py).
def applies(pass_, convolution):
    """One 3x3 filter per channel (weight (C, 1, 3, 3), groups = C), stride 1, no dilation, padding <= 2; the
    forward and weight gradient also M filters a channel (weight (M C, 1, 3, 3), output channel d reading
    input channel d // M)."""
    D, Cg, KH, KW = convolution.weight_shape
    C = convolution.input_shape[1]
    filters = D == C if pass_ == "backward_input" else D % C == 0
    return (convolution.groups > 1 and Cg == 1 and C == convolution.groups and filters and KH == KW == 3
            and convolution.stride_h == convolution.stride_w == 1
            and convolution.dilation_h == convolution.dilation_w == 1
            and convolution.padding_h <= 2 and convolution.padding_w <= 2)


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer: planes (threads, (H + 4)*(W + 4)), one zero-bordered plane
    per thread (room for the input padded by up to 2 and for the output gradient padded by 2 - padding); the
    input gradient adds turned_filters (C, 3, 3)."""
    N, C, H, W = convolution.input_shape
    planes = ("planes", "padded", (max(1, min(N * convolution.weight_shape[0], threads)), (H + 4) * (W + 4)))
    if pass_ == "backward_input":
        return (("turned_filters", "turned_filters", (convolution.weight_shape[0], 3, 3)), planes)
    return (planes,)


def forward(input, weight, bias, output, buffers, plan):
    conv2d_forward_depthwise3x3(input, weight, bias, output, buffers["planes"], plan.convolution.padding_h,
                                plan.convolution.padding_w)


def backward_input(grad_output, weight, grad_input, buffers, plan):
    conv2d_backward_input_depthwise3x3(grad_output, weight, grad_input, buffers["turned_filters"],
                                       buffers["planes"], plan.convolution.padding_h, plan.convolution.padding_w)


def backward_weight(grad_output, input, grad_weight, buffers, plan):
    conv2d_backward_weight_depthwise3x3(grad_output, input, grad_weight, buffers["planes"],
                                        plan.convolution.padding_h, plan.convolution.padding_w)
