"""Fully connected layer kernels for NVIDIA GPUs; twins of nbconv.kernels.cpu.linear (one thread per output element)."""
from numba import cuda

from .launch import grid_for


@cuda.jit(cache=True)
def _linear_forward(input, weight, bias, output, relu):
    """output = input @ weight.T + bias, then ReLU when relu is 1 (NaN stays NaN, as relu_forward)."""
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
    output[n, o] = 0 if relu == 1 and total <= 0 else total


@cuda.jit(device=True, inline=True)
def _passed(grad_output, relu_output, masked, n, o):
    """grad_output[n, o], or 0 where a ReLU after the layer (masked = 1) output a value that is not positive."""
    return grad_output[n, o] if masked == 0 or relu_output[n, o] > 0 else 0


@cuda.jit(cache=True)
def _linear_backward_input(grad_output, relu_output, masked, weight, grad_input):
    N, O = grad_output.shape
    I = weight.shape[1]
    index = cuda.grid(1)
    if index >= N * I:
        return
    n = index // I
    i = index % I
    total = 0.0
    for o in range(O):
        total += _passed(grad_output, relu_output, masked, n, o) * weight[o, i]
    grad_input[n, i] = total


@cuda.jit(cache=True)
def _linear_backward_weight_bias(grad_output, relu_output, masked, input, grad_weight, grad_bias):
    """The weight gradient, with the threads of column i = 0 also summing grad_bias[o] (an empty grad_bias:
    no bias gradient)."""
    N, O = grad_output.shape
    I = input.shape[1]
    index = cuda.grid(1)
    if index >= O * I:
        return
    o = index // I
    i = index % I
    total = 0.0
    for n in range(N):
        total += _passed(grad_output, relu_output, masked, n, o) * input[n, i]
    grad_weight[o, i] = total
    if i == 0 and grad_bias.shape[0] > 0:
        bias_total = 0.0
        for n in range(N):
            bias_total += _passed(grad_output, relu_output, masked, n, o)
        grad_bias[o] = bias_total


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


def linear_forward(input, weight, bias, output):
    _linear_forward[grid_for(output.size)](input, weight, bias, output, 0)


def linear_backward_input(grad_output, weight, grad_input):
    _linear_backward_input[grid_for(grad_input.size)](grad_output, grad_output, 0, weight, grad_input)


def linear_backward_weight(grad_output, input, grad_weight):
    _linear_backward_weight_bias[grid_for(grad_weight.size)](grad_output, grad_output, 0, input, grad_weight,
                                                             grad_weight[0, :0])


def linear_backward_bias(grad_output, grad_bias):
    _linear_backward_bias[grid_for(grad_bias.size)](grad_output, grad_bias)


def linear_backward_weight_bias(grad_output, input, grad_weight, grad_bias):
    """linear_backward_weight and linear_backward_bias in one launch."""
    _linear_backward_weight_bias[grid_for(grad_weight.size)](grad_output, grad_output, 0, input, grad_weight, grad_bias)


def linear_relu_forward(input, weight, bias, output):
    """relu(linear(input)) in one launch."""
    _linear_forward[grid_for(output.size)](input, weight, bias, output, 1)


def linear_relu_backward_input(grad_output, output, weight, grad_input):
    """The input gradient of relu(linear(input)) from the ReLU's output gradient and output, in one launch."""
    _linear_backward_input[grid_for(grad_input.size)](grad_output, output, 1, weight, grad_input)


def linear_relu_backward_weight_bias(grad_output, output, input, grad_weight, grad_bias):
    """The weight and bias gradients of relu(linear(input)) in one launch."""
    _linear_backward_weight_bias[grid_for(grad_weight.size)](grad_output, output, 1, input, grad_weight, grad_bias)
