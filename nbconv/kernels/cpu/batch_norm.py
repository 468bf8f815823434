"""Batch normalization kernels for the CPU.

Shapes: input and output (N, C, S), S the positions per channel (H * W for images, L for sequences, 1 for
features); per-channel arrays (C,). weight, bias, running_mean and running_var may be empty, (0,):
no affine weight or bias, no running statistics. The statistics are mean and invstd = 1 / sqrt(var + eps)
with the biased batch variance; running_var is updated with the unbiased one (as PyTorch). One task per
channel, whose N * S values stay in cache between its passes; sums run in float64.
"""
import math

from numba import float64, njit

from .fastmath import REDUCE as _REDUCE  # lets the sums vectorise (their order does not matter here)
from .shared import chunk_bounds
from .threads import parallel_parts, thread_count


# not inlined by Numba, which would drop these flags (LLVM still may)
@njit(cache=True, fastmath=_REDUCE, no_cfunc_wrapper=True)
def channel_mean_and_variance(input, c):
    """(mean, biased variance) of input[:, c, :], in two passes (no cancellation from sum of squares)."""
    N, S = input.shape[0], input.shape[2]
    total = 0.0
    for n in range(N):
        row = input[n, c]
        for s in range(S):
            total += row[s]
    mean = total / (N * S)
    squares = 0.0
    for n in range(N):
        row = input[n, c]
        for s in range(S):
            deviation = row[s] - mean
            squares += deviation * deviation
    return mean, squares / (N * S)


@njit(cache=True, inline="always")
def channel_statistics(input, running_mean, running_var, mean, invstd, c, momentum, eps, training):
    """Write channel c's mean and invstd (the batch's in training, updating the running ones if given;
    else the running ones); return them."""
    if training:
        channel_mean, variance = channel_mean_and_variance(input, c)
        if running_mean.shape[0] > 0:
            count = input.shape[0] * input.shape[2]
            running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * channel_mean
            running_var[c] = (1.0 - momentum) * running_var[c] + momentum * variance * count / (count - 1)
    else:
        channel_mean, variance = running_mean[c], running_var[c]
    channel_invstd = 1.0 / math.sqrt(variance + eps)
    mean[c] = channel_mean
    invstd[c] = channel_invstd
    return channel_mean, channel_invstd


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_REDUCE, no_cfunc_wrapper=True)
def batch_norm_stats_span(span_part, span_parts, input, running_mean, running_var, mean, invstd, momentum, eps,
                          training):
    """batch_norm_stats over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    span_first, span_last = chunk_bounds(span_part, span_parts, input.shape[1])
    for c in range(span_first, span_last):
        channel_statistics(input, running_mean, running_var, mean, invstd, c, momentum, eps, training)


def batch_norm_stats(input, running_mean, running_var, mean, invstd, momentum, eps, training):
    """mean, invstd (C,) as batch_norm_forward would use them; running statistics updated as it would."""
    parallel_parts(batch_norm_stats_span, thread_count(input.size), input, running_mean, running_var, mean, invstd,
                   momentum, eps, training)


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_REDUCE, no_cfunc_wrapper=True)
def batch_norm_forward_span(span_part, span_parts, input, weight, bias, running_mean, running_var, output, mean, invstd,
                            momentum, eps, training):
    """batch_norm_forward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, S = input.shape
    span_first, span_last = chunk_bounds(span_part, span_parts, C)
    for c in range(span_first, span_last):
        channel_mean, channel_invstd = channel_statistics(input, running_mean, running_var, mean, invstd, c,
                                                          momentum, eps, training)
        scale = channel_invstd * (weight[c] if weight.shape[0] > 0 else 1.0)
        shift = (bias[c] if bias.shape[0] > 0 else 0.0) - channel_mean * scale
        for n in range(N):
            source, target = input[n, c], output[n, c]
            for s in range(S):
                target[s] = source[s] * scale + shift


