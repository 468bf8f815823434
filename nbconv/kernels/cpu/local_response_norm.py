"""Local response normalization across channels for the CPU (torch.nn.functional.local_response_norm).

Shapes: input, output (N, C, S), S the positions per channel. With the channel window
[c - size // 2, c + (size - 1) // 2] clipped to [0, C) (zero padding), denominator
d[c] = k + alpha / size * sum over the window of input**2, and output = input * d ** -beta.
"""
import math

import numpy as np

from numba import njit, prange


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


@njit(parallel=True, cache=True)
def local_response_norm_forward(input, output, size, alpha, beta, k):
    """output = input * (k + alpha / size * window sum of squares) ** -beta."""
    N, C, S = input.shape
    scale = alpha / size
    for task in prange(N * C):
        n, c = task // C, task % C
        target, row = output[n, c], input[n, c]
        window_square_sums(input, target, n, c, size)  # the output row holds the sums until overwritten
        for s in range(S):
            target[s] = row[s] * inverse_power(k + scale * target[s], beta)


@njit(parallel=True, cache=True)
def local_response_norm_backward(grad_output, input, grad_input, size, alpha, beta, k):
    """grad_input[j] = grad_output[j] * d[j] ** -beta
    - 2 * alpha * beta / size * input[j] * sum over the c whose window holds j of grad_output[c] * input[c] * d[c] ** (-beta - 1);
    those c are [j - (size - 1) // 2, j + size // 2] clipped to [0, C)."""
    N, C, S = input.shape
    scale = alpha / size
    weighted = np.empty(input.shape, input.dtype)  # grad_output[c] * input[c] * d[c] ** (-beta - 1)
    for task in prange(N * C):
        n, c = task // C, task % C
        share, grad_row, row, target = weighted[n, c], grad_output[n, c], input[n, c], grad_input[n, c]
        window_square_sums(input, share, n, c, size)
        for s in range(S):
            denominator = k + scale * share[s]
            power = inverse_power(denominator, beta)  # d ** -beta
            target[s] = grad_row[s] * power
            power /= denominator  # d ** (-beta - 1)
            share[s] = grad_row[s] * row[s] * power
    factor = 2.0 * scale * beta
    for task in prange(N * C):
        n, j = task // C, task % C
        row, target = input[n, j], grad_input[n, j]
        for c in range(max(j - (size - 1) // 2, 0), min(j + size // 2 + 1, C)):
            share = weighted[n, c]
            for s in range(S):
                target[s] -= factor * row[s] * share[s]
