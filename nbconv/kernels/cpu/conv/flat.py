"""Stride-1 convolution with few output channels, as vectorised loops over the flat padded image.

In the zero-padded image (C, Hp, Wp) laid out flat, tap (c, i, j) of all output rows, taken Wp wide as in
wide.py, reads the one contiguous run that starts at c*Hp*Wp + i*dh*Wp + j*dw and is OH*Wp long (see
shift.py). With few output channels (LeNet-5's first layer: 1 -> 6) the matrix products of wide.py and
gemm.py have one side 6 long, where OpenBLAS runs at a fifth of its rate, so here the same sums are taken
in vector registers across all the taps (register_blocks.py):

- forward: output row r of channel d is the sum over taps t of weight[d, t] * run_t[r*Wp:][:OW]. Rows at
  least ROWS_FROM wide are summed a row (up to 32 columns, the last vector moved back to end with the row)
  of three channels at a time and stored in the output with the bias; narrower ones Wp wide over the whole
  run, 32 outputs of two channels at a time, then compacted to OW columns (+ bias);
- weight gradient: grad_weight[d, t] is the dot product of run_t with channel d of the output gradient, for
  four taps and three channels at a time (seven loads for twelve multiply-adds): rows at least ROWS_FROM
  wide read where they lie (the lanes of a vector moved back that the one before holds are not counted),
  narrower ones over the whole run with the output gradient spread to Wp columns (zeros in the extra
  ones). Summed over the images in fixed chunks as in wide.py, so the result does not depend on the thread
  count.
The input gradient is not done here (plan.py gives it to wide.py).

Workspaces, one per parallel chunk (a whole image a task): padded (C*Hp*Wp + slack,), the slack being the
(KW-1)*dw values the last tap reads past the last row; for output rows narrower than ROWS_FROM, wide (D,
OH*Wp), the output before compaction or the spread output gradient; the weight gradient's partial sums
(chunks, 1, C*KH*KW, D), added in chunk order by shared.sum_partials. Groups: one (plan.py sends only such
layers here).
"""
import functools

import numpy as np
from numba import njit

from ..fastmath import REDUCE
from ..register_blocks import (LANES, WIDTH, row_tap_dots_1x1, row_tap_dots_1x3, row_tap_dots_4x1, row_tap_dots_4x3,
                               row_tap_sums_1x32, row_tap_sums_2x32, row_tap_sums_3x32, tap_dots_1x1, tap_dots_1x3,
                               tap_dots_4x1, tap_dots_4x3, tap_sums_1x32, tap_sums_2x32)
from ..shared import chunk_bounds, flat_view, sum_partials
from ..threads import num_threads, parallel_parts
from .blocks import max_chunks
from .rows import compact_rows, copy_rows, pad_rows, spread_rows

ROWS_FROM = WIDTH - LANES  # output rows read and written in place from this width on (a narrower row's block
# would repeat a vector or more)


