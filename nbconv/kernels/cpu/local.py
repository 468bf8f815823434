"""Locally connected 2-D layer kernels for the CPU: a convolution whose weights are not shared across positions.

Shapes: input (N, C, H, W), weight (OH, OW, D, C, KH, KW) — one filter bank per output position —,
bias (D, OH, OW) or (0,), output (N, D, OH, OW). Zero padding and stride as for conv2d; as there, the
padding's zeros are multiplied in (weight * 0 and grad_output * 0), so a NaN or inf meeting the padding gives
NaN, as the definition over the explicitly padded input does.
"""
from numba import njit

from .fastmath import REDUCE as _REDUCE
from .shared import chunk_bounds, fill, fill_plane
from .threads import parallel_parts, thread_count


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_REDUCE, no_cfunc_wrapper=True)
def local_conv2d_forward_span(span_part, span_parts, input, weight, bias, output, stride_h, stride_w, padding_h,
                              padding_w):
    """local_conv2d_forward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    OH, OW, D, _, KH, KW = weight.shape
    has_bias = bias.shape[0] > 0
    span_first, span_last = chunk_bounds(span_part, span_parts, N * D)
    for task in range(span_first, span_last):
        n = task // D
        d = task % D
        for oh in range(OH):
            for ow in range(OW):
                total = output.dtype.type(0)
                for c in range(C):
                    for i in range(KH):
                        ih = oh * stride_h + i - padding_h
                        inside_h = 0 <= ih < H
                        for j in range(KW):
                            iw = ow * stride_w + j - padding_w
                            if inside_h and 0 <= iw < W:
                                total += weight[oh, ow, d, c, i, j] * input[n, c, ih, iw]
                            else:  # a padding zero
                                total += weight[oh, ow, d, c, i, j] * 0
                output[n, d, oh, ow] = total + bias[d, oh, ow] if has_bias else total


def local_conv2d_forward(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w):
    parallel_parts(local_conv2d_forward_span, thread_count(input.size), input, weight, bias, output, stride_h, stride_w,
                   padding_h, padding_w)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def local_conv2d_backward_input_span(span_part, span_parts, grad_output, weight, grad_input, stride_h, stride_w,
                                     padding_h, padding_w):
    """local_conv2d_backward_input over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = grad_input.shape
    OH, OW, D, _, KH, KW = weight.shape
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n = task // C
        c = task % C
        plane = grad_input[n, c]
        fill_plane(plane, 0)
        for d in range(D):
            for oh in range(OH):
                for ow in range(OW):
                    g = grad_output[n, d, oh, ow]
                    for i in range(KH):
                        ih = oh * stride_h + i - padding_h
                        if ih < 0 or ih >= H:
                            continue
                        for j in range(KW):
                            iw = ow * stride_w + j - padding_w
                            if 0 <= iw < W:
                                plane[ih, iw] += g * weight[oh, ow, d, c, i, j]


def local_conv2d_backward_input(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w):
    parallel_parts(local_conv2d_backward_input_span, thread_count(grad_output.size), grad_output, weight, grad_input,
                   stride_h, stride_w, padding_h, padding_w)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def local_conv2d_backward_weight_span(span_part, span_parts, grad_output, input, grad_weight, stride_h, stride_w,
                                      padding_h, padding_w):
    """local_conv2d_backward_weight over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    OH, OW, D, _, KH, KW = grad_weight.shape
    span_first, span_last = chunk_bounds(span_part, span_parts, OH * OW)
    for position in range(span_first, span_last):
        oh = position // OW
        ow = position % OW
        bank = grad_weight[oh, ow]
        for d in range(D):
            for c in range(C):
                for i in range(KH):
                    fill(bank[d, c, i], 0)
        for n in range(N):
            for d in range(D):
                g = grad_output[n, d, oh, ow]
                for c in range(C):
                    for i in range(KH):
                        ih = oh * stride_h + i - padding_h
                        inside_h = 0 <= ih < H
                        for j in range(KW):
                            iw = ow * stride_w + j - padding_w
                            if inside_h and 0 <= iw < W:
                                bank[d, c, i, j] += g * input[n, c, ih, iw]
                            else:  # a padding zero
                                bank[d, c, i, j] += g * 0


def local_conv2d_backward_weight(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w):
    parallel_parts(local_conv2d_backward_weight_span, thread_count(grad_output.size), grad_output, input, grad_weight,
                   stride_h, stride_w, padding_h, padding_w)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def local_conv2d_backward_bias_span(span_part, span_parts, grad_output, grad_bias):
    """local_conv2d_backward_bias over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, D, OH, OW = grad_output.shape
    span_first, span_last = chunk_bounds(span_part, span_parts, D)
    for d in range(span_first, span_last):
        grad_bias[d] = 0
        for n in range(N):
            grad_bias[d] += grad_output[n, d]


def local_conv2d_backward_bias(grad_output, grad_bias):
    """grad_bias (D, OH, OW) = grad_output (N, D, OH, OW) summed over N."""
    parallel_parts(local_conv2d_backward_bias_span, thread_count(grad_output.size), grad_output, grad_bias)
