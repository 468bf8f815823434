"""Element-wise activation kernels for the CPU over flat (1-D, contiguous) arrays of equal length."""
import math

import numpy as np
from numba import njit

from .shared import chunk_bounds, readable_apart, same_elements
from .threads import parallel_parts, thread_count


ZERO = np.float32(0)  # a float zero: an int 0 in a select widens float32 values to float64

# Called in place (the output is the input), a loop that reads `input` and writes `output` runs scalar behind
# LLVM's runtime overlap check, and on this AMD EPYC far slower than that (ReLU6: 5.5 against 0.15 ns a value;
# each load waits on the store before it): the forward kernels that may run in place test for it and then read
# and write one array.


@njit(cache=True, inline="always")
def relu_value(value):
    """0 for value <= 0, else value (NaN stays NaN, as in PyTorch; -0 gives +0).

    Written as max(0, value) in the operand order of the x86 max instruction (which returns its second
    operand when either is NaN), plus +0 (which turns -0 into +0 and changes nothing else): a select LLVM
    keeps branch-free. `0 if value <= 0 else value` became a branch where the loop did not vectorise (in
    place, short rows), mispredicted on random signs: 3-4x slower (benchmarks/NOTES.md, section 62)."""
    return (ZERO if ZERO > value else value) + ZERO


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def relu_forward_span(span_part, span_parts, input, output):
    """relu_forward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    span_first, span_last = chunk_bounds(span_part, span_parts, input.shape[0])
    output_part = output[span_first:span_last]
    if same_elements(output, input):  # in place: one array (see above)
        for k in range(span_last - span_first):
            output_part[k] = relu_value(output_part[k])
        return
    input_part = input[span_first:span_last]
    for k in range(span_last - span_first):  # from 0 over slices: indices LLVM knows are >= 0
        output_part[k] = relu_value(input_part[k])


def relu_forward(input, output):
    parallel_parts(relu_forward_span, thread_count(input.size), readable_apart(input, output), output)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def relu_backward_span(span_part, span_parts, grad_output, input, grad_input):
    """relu_backward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    span_first, span_last = chunk_bounds(span_part, span_parts, input.shape[0])
    grad_output_part = grad_output[span_first:span_last]
    input_part = input[span_first:span_last]
    grad_input_part = grad_input[span_first:span_last]
    for k in range(span_last - span_first):  # from 0 over slices: indices LLVM knows are >= 0
        grad_input_part[k] = grad_output_part[k] if input_part[k] > 0 else 0


def relu_backward(grad_output, input, grad_input):
    parallel_parts(relu_backward_span, thread_count(grad_output.size), grad_output, input, grad_input)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def relu6_forward_span(span_part, span_parts, input, output):
    """relu6_forward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    span_first, span_last = chunk_bounds(span_part, span_parts, input.shape[0])
    output_part = output[span_first:span_last]
    if same_elements(output, input):  # in place: one array (see above)
        for k in range(span_last - span_first):
            value = output_part[k]
            output_part[k] = 0 if value <= 0 else (6 if value >= 6 else value)
        return
    input_part = input[span_first:span_last]
    for k in range(span_last - span_first):  # from 0 over slices: indices LLVM knows are >= 0
        value = input_part[k]  # NaN fails both tests and passes through
        output_part[k] = 0 if value <= 0 else (6 if value >= 6 else value)


def relu6_forward(input, output):
    parallel_parts(relu6_forward_span, thread_count(input.size), readable_apart(input, output), output)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def relu6_backward_span(span_part, span_parts, grad_output, input, grad_input):
    """relu6_backward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    span_first, span_last = chunk_bounds(span_part, span_parts, input.shape[0])
    grad_output_part = grad_output[span_first:span_last]
    input_part = input[span_first:span_last]
    grad_input_part = grad_input[span_first:span_last]
    for k in range(span_last - span_first):  # from 0 over slices: indices LLVM knows are >= 0
        grad_input_part[k] = grad_output_part[k] if 0 < input_part[k] < 6 else 0


