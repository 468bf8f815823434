"""Depthwise 3x3 convolution, stride 1 (MobileNet's layer): one filter per channel, every tap unrolled.

Each task pads one plane into a flat scratch buffer (rows.pad_rows, so no tap needs a bounds test)
and then computes a row of outputs in one loop over its columns, the nine products of every output in
registers: nine loads and one store per output, where the general loop nest (direct.py) loads and
stores the output row once per tap (3x the memory traffic). The input gradient is the same loop over the
output gradient padded by 2 - padding, with the filter turned by 180 degrees; the weight gradient keeps
nine sums over the same padded rows.

Shapes as in nbconv.kernels.cpu.conv.dispatch, with C input channels, D = C output channels, weight (C, 1, 3, 3);
padded: (chunks, (H + 4) * (W + 4)) scratch, one padded plane per parallel chunk (room for the input
padded by up to 2, and for the output gradient padded by 2 - padding). Rows in it are 1-D slices of a
contiguous buffer, which LLVM vectorises; a 2-D view narrower than its buffer would have runtime strides.
"""
from numba import njit

from ..fastmath import CONTRACT as _CONTRACT, REDUCE as _REDUCE
from ..shared import chunk_bounds
from ..threads import num_threads, parallel_parts
from .blocks import CHUNKS_PER_THREAD
from .rows import pad_rows


@njit(cache=True, inline="always")
def pad_plane(plane, padded, pad_h, pad_w):
    """Pad one (H, W) plane into the flat buffer; returns the padded row length."""
    H, W = plane.shape
    padded_w = W + 2 * pad_w
    pad_rows(plane.reshape((1, H, W)), padded, 0, H + 2 * pad_h, pad_h, pad_w, padded_w)
    return padded_w


@njit(cache=True, inline="always", fastmath=_CONTRACT)
def correlate_3x3(padded, padded_w, taps, offset, output):
    """output[oh, q] = offset + sum_{i,j} taps[i, j] * padded[(oh + i) * padded_w + q + j]."""
    t00, t01, t02 = taps[0, 0], taps[0, 1], taps[0, 2]
    t10, t11, t12 = taps[1, 0], taps[1, 1], taps[1, 2]
    t20, t21, t22 = taps[2, 0], taps[2, 1], taps[2, 2]
    for oh in range(output.shape[0]):
        top, middle, bottom = padded[oh * padded_w:], padded[(oh + 1) * padded_w:], padded[(oh + 2) * padded_w:]
        row = output[oh]
        for q in range(row.shape[0]):
            row[q] = (offset + t00 * top[q] + t01 * top[q + 1] + t02 * top[q + 2]
                      + t10 * middle[q] + t11 * middle[q + 1] + t12 * middle[q + 2]
                      + t20 * bottom[q] + t21 * bottom[q + 1] + t22 * bottom[q + 2])


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_forward_depthwise3x3_span(span_part, span_parts, input, weight, bias, output, padded, padding_h, padding_w):
    """conv2d_forward_depthwise3x3 over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C = input.shape[0], input.shape[1]
    has_bias = bias.shape[0] > 0
    chunks = padded.shape[0]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        first, last = chunk_bounds(chunk, chunks, N * C)
        for task in range(first, last):
            n, c = task // C, task % C
            padded_w = pad_plane(input[n, c], padded[chunk], padding_h, padding_w)
            correlate_3x3(padded[chunk], padded_w, weight[c, 0], bias[c] if has_bias else output.dtype.type(0),
                          output[n, c])


def conv2d_forward_depthwise3x3(input, weight, bias, output, padded, padding_h, padding_w):
    """output[n, c] = bias[c] + the 3x3 correlation of input[n, c] (zero-padded) with weight[c, 0]."""
    parallel_parts(conv2d_forward_depthwise3x3_span, num_threads(), input, weight, bias, output, padded,
                   padding_h, padding_w)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_input_depthwise3x3_span(span_part, span_parts, grad_output, weight, grad_input, turned, padded,
                                            padding_h, padding_w):
    """conv2d_backward_input_depthwise3x3 over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C = grad_output.shape[0], grad_output.shape[1]
    for c in range(C):
        for i in range(3):
            for j in range(3):
                turned[c, i, j] = weight[c, 0, 2 - i, 2 - j]
    chunks = padded.shape[0]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        first, last = chunk_bounds(chunk, chunks, N * C)
        for task in range(first, last):
            n, c = task // C, task % C
            padded_w = pad_plane(grad_output[n, c], padded[chunk], 2 - padding_h, 2 - padding_w)
            correlate_3x3(padded[chunk], padded_w, turned[c], grad_input.dtype.type(0), grad_input[n, c])


