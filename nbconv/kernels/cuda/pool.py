"""Pooling kernels for NVIDIA GPUs, the CUDA twins of nbconv.kernels.cpu.pool.

Forward kernels own one output element per thread; backward kernels own one input element per
thread and gather from every window that covers it, so overlapping windows need no atomics.
"""
import math

from numba import cuda

from .indexing import unravel4
from .launch import grid_for


@cuda.jit(device=True, inline=True)
def _covering_windows(i, padding, kernel, stride, out_size):
    """Output positions [lo, hi) whose window (start o*stride - padding, length kernel) holds input i."""
    first = i + padding - kernel + 1
    lo = 0 if first <= 0 else (first + stride - 1) // stride
    hi = min(out_size, (i + padding) // stride + 1)
    return lo, hi


@cuda.jit(device=True, inline=True)
def _avg_window(o, stride, padding, kernel, size, count_include_pad):
    start = o * stride - padding
    end = min(start + kernel, size + padding)
    padded_extent = end - start
    lo, hi = max(start, 0), min(end, size)
    if count_include_pad:
        return lo, hi, padded_extent
    return lo, hi, hi - lo


@cuda.jit(cache=True)
def _max_pool2d_forward(input, output, indices, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w):
    N, C, H, W = input.shape
    OH, OW = output.shape[2], output.shape[3]
    index = cuda.grid(1)
    if index >= N * C * OH * OW:
        return
    n, c, oh, ow = unravel4(index, C, OH, OW)
    h0 = oh * stride_h - padding_h
    w0 = ow * stride_w - padding_w
    h_lo, h_hi = max(h0, 0), min(h0 + kernel_h, H)
    w_lo, w_hi = max(w0, 0), min(w0 + kernel_w, W)
    best = -math.inf
    best_index = h_lo * W + w_lo
    found_nan = False
    for ih in range(h_lo, h_hi):
        for iw in range(w_lo, w_hi):
            value = input[n, c, ih, iw]
            if not found_nan and (value > best or value != value):
                best = value
                best_index = ih * W + iw
                found_nan = value != value
    output[n, c, oh, ow] = best
    if indices.shape[0] > 0:  # empty indices: the caller needs no positions
        indices[n, c, oh, ow] = best_index


def max_pool2d_forward(input, output, indices, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w):
    _max_pool2d_forward[grid_for(output.size)](input, output, indices, kernel_h, kernel_w,
                                               stride_h, stride_w, padding_h, padding_w)


@cuda.jit(cache=True)
def _max_pool2d_backward(grad_output, indices, grad_input, kernel_h, kernel_w, stride_h, stride_w,
                         padding_h, padding_w):
    N, C, H, W = grad_input.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    index = cuda.grid(1)
    if index >= N * C * H * W:
        return
    n, c, ih, iw = unravel4(index, C, H, W)
    oh_lo, oh_hi = _covering_windows(ih, padding_h, kernel_h, stride_h, OH)
    ow_lo, ow_hi = _covering_windows(iw, padding_w, kernel_w, stride_w, OW)
    flat = ih * W + iw
    total = 0.0
    for oh in range(oh_lo, oh_hi):
        for ow in range(ow_lo, ow_hi):
            if indices[n, c, oh, ow] == flat:
                total += grad_output[n, c, oh, ow]
    grad_input[n, c, ih, iw] = total


def max_pool2d_backward(grad_output, indices, grad_input, kernel_h, kernel_w, stride_h, stride_w,
                        padding_h, padding_w):
    _max_pool2d_backward[grid_for(grad_input.size)](grad_output, indices, grad_input, kernel_h, kernel_w,
                                                    stride_h, stride_w, padding_h, padding_w)


@cuda.jit(cache=True)
def _avg_pool2d_forward(input, output, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w,
                        count_include_pad):
    N, C, H, W = input.shape
    OH, OW = output.shape[2], output.shape[3]
    index = cuda.grid(1)
    if index >= N * C * OH * OW:
        return
    n, c, oh, ow = unravel4(index, C, OH, OW)
    h_lo, h_hi, h_count = _avg_window(oh, stride_h, padding_h, kernel_h, H, count_include_pad)
    w_lo, w_hi, w_count = _avg_window(ow, stride_w, padding_w, kernel_w, W, count_include_pad)
    total = 0.0
    for ih in range(h_lo, h_hi):
        for iw in range(w_lo, w_hi):
            total += input[n, c, ih, iw]
    output[n, c, oh, ow] = total / max(h_count * w_count, 1)


def avg_pool2d_forward(input, output, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w,
                       count_include_pad):
    _avg_pool2d_forward[grid_for(output.size)](input, output, kernel_h, kernel_w, stride_h, stride_w,
                                               padding_h, padding_w, count_include_pad)


@cuda.jit(cache=True)
def _avg_pool2d_backward(grad_output, grad_input, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w,
                         count_include_pad):
    N, C, H, W = grad_input.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    index = cuda.grid(1)
    if index >= N * C * H * W:
        return
    n, c, ih, iw = unravel4(index, C, H, W)
    oh_lo, oh_hi = _covering_windows(ih, padding_h, kernel_h, stride_h, OH)
    ow_lo, ow_hi = _covering_windows(iw, padding_w, kernel_w, stride_w, OW)
    total = 0.0
    for oh in range(oh_lo, oh_hi):
        h_lo, h_hi, h_count = _avg_window(oh, stride_h, padding_h, kernel_h, H, count_include_pad)
        for ow in range(ow_lo, ow_hi):
            w_lo, w_hi, w_count = _avg_window(ow, stride_w, padding_w, kernel_w, W, count_include_pad)
            total += grad_output[n, c, oh, ow] / max(h_count * w_count, 1)
    grad_input[n, c, ih, iw] = total


def avg_pool2d_backward(grad_output, grad_input, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w,
                        count_include_pad):
    _avg_pool2d_backward[grid_for(grad_input.size)](grad_output, grad_input, kernel_h, kernel_w, stride_h,
                                                    stride_w, padding_h, padding_w, count_include_pad)


@cuda.jit(cache=True)
def _global_avg_pool2d_forward(input, output):
    N, C, H, W = input.shape
    index = cuda.grid(1)
    if index >= N * C:
        return
    c = index % C
    n = index // C
    total = 0.0
    for ih in range(H):
        for iw in range(W):
            total += input[n, c, ih, iw]
    output[n, c, 0, 0] = total / (H * W)


def global_avg_pool2d_forward(input, output):
    _global_avg_pool2d_forward[grid_for(output.size)](input, output)


@cuda.jit(cache=True)
def _global_avg_pool2d_backward(grad_output, grad_input):
    N, C, H, W = grad_input.shape
    index = cuda.grid(1)
    if index >= N * C * H * W:
        return
    n, c, ih, iw = unravel4(index, C, H, W)
    grad_input[n, c, ih, iw] = grad_output[n, c, 0, 0] / (H * W)


def global_avg_pool2d_backward(grad_output, grad_input):
    _global_avg_pool2d_backward[grid_for(grad_input.size)](grad_output, grad_input)
