"""Stride-1 convolution as one matrix product per window tap, over shifted views of the padded image.

In the zero-padded image (C, Hp, Wp) laid out flat, tap (i, j) of the output rows, taken Wp wide as in
wide.py, reads for channel c the contiguous run that starts at c*Hp*Wp + i*dh*Wp + j*dw and is
OH*Wp long. Those runs, one per channel, form a (C, OH*Wp) matrix whose rows lie Hp*Wp apart: a matrix the
BLAS takes as it is (leading dimension Hp*Wp). So

    output (D, OH*Wp) = sum over taps t of weight_t (D, C) @ shifted_t (C, OH*Wp)

with no unrolled copy at all: wide.py writes and reads back KH*KW times the image (9x for a 3x3), which
costs as much as the product when there are 16-32 channels. The products are C deep, so this pays only
with enough channels (plan.py picks it from SHIFT_CHANNELS). The input gradient adds weight_t.T @ the
spread output gradient into the padded gradient at each tap's offset; the weight gradient of tap t is
the spread output gradient times shifted_t transposed.

Workspaces, one per parallel chunk, a whole image a task: padded (C*Hp*Wp + slack,), the slack being the
(KW-1)*dw columns the last tap reads past the last row; wide (D, OH*Wp), the product before compaction or
the spread output gradient. Filters: taps (KH*KW, D, C/groups), taps[t, d, c] = weight[d, c, i, j].
"""
import numpy as np
from numba import njit

from ..blas import NO_TRANS, TRANS, address, gemm, single_threaded
from ..shared import chunk_bounds, fill_zero
from .blocks import max_chunks

# Row 0 as an int64, not a literal 0: a literal argument compiles pad_rows and spread_rows once more (a
# Literal[int](0) overload beside wide.py's int64 one), a second of cold JIT time for nothing.
FIRST_ROW = np.int64(0)
from ..threads import num_threads, parallel_parts
from .rows import compact_rows, crop_image, pad_rows, spread_rows


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def weight_taps_span(span_part, span_parts, weight, taps):
    """weight_taps over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    D, Cg, KH, KW = weight.shape
    span_first, span_last = chunk_bounds(span_part, span_parts, D)
    for d in range(span_first, span_last):
        for c in range(Cg):
            for i in range(KH):
                for j in range(KW):
                    taps[i * KW + j, d, c] = weight[d, c, i, j]


def weight_taps(weight, taps):
    """taps[i*KW + j, d, c] = weight[d, c, i, j]."""
    parallel_parts(weight_taps_span, num_threads(), weight, taps)


@njit(cache=True, inline="always")
def tap_offset(tap, kernel_w, padded_w, dilation_h, dilation_w):
    """Where tap (i, j) starts reading in a padded channel: i*dh*Wp + j*dw."""
    return (tap // kernel_w) * dilation_h * padded_w + (tap % kernel_w) * dilation_w


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_forward_shift_span(span_part, span_parts, input, taps, bias, output, padded, wide, kernel_w, padding_h,
                              padding_w, dilation_h, dilation_w, groups):
    """conv2d_forward_shift over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    T, D, Cg = taps.shape
    OH = output.shape[2]
    padded_h, padded_w = H + 2 * padding_h, W + 2 * padding_w
    plane, length, Dg = padded_h * padded_w, OH * padded_w, D // groups
    size = output.itemsize
    chunks = padded.shape[0]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        image, product = padded[chunk], wide[chunk]
        first, last = chunk_bounds(chunk, chunks, N)
        for n in range(first, last):
            pad_rows(input[n], image, FIRST_ROW, padded_h, padding_h, padding_w, padded_w)
            for g in range(groups):
                for t in range(T):
                    gemm(NO_TRANS, NO_TRANS, Dg, length, Cg, 1.0, address(taps, (t * D + g * Dg) * Cg), Cg,
                         address(image, g * Cg * plane + tap_offset(t, kernel_w, padded_w, dilation_h, dilation_w)),
                         plane, 0.0 if t == 0 else 1.0, address(product, g * Dg * length), length, size)
            compact_rows(product, output, n, 0, OH, padded_w, bias)


