"""Kernels that join branches for the CPU: element-wise sums (residual shortcuts) and concatenation
along an axis (inception branches), with the copies concatenation's backward needs.

Concatenation kernels see arrays as (outer, extent, inner): the axis being joined in the middle, every
axis before it folded into `outer`, every axis after it into `inner` (for channels of (N, C, H, W):
outer = N, extent = C, inner = H * W).
"""
from numba import njit, prange


@njit(parallel=True, cache=True)
def add_forward(input, other, output):
    """output = input + other over flat arrays of one length; output may be input itself (in place)."""
    for k in prange(input.shape[0]):
        output[k] = input[k] + other[k]


@njit(parallel=True, cache=True)
def cat_forward(input, output, offset):
    """output[:, offset:offset + E, :] = input, for input (outer, E, inner) and output (outer, E_total, inner)."""
    outer, extent, inner = input.shape
    for task in prange(outer * extent):
        a, e = task // extent, task % extent
        source, target = input[a, e], output[a, offset + e]
        for q in range(inner):
            target[q] = source[q]


@njit(parallel=True, cache=True)
def cat_backward(grad_output, grad_input, offset):
    """grad_input = grad_output[:, offset:offset + E, :], for grad_input (outer, E, inner)."""
    outer, extent, inner = grad_input.shape
    for task in prange(outer * extent):
        a, e = task // extent, task % extent
        source, target = grad_output[a, offset + e], grad_input[a, e]
        for q in range(inner):
            target[q] = source[q]
