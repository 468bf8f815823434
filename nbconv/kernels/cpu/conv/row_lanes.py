"""The input gradient of stride-1 layers with few input channels, a row's positions in the vector lanes: LeNet-5's
second layer (6 -> 16 channels, 5x5 on 14x14), whose input gradient lanes.py would sum with 6 input channels in
16 lanes, and strips.py as one small matrix product (16 deep) per image and a scatter.

grad_input[n, c, y, x] = sum over (i, d, j) of weight[d, c, i, j] * grad_output[n, d, y + ph - i, x + pw - j]
(zero outside the output gradient). Per image, the output gradient is copied into rows padded left and right
with zeros (Ws = W + pw + L wide, L = max(0, KW - 1 - pw) zeros on the left), so that every column a tap reads
lies inside; rows outside it are never read: each input row y sums only the filter rows i that meet the output
gradient (y + ph - i in [0, OH)). The taps are ordered (i, d, j), so a row's taps are one contiguous range.

A block sums 6 input channels x 2 vectors of 8 positions of one row in 12 vector accumulators: each tap 2
vector loads of the padded output gradient and 6 broadcast weights (packed per call as (channel block, tap,
8)). A row's vectors start at 0, 8, ... with the last at W - 8 (overlapping the one before, whose values it
writes again, the same bits), taken two a block. Channels past C in the last block repeat channel C - 1 (the
same values, written again). Rows at least 8 wide; any padding; no stride, no dilation. The threads claim
images one at a time (claims.py), each in its own buffer.
"""
import functools

import numpy as np
from numba import njit

from ..shared import fill_zero, flat_view
from ..threads import num_threads, parallel_parts
from ..vectors import LANES, add_products, broadcast, load, store, zeros
from .blocks import max_chunks
from .claims import claim, claims
from .lanes import copy_image

BLOCK_CHANNELS = 6  # input channels a block sums at once (x 2 vectors of positions: 12 accumulators)
PACKED_STRIDE = LANES  # values a tap's packed weights take (6 used): one aligned run of 8


@njit(cache=True, no_cfunc_wrapper=True)
def pair_sums(source, offsets, first, last, packed, packed_start, start, first_x, second_x, target, at,
              channel_stride):
    """target[at + c*channel_stride + x + k] = sum over taps t in [first, last) of packed[packed_start + 8t + c] *
    source[start + offsets[t] + x + k], for c < 6, k < 8 and x in (first_x, second_x): 12 vector accumulators
    (the first vector stored first, so where the two overlap the second's values, the same bits, stay)."""
    a0 = zeros(source)
    a1 = zeros(source)
    a2 = zeros(source)
    a3 = zeros(source)
    a4 = zeros(source)
    a5 = zeros(source)
    b0 = zeros(source)
    b1 = zeros(source)
    b2 = zeros(source)
    b3 = zeros(source)
    b4 = zeros(source)
    b5 = zeros(source)
    first_at = start + first_x
    second_at = start + second_x
    for t in range(first, last):
        k = packed_start + PACKED_STRIDE * t
        o = offsets[t]
        u = load(source, o + first_at)
        v = load(source, o + second_at)
        w = broadcast(packed, k)
        a0 = add_products(a0, u, w)
        b0 = add_products(b0, v, w)
        w = broadcast(packed, k + 1)
        a1 = add_products(a1, u, w)
        b1 = add_products(b1, v, w)
        w = broadcast(packed, k + 2)
        a2 = add_products(a2, u, w)
        b2 = add_products(b2, v, w)
        w = broadcast(packed, k + 3)
        a3 = add_products(a3, u, w)
        b3 = add_products(b3, v, w)
        w = broadcast(packed, k + 4)
        a4 = add_products(a4, u, w)
        b4 = add_products(b4, v, w)
        w = broadcast(packed, k + 5)
        a5 = add_products(a5, u, w)
        b5 = add_products(b5, v, w)
    store(target, at + first_x, a0)
    store(target, at + second_x, b0)
    at += channel_stride
    store(target, at + first_x, a1)
    store(target, at + second_x, b1)
    at += channel_stride
    store(target, at + first_x, a2)
    store(target, at + second_x, b2)
    at += channel_stride
    store(target, at + first_x, a3)
    store(target, at + second_x, b3)
    at += channel_stride
    store(target, at + first_x, a4)
    store(target, at + second_x, b4)
    at += channel_stride
    store(target, at + first_x, a5)
    store(target, at + second_x, b5)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_input_row_lanes_span(span_part, span_parts, grad_output, grad_input, flat_grad_input, padded,
                                         offsets, packed, kernel_h, kernel_w, padding_h, padding_w, left, source_w,
                                         counter):
    """conv2d_backward_input_row_lanes, part span_part of span_parts: images claimed one at a time from counter
    (claims.py), into part span_part's buffer (span_parts <= their number)."""
    N, C, H, W = grad_input.shape
    D, OH = grad_output.shape[1], grad_output.shape[2]
    blocks = (C + BLOCK_CHANNELS - 1) // BLOCK_CHANNELS
    taps = D * kernel_h * kernel_w
    row_taps = D * kernel_w  # the taps of one filter row
    vectors = (W + LANES - 1) // LANES  # a row's vectors, the last starting at W - 8
    source = padded[span_part]
    fill_zero(source)  # the columns either side, which copy_image leaves alone
    while True:
        n = claim(counter)
        if n >= N:
            break
        copy_image(grad_output, n, source, 0, left, OH, source_w)
        for block in range(blocks):
            c0 = min(block * BLOCK_CHANNELS, C - BLOCK_CHANNELS)  # the last block may overlap the one before
            for y in range(H):
                # filter rows i with y + ph - i in [0, OH)
                first_tap = max(0, y + padding_h - OH + 1) * row_taps
                last_tap = min(kernel_h, y + padding_h + 1) * row_taps
                start = (y + padding_h) * source_w + left + padding_w
                at = ((n * C + c0) * H + y) * W
                for pair in range(0, vectors, 2):
                    first_x = min(pair * LANES, W - LANES)
                    second_x = min((pair + 1) * LANES, W - LANES)
                    pair_sums(source, offsets, first_tap, last_tap, packed, block * taps * PACKED_STRIDE, start,
                              first_x, second_x, flat_grad_input, at, H * W)


