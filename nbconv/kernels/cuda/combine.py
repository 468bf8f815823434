"""Kernels that join branches for NVIDIA GPUs, the CUDA twins of nbconv.kernels.cpu.combine: one thread
per element. Concatenation arrays are (outer, extent, inner) views, as on the CPU."""
from numba import cuda

from .indexing import unravel3
from .launch import grid_for


@cuda.jit(cache=True)
def _add_forward(input, other, output):
    k = cuda.grid(1)
    if k < input.shape[0]:
        output[k] = input[k] + other[k]


def add_forward(input, other, output):
    _add_forward[grid_for(input.shape[0])](input, other, output)


@cuda.jit(cache=True)
def _cat_forward(input, output, offset):
    outer, extent, inner = input.shape
    index = cuda.grid(1)
    if index < outer * extent * inner:
        a, e, q = unravel3(index, extent, inner)
        output[a, offset + e, q] = input[a, e, q]


def cat_forward(input, output, offset):
    _cat_forward[grid_for(input.size)](input, output, offset)


@cuda.jit(cache=True)
def _cat_backward(grad_output, grad_input, offset):
    outer, extent, inner = grad_input.shape
    index = cuda.grid(1)
    if index < outer * extent * inner:
        a, e, q = unravel3(index, extent, inner)
        grad_input[a, e, q] = grad_output[a, offset + e, q]


def cat_backward(grad_output, grad_input, offset):
    _cat_backward[grid_for(grad_input.size)](grad_output, grad_input, offset)
