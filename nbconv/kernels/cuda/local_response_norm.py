"""Local response normalization for NVIDIA GPUs, the CUDA twins of nbconv.kernels.cpu.local_response_norm
(same shapes and formulas); one thread per element."""
from numba import cuda

from .indexing import unravel3
from .launch import grid_for


@cuda.jit(device=True, inline=True)
def _window_square_sum(input, n, c, s, size):
    total = 0.0
    for other in range(max(c - size // 2, 0), min(c + (size - 1) // 2 + 1, input.shape[1])):
        value = input[n, other, s]
        total += value * value
    return total


@cuda.jit(cache=True)
def _local_response_norm_forward(input, output, size, alpha, beta, k):
    N, C, S = input.shape
    index = cuda.grid(1)
    if index < N * C * S:
        n, c, s = unravel3(index, C, S)
        output[n, c, s] = input[n, c, s] * (k + alpha / size * _window_square_sum(input, n, c, s, size)) ** -beta


def local_response_norm_forward(input, output, size, alpha, beta, k):
    _local_response_norm_forward[grid_for(input.size)](input, output, size, alpha, beta, k)


@cuda.jit(cache=True)
def _local_response_norm_weigh(grad_output, input, grad_input, weighted, size, alpha, beta, k):
    """grad_input = grad_output * d ** -beta; weighted = grad_output * input * d ** (-beta - 1)."""
    N, C, S = input.shape
    index = cuda.grid(1)
    if index < N * C * S:
        n, c, s = unravel3(index, C, S)
        denominator = k + alpha / size * _window_square_sum(input, n, c, s, size)
        power = denominator ** (-beta - 1.0)
        grad_input[n, c, s] = grad_output[n, c, s] * power * denominator
        weighted[n, c, s] = grad_output[n, c, s] * input[n, c, s] * power


@cuda.jit(cache=True)
def _local_response_norm_gather(input, weighted, grad_input, size, alpha, beta):
    N, C, S = input.shape
    index = cuda.grid(1)
    if index < N * C * S:
        n, j, s = unravel3(index, C, S)
        total = 0.0
        for c in range(max(j - (size - 1) // 2, 0), min(j + size // 2 + 1, C)):
            total += weighted[n, c, s]
        grad_input[n, j, s] -= 2.0 * alpha / size * beta * input[n, j, s] * total


def local_response_norm_backward(grad_output, input, grad_input, size, alpha, beta, k):
    weighted = cuda.device_array(input.shape, input.dtype)
    grid = grid_for(input.size)
    _local_response_norm_weigh[grid](grad_output, input, grad_input, weighted, size, alpha, beta, k)
    _local_response_norm_gather[grid](input, weighted, grad_input, size, alpha, beta)
