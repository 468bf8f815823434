"""Batch normalization kernels for NVIDIA GPUs, the CUDA twins of nbconv.kernels.cpu.batch_norm (same
shapes and rules). One block per channel: its threads stride over the channel's N * S values and add
their partial sums in shared memory."""
import math

from numba import cuda, float64

from .reduce import REDUCE_THREADS as THREADS, block_sum


@cuda.jit(device=True)
def _channel_statistics(input, running_mean, running_var, mean, invstd, shared, c, momentum, eps, training):
    N, S = input.shape[0], input.shape[2]
    count = N * S
    t = cuda.threadIdx.x
    if training:
        total = 0.0
        for k in range(t, count, THREADS):
            total += input[k // S, c, k % S]
        channel_mean = block_sum(shared, total) / count
        squares = 0.0
        for k in range(t, count, THREADS):
            deviation = input[k // S, c, k % S] - channel_mean
            squares += deviation * deviation
        variance = block_sum(shared, squares) / count
    else:
        channel_mean, variance = float64(running_mean[c]), float64(running_var[c])
    channel_invstd = 1.0 / math.sqrt(variance + eps)
    if t == 0:
        mean[c] = channel_mean
        invstd[c] = channel_invstd
        if training and running_mean.shape[0] > 0:
            running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * channel_mean
            running_var[c] = (1.0 - momentum) * running_var[c] + momentum * variance * count / (count - 1)
    return channel_mean, channel_invstd


@cuda.jit(cache=True)
def _batch_norm_stats(input, running_mean, running_var, mean, invstd, momentum, eps, training):
    shared = cuda.shared.array(THREADS, float64)
    _channel_statistics(input, running_mean, running_var, mean, invstd, shared, cuda.blockIdx.x, momentum, eps,
                        training)


def batch_norm_stats(input, running_mean, running_var, mean, invstd, momentum, eps, training):
    _batch_norm_stats[input.shape[1], THREADS](input, running_mean, running_var, mean, invstd, momentum, eps,
                                               training)


@cuda.jit(cache=True)
def _batch_norm_forward(input, weight, bias, running_mean, running_var, output, mean, invstd, momentum, eps,
                        training):
    shared = cuda.shared.array(THREADS, float64)
    c = cuda.blockIdx.x
    channel_mean, channel_invstd = _channel_statistics(input, running_mean, running_var, mean, invstd, shared, c,
                                                       momentum, eps, training)
    scale = channel_invstd * (weight[c] if weight.shape[0] > 0 else 1.0)
    shift = (bias[c] if bias.shape[0] > 0 else 0.0) - channel_mean * scale
    S = input.shape[2]
    for k in range(cuda.threadIdx.x, input.shape[0] * S, THREADS):
        output[k // S, c, k % S] = input[k // S, c, k % S] * scale + shift


def batch_norm_forward(input, weight, bias, running_mean, running_var, output, mean, invstd, momentum, eps,
                       training):
    _batch_norm_forward[input.shape[1], THREADS](input, weight, bias, running_mean, running_var, output, mean,
                                                 invstd, momentum, eps, training)


@cuda.jit(cache=True)
def _batch_norm_backward(grad_output, gate, input, weight, mean, invstd, grad_input, grad_weight, grad_bias, training,
                         relu):
    """batch_norm_backward (relu=0) or batch_norm_relu_backward (relu=1: the gradient passes where gate, the
    fused forward's output, is positive; gate is any (N, C, S) array of input's type when relu=0)."""
    shared = cuda.shared.array(THREADS, float64)
    c = cuda.blockIdx.x
    t = cuda.threadIdx.x
    N, S = input.shape[0], input.shape[2]
    count = N * S
    channel_mean, channel_invstd = float64(mean[c]), float64(invstd[c])
    scale = channel_invstd * (weight[c] if weight.shape[0] > 0 else 1.0)
    sum_grad = 0.0
    sum_grad_centered = 0.0
    if training or grad_weight.shape[0] > 0 or grad_bias.shape[0] > 0:  # the same for the whole block
        for k in range(t, count, THREADS):
            n, s = k // S, k % S
            g = float64(grad_output[n, c, s]) if not relu or gate[n, c, s] > 0 else 0.0
            sum_grad += g
            sum_grad_centered += g * (input[n, c, s] - channel_mean)
        sum_grad = block_sum(shared, sum_grad)
        sum_grad_centered = block_sum(shared, sum_grad_centered)
    if t == 0:
        if grad_weight.shape[0] > 0:
            grad_weight[c] = sum_grad_centered * channel_invstd
        if grad_bias.shape[0] > 0:
            grad_bias[c] = sum_grad
    if grad_input.shape[0] == 0:
        return
    mean_grad = sum_grad / count
    projection = sum_grad_centered * channel_invstd * channel_invstd / count
    for k in range(t, count, THREADS):
        n, s = k // S, k % S
        g = float64(grad_output[n, c, s]) if not relu or gate[n, c, s] > 0 else 0.0
        if training:
            grad_input[n, c, s] = (g - mean_grad - (input[n, c, s] - channel_mean) * projection) * scale
        else:
            grad_input[n, c, s] = g * scale


def batch_norm_backward(grad_output, input, weight, mean, invstd, grad_input, grad_weight, grad_bias, training):
    _batch_norm_backward[input.shape[1], THREADS](grad_output, input, input, weight, mean, invstd, grad_input,
                                                  grad_weight, grad_bias, training, 0)
