"""2-D convolution (cross-correlation) kernels for the CPU.

Shapes: input (N, C, H, W), weight (D, C // groups, KH, KW), bias (D,) or (0,) for none,
output (N, D, OH, OW). Every kernel overwrites its outputs completely, so callers may pass
uninitialised buffers.

Two algorithms:
- im2col + GEMM (the default): an @njit kernel unrolls the input's windows into a matrix
  col (C*KH*KW, N*OH*OW), one matrix product per group does the arithmetic, and @njit kernels
  scatter the result back (col2im) or re-lay it out. The product goes through numpy's BLAS:
  Numba's own np.dot inside @njit needs SciPy, which nbconv does not depend on.
- direct loop nests (`*_direct`) for depthwise convolutions (one input channel per group), where a
  matrix product per group would be tiny. Their innermost loop runs over a precomputed valid range
  of output columns, so it has no bounds test and LLVM can vectorise it.
"""
from numba import njit, prange

from .blas import gemm
from .workspace import scratch

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
def conv2d_forward_direct(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w,
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
def conv2d_backward_input_direct(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w,
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
def conv2d_backward_weight_direct(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w,
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


@njit(parallel=True, cache=True)
def im2col(input, col, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w):
    """col[(c, i, j), n, oh*OW + ow] = padded_input[n, c, oh*sh + i*dh, ow*sw + j*dw] (zero in the padding).

    col: (C*KH*KW, N, OH*OW).
    """
    N, C, H, W = input.shape
    OH = (H + 2 * padding_h - dilation_h * (kernel_h - 1) - 1) // stride_h + 1
    OW = (W + 2 * padding_w - dilation_w * (kernel_w - 1) - 1) // stride_w + 1
    taps = kernel_h * kernel_w
    for task in prange(C * taps * N):
        row = task // N
        n = task % N
        c = row // taps
        i = (row % taps) // kernel_w
        j = row % kernel_w
        offset_h = i * dilation_h - padding_h
        offset_w = j * dilation_w - padding_w
        oh_lo, oh_hi = valid_range(OH, H, stride_h, offset_h)
        ow_lo, ow_hi = valid_range(OW, W, stride_w, offset_w)
        target = col[row, n]
        plane = input[n, c]
        for oh in range(OH):
            base = oh * OW
            if oh < oh_lo or oh >= oh_hi:
                target[base:base + OW] = 0
                continue
            source = plane[oh * stride_h + offset_h]
            for ow in range(ow_lo):
                target[base + ow] = 0
            for ow in range(ow_lo, ow_hi):
                target[base + ow] = source[ow * stride_w + offset_w]
            for ow in range(ow_hi, OW):
                target[base + ow] = 0


@njit(parallel=True, cache=True)
def col2im(col, grad_input, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w):
    """The adjoint of im2col: grad_input[n, c] = sum of col entries over every window position reading it."""
    N, C, H, W = grad_input.shape
    OH = (H + 2 * padding_h - dilation_h * (kernel_h - 1) - 1) // stride_h + 1
    OW = (W + 2 * padding_w - dilation_w * (kernel_w - 1) - 1) // stride_w + 1
    taps = kernel_h * kernel_w
    for task in prange(N * C):
        n = task // C
        c = task % C
        plane = grad_input[n, c]
        plane[:, :] = 0
        for i in range(kernel_h):
            offset_h = i * dilation_h - padding_h
            oh_lo, oh_hi = valid_range(OH, H, stride_h, offset_h)
            for j in range(kernel_w):
                offset_w = j * dilation_w - padding_w
                ow_lo, ow_hi = valid_range(OW, W, stride_w, offset_w)
                source = col[c * taps + i * kernel_w + j, n]
                for oh in range(oh_lo, oh_hi):
                    row = plane[oh * stride_h + offset_h]
                    base = oh * OW
                    for ow in range(ow_lo, ow_hi):
                        row[ow * stride_w + offset_w] += source[base + ow]


@njit(parallel=True, cache=True)
def rows_to_output(rows, bias, output):
    """output[n, d, p] = rows[d, n, p] + bias[d] (bias may be empty). rows: (D, N, OH*OW)."""
    N, D = output.shape[0], output.shape[1]
    has_bias = bias.shape[0] > 0
    for task in prange(N * D):
        n = task // D
        d = task % D
        plane = output[n, d]
        source = rows[d, n]
        b = bias[d] if has_bias else 0.0
        OH, OW = plane.shape
        for oh in range(OH):
            for ow in range(OW):
                plane[oh, ow] = source[oh * OW + ow] + b


@njit(parallel=True, cache=True)
def output_to_rows(grad_output, rows):
    """rows[d, n, p] = grad_output[n, d, p]: the (D, N*OH*OW) layout the matrix products need."""
    N, D, OH, OW = grad_output.shape
    for task in prange(N * D):
        n = task // D
        d = task % D
        plane = grad_output[n, d]
        target = rows[d, n]
        for oh in range(OH):
            for ow in range(OW):
                target[oh * OW + ow] = plane[oh, ow]


def _use_direct(weight, groups):
    return groups > 1 and weight.shape[1] == 1  # depthwise: a GEMM per group would be tiny


def _window_args(weight, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w):
    return (weight.shape[2], weight.shape[3], stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w)


def conv2d_forward(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w,
                   dilation_h, dilation_w, groups):
    """output = conv2d(input, weight) + bias, by im2col + one matrix product per group."""
    args = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    if _use_direct(weight, groups):
        return conv2d_forward_direct(input, weight, bias, output, *args)
    N, D, OH, OW = output.shape
    D, Cg, KH, KW = weight.shape
    depth, Dg, columns = Cg * KH * KW, D // groups, N * OH * OW
    col = scratch("col", (input.shape[1] * KH * KW, N, OH * OW), input.dtype)
    rows = scratch("rows", (D, N, OH * OW), input.dtype)
    im2col(input, col, *_window_args(weight, *args[:6]))
    for g in range(groups):
        gemm(weight[g * Dg:(g + 1) * Dg].reshape(Dg, depth), col[g * depth:(g + 1) * depth].reshape(depth, columns),
             rows[g * Dg:(g + 1) * Dg].reshape(Dg, columns))
    rows_to_output(rows, bias, output)


def conv2d_backward_input(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w,
                          dilation_h, dilation_w, groups):
    """grad_input (N, C, H, W) = col2im(weight.T @ grad_output), per group."""
    args = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    if _use_direct(weight, groups):
        return conv2d_backward_input_direct(grad_output, weight, grad_input, *args)
    N, D, OH, OW = grad_output.shape
    D, Cg, KH, KW = weight.shape
    depth, Dg, columns = Cg * KH * KW, D // groups, N * OH * OW
    rows = scratch("rows", (D, N, OH * OW), grad_output.dtype)
    col = scratch("col", (grad_input.shape[1] * KH * KW, N, OH * OW), grad_output.dtype)
    output_to_rows(grad_output, rows)
    for g in range(groups):
        gemm(weight[g * Dg:(g + 1) * Dg].reshape(Dg, depth).T, rows[g * Dg:(g + 1) * Dg].reshape(Dg, columns),
             col[g * depth:(g + 1) * depth].reshape(depth, columns))
    col2im(col, grad_input, *_window_args(weight, *args[:6]))


def conv2d_backward_weight(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w,
                           dilation_h, dilation_w, groups):
    """grad_weight (D, C/groups, KH, KW) = grad_output @ im2col(input).T, per group, summed over the batch."""
    args = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    if _use_direct(grad_weight, groups):
        return conv2d_backward_weight_direct(grad_output, input, grad_weight, *args)
    N, D, OH, OW = grad_output.shape
    D, Cg, KH, KW = grad_weight.shape
    depth, Dg, columns = Cg * KH * KW, D // groups, N * OH * OW
    rows = scratch("rows", (D, N, OH * OW), input.dtype)
    col = scratch("col", (input.shape[1] * KH * KW, N, OH * OW), input.dtype)
    output_to_rows(grad_output, rows)
    im2col(input, col, *_window_args(grad_weight, *args[:6]))
    for g in range(groups):
        gemm(rows[g * Dg:(g + 1) * Dg].reshape(Dg, columns), col[g * depth:(g + 1) * depth].reshape(depth, columns).T,
             grad_weight[g * Dg:(g + 1) * Dg].reshape(Dg, depth))
