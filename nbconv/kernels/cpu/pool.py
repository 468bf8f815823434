"""Pooling kernels for the CPU: max, average and global average, forward and backward.

Shapes: input (N, C, H, W), output (N, C, OH, OW); max pooling also writes indices (N, C, OH, OW),
the flat position ih * W + iw of each maximum inside its input plane. Windows start at
o*stride - padding and are clipped to the input, so ceil_mode only changes the output size,
which the caller chooses. Each task owns one (n, c) plane, so the backward scatters do not race.
"""
import math

from numba import njit, prange

from .conv import valid_range


@njit(parallel=True, cache=True)
def max_pool2d_forward(input, output, indices, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w):
    """output = max over each window (NaN propagates); indices = where in the plane it came from.

    Ties and NaNs resolve to the first in the window's row-major order (taps run in (i, j) order for every
    output). The loops run tap by tap over whole output rows, through views indexed from 0, with the
    column range of each tap computed once per plane.
    """
    N, C, H, W = input.shape
    OH, OW = output.shape[2], output.shape[3]
    for task in prange(N * C):
        n = task // C
        c = task % C
        plane = input[n, c]
        for oh in range(OH):
            first_h = max(oh * stride_h - padding_h, 0)
            for ow in range(OW):
                output[n, c, oh, ow] = -math.inf
                indices[n, c, oh, ow] = first_h * W + max(ow * stride_w - padding_w, 0)
        for i in range(kernel_h):
            for j in range(kernel_w):
                offset = j - padding_w
                lo, hi = valid_range(OW, W, stride_w, offset)
                for oh in range(OH):
                    ih = oh * stride_h - padding_h + i
                    if ih < 0 or ih >= H or lo >= hi:
                        continue
                    source = plane[ih, lo * stride_w + offset:]
                    best = output[n, c, oh, lo:hi]
                    where = indices[n, c, oh, lo:hi]
                    base = ih * W + lo * stride_w + offset
                    for q in range(hi - lo):
                        value = source[q * stride_w]
                        current = best[q]
                        current_where = where[q]  # loaded up front so that both updates become selects:
                        take = (value > current) | ((value != value) & (current == current))
                        best[q] = value if take else current  # a branch on random data mispredicts half
                        where[q] = base + q * stride_w if take else current_where  # the time


@njit(parallel=True, cache=True)
def max_pool2d_backward(grad_output, indices, grad_input, kernel_h, kernel_w, stride_h, stride_w,
                        padding_h, padding_w):
    """grad_input: each output gradient is routed to the input position its maximum came from."""
    N, C, H, W = grad_input.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    for task in prange(N * C):
        n = task // C
        c = task % C
        plane = grad_input[n, c].reshape(H * W)
        plane[:] = 0
        for oh in range(OH):
            grad_row = grad_output[n, c, oh]
            where = indices[n, c, oh]
            for ow in range(OW):
                plane[where[ow]] += grad_row[ow]


@njit(cache=True, inline="always")
def avg_pool_window(o, stride, padding, kernel, size, count_include_pad):
    """Clipped window [lo, hi) along one axis and that axis's share of the divisor."""
    start = o * stride - padding
    end = min(start + kernel, size + padding)
    padded_extent = end - start
    lo, hi = max(start, 0), min(end, size)
    if count_include_pad:
        return lo, hi, padded_extent
    return lo, hi, hi - lo


@njit(parallel=True, cache=True)
def avg_pool2d_forward(input, output, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w,
                       count_include_pad):
    """output = window mean; the divisor counts padding cells when count_include_pad is 1 (PyTorch's rule)."""
    N, C, H, W = input.shape
    OH, OW = output.shape[2], output.shape[3]
    for task in prange(N * C):
        n = task // C
        c = task % C
        plane = input[n, c]
        for oh in range(OH):
            h_lo, h_hi, h_count = avg_pool_window(oh, stride_h, padding_h, kernel_h, H, count_include_pad)
            for ow in range(OW):
                w_lo, w_hi, w_count = avg_pool_window(ow, stride_w, padding_w, kernel_w, W, count_include_pad)
                total = 0.0
                for ih in range(h_lo, h_hi):
                    for iw in range(w_lo, w_hi):
                        total += plane[ih, iw]
                output[n, c, oh, ow] = total / max(h_count * w_count, 1)


@njit(parallel=True, cache=True)
def avg_pool2d_backward(grad_output, grad_input, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w,
                        count_include_pad):
    """grad_input: each output gradient spread evenly (by the forward's divisor) over its window."""
    N, C, H, W = grad_input.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    for task in prange(N * C):
        n = task // C
        c = task % C
        plane = grad_input[n, c]
        plane[:, :] = 0
        for oh in range(OH):
            h_lo, h_hi, h_count = avg_pool_window(oh, stride_h, padding_h, kernel_h, H, count_include_pad)
            for ow in range(OW):
                w_lo, w_hi, w_count = avg_pool_window(ow, stride_w, padding_w, kernel_w, W, count_include_pad)
                share = grad_output[n, c, oh, ow] / max(h_count * w_count, 1)
                for ih in range(h_lo, h_hi):
                    for iw in range(w_lo, w_hi):
                        plane[ih, iw] += share


@njit(parallel=True, cache=True)
def global_avg_pool2d_forward(input, output):
    """output (N, C, 1, 1) = mean of each (H, W) plane of input (N, C, H, W)."""
    N, C, H, W = input.shape
    for task in prange(N * C):
        n = task // C
        c = task % C
        total = 0.0
        for ih in range(H):
            for iw in range(W):
                total += input[n, c, ih, iw]
        output[n, c, 0, 0] = total / (H * W)


@njit(parallel=True, cache=True)
def global_avg_pool2d_backward(grad_output, grad_input):
    """grad_input (N, C, H, W) = grad_output (N, C, 1, 1) / (H * W), broadcast over each plane."""
    N, C, H, W = grad_input.shape
    for task in prange(N * C):
        n = task // C
        c = task % C
        grad_input[n, c, :, :] = grad_output[n, c, 0, 0] / (H * W)