def batch_norm_forward(input, weight, bias, running_mean, running_var, output, mean, invstd, momentum, eps,
                       training):
    """output = (input - mean) * invstd * weight + bias per channel; mean and invstd (C,) written with the
    statistics used (training=1: the batch's, and running_mean/running_var updated in place with momentum;
    training=0: the running ones)."""
    parallel_parts(batch_norm_forward_span, thread_count(input.size), input, weight, bias, running_mean, running_var,
                   output, mean, invstd, momentum, eps, training)


@njit(cache=True, inline="always")
def passed_gradient(grad, gate, relu):
    """grad as float64, or 0 where relu is set and gate is not positive (NaN included). Both values are
    loaded whatever the flag, so the choice is a select, not a branch, and the loops stay vectorised."""
    return 0.0 if relu and not gate > 0 else float64(grad)


@njit(nogil=True, cache=True, error_model="numpy", fastmath=_REDUCE, no_cfunc_wrapper=True)
def batch_norm_backward_span(span_part, span_parts, grad_output, gate, input, weight, mean, invstd, grad_input,
                             grad_weight, grad_bias, training, relu):
    """batch_norm_backward (relu=0) or batch_norm_relu_backward (relu=1: the gradient passes where gate, the
    fused forward's output, is positive; gate is any (N, C, S) array of input's type when relu=0) over the
    span_part-th of span_parts slices of its channels (threads.py)."""
    N, C, S = input.shape
    count = N * S
    span_first, span_last = chunk_bounds(span_part, span_parts, C)
    for c in range(span_first, span_last):
        channel_mean, channel_invstd = mean[c], invstd[c]
        scale = channel_invstd * (weight[c] if weight.shape[0] > 0 else 1.0)
        sum_grad = 0.0
        sum_grad_centered = 0.0  # sum of the passed gradient * (input - mean)
        if training or grad_weight.shape[0] > 0 or grad_bias.shape[0] > 0:
            for n in range(N):
                grad_row, gate_row, row = grad_output[n, c], gate[n, c], input[n, c]
                for s in range(S):
                    g = passed_gradient(grad_row[s], gate_row[s], relu)
                    sum_grad += g
                    sum_grad_centered += g * (row[s] - channel_mean)
        if grad_weight.shape[0] > 0:
            grad_weight[c] = sum_grad_centered * channel_invstd
        if grad_bias.shape[0] > 0:
            grad_bias[c] = sum_grad
        if grad_input.shape[0] == 0:
            pass
        elif training:
            mean_grad = sum_grad / count
            projection = sum_grad_centered * channel_invstd * channel_invstd / count
            for n in range(N):
                grad_row, gate_row, row, target = grad_output[n, c], gate[n, c], input[n, c], grad_input[n, c]
                for s in range(S):
                    g = passed_gradient(grad_row[s], gate_row[s], relu)
                    target[s] = (g - mean_grad - (row[s] - channel_mean) * projection) * scale
        else:
            for n in range(N):
                grad_row, gate_row, target = grad_output[n, c], gate[n, c], grad_input[n, c]
                for s in range(S):
                    target[s] = passed_gradient(grad_row[s], gate_row[s], relu) * scale


def batch_norm_backward(grad_output, input, weight, mean, invstd, grad_input, grad_weight, grad_bias, training):
    """Gradients of batch_norm_forward given the statistics it used. grad_weight = sum(grad_output * xhat),
    grad_bias = sum(grad_output) per channel (skipped when empty, (0,)); grad_input (skipped when empty,
    (0, 0, 0)) is the full batch-statistics gradient when training=1,
    weight * invstd * (grad_output - mean(grad_output) - xhat * mean(grad_output * xhat)),
    and grad_output * weight * invstd with fixed (running) statistics when training=0."""
    parallel_parts(batch_norm_backward_span, thread_count(grad_output.size), grad_output, input, input, weight, mean,
                   invstd, grad_input, grad_weight, grad_bias, training, 0)