def conv2d_forward_shift(input, taps, bias, output, padded, wide, kernel_w, padding_h, padding_w, dilation_h,
                         dilation_w, groups):
    """output[n] = sum over taps of taps[t] @ shifted_t(input[n]) (+ bias), compacted from Wp to OW columns."""
    parallel_parts(conv2d_forward_shift_span, num_threads(), input, taps, bias, output, padded, wide,
                   kernel_w, padding_h, padding_w, dilation_h, dilation_w, groups)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_input_shift_span(span_part, span_parts, grad_output, taps, grad_input, padded, wide, kernel_w,
                                     padding_h, padding_w, dilation_h, dilation_w, groups):
    """conv2d_backward_input_shift over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = grad_input.shape
    T, D, Cg = taps.shape
    OH = grad_output.shape[2]
    padded_h, padded_w = H + 2 * padding_h, W + 2 * padding_w
    plane, length, Dg = padded_h * padded_w, OH * padded_w, D // groups
    size = grad_output.itemsize
    chunks = padded.shape[0]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        image, spread = padded[chunk], wide[chunk]
        first, last = chunk_bounds(chunk, chunks, N)
        for n in range(first, last):
            spread_rows(grad_output, spread, n, FIRST_ROW, OH, padded_w)
            fill_zero(image)
            for g in range(groups):
                for t in range(T):
                    gemm(TRANS, NO_TRANS, Cg, length, Dg, 1.0, address(taps, (t * D + g * Dg) * Cg), Cg,
                         address(spread, g * Dg * length), length, 1.0,
                         address(image, g * Cg * plane + tap_offset(t, kernel_w, padded_w, dilation_h, dilation_w)),
                         plane, size)
            crop_image(image, grad_input[n], padding_h, padding_w, padded_h, padded_w)


def conv2d_backward_input_shift(grad_output, taps, grad_input, padded, wide, kernel_w, padding_h, padding_w,
                                dilation_h, dilation_w, groups):
    """grad_input[n] = crop(sum over taps of taps[t].T @ spread(grad_output[n]), each added at the tap's offset)."""
    parallel_parts(conv2d_backward_input_shift_span, num_threads(), grad_output, taps, grad_input, padded,
                   wide, kernel_w, padding_h, padding_w, dilation_h, dilation_w, groups)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_weight_shift_span(span_part, span_parts, grad_output, input, partial, padded, wide, kernel_w,
                                      padding_h, padding_w, dilation_h, dilation_w, groups):
    """conv2d_backward_weight_shift over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    chunks, T, D, Cg = partial.shape
    OH = grad_output.shape[2]
    padded_h, padded_w = H + 2 * padding_h, W + 2 * padding_w
    plane, length, Dg = padded_h * padded_w, OH * padded_w, D // groups
    size = input.itemsize
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        image, spread, sums = padded[chunk], wide[chunk], partial[chunk]
        first, last = chunk_bounds(chunk, chunks, N)
        if first == last:
            fill_zero(sums.reshape(T * D * Cg))
        for n in range(first, last):
            pad_rows(input[n], image, FIRST_ROW, padded_h, padding_h, padding_w, padded_w)
            spread_rows(grad_output, spread, n, FIRST_ROW, OH, padded_w)
            for g in range(groups):
                for t in range(T):
                    gemm(NO_TRANS, TRANS, Dg, Cg, length, 1.0, address(spread, g * Dg * length), length,
                         address(image, g * Cg * plane + tap_offset(t, kernel_w, padded_w, dilation_h, dilation_w)),
                         plane, 0.0 if n == first else 1.0, address(sums, (t * D + g * Dg) * Cg), Cg, size)


def conv2d_backward_weight_shift(grad_output, input, partial, padded, wide, kernel_w, padding_h, padding_w,
                                 dilation_h, dilation_w, groups):
    """partial[chunk, t] (D, C/groups) = sum over the chunk's images of spread(grad_output[n]) @
    shifted_t(input[n]).T, per group; sum_tap_partials adds the chunks in order."""
    parallel_parts(conv2d_backward_weight_shift_span, num_threads(), grad_output, input, partial, padded,
                   wide, kernel_w, padding_h, padding_w, dilation_h, dilation_w, groups)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def sum_tap_partials_span(span_part, span_parts, partial, grad_weight):
    """sum_tap_partials over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    chunks, T, D, Cg = partial.shape
    KW = grad_weight.shape[3]
    span_first, span_last = chunk_bounds(span_part, span_parts, D)
    for d in range(span_first, span_last):
        for c in range(Cg):
            for t in range(T):
                total = partial[0, t, d, c]
                for chunk in range(1, chunks):
                    total += partial[chunk, t, d, c]
                grad_weight[d, c, t // KW, t % KW] = total


def sum_tap_partials(partial, grad_weight):
    """grad_weight[d, c, i, j] = sum over chunks, in chunk order, of partial[chunk, i*KW + j, d, c]."""
    parallel_parts(sum_tap_partials_span, num_threads(), partial, grad_weight)


# The plan's surface: applies, buffers and the three passes (see plan.py).
def applies(pass_, convolution):
    """Stride 1, every pass."""
    return convolution.stride_h == convolution.stride_w == 1


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer. Per parallel chunk (at most one per image): padded
    (C*Hp*Wp + slack,), a padded image; wide (D, OH*Wp), the product or the spread output gradient.
    Forward and input gradient: taps (KH*KW, D, C/groups), the filters tap by tap; the weight gradient
    instead partial_sums (chunks, KH*KW, D, C/groups), summed by sum_tap_partials."""
    N, C, H, W = convolution.input_shape
    D, Cg, KH, KW = convolution.weight_shape
    padded_w = W + 2 * convolution.padding_w
    chunks = max(1, min(N, max_chunks(pass_, threads)))
    slack = (KW - 1) * convolution.dilation_w
    images = (("padded", "padded", (chunks, C * (H + 2 * convolution.padding_h) * padded_w + slack)),
              ("wide", "wide", (chunks, D, convolution.output_shape[2] * padded_w)))
    if pass_ == "backward_weight":
        return images + (("partial_sums", "partial", (chunks, KH * KW, D, Cg)),)
    return (("taps", "taps", (KH * KW, D, Cg)),) + images


def forward(input, weight, bias, output, buffers, plan):
    weight_taps(weight, buffers["taps"])
    with single_threaded():
        conv2d_forward_shift(input, buffers["taps"], bias, output, buffers["padded"], buffers["wide"],
                             weight.shape[3], *plan.convolution.hyper[2:])


def backward_input(grad_output, weight, grad_input, buffers, plan):
    weight_taps(weight, buffers["taps"])
    with single_threaded():
        conv2d_backward_input_shift(grad_output, buffers["taps"], grad_input, buffers["padded"], buffers["wide"],
                                    weight.shape[3], *plan.convolution.hyper[2:])


def backward_weight(grad_output, input, grad_weight, buffers, plan):
    with single_threaded():
        conv2d_backward_weight_shift(grad_output, input, buffers["partial_sums"], buffers["padded"],
                                     buffers["wide"], grad_weight.shape[3], *plan.convolution.hyper[2:])
        sum_tap_partials(buffers["partial_sums"], grad_weight)