@functools.lru_cache(maxsize=64)
def tap_starts(channels, kernel_h, kernel_w, plane, padded_w, dilation_h, dilation_w):
    """(C*KH*KW,) int64: where tap t = (c*KH + i)*KW + j starts in the flat padded image, c*Hp*Wp + i*dh*Wp +
    j*dw. Computed here, not in the kernels: an array allocated in compiled code makes Numba compile np.empty's
    overloads once a process (not kept in its disk cache). Shared between calls: the kernels only read it."""
    tap = np.arange(channels * kernel_h * kernel_w, dtype=np.int64)
    within = tap % (kernel_h * kernel_w)
    return (tap // (kernel_h * kernel_w)) * plane + (within // kernel_w) * dilation_h * padded_w + \
        (within % kernel_w) * dilation_w


@njit(cache=True, inline="always", fastmath=REDUCE)
def add_tap(row, w0, x0):
    for q in range(row.shape[0]):
        row[q] += w0 * x0[q]


@njit(cache=True, inline="always", fastmath=REDUCE)
def dot(run, s0):
    a0 = run.dtype.type(0)
    for q in range(run.shape[0]):
        a0 += s0[q] * run[q]
    return a0


@njit(nogil=True, cache=True, error_model="numpy", fastmath=REDUCE, no_cfunc_wrapper=True)
def conv2d_forward_flat_span(span_part, span_parts, input, filters, flat_filters, bias, output, padded, wide,
                             flat_wide, starts, padding_h, padding_w):
    """conv2d_forward_flat over the span_part-th of span_parts slices of its outer loop (threads.py). filters: the
    weight as (D, C*KH*KW), flat_filters as (D*C*KH*KW,), flat_wide: wide as (chunks, D*OH*Wp), starts:
    tap_starts (the caller's reshapes and tables: see shared.flat_view)."""
    N, C, H, W = input.shape
    D, taps = filters.shape
    OH = output.shape[2]
    padded_w = W + 2 * padding_w
    length = OH * padded_w
    blocked = length - length % WIDTH  # the outputs the register blocks cover; the rest by tap_rows
    chunks = padded.shape[0]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        image, product, flat_product = padded[chunk], wide[chunk], flat_wide[chunk]
        stride = product.shape[1]
        first, last = chunk_bounds(chunk, chunks, N)
        for n in range(first, last):
            pad_rows(input[n], image, 0, H + 2 * padding_h, padding_h, padding_w, padded_w)
            d = 0
            while d < D:
                pair = d + 2 <= D
                for q in range(0, blocked, WIDTH):
                    if pair:
                        tap_sums_2x32(flat_product, d * stride + q, stride, image, q, starts, flat_filters, d * taps,
                                      taps)
                    else:
                        tap_sums_1x32(flat_product, d * stride + q, stride, image, q, starts, flat_filters, d * taps,
                                      taps)
                for channel in range(d, d + 2 if pair else d + 1):
                    tap_rows(product[channel, blocked:length], filters[channel], image, starts, blocked)
                d += 2 if pair else 1
            compact_rows(product, output, n, 0, OH, padded_w, bias)


@njit(nogil=True, cache=True, error_model="numpy", fastmath=REDUCE, no_cfunc_wrapper=True)
def conv2d_forward_flat_rows_span(span_part, span_parts, input, flat_filters, bias, flat_output, padded, starts,
                                  padding_h, padding_w, D, OH, OW):
    """conv2d_forward_flat over the span_part-th of span_parts slices of its outer loop (threads.py), each output
    row summed and written where it belongs (row_sums). flat_filters: the weight as (D*C*KH*KW,), flat_output:
    output (N, D, OH, OW) as (N*D*OH*OW,), starts: tap_starts, bias: (D,) (see shared.flat_view)."""
    N, C, H, W = input.shape
    taps = starts.shape[0]
    padded_w = W + 2 * padding_w
    chunks = padded.shape[0]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        image = padded[chunk]
        first, last = chunk_bounds(chunk, chunks, N)
        for n in range(first, last):
            if n == first:  # the padding stays zero for the chunk's later images
                pad_rows(input[n], image, 0, H + 2 * padding_h, padding_h, padding_w, padded_w)
            else:
                copy_rows(input[n], image, 0, H + 2 * padding_h, padding_h, padding_w, padded_w)
            row_sums(flat_output, n, image, starts, flat_filters, taps, bias, D, OH, OW, padded_w)


@njit(cache=True, inline="always", fastmath=REDUCE)
def row_sums(flat_output, n, image, starts, flat_filters, taps, bias, D, OH, OW, padded_w):
    """Output rows of image n written where they belong, blocks of 3 channels (then 2 or 1) x up to WIDTH columns
    (the last block of a row moved back to end with it), the bias added at the store."""
    block = OW if OW < WIDTH else WIDTH  # no min(): its overload would compile again under these flags
    d = 0
    while d < D:
        step = 3 if d + 3 <= D else 2 if d + 2 <= D else 1
        plane = (n * D + d) * OH * OW
        for r in range(OH):
            column = 0
            while column < OW:
                column = column if column < OW - block else OW - block
                at, image_at = plane + r * OW + column, r * padded_w + column
                if step == 3:
                    row_tap_sums_3x32(flat_output, at, OH * OW, image, image_at, starts, flat_filters, d * taps, taps,
                                      block, bias, d)
                elif step == 2:
                    row_tap_sums_2x32(flat_output, at, OH * OW, image, image_at, starts, flat_filters, d * taps, taps,
                                      block, bias, d)
                else:
                    row_tap_sums_1x32(flat_output, at, OH * OW, image, image_at, starts, flat_filters, d * taps, taps,
                                      block, bias, d)
                column += WIDTH
        d += step


@njit(cache=True, inline="always", fastmath=REDUCE)
def tap_rows(row, filters, image, starts, offset):
    """row = sum over taps t of filters[t] * image[starts[t] + offset:][:len(row)], taps in order (the outputs
    past the register blocks, fewer than WIDTH a channel)."""
    count = row.shape[0]
    for q in range(count):
        row[q] = 0
    for t in range(filters.shape[0]):
        start = starts[t] + offset
        add_tap(row, filters[t], image[start:start + count])


def conv2d_forward_flat(input, weight, bias, output, padded, wide, padding_h, padding_w, dilation_h, dilation_w):
    """output[n, d] = sum over taps t of weight[d, t] * run_t(input[n]) (+ bias): each output row summed where it
    lies, or (with a wide buffer) the Wp-wide rows compacted to OW."""
    D, C, KH, KW = weight.shape
    filters = np.ascontiguousarray(weight).reshape(D, C * KH * KW)
    padded_h, padded_w = input.shape[2] + 2 * padding_h, input.shape[3] + 2 * padding_w
    starts = tap_starts(C, KH, KW, padded_h * padded_w, padded_w, dilation_h, dilation_w)
    if wide.shape[2] > 0:
        parallel_parts(conv2d_forward_flat_span, num_threads(), input, filters, flat_view(filters), bias, output,
                       padded, wide, _flat_chunks(wide), starts, padding_h, padding_w)
        return
    if bias.shape[0] == 0:
        bias = np.zeros(D, output.dtype)
    parallel_parts(conv2d_forward_flat_rows_span, num_threads(), input, flat_view(filters), bias, flat_view(output),
                   padded, starts, padding_h, padding_w, D, output.shape[2], output.shape[3])


@njit(nogil=True, cache=True, error_model="numpy", fastmath=REDUCE, no_cfunc_wrapper=True)
def conv2d_backward_weight_flat_span(span_part, span_parts, grad_output, input, partial, flat_partial, padded, wide,
                                     flat_wide, starts, padding_h, padding_w):
    """conv2d_backward_weight_flat over the span_part-th of span_parts slices of its outer loop (threads.py).
    flat_partial: partial as (chunks, C*KH*KW*D), flat_wide: wide as (chunks, D*OH*Wp), starts: tap_starts (the
    caller's reshapes and table: see shared.flat_view)."""
    N, C, H, W = input.shape
    D, OH = grad_output.shape[1], grad_output.shape[2]
    padded_h, padded_w = H + 2 * padding_h, W + 2 * padding_w
    length, taps = OH * padded_w, starts.shape[0]
    blocked = length - length % LANES  # the positions the register blocks cover; the rest by dot()
    chunks = partial.shape[0]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        image, spread, sums = padded[chunk], wide[chunk], partial[chunk, 0]
        stride = spread.shape[1]
        flat_spread, flat_sums = flat_wide[chunk], flat_partial[chunk]
        for t in range(taps):
            for d in range(D):
                sums[t, d] = 0
        first, last = chunk_bounds(chunk, chunks, N)
        for n in range(first, last):
            pad_rows(input[n], image, 0, padded_h, padding_h, padding_w, padded_w)
            spread_rows(grad_output, spread, n, 0, OH, padded_w)
            t = 0
            while t < taps:
                four = t + 4 <= taps
                d = 0
                while d < D:
                    three = d + 3 <= D
                    if four and three:
                        tap_dots_4x3(flat_sums, t, d, D, image, starts, flat_spread, stride, blocked)
                    elif four:
                        tap_dots_4x1(flat_sums, t, d, D, image, starts, flat_spread, stride, blocked)
                    elif three:
                        tap_dots_1x3(flat_sums, t, d, D, image, starts, flat_spread, stride, blocked)
                    else:
                        tap_dots_1x1(flat_sums, t, d, D, image, starts, flat_spread, stride, blocked)
                    d += 3 if three else 1
                t += 4 if four else 1
            if blocked < length:  # the last length % LANES positions of every run
                for t in range(taps):
                    run = image[starts[t] + blocked:starts[t] + length]
                    for d in range(D):
                        sums[t, d] += dot(run, spread[d, blocked:length])


@njit(nogil=True, cache=True, error_model="numpy", fastmath=REDUCE, no_cfunc_wrapper=True)
def conv2d_backward_weight_flat_rows_span(span_part, span_parts, flat_grad_output, input, flat_partial, padded, starts,
                                          padding_h, padding_w, D, OH, OW):
    """conv2d_backward_weight_flat over the span_part-th of span_parts slices of its outer loop (threads.py), the
    output gradient's rows read where they lie (row_dots). flat_grad_output: grad_output (N, D, OH, OW) as
    (N*D*OH*OW,), flat_partial: partial as (chunks, C*KH*KW*D), starts: tap_starts (see shared.flat_view)."""
    N, C, H, W = input.shape
    padded_h, padded_w = H + 2 * padding_h, W + 2 * padding_w
    plane = D * OH * OW
    chunks = flat_partial.shape[0]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        image, flat_sums = padded[chunk], flat_partial[chunk]
        for k in range(flat_sums.shape[0]):
            flat_sums[k] = 0
        first, last = chunk_bounds(chunk, chunks, N)
        for n in range(first, last):
            if n == first:  # the padding stays zero for the chunk's later images
                pad_rows(input[n], image, 0, padded_h, padding_h, padding_w, padded_w)
            else:
                copy_rows(input[n], image, 0, padded_h, padding_h, padding_w, padded_w)
            row_dots(flat_sums, image, starts, flat_grad_output[n * plane:(n + 1) * plane], D, OH, OW, padded_w)


@njit(cache=True, inline="always", fastmath=REDUCE)
def row_dots(flat_sums, image, starts, grads, D, OH, OW, padded_w):
    """flat_sums[t*D + d] += the dot product of tap t's output rows in the padded image with the output gradient
    grads (D*OH*OW,) of channel d, read where they lie: 4 taps x 3 channels x up to WIDTH columns of every row at
    a time, the last block of a row moved back to end with it (its columns the block before holds not counted)."""
    taps = starts.shape[0]
    block = OW if OW < WIDTH else WIDTH  # no min(): its overload would compile again under these flags
    column = 0
    while column < OW:
        start = column if column < OW - block else OW - block
        t = 0
        while t < taps:
            four = t + 4 <= taps
            d = 0
            while d < D:
                three = d + 3 <= D
                if four and three:
                    row_tap_dots_4x3(flat_sums, t, d, D, image[start:], starts, grads[start:], OH * OW, OH, block,
                                     padded_w, OW, column - start)
                elif four:
                    row_tap_dots_4x1(flat_sums, t, d, D, image[start:], starts, grads[start:], OH * OW, OH, block,
                                     padded_w, OW, column - start)
                elif three:
                    row_tap_dots_1x3(flat_sums, t, d, D, image[start:], starts, grads[start:], OH * OW, OH, block,
                                     padded_w, OW, column - start)
                else:
                    row_tap_dots_1x1(flat_sums, t, d, D, image[start:], starts, grads[start:], OH * OW, OH, block,
                                     padded_w, OW, column - start)
                d += 3 if three else 1
            t += 4 if four else 1
        column += WIDTH


def conv2d_backward_weight_flat(grad_output, input, partial, padded, wide, kernel_h, kernel_w, padding_h, padding_w,
                                dilation_h, dilation_w):
    """partial[chunk, 0, t, d] = sum over the chunk's images n of run_t(input[n]) . grad_output[n, d] (its rows
    read where they lie, or with a wide buffer spread to Wp columns); shared.sum_partials then adds the chunks in
    order into grad_weight."""
    padded_h, padded_w = input.shape[2] + 2 * padding_h, input.shape[3] + 2 * padding_w
    starts = tap_starts(input.shape[1], kernel_h, kernel_w, padded_h * padded_w, padded_w, dilation_h, dilation_w)
    if wide.shape[2] > 0:
        parallel_parts(conv2d_backward_weight_flat_span, num_threads(), grad_output, input, partial,
                       _flat_chunks(partial), padded, wide, _flat_chunks(wide), starts, padding_h, padding_w)
        return
    parallel_parts(conv2d_backward_weight_flat_rows_span, num_threads(), flat_view(grad_output), input,
                   _flat_chunks(partial), padded, starts, padding_h, padding_w, *grad_output.shape[1:])


def _flat_chunks(buffer):
    """A per-chunk buffer (chunks, ...) as a (chunks, rest) view."""
    return flat_view(buffer, (buffer.shape[0], buffer[:1].size))


# The plan's surface: applies, buffers and the forward and weight-gradient passes (see plan.py).
def applies(pass_, convolution):
    """Stride 1, one group; the forward pass and the weight gradient (no input gradient)."""
    return (pass_ != "backward_input" and convolution.stride_h == convolution.stride_w == 1
            and convolution.groups == 1)


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer, per parallel chunk (at most one per image): padded
    (C*Hp*Wp + slack,), a padded image; wide (D, OH*Wp), the Wp-wide output or the spread output gradient, for
    output rows narrower than ROWS_FROM;
    the weight gradient adds partial_sums (chunks, 1, C*KH*KW, D), summed by shared.sum_partials."""
    N, C, H, W = convolution.input_shape
    D, _, KH, KW = convolution.weight_shape
    padded_w = W + 2 * convolution.padding_w
    chunks = max(1, min(N, max_chunks(pass_, threads)))
    slack = (KW - 1) * convolution.dilation_w
    own = (("padded", "padded", (chunks, C * (H + 2 * convolution.padding_h) * padded_w + slack)),)
    if convolution.output_shape[3] < max(ROWS_FROM, LANES):
        own += (("wide", "wide", (chunks, D, convolution.output_shape[2] * padded_w)),)
    if pass_ == "backward_weight":
        return own + (("partial_sums", "partial", (chunks, 1, C * KH * KW, D)),)
    return own


def _wide(buffers):
    """The wide buffer, or an empty one where the rows are read and written in place."""
    padded = buffers["padded"]
    return buffers["wide"] if "wide" in buffers else np.empty((padded.shape[0], 0, 0), padded.dtype)


def forward(input, weight, bias, output, buffers, plan):
    convolution = plan.convolution
    conv2d_forward_flat(input, weight, bias, output, buffers["padded"], _wide(buffers), convolution.padding_h,
                        convolution.padding_w, convolution.dilation_h, convolution.dilation_w)


def backward_weight(grad_output, input, grad_weight, buffers, plan):
    convolution = plan.convolution
    conv2d_backward_weight_flat(grad_output, input, buffers["partial_sums"], buffers["padded"], _wide(buffers),
                                grad_weight.shape[2], grad_weight.shape[3], convolution.padding_h,
                                convolution.padding_w, convolution.dilation_h, convolution.dilation_w)
    sum_partials(buffers["partial_sums"], grad_weight)