def conv2d_backward_input_depthwise3x3(grad_output, weight, grad_input, turned, padded, padding_h, padding_w):
    """grad_input[n, c] = the 3x3 correlation of grad_output[n, c], padded by 2 - padding, with weight[c, 0]
    turned by 180 degrees (turned: (C, 3, 3) scratch for those filters). Needs padding <= 2."""
    parallel_parts(conv2d_backward_input_depthwise3x3_span, num_threads(), grad_output, weight, grad_input,
                   turned, padded, padding_h, padding_w)


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_REDUCE, no_cfunc_wrapper=True)
def conv2d_backward_weight_depthwise3x3_span(span_part, span_parts, grad_output, input, grad_weight, padded, padding_h,
                                             padding_w):
    """conv2d_backward_weight_depthwise3x3 over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C = input.shape[0], input.shape[1]
    OH = grad_output.shape[2]
    chunks = padded.shape[0]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        buffer = padded[chunk]
        first, last = chunk_bounds(chunk, chunks, C)
        for c in range(first, last):
            s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = grad_weight.dtype.type(0)
            for n in range(N):
                padded_w = pad_plane(input[n, c], buffer, padding_h, padding_w)
                for oh in range(OH):
                    values = grad_output[n, c, oh]
                    top, middle = buffer[oh * padded_w:], buffer[(oh + 1) * padded_w:]
                    bottom = buffer[(oh + 2) * padded_w:]
                    for q in range(values.shape[0]):
                        g = values[q]
                        s00 += g * top[q]
                        s01 += g * top[q + 1]
                        s02 += g * top[q + 2]
                        s10 += g * middle[q]
                        s11 += g * middle[q + 1]
                        s12 += g * middle[q + 2]
                        s20 += g * bottom[q]
                        s21 += g * bottom[q + 1]
                        s22 += g * bottom[q + 2]
            target = grad_weight[c, 0]
            target[0, 0], target[0, 1], target[0, 2] = s00, s01, s02
            target[1, 0], target[1, 1], target[1, 2] = s10, s11, s12
            target[2, 0], target[2, 1], target[2, 2] = s20, s21, s22


def conv2d_backward_weight_depthwise3x3(grad_output, input, grad_weight, padded, padding_h, padding_w):
    """grad_weight[c, 0, i, j] = sum over n, oh, q of grad_output[n, c, oh, q] * padded input[n, c][oh + i, q + j].
    A task is a channel (its nine sums over the whole batch), so the result does not depend on the threads."""
    parallel_parts(conv2d_backward_weight_depthwise3x3_span, num_threads(), grad_output, input, grad_weight,
                   padded, padding_h, padding_w)


# The plan's surface: applies, buffers and the three passes (see plan.py).
def applies(pass_, convolution):
    """One 3x3 filter per channel (weight (C, 1, 3, 3), groups = C), stride 1, no dilation, padding <= 2."""
    D, Cg, KH, KW = convolution.weight_shape
    return (convolution.groups > 1 and Cg == 1 and D == convolution.groups and KH == KW == 3
            and convolution.stride_h == convolution.stride_w == 1
            and convolution.dilation_h == convolution.dilation_w == 1
            and convolution.padding_h <= 2 and convolution.padding_w <= 2)


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer: planes (chunks, (H + 4)*(W + 4)), one zero-padded plane
    per parallel chunk (room for the input padded by up to 2 and for the output gradient padded by
    2 - padding); the input gradient adds turned_filters (C, 3, 3)."""
    N, C, H, W = convolution.input_shape
    chunks = max(1, min(N * C, CHUNKS_PER_THREAD * threads))
    planes = ("planes", "padded", (chunks, (H + 4) * (W + 4)))
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
