"""Adaptive pooling for the CPU: any output size, PyTorch's windows.

Shapes: input (N, C, H, W), output (N, C, OH, OW). Output row i pools input rows
[floor(i * H / OH), ceil((i + 1) * H / OH)), likewise columns; windows may overlap. Max pooling writes
indices (the flat position ih * W + iw of each maximum in its plane; ties and NaNs: the first in row-major
order), or nothing when indices is empty, (0, 0, 0, 0). One task per (n, c) plane, so backward scatters
do not race.
"""
import math

import numpy as np

from numba import njit

from ... import checks
from .arguments import check_read, check_written
from .shared import chunk_bounds, fill_plane
from .threads import parallel_parts, thread_count


@njit(cache=True, inline="always")
def adaptive_window(o, size, out_size):
    """[start, end) of output position o's window along an axis of `size` pooled to `out_size`."""
    return (o * size) // out_size, ((o + 1) * size + out_size - 1) // out_size


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def adaptive_avg_pool2d_forward_span(span_part, span_parts, input, output):
    """adaptive_avg_pool2d_forward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    OH, OW = output.shape[2], output.shape[3]
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n, c = task // C, task % C
        plane = input[n, c]
        for oh in range(OH):
            h0, h1 = adaptive_window(oh, H, OH)
            for ow in range(OW):
                w0, w1 = adaptive_window(ow, W, OW)
                total = 0.0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        total += plane[ih, iw]
                output[n, c, oh, ow] = total / ((h1 - h0) * (w1 - w0))


def adaptive_avg_pool2d_forward(input, output):
    parallel_parts(adaptive_avg_pool2d_forward_span, thread_count(input.size), input, output)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def adaptive_avg_pool2d_backward_span(span_part, span_parts, grad_output, grad_input):
    """adaptive_avg_pool2d_backward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = grad_input.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n, c = task // C, task % C
        plane = grad_input[n, c]
        fill_plane(plane, 0)
        for oh in range(OH):
            h0, h1 = adaptive_window(oh, H, OH)
            for ow in range(OW):
                w0, w1 = adaptive_window(ow, W, OW)
                share = grad_output[n, c, oh, ow] / ((h1 - h0) * (w1 - w0))
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        plane[ih, iw] += share


def adaptive_avg_pool2d_backward(grad_output, grad_input):
    parallel_parts(adaptive_avg_pool2d_backward_span, thread_count(grad_output.size), grad_output, grad_input)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def adaptive_max_pool2d_forward_span(span_part, span_parts, input, output, indices):
    """adaptive_max_pool2d_forward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    OH, OW = output.shape[2], output.shape[3]
    record = indices.shape[0] > 0
    if not record:
        indices = np.empty((1, 1, 1, 1), np.int64)  # a placeholder for the typing of the loop below
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n, c = task // C, task % C
        plane = input[n, c]
        for oh in range(OH):
            h0, h1 = adaptive_window(oh, H, OH)
            for ow in range(OW):
                w0, w1 = adaptive_window(ow, W, OW)
                best = -math.inf
                where = h0 * W + w0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        value = plane[ih, iw]
                        if value > best or (value != value and best == best):
                            best = value
                            where = ih * W + iw
                output[n, c, oh, ow] = best
                if record:
                    indices[n, c, oh, ow] = where


def adaptive_max_pool2d_forward(input, output, indices):
    parallel_parts(adaptive_max_pool2d_forward_span, thread_count(input.size), input, output, indices)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def adaptive_max_pool2d_backward_span(span_part, span_parts, grad_output, indices, grad_input):
    """adaptive_max_pool2d_backward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = grad_input.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n, c = task // C, task % C
        plane = grad_input[n, c].reshape(H * W)
        for q in range(H * W):
            plane[q] = 0
        for oh in range(OH):
            for ow in range(OW):
                position = indices[n, c, oh, ow]
                if 0 <= position < H * W:  # a position from elsewhere than the forward pass: nowhere to go
                    plane[position] += grad_output[n, c, oh, ow]


def adaptive_max_pool2d_backward(grad_output, indices, grad_input):
    """grad_input: each output gradient routed to the position its maximum came from (positions outside the
    plane skipped, as max_pool2d_backward does). indices: int64 of grad_output's shape (N, C, OH, OW); grad_input
    (N, C, H, W) of its dtype, C-contiguous (arguments.py)."""
    checks.ndim("grad_output", grad_output, (4,), "(N, C, OH, OW)")
    check_read(grad_output.dtype)
    if indices.shape != grad_output.shape or indices.dtype != np.int64:
        raise ValueError(f"indices must be int64 of grad_output's shape {grad_output.shape}, got {indices.dtype.name} "
                         f"of shape {indices.shape}")
    checks.ndim("grad_input", grad_input, (4,), "(N, C, H, W)")
    check_written("grad_input", grad_input, grad_output.shape[:2] + grad_input.shape[2:], grad_output.dtype)
    parallel_parts(adaptive_max_pool2d_backward_span, thread_count(grad_output.size), grad_output, indices, grad_input)