@functools.lru_cache(maxsize=64)
def tap_offsets(D, KH, KW, OH, source_w):
    """offsets[(i*D + d)*KW + j] = d*OH*Ws - i*Ws - j: where tap (i, d, j) reads in the padded output gradient,
    relative to its input position's start (int64; kept per geometry, never written)."""
    i, d, j = np.meshgrid(np.arange(KH), np.arange(D), np.arange(KW), indexing="ij")
    return np.ascontiguousarray((d * (OH * source_w) - i * source_w - j).reshape(-1), dtype=np.int64)


def pack_weight(weight, channels):
    """weight (D, C, KH, KW) as packed[((block*KH + i)*D + d)*KW + j)*8 + c] = weight[d, c0 + c, i, j], for
    channel blocks of `channels` starting at c0 = min(block*channels, C - channels) (the order pair_sums
    reads); zero in the 8 - channels unused places."""
    D, C, KH, KW = weight.shape
    blocks = -(-C // channels)
    packed = np.zeros((blocks, KH, D, KW, PACKED_STRIDE), weight.dtype)
    by_tap = weight.transpose(2, 0, 3, 1)  # (i, d, j, c)
    for block in range(blocks):
        c0 = min(block * channels, C - channels)
        packed[block, :, :, :, :channels] = by_tap[:, :, :, c0:c0 + channels]
    return packed.reshape(-1)


def geometry(convolution):
    """(left, Ws): the zero columns left of each padded output-gradient row and the rows' width."""
    W, KW, padding_w = convolution.input_shape[3], convolution.weight_shape[3], convolution.padding_w
    left = max(0, KW - 1 - padding_w)
    return left, max(W + padding_w + left, convolution.output_shape[3] + left)


def conv2d_backward_input_row_lanes(grad_output, weight, grad_input, padded, padding_h, padding_w, left, source_w):
    """grad_input = the transposed convolution of grad_output with weight (stride 1, undilated), an image a
    task."""
    D, C, KH, KW = weight.shape
    offsets = tap_offsets(D, KH, KW, grad_output.shape[2], source_w)
    packed = pack_weight(weight, BLOCK_CHANNELS)

    def run(target):
        parallel_parts(conv2d_backward_input_row_lanes_span, min(num_threads(), padded.shape[0]),
                       np.ascontiguousarray(grad_output), target, flat_view(target), padded, offsets, packed, KH, KW,
                       padding_h, padding_w, left, source_w, claims())
    if grad_input.flags.c_contiguous:
        run(grad_input)
    else:
        written = np.empty(grad_input.shape, grad_input.dtype)
        run(written)
        grad_input[...] = written


# The plan's surface: applies, buffers and the passes (see plan.py).
def applies(pass_, convolution):
    """The input gradient of ungrouped, undilated stride-1 layers with at least BLOCK_CHANNELS input channels
    and inputs at least 8 wide."""
    return (pass_ == "backward_input" and convolution.groups == 1
            and convolution.stride_h == convolution.stride_w == 1
            and convolution.dilation_h == convolution.dilation_w == 1
            and convolution.input_shape[1] >= BLOCK_CHANNELS and convolution.input_shape[3] >= LANES)


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape): the padded output gradient, (chunks, D*OH*Ws), one per thread's part (chunks:
    at least the thread count, or one an image)."""
    N, D, OH, _ = convolution.output_shape
    _, source_w = geometry(convolution)
    chunks = max(1, min(max(1, N), max_chunks(pass_, threads)))
    return (("padded", "padded", (chunks, D * OH * source_w)),)


def backward_input(grad_output, weight, grad_input, buffers, plan):
    convolution = plan.convolution
    conv2d_backward_input_row_lanes(grad_output, weight, grad_input, buffers["padded"], convolution.padding_h,
                                    convolution.padding_w, *geometry(convolution))
