"""Fully connected layer kernels for NVIDIA GPUs; twins of nbconv.kernels.cpu.linear (one thread per output element)."""
from numba import cuda

from .launch import grid_for


@cuda.jit(cache=True)
def _linear_forward(input, weight, bias, output):
    N, I = input.shape
    O = weight.shape[0]
    index = cuda.grid(1)
    if index >= N * O:
        return
    n = index // O
    o = index % O
    total = bias[o] if bias.shape[0] > 0 else 0.0
    for i in range(I):
        total += input[n, i] * weight[o, i]
    output[n, o] = total


def linear_forward(input, weight, bias, output):
    _linear_forward[grid_for(output.size)](input, weight, bias, output)


@cuda.jit(cache=True)
def _linear_backward_input(grad_output, weight, grad_input):
    N, O = grad_output.shape
    I = weight.shape[1]
    index = cuda.grid(1)
    if index >= N * I:
        return
    n = index // I
    i = index % I
    total = 0.0
    for o in range(O):
        total += grad_output[n, o] * weight[o, i]
    grad_input[n, i] = total


def linear_backward_input(grad_output, weight, grad_input):
    _linear_backward_input[grid_for(grad_input.size)](grad_output, weight, grad_input)


@cuda.jit(cache=True)
def _linear_backward_weight(grad_output, input, grad_weight):
    N, O = grad_output.shape
    I = input.shape[1]
    index = cuda.grid(1)
    if index >= O * I:
        return
    o = index // I
    i = index % I
    total = 0.0
    for n in range(N):
        total += grad_output[n, o] * input[n, i]
    grad_weight[o, i] = total


def linear_backward_weight(grad_output, input, grad_weight):
    _linear_backward_weight[grid_for(grad_weight.size)](grad_output, input, grad_weight)


@cuda.jit(cache=True)
def _linear_backward_bias(grad_output, grad_bias):
    N, O = grad_output.shape
    o = cuda.grid(1)
    if o >= O:
        return
    total = 0.0
    for n in range(N):
        total += grad_output[n, o]
    grad_bias[o] = total


def linear_backward_bias(grad_output, grad_bias):
    _linear_backward_bias[grid_for(grad_bias.size)](grad_output, grad_bias)


@cuda.jit(cache=True)
def _linear_backward_weight_bias(grad_output, input, grad_weight, grad_bias):
    """_linear_backward_weight, with the threads of column i = 0 also summing grad_bias[o]."""
    N, O = grad_output.shape
    I = input.shape[1]
    index = cuda.grid(1)
    if index >= O * I:
        return
    o = index // I
    i = index % I
    total = 0.0
    for n in range(N):
        total += grad_output[n, o] * input[n, i]
    grad_weight[o, i] = total
    if i == 0:
        bias_total = 0.0
        for n in range(N):
            bias_total += grad_output[n, o]
        grad_bias[o] = bias_total


def linear_backward_weight_bias(grad_output, input, grad_weight, grad_bias):
    """linear_backward_weight and linear_backward_bias in one launch."""
    _linear_backward_weight_bias[grid_for(grad_weight.size)](grad_output, input, grad_weight, grad_bias)


@cuda.jit(cache=True)
def _linear_relu_forward(input, weight, bias, output):
    """_linear_forward with ReLU applied before the store (NaN stays NaN, as relu_forward)."""
    N, I = input.shape
    O = weight.shape[0]
    index = cuda.grid(1)
    if index >= N * O:
        return
    n = index // O
    o = index % O
    total = bias[o] if bias.shape[0] > 0 else 0.0
    for i in range(I):
        total += input[n, i] * weight[o, i]
    output[n, o] = 0 if total <= 0 else total


def linear_relu_forward(input, weight, bias, output):
    """relu(linear(input)) in one launch."""
    _linear_relu_forward[grid_for(output.size)](input, weight, bias, output)


@cuda.jit(cache=True)
def _linear_relu_backward_input(grad_output, output, weight, grad_input):
    """_linear_backward_input of grad_output masked where the ReLU's output is not positive."""
    N, O = grad_output.shape
    I = weight.shape[1]
    index = cuda.grid(1)
    if index >= N * I:
        return
    n = index // I
    i = index % I
    total = 0.0
    for o in range(O):
        gradient = grad_output[n, o] if output[n, o] > 0 else 0
        total += gradient * weight[o, i]
    grad_input[n, i] = total


def linear_relu_backward_input(grad_output, output, weight, grad_input):
    """The input gradient of relu(linear(input)) from the ReLU's output gradient and output, in one launch."""
    _linear_relu_backward_input[grid_for(grad_input.size)](grad_output, output, weight, grad_input)


@cuda.jit(cache=True)
def _linear_relu_backward_weight_bias(grad_output, output, input, grad_weight, grad_bias):
    """_linear_backward_weight_bias of grad_output masked where the ReLU's output is not positive."""
    N, O = grad_output.shape
    I = input.shape[1]
    index = cuda.grid(1)
    if index >= O * I:
        return
    o = index // I
    i = index % I
    total = 0.0
    for n in range(N):
        gradient = grad_output[n, o] if output[n, o] > 0 else 0
        total += gradient * input[n, i]
    grad_weight[o, i] = total
    if i == 0:
        bias_total = 0.0
        for n in range(N):
            bias_total += grad_output[n, o] if output[n, o] > 0 else 0
        grad_bias[o] = bias_total


def linear_relu_backward_weight_bias(grad_output, output, input, grad_weight, grad_bias):
    """The weight and bias gradients of relu(linear(input)) in one launch."""
    _linear_relu_backward_weight_bias[grid_for(grad_weight.size)](grad_output, output, input, grad_weight, grad_bias)
