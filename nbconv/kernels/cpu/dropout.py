"""Inverted dropout for the CPU over flat arrays; the uniform noise comes from the caller's seeded generator."""
from numba import njit

from .shared import chunk_bounds
from .threads import parallel_parts, thread_count


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def dropout_forward_span(span_part, span_parts, input, noise, output, mask, probability):
    """dropout_forward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    scale = 1.0 / (1.0 - probability)
    span_first, span_last = chunk_bounds(span_part, span_parts, input.shape[0])
    input_part = input[span_first:span_last]
    noise_part = noise[span_first:span_last]
    output_part = output[span_first:span_last]
    mask_part = mask[span_first:span_last]
    for k in range(span_last - span_first):  # from 0 over slices: indices LLVM knows are >= 0
        keep = scale if noise_part[k] >= probability else 0.0
        mask_part[k] = keep
        output_part[k] = input_part[k] * keep


def dropout_forward(input, noise, output, mask, probability):
    """mask = (noise >= probability) / (1 - probability); output = input * mask."""
    parallel_parts(dropout_forward_span, thread_count(input.size), input, noise, output, mask, probability)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def dropout_backward_span(span_part, span_parts, grad_output, mask, grad_input):
    """dropout_backward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    span_first, span_last = chunk_bounds(span_part, span_parts, grad_output.shape[0])
    grad_output_part = grad_output[span_first:span_last]
    mask_part = mask[span_first:span_last]
    grad_input_part = grad_input[span_first:span_last]
    for k in range(span_last - span_first):  # from 0 over slices: indices LLVM knows are >= 0
        grad_input_part[k] = grad_output_part[k] * mask_part[k]


def dropout_backward(grad_output, mask, grad_input):
    parallel_parts(dropout_backward_span, thread_count(grad_output.size), grad_output, mask, grad_input)
