"""Element-wise activation kernels for the CPU over flat (1-D, contiguous) arrays of equal length."""
import math

from numba import njit, prange


@njit(parallel=True, cache=True)
def relu_forward(input, output):
    for k in prange(input.shape[0]):
        value = input[k]
        output[k] = 0 if value <= 0 else value  # NaN stays NaN, as in PyTorch


@njit(parallel=True, cache=True)
def relu_backward(grad_output, input, grad_input):
    for k in prange(input.shape[0]):
        grad_input[k] = grad_output[k] if input[k] > 0 else 0


@njit(parallel=True, cache=True)
def relu6_forward(input, output):
    for k in prange(input.shape[0]):
        value = input[k]  # NaN fails both tests and passes through
        output[k] = 0 if value <= 0 else (6 if value >= 6 else value)


@njit(parallel=True, cache=True)
def relu6_backward(grad_output, input, grad_input):
    for k in prange(input.shape[0]):
        grad_input[k] = grad_output[k] if 0 < input[k] < 6 else 0


@njit(parallel=True, cache=True)
def leaky_relu_forward(input, output, negative_slope):
    for k in prange(input.shape[0]):
        value = input[k]
        output[k] = value if value > 0 else value * negative_slope


@njit(parallel=True, cache=True)
def leaky_relu_backward(grad_output, input, grad_input, negative_slope):
    for k in prange(input.shape[0]):
        grad_input[k] = grad_output[k] if input[k] > 0 else grad_output[k] * negative_slope


@njit(cache=True, inline="always")
def stable_sigmoid(value):
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp_value = math.exp(value)
    return exp_value / (1.0 + exp_value)


@njit(parallel=True, cache=True)
def sigmoid_forward(input, output):
    for k in prange(input.shape[0]):
        output[k] = stable_sigmoid(input[k])


@njit(parallel=True, cache=True)
def sigmoid_backward(grad_output, input, grad_input):
    for k in prange(input.shape[0]):
        s = stable_sigmoid(input[k])
        grad_input[k] = grad_output[k] * s * (1.0 - s)


@njit(parallel=True, cache=True)
def tanh_forward(input, output):
    for k in prange(input.shape[0]):
        output[k] = math.tanh(input[k])


@njit(parallel=True, cache=True)
def tanh_backward(grad_output, input, grad_input):
    for k in prange(input.shape[0]):
        t = math.tanh(input[k])
        grad_input[k] = grad_output[k] * (1.0 - t * t)
