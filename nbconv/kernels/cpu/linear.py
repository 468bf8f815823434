"""Fully connected layer kernels for the CPU. input (N, I), weight (O, I) as in PyTorch, bias (O,) or (0,), output (N, O).

The matrix products go through numpy's BLAS (Numba's np.dot inside @njit would need SciPy); the bias
passes are @njit.
"""
from numba import njit

from .blas import matmul as gemm

_REDUCE = {"reassoc", "contract", "nsz"}


@njit(cache=True)
def add_bias_rows(output, bias):
    """output[n, o] += bias[o] (nothing when bias is empty)."""
    if bias.shape[0] == 0:
        return
    N, O = output.shape
    for n in range(N):
        for o in range(O):
            output[n, o] += bias[o]


def linear_forward(input, weight, bias, output):
    """output[n, o] = bias[o] + sum_i input[n, i] * weight[o, i]."""
    gemm(input, weight.T, output)
    add_bias_rows(output, bias)


def linear_backward_input(grad_output, weight, grad_input):
    """grad_input (N, I) = grad_output (N, O) @ weight (O, I)."""
    gemm(grad_output, weight, grad_input)


def linear_backward_weight(grad_output, input, grad_weight):
    """grad_weight (O, I) = grad_output.T (O, N) @ input (N, I)."""
    gemm(grad_output.T, input, grad_weight)


@njit(cache=True, fastmath=_REDUCE)
def linear_backward_bias(grad_output, grad_bias):
    """grad_bias (O,) = grad_output (N, O) summed over N."""
    N, O = grad_output.shape
    grad_bias[:] = 0
    for n in range(N):
        for o in range(O):
            grad_bias[o] += grad_output[n, o]
