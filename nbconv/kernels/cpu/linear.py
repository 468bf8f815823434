"""Fully connected layer kernels for the CPU. input (N, I), weight (O, I) as in PyTorch, bias (O,) or (0,), output (N, O)."""
from numba import njit, prange

_REDUCE = {"reassoc", "contract", "nsz"}


@njit(parallel=True, cache=True, fastmath=_REDUCE)
def linear_forward(input, weight, bias, output):
    """output[n, o] = bias[o] + sum_i input[n, i] * weight[o, i]."""
    N, I = input.shape
    O = weight.shape[0]
    has_bias = bias.shape[0] > 0
    for task in prange(N * O):
        n = task // O
        o = task % O
        total = output.dtype.type(0)
        for i in range(I):
            total += input[n, i] * weight[o, i]
        output[n, o] = total + bias[o] if has_bias else total


@njit(parallel=True, cache=True)
def linear_backward_input(grad_output, weight, grad_input):
    """grad_input (N, I) = grad_output (N, O) @ weight (O, I)."""
    N, O = grad_output.shape
    I = weight.shape[1]
    for n in prange(N):
        row = grad_input[n]
        row[:] = 0
        for o in range(O):
            g = grad_output[n, o]
            for i in range(I):
                row[i] += g * weight[o, i]


@njit(parallel=True, cache=True)
def linear_backward_weight(grad_output, input, grad_weight):
    """grad_weight (O, I) = grad_output.T (O, N) @ input (N, I)."""
    N, O = grad_output.shape
    I = input.shape[1]
    for o in prange(O):
        row = grad_weight[o]
        row[:] = 0
        for n in range(N):
            g = grad_output[n, o]
            for i in range(I):
                row[i] += g * input[n, i]


@njit(cache=True, fastmath=_REDUCE)
def linear_backward_bias(grad_output, grad_bias):
    """grad_bias (O,) = grad_output (N, O) summed over N."""
    N, O = grad_output.shape
    grad_bias[:] = 0
    for n in range(N):
        for o in range(O):
            grad_bias[o] += grad_output[n, o]
