"""Batch normalization followed by a ReLU, optionally with a residual sum between them, for the CPU:

    output = relu(batch_norm(input) + residual)

in one pass over the values where separate calls make three (normalise, add, rectify), and its backward
in one call where separate calls make two (mask the gradient, then batch norm's backward): batch norm's
own backward kernel, told to mask.

Shapes as in batch_norm.py: input, output, grad_output, grad_input (N, C, S); per-channel arrays (C,),
weight, bias, running_mean, running_var empty (0,) when absent; residual (N, C, S) or (0, 0, 0) for none.
The forward equals the separate kernels bit for bit: the normalised value is rounded to the dtype before
the residual is added, as batch_norm's output is. The backward passes the gradient where the output is
positive, which is where the ReLU's input was (NaN passes nothing, as relu_backward), and equals the
separate kernels up to the order of its float64 sums. One task per channel.
"""
from numba import njit

from .batch_norm import batch_norm_backward_span, channel_statistics
from .fastmath import REDUCE as _REDUCE
from .shared import chunk_bounds
from .threads import parallel_parts, thread_count


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_REDUCE, no_cfunc_wrapper=True)
def batch_norm_relu_forward_span(span_part, span_parts, input, weight, bias, running_mean, running_var, residual,
                                 output, mean, invstd, momentum, eps, training):
    """batch_norm_relu_forward over the span_part-th of span_parts slices of its channels (threads.py)."""
    N, C, S = input.shape
    with_residual = residual.shape[0] > 0
    span_first, span_last = chunk_bounds(span_part, span_parts, C)
    for c in range(span_first, span_last):
        channel_mean, channel_invstd = channel_statistics(input, running_mean, running_var, mean, invstd, c,
                                                          momentum, eps, training)
        scale = channel_invstd * (weight[c] if weight.shape[0] > 0 else 1.0)
        shift = (bias[c] if bias.shape[0] > 0 else 0.0) - channel_mean * scale
        for n in range(N):
            source, target = input[n, c], output[n, c]
            if with_residual:
                other = residual[n, c]
                for s in range(S):
                    target[s] = source[s] * scale + shift  # rounded to the dtype here, as batch_norm's output
                    value = target[s] + other[s]
                    target[s] = 0 if value <= 0 else value
            else:
                for s in range(S):
                    value = source[s] * scale + shift
                    target[s] = 0 if value <= 0 else value


def batch_norm_relu_forward(input, weight, bias, running_mean, running_var, residual, output, mean, invstd,
                            momentum, eps, training):
    """output = relu(batch_norm_forward(input) + residual); mean, invstd and the running statistics as
    batch_norm_forward writes them."""
    parallel_parts(batch_norm_relu_forward_span, thread_count(input.size), input, weight, bias, running_mean,
                   running_var, residual, output, mean, invstd, momentum, eps, training)


def batch_norm_relu_backward(grad_output, output, input, weight, mean, invstd, grad_input, grad_weight, grad_bias,
                             training):
    """batch_norm_backward of the gradient that passes the ReLU: grad_output where output (the fused
    forward's, without a residual) is positive, else 0. grad_weight, grad_bias, grad_input as in
    batch_norm_backward (each skipped when empty)."""
    parallel_parts(batch_norm_backward_span, thread_count(grad_output.size), grad_output, output, input, weight, mean,
                   invstd, grad_input, grad_weight, grad_bias, training, 1)
