"""Local response normalization across channels for the CPU (torch.nn.functional.local_response_norm).

Shapes: input, output (N, C, S), S the positions per channel. With the channel window
[c - size // 2, c + (size - 1) // 2] clipped to [0, C) (zero padding), denominator
d[c] = k + alpha / size * sum over the window of input**2, and output = input * d ** -beta.
"""
import math

import numpy as np

from numba import njit

from .shared import chunk_bounds
from .threads import parallel_parts, thread_count


@njit(cache=True, inline="always")
def window_square_sums(input, sums, n, c, size):
    """sums[s] = sum of input[n, c', s]**2 over c's window."""
    C, S = input.shape[1], input.shape[2]
    for s in range(S):
        sums[s] = 0
    for other in range(max(c - size // 2, 0), min(c + (size - 1) // 2 + 1, C)):
        row = input[n, other]
        for s in range(S):
            sums[s] += row[s] * row[s]


@njit(cache=True, inline="always")
def inverse_power(value, beta):
    """value ** -beta, through square roots for the usual beta = 0.75 and 0.5 (pow is several times slower)."""
    if beta == 0.75:
        root = math.sqrt(value)
        return 1.0 / (root * math.sqrt(root))
    if beta == 0.5:
        return 1.0 / math.sqrt(value)
    return value ** -beta


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def local_response_norm_forward_span(span_part, span_parts, input, output, size, alpha, beta, k):
    """local_response_norm_forward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, S = input.shape
    scale = alpha / size
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n, c = task // C, task % C
        target, row = output[n, c], input[n, c]
        window_square_sums(input, target, n, c, size)  # the output row holds the sums until overwritten
        for s in range(S):
            target[s] = row[s] * inverse_power(k + scale * target[s], beta)


def local_response_norm_forward(input, output, size, alpha, beta, k):
    """output = input * (k + alpha / size * window sum of squares) ** -beta."""
    parallel_parts(local_response_norm_forward_span, thread_count(input.size), input, output, size, alpha, beta, k)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def local_response_norm_backward_own_span(span_part, span_parts, grad_output, input, grad_input, weighted, size,
                                          alpha, beta, k):
    """The first pass of local_response_norm_backward: each position's own term into grad_input, and its
    weighted share into `weighted`, over the span_part-th of span_parts slices of the (n, c) planes."""
    N, C, S = input.shape
    scale = alpha / size
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n, c = task // C, task % C
        share, grad_row, row, target = weighted[n, c], grad_output[n, c], input[n, c], grad_input[n, c]
        window_square_sums(input, share, n, c, size)
        for s in range(S):
            denominator = k + scale * share[s]
            power = inverse_power(denominator, beta)  # d ** -beta
            target[s] = grad_row[s] * power
            power /= denominator  # d ** (-beta - 1)
            share[s] = grad_row[s] * row[s] * power


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def local_response_norm_backward_window_span(span_part, span_parts, input, grad_input, weighted, size, alpha, beta):
    """The second pass of local_response_norm_backward: the window terms, from `weighted`."""
    N, C, S = input.shape
    scale = alpha / size
    factor = 2.0 * scale * beta
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n, j = task // C, task % C
        row, target = input[n, j], grad_input[n, j]
        for c in range(max(j - (size - 1) // 2, 0), min(j + size // 2 + 1, C)):
            share = weighted[n, c]
            for s in range(S):
                target[s] -= factor * row[s] * share[s]


def local_response_norm_backward(grad_output, input, grad_input, size, alpha, beta, k):
    """grad_input[j] = grad_output[j] * d[j] ** -beta
    - 2 * alpha * beta / size * input[j] * sum over the c whose window holds j of grad_output[c] * input[c] * d[c] ** (-beta - 1);
    those c are [j - (size - 1) // 2, j + size // 2] clipped to [0, C)."""
    weighted = np.empty(input.shape, input.dtype)  # grad_output[c] * input[c] * d[c] ** (-beta - 1)
    threads = thread_count(input.size)
    parallel_parts(local_response_norm_backward_own_span, threads, grad_output, input, grad_input, weighted, size,
                   alpha, beta, k)
    parallel_parts(local_response_norm_backward_window_span, threads, input, grad_input, weighted, size, alpha, beta)
