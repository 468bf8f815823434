"""Kernels that join branches for the CPU: element-wise sums (residual shortcuts) and concatenation
along an axis (inception branches), with the copies concatenation's backward needs.

Concatenation kernels see arrays as (outer, extent, inner): the axis being joined in the middle, every
axis before it folded into `outer`, every axis after it into `inner` (for channels of (N, C, H, W):
outer = N, extent = C, inner = H * W).
"""
from numba import njit

from .shared import chunk_bounds, readable_apart, same_elements
from .threads import parallel_parts, thread_count


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def add_forward_span(span_part, span_parts, input, other, output):
    """add_forward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    span_first, span_last = chunk_bounds(span_part, span_parts, input.shape[0])
    input_part = input[span_first:span_last]
    other_part = other[span_first:span_last]
    output_part = output[span_first:span_last]
    # in place, one array read and written (activation.py says why): 0.7 against 0.2 ns a value
    if same_elements(output, input):
        for k in range(span_last - span_first):
            output_part[k] = output_part[k] + other_part[k]
    elif same_elements(output, other):
        for k in range(span_last - span_first):
            output_part[k] = input_part[k] + output_part[k]
    else:
        for k in range(span_last - span_first):  # from 0 over slices: indices LLVM knows are >= 0
            output_part[k] = input_part[k] + other_part[k]


def add_forward(input, other, output):
    """output = input + other over flat arrays of one length; output may be input or other itself (in place),
    and an input that overlaps it otherwise is read as it was (shared.readable_apart)."""
    parallel_parts(add_forward_span, thread_count(input.size), readable_apart(input, output),
                   readable_apart(other, output), output)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def cat_forward_span(span_part, span_parts, input, output, offset):
    """cat_forward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    outer, extent, inner = input.shape
    span_first, span_last = chunk_bounds(span_part, span_parts, outer * extent)
    for task in range(span_first, span_last):
        a, e = task // extent, task % extent
        source, target = input[a, e], output[a, offset + e]
        for q in range(inner):
            target[q] = source[q]


def cat_forward(input, output, offset):
    """output[:, offset:offset + E, :] = input, for input (outer, E, inner) and output (outer, E_total, inner)."""
    parallel_parts(cat_forward_span, thread_count(input.size), input, output, offset)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def cat_backward_span(span_part, span_parts, grad_output, grad_input, offset):
    """cat_backward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    outer, extent, inner = grad_input.shape
    span_first, span_last = chunk_bounds(span_part, span_parts, outer * extent)
    for task in range(span_first, span_last):
        a, e = task // extent, task % extent
        source, target = grad_output[a, offset + e], grad_input[a, e]
        for q in range(inner):
            target[q] = source[q]


def cat_backward(grad_output, grad_input, offset):
    """grad_input = grad_output[:, offset:offset + E, :], for grad_input (outer, E, inner)."""
    parallel_parts(cat_backward_span, thread_count(grad_output.size), grad_output, grad_input, offset)
