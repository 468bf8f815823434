"""Direct (loop-nest) 2-D convolution kernels for the CPU, used for depthwise convolutions (one input
channel per group) that depthwise.py does not take, where a matrix product per group would be tiny;
also the definition the public kernels recompute non-finite results by. Any shape, no buffers.

Shapes as in nbconv.kernels.cpu.conv.dispatch. The inner loops run over views, with a literal 1 passed for
unit strides so that LLVM specialises (and vectorises) them; with computed indices, Numba's negative-index
handling prevents that.
"""
from numba import njit

from ..fastmath import REDUCE as _REDUCE
from ..shared import chunk_bounds, fill_plane, valid_range
from ..threads import num_threads, parallel_parts


@njit(cache=True, inline="always")
def scaled_add(target, source, scale, stride):
    """target[q] += scale * source[q * stride] for every q of target (views indexed from 0)."""
    for q in range(target.shape[0]):
        target[q] += scale * source[q * stride]


@njit(cache=True, inline="always", fastmath=_REDUCE)
def strided_dot(values, source, stride):
    """sum over q of values[q] * source[q * stride]."""
    total = values.dtype.type(0)
    for q in range(values.shape[0]):
        total += values[q] * source[q * stride]
    return total


@njit(cache=True, inline="always")
def scatter_add(target, values, scale, stride):
    """target[q * stride] += scale * values[q] for every q of values."""
    for q in range(values.shape[0]):
        target[q * stride] += scale * values[q]


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_forward_direct_span(span_part, span_parts, input, weight, bias, output, stride_h, stride_w, padding_h,
                               padding_w, dilation_h, dilation_w, groups):
    """conv2d_forward_direct over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    D, Cg, KH, KW = weight.shape
    OH, OW = output.shape[2], output.shape[3]
    Dg = D // groups
    has_bias = bias.shape[0] > 0
    span_first, span_last = chunk_bounds(span_part, span_parts, N * D)
    for task in range(span_first, span_last):
        n = task // D
        d = task % D
        g = d // Dg
        out = output[n, d]
        fill_plane(out, bias[d] if has_bias else 0)
        for c in range(Cg):
            plane = input[n, g * Cg + c]
            for i in range(KH):
                offset_h = i * dilation_h - padding_h
                oh_lo, oh_hi = valid_range(OH, H, stride_h, offset_h)
                for j in range(KW):
                    offset_w = j * dilation_w - padding_w
                    ow_lo, ow_hi = valid_range(OW, W, stride_w, offset_w)
                    if ow_lo >= ow_hi:
                        continue
                    w = weight[d, c, i, j]
                    for oh in range(oh_lo, oh_hi):
                        target = out[oh, ow_lo:ow_hi]
                        source = plane[oh * stride_h + offset_h, ow_lo * stride_w + offset_w:]
                        if stride_w == 1:
                            scaled_add(target, source, w, 1)
                        else:
                            scaled_add(target, source, w, stride_w)


def conv2d_forward_direct(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w,
                          dilation_h, dilation_w, groups):
    """output[n, d] = bias[d] + sum_{c, i, j} weight[d, c, i, j] * padded_input[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw]."""
    parallel_parts(conv2d_forward_direct_span, num_threads(), input, weight, bias, output, stride_h, stride_w,
                   padding_h, padding_w, dilation_h, dilation_w, groups)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_input_direct_span(span_part, span_parts, grad_output, weight, grad_input, stride_h, stride_w,
                                      padding_h, padding_w, dilation_h, dilation_w, groups):
    """conv2d_backward_input_direct over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = grad_input.shape
    D, Cg, KH, KW = weight.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    Dg = D // groups
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n = task // C
        channel = task % C
        g = channel // Cg
        c = channel % Cg
        plane = grad_input[n, channel]
        fill_plane(plane, 0)
        for dd in range(Dg):
            d = g * Dg + dd
            grad_plane = grad_output[n, d]
            for i in range(KH):
                offset_h = i * dilation_h - padding_h
                oh_lo, oh_hi = valid_range(OH, H, stride_h, offset_h)
                for j in range(KW):
                    offset_w = j * dilation_w - padding_w
                    ow_lo, ow_hi = valid_range(OW, W, stride_w, offset_w)
                    if ow_lo >= ow_hi:
                        continue
                    w = weight[d, c, i, j]
                    for oh in range(oh_lo, oh_hi):
                        target = plane[oh * stride_h + offset_h, ow_lo * stride_w + offset_w:]
                        values = grad_plane[oh, ow_lo:ow_hi]
                        if stride_w == 1:
                            scatter_add(target, values, w, 1)
                        else:
                            scatter_add(target, values, w, stride_w)


def conv2d_backward_input_direct(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w,
                                 dilation_h, dilation_w, groups):
    """grad_input (N, C, H, W) from grad_output (N, D, OH, OW); each task owns one input plane."""
    parallel_parts(conv2d_backward_input_direct_span, num_threads(), grad_output, weight, grad_input,
                   stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_REDUCE, no_cfunc_wrapper=True)
def conv2d_backward_weight_direct_span(span_part, span_parts, grad_output, input, grad_weight, stride_h, stride_w,
                                       padding_h, padding_w, dilation_h, dilation_w, groups):
    """conv2d_backward_weight_direct over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    D, Cg, KH, KW = grad_weight.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    Dg = D // groups
    span_first, span_last = chunk_bounds(span_part, span_parts, D * Cg)
    for task in range(span_first, span_last):
        d = task // Cg
        c = task % Cg
        channel = (d // Dg) * Cg + c
        for i in range(KH):
            offset_h = i * dilation_h - padding_h
            oh_lo, oh_hi = valid_range(OH, H, stride_h, offset_h)
            for j in range(KW):
                offset_w = j * dilation_w - padding_w
                ow_lo, ow_hi = valid_range(OW, W, stride_w, offset_w)
                total = grad_weight.dtype.type(0)
                if ow_lo < ow_hi:
                    for n in range(N):
                        plane = input[n, channel]
                        grad_plane = grad_output[n, d]
                        for oh in range(oh_lo, oh_hi):
                            values = grad_plane[oh, ow_lo:ow_hi]
                            source = plane[oh * stride_h + offset_h, ow_lo * stride_w + offset_w:]
                            if stride_w == 1:
                                total += strided_dot(values, source, 1)
                            else:
                                total += strided_dot(values, source, stride_w)
                grad_weight[d, c, i, j] = total


def conv2d_backward_weight_direct(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w,
                                  dilation_h, dilation_w, groups):
    """grad_weight (D, C // groups, KH, KW), summed over the batch; each task owns one (d, c) filter slice."""
    parallel_parts(conv2d_backward_weight_direct_span, num_threads(), grad_output, input, grad_weight,
                   stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)


# The plan's surface: applies, buffers and the three passes (see plan.py).
def applies(pass_, convolution):
    """Every convolution and pass."""
    return True


def buffers(pass_, convolution, itemsize, threads):
    """None: the loop nests write straight into their outputs."""
    return ()


def forward(input, weight, bias, output, buffers, plan):
    conv2d_forward_direct(input, weight, bias, output, *plan.convolution.hyper)


def backward_input(grad_output, weight, grad_input, buffers, plan):
    conv2d_backward_input_direct(grad_output, weight, grad_input, *plan.convolution.hyper)


def backward_weight(grad_output, input, grad_weight, buffers, plan):
    conv2d_backward_weight_direct(grad_output, input, grad_weight, *plan.convolution.hyper)
