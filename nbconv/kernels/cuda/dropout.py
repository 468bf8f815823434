"""Inverted dropout for NVIDIA GPUs; twin of nbconv.kernels.cpu.dropout."""
from numba import cuda

from .launch import grid_for


@cuda.jit(cache=True)
def _dropout_forward(input, noise, output, mask, probability):
    k = cuda.grid(1)
    if k < input.shape[0]:
        keep = 1.0 / (1.0 - probability) if noise[k] >= probability else 0.0
        mask[k] = keep
        output[k] = input[k] * keep


def dropout_forward(input, noise, output, mask, probability):
    _dropout_forward[grid_for(input.shape[0])](input, noise, output, mask, probability)


@cuda.jit(cache=True)
def _dropout_backward(grad_output, mask, grad_input):
    k = cuda.grid(1)
    if k < grad_output.shape[0]:
        grad_input[k] = grad_output[k] * mask[k]


def dropout_backward(grad_output, mask, grad_input):
    _dropout_backward[grid_for(grad_output.shape[0])](grad_output, mask, grad_input)