def relu6_backward(grad_output, input, grad_input):
    parallel_parts(relu6_backward_span, thread_count(grad_output.size), grad_output, input, grad_input)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def leaky_relu_forward_span(span_part, span_parts, input, output, negative_slope):
    """leaky_relu_forward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    span_first, span_last = chunk_bounds(span_part, span_parts, input.shape[0])
    output_part = output[span_first:span_last]
    if same_elements(output, input):  # in place: one array (see above)
        for k in range(span_last - span_first):
            value = output_part[k]
            output_part[k] = value if value > 0 else value * negative_slope
        return
    input_part = input[span_first:span_last]
    for k in range(span_last - span_first):  # from 0 over slices: indices LLVM knows are >= 0
        value = input_part[k]
        output_part[k] = value if value > 0 else value * negative_slope


def leaky_relu_forward(input, output, negative_slope):
    parallel_parts(leaky_relu_forward_span, thread_count(input.size), readable_apart(input, output), output,
                   negative_slope)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def leaky_relu_backward_span(span_part, span_parts, grad_output, input, grad_input, negative_slope):
    """leaky_relu_backward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    span_first, span_last = chunk_bounds(span_part, span_parts, input.shape[0])
    grad_output_part = grad_output[span_first:span_last]
    input_part = input[span_first:span_last]
    grad_input_part = grad_input[span_first:span_last]
    for k in range(span_last - span_first):  # from 0 over slices: indices LLVM knows are >= 0
        grad_input_part[k] = grad_output_part[k] if input_part[k] > 0 else grad_output_part[k] * negative_slope


def leaky_relu_backward(grad_output, input, grad_input, negative_slope):
    parallel_parts(leaky_relu_backward_span, thread_count(grad_output.size), grad_output, input, grad_input,
                   negative_slope)


@njit(cache=True, inline="always")
def stable_sigmoid(value):
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp_value = math.exp(value)
    return exp_value / (1.0 + exp_value)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def sigmoid_forward_span(span_part, span_parts, input, output):
    """sigmoid_forward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    span_first, span_last = chunk_bounds(span_part, span_parts, input.shape[0])
    input_part = input[span_first:span_last]
    output_part = output[span_first:span_last]
    for k in range(span_last - span_first):  # from 0 over slices: indices LLVM knows are >= 0
        output_part[k] = stable_sigmoid(input_part[k])


def sigmoid_forward(input, output):
    parallel_parts(sigmoid_forward_span, thread_count(input.size), input, output)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def sigmoid_backward_span(span_part, span_parts, grad_output, input, grad_input):
    """sigmoid_backward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    span_first, span_last = chunk_bounds(span_part, span_parts, input.shape[0])
    grad_output_part = grad_output[span_first:span_last]
    input_part = input[span_first:span_last]
    grad_input_part = grad_input[span_first:span_last]
    for k in range(span_last - span_first):  # from 0 over slices: indices LLVM knows are >= 0
        s = stable_sigmoid(input_part[k])
        grad_input_part[k] = grad_output_part[k] * s * (1.0 - s)


def sigmoid_backward(grad_output, input, grad_input):
    parallel_parts(sigmoid_backward_span, thread_count(grad_output.size), grad_output, input, grad_input)


# tanh through numpy's vectorised tanh: a compiled loop called the C library's tanhf value by value, 19 ns a
# value on this AMD EPYC against numpy's 2.6 on one thread (benchmarks/NOTES.md, section 91); numpy releases the
# GIL for its loops, as the span kernels do. (Sigmoid stays compiled: numpy's exp with its temporaries was
# slower than expf value by value, and sigmoid's exp(-|x|) form keeps the tiny values a tanh form would lose.)
def tanh_forward(input, output):
    np.tanh(input, out=output)


def tanh_backward(grad_output, input, grad_input):
    """grad_input = grad_output * (1 - tanh(input)^2)."""
    value = np.tanh(input)
    np.multiply(grad_output, 1 - value * value, out=grad_input)
