"""2-D convolution (cross-correlation) kernels for the CPU, compiled by Numba.

Shapes: input (N, C, H, W), weight (D, C // groups, KH, KW), bias (D,) or (0,) for none,
output (N, D, OH, OW). Every kernel overwrites its outputs completely, so callers may pass
uninitialised buffers. The algorithm is a direct loop nest whose innermost loop runs over a
precomputed valid range of output columns, so it has no bounds test and LLVM can vectorise it.
"""
from numba import njit, prange

_REDUCE = {"reassoc", "contract", "nsz"}


@njit(cache=True, inline="always")
def valid_range(out_size, in_size, stride, offset):
    """Output positions o in [lo, hi) whose input position o*stride + offset lies in [0, in_size)."""
    if offset >= 0:
        lo = 0
    else:
        lo = (-offset + stride - 1) // stride
    last = in_size - 1 - offset
    if last < 0:
        return lo, lo
    hi = min(out_size, last // stride + 1)
    return lo, max(lo, hi)


@njit(parallel=True, cache=True)
def conv2d_forward(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w,
                   dilation_h, dilation_w, groups):
    """output[n, d] = bias[d] + sum_{c, i, j} weight[d, c, i, j] * padded_input[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw]."""
    N, C, H, W = input.shape
    D, Cg, KH, KW = weight.shape
    OH, OW = output.shape[2], output.shape[3]
    Dg = D // groups
    has_bias = bias.shape[0] > 0
    for task in prange(N * D):
        n = task // D
        d = task % D
        g = d // Dg
        out = output[n, d]
        if has_bias:
            out[:, :] = bias[d]
        else:
            out[:, :] = 0
        for c in range(Cg):
            plane = input[n, g * Cg + c]
            for i in range(KH):
                offset_h = i * dilation_h - padding_h
                oh_lo, oh_hi = valid_range(OH, H, stride_h, offset_h)
                for j in range(KW):
                    offset_w = j * dilation_w - padding_w
                    ow_lo, ow_hi = valid_range(OW, W, stride_w, offset_w)
                    w = weight[d, c, i, j]
                    for oh in range(oh_lo, oh_hi):
                        row_in = plane[oh * stride_h + offset_h]
                        row_out = out[oh]
                        for ow in range(ow_lo, ow_hi):
                            row_out[ow] += w * row_in[ow * stride_w + offset_w]


@njit(parallel=True, cache=True)
def conv2d_backward_input(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w,
                          dilation_h, dilation_w, groups):
    """grad_input (N, C, H, W) from grad_output (N, D, OH, OW); each task owns one input plane."""
    N, C, H, W = grad_input.shape
    D, Cg, KH, KW = weight.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    Dg = D // groups
    for task in prange(N * C):
        n = task // C
        channel = task % C
        g = channel // Cg
        c = channel % Cg
        plane = grad_input[n, channel]
        plane[:, :] = 0
        for dd in range(Dg):
            d = g * Dg + dd
            grad_plane = grad_output[n, d]
            for i in range(KH):
                offset_h = i * dilation_h - padding_h
                oh_lo, oh_hi = valid_range(OH, H, stride_h, offset_h)
                for j in range(KW):
                    offset_w = j * dilation_w - padding_w
                    ow_lo, ow_hi = valid_range(OW, W, stride_w, offset_w)
                    w = weight[d, c, i, j]
                    for oh in range(oh_lo, oh_hi):
                        row_in = plane[oh * stride_h + offset_h]
                        row_grad = grad_plane[oh]
                        for ow in range(ow_lo, ow_hi):
                            row_in[ow * stride_w + offset_w] += w * row_grad[ow]


@njit(parallel=True, cache=True, fastmath=_REDUCE)
def conv2d_backward_weight(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w,
                           dilation_h, dilation_w, groups):
    """grad_weight (D, C // groups, KH, KW), summed over the batch; each task owns one (d, c) filter slice."""
    N, C, H, W = input.shape
    D, Cg, KH, KW = grad_weight.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    Dg = D // groups
    for task in prange(D * Cg):
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
                for n in range(N):
                    plane = input[n, channel]
                    grad_plane = grad_output[n, d]
                    for oh in range(oh_lo, oh_hi):
                        row_in = plane[oh * stride_h + offset_h]
                        row_grad = grad_plane[oh]
                        for ow in range(ow_lo, ow_hi):
                            total += row_grad[ow] * row_in[ow * stride_w + offset_w]
                grad_weight[d, c, i, j] = total


@njit(parallel=True, cache=True, fastmath=_REDUCE)
def conv2d_backward_bias(grad_output, grad_bias):
    """grad_bias (D,) = grad_output (N, D, OH, OW) summed over N, OH, OW."""
    N, D, OH, OW = grad_output.shape
    for d in prange(D):
        total = grad_bias.dtype.type(0)
        for n in range(N):
            for oh in range(OH):
                for ow in range(OW):
                    total += grad_output[n, d, oh, ow]
        grad_bias[d] = total
