"""Adaptive pooling for NVIDIA GPUs, the CUDA twins of nbconv.kernels.cpu.adaptive_pool (same windows and
rules). Forward kernels own one output element per thread; backward kernels own one input element and
gather from the windows that hold it, input row h lying in output rows [floor(h * OH / H),
ceil((h + 1) * OH / H)), so overlapping windows need no atomics."""
import math

from numba import cuda

from .indexing import unravel4
from .launch import grid_for


@cuda.jit(device=True, inline=True)
def _window(o, size, out_size):
    return (o * size) // out_size, ((o + 1) * size + out_size - 1) // out_size


@cuda.jit(device=True, inline=True)
def _covering(i, size, out_size):
    """Output positions [lo, hi) whose window holds input position i."""
    return (i * out_size) // size, min(((i + 1) * out_size + size - 1) // size, out_size)


@cuda.jit(cache=True)
def _adaptive_avg_pool2d_forward(input, output):
    N, C, H, W = input.shape
    OH, OW = output.shape[2], output.shape[3]
    index = cuda.grid(1)
    if index >= N * C * OH * OW:
        return
    n, c, oh, ow = unravel4(index, C, OH, OW)
    h0, h1 = _window(oh, H, OH)
    w0, w1 = _window(ow, W, OW)
    total = 0.0
    for ih in range(h0, h1):
        for iw in range(w0, w1):
            total += input[n, c, ih, iw]
    output[n, c, oh, ow] = total / ((h1 - h0) * (w1 - w0))


def adaptive_avg_pool2d_forward(input, output):
    _adaptive_avg_pool2d_forward[grid_for(output.size)](input, output)


@cuda.jit(cache=True)
def _adaptive_avg_pool2d_backward(grad_output, grad_input):
    N, C, H, W = grad_input.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    index = cuda.grid(1)
    if index >= N * C * H * W:
        return
    n, c, ih, iw = unravel4(index, C, H, W)
    oh_lo, oh_hi = _covering(ih, H, OH)
    ow_lo, ow_hi = _covering(iw, W, OW)
    total = 0.0
    for oh in range(oh_lo, oh_hi):
        h0, h1 = _window(oh, H, OH)
        for ow in range(ow_lo, ow_hi):
            w0, w1 = _window(ow, W, OW)
            total += grad_output[n, c, oh, ow] / ((h1 - h0) * (w1 - w0))
    grad_input[n, c, ih, iw] = total


def adaptive_avg_pool2d_backward(grad_output, grad_input):
    _adaptive_avg_pool2d_backward[grid_for(grad_input.size)](grad_output, grad_input)


@cuda.jit(cache=True)
def _adaptive_max_pool2d_forward(input, output, indices):
    N, C, H, W = input.shape
    OH, OW = output.shape[2], output.shape[3]
    index = cuda.grid(1)
    if index >= N * C * OH * OW:
        return
    n, c, oh, ow = unravel4(index, C, OH, OW)
    h0, h1 = _window(oh, H, OH)
    w0, w1 = _window(ow, W, OW)
    best = -math.inf
    where = h0 * W + w0
    for ih in range(h0, h1):
        for iw in range(w0, w1):
            value = input[n, c, ih, iw]
            if value > best or (value != value and best == best):
                best = value
                where = ih * W + iw
    output[n, c, oh, ow] = best
    if indices.shape[0] > 0:
        indices[n, c, oh, ow] = where


def adaptive_max_pool2d_forward(input, output, indices):
    _adaptive_max_pool2d_forward[grid_for(output.size)](input, output, indices)


@cuda.jit(cache=True)
def _adaptive_max_pool2d_backward(grad_output, indices, grad_input):
    N, C, H, W = grad_input.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    index = cuda.grid(1)
    if index >= N * C * H * W:
        return
    n, c, ih, iw = unravel4(index, C, H, W)
    oh_lo, oh_hi = _covering(ih, H, OH)
    ow_lo, ow_hi = _covering(iw, W, OW)
    flat = ih * W + iw
    total = 0.0
    for oh in range(oh_lo, oh_hi):
        for ow in range(ow_lo, ow_hi):
            if indices[n, c, oh, ow] == flat:
                total += grad_output[n, c, oh, ow]
    grad_input[n, c, ih, iw] = total


def adaptive_max_pool2d_backward(grad_output, indices, grad_input):
    _adaptive_max_pool2d_backward[grid_for(grad_input.size)](grad_output, indices, grad_input)
