"""Inverted dropout for the CPU over flat arrays; the uniform noise comes from the caller's seeded generator."""
from numba import njit, prange


@njit(parallel=True, cache=True)
def dropout_forward(input, noise, output, mask, probability):
    """mask = (noise >= probability) / (1 - probability); output = input * mask."""
    scale = 1.0 / (1.0 - probability)
    for k in prange(input.shape[0]):
        keep = scale if noise[k] >= probability else 0.0
        mask[k] = keep
        output[k] = input[k] * keep


@njit(parallel=True, cache=True)
def dropout_backward(grad_output, mask, grad_input):
    for k in prange(grad_output.shape[0]):
        grad_input[k] = grad_output[k] * mask[k]
