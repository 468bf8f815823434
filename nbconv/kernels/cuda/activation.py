"""Element-wise activation kernels for NVIDIA GPUs over flat device arrays; twins of the CPU ones."""
import math

from numba import cuda

from .launch import grid_for


@cuda.jit(device=True, inline=True)
def _stable_sigmoid(value):
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp_value = math.exp(value)
    return exp_value / (1.0 + exp_value)


@cuda.jit(cache=True)
def _relu_forward(input, output):
    k = cuda.grid(1)
    if k < input.shape[0]:
        value = input[k]
        output[k] = 0 if value <= 0 else value  # NaN stays NaN, as in PyTorch


def relu_forward(input, output):
    _relu_forward[grid_for(input.shape[0])](input, output)


@cuda.jit(cache=True)
def _relu_backward(grad_output, input, grad_input):
    k = cuda.grid(1)
    if k < input.shape[0]:
        grad_input[k] = grad_output[k] if input[k] > 0 else 0


def relu_backward(grad_output, input, grad_input):
    _relu_backward[grid_for(input.shape[0])](grad_output, input, grad_input)


@cuda.jit(cache=True)
def _relu6_forward(input, output):
    k = cuda.grid(1)
    if k < input.shape[0]:
        value = input[k]
        output[k] = 0 if value <= 0 else (6 if value >= 6 else value)


def relu6_forward(input, output):
    _relu6_forward[grid_for(input.shape[0])](input, output)


@cuda.jit(cache=True)
def _relu6_backward(grad_output, input, grad_input):
    k = cuda.grid(1)
    if k < input.shape[0]:
        grad_input[k] = grad_output[k] if 0 < input[k] < 6 else 0


def relu6_backward(grad_output, input, grad_input):
    _relu6_backward[grid_for(input.shape[0])](grad_output, input, grad_input)


@cuda.jit(cache=True)
def _leaky_relu_forward(input, output, negative_slope):
    k = cuda.grid(1)
    if k < input.shape[0]:
        value = input[k]
        output[k] = value if value > 0 else value * negative_slope


def leaky_relu_forward(input, output, negative_slope):
    _leaky_relu_forward[grid_for(input.shape[0])](input, output, negative_slope)


@cuda.jit(cache=True)
def _leaky_relu_backward(grad_output, input, grad_input, negative_slope):
    k = cuda.grid(1)
    if k < input.shape[0]:
        grad_input[k] = grad_output[k] if input[k] > 0 else grad_output[k] * negative_slope


def leaky_relu_backward(grad_output, input, grad_input, negative_slope):
    _leaky_relu_backward[grid_for(input.shape[0])](grad_output, input, grad_input, negative_slope)


@cuda.jit(cache=True)
def _sigmoid_forward(input, output):
    k = cuda.grid(1)
    if k < input.shape[0]:
        output[k] = _stable_sigmoid(input[k])


def sigmoid_forward(input, output):
    _sigmoid_forward[grid_for(input.shape[0])](input, output)


@cuda.jit(cache=True)
def _sigmoid_backward(grad_output, input, grad_input):
    k = cuda.grid(1)
    if k < input.shape[0]:
        s = _stable_sigmoid(input[k])
        grad_input[k] = grad_output[k] * s * (1.0 - s)


def sigmoid_backward(grad_output, input, grad_input):
    _sigmoid_backward[grid_for(input.shape[0])](grad_output, input, grad_input)


@cuda.jit(cache=True)
def _tanh_forward(input, output):
    k = cuda.grid(1)
    if k < input.shape[0]:
        output[k] = math.tanh(input[k])


def tanh_forward(input, output):
    _tanh_forward[grid_for(input.shape[0])](input, output)


@cuda.jit(cache=True)
def _tanh_backward(grad_output, input, grad_input):
    k = cuda.grid(1)
    if k < input.shape[0]:
        t = math.tanh(input[k])
        grad_input[k] = grad_output[k] * (1.0 - t * t)


def tanh_backward(grad_output, input, grad_input):
    _tanh_backward[grid_for(input.shape[0])](grad_output, input, grad_input)
