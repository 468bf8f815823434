"""Batch normalization followed by a ReLU, optionally with a residual sum between them, for NVIDIA GPUs: the
CUDA twins of nbconv.kernels.cpu.batch_norm_relu (same shapes and rules). One block per channel, as the
batch normalization kernels."""
from numba import cuda, float64

from .batch_norm import _channel_statistics
from .reduce import REDUCE_THREADS as THREADS, block_sum


@cuda.jit(cache=True)
def _batch_norm_relu_forward(input, weight, bias, running_mean, running_var, residual, output, mean, invstd,
                             momentum, eps, training):
    shared = cuda.shared.array(THREADS, float64)
    c = cuda.blockIdx.x
    channel_mean, channel_invstd = _channel_statistics(input, running_mean, running_var, mean, invstd, shared, c,
                                                       momentum, eps, training)
    scale = channel_invstd * (weight[c] if weight.shape[0] > 0 else 1.0)
    shift = (bias[c] if bias.shape[0] > 0 else 0.0) - channel_mean * scale
    S = input.shape[2]
    zero = output.dtype.type(0)
    for k in range(cuda.threadIdx.x, input.shape[0] * S, THREADS):
        n, s = k // S, k % S
        value = output.dtype.type(input[n, c, s] * scale + shift)  # rounded before the sum, as on the CPU
        if residual.shape[0] > 0:
            value += residual[n, c, s]
        output[n, c, s] = zero if value <= zero else value


def batch_norm_relu_forward(input, weight, bias, running_mean, running_var, residual, output, mean, invstd,
                            momentum, eps, training):
    _batch_norm_relu_forward[input.shape[1], THREADS](input, weight, bias, running_mean, running_var, residual,
                                                      output, mean, invstd, momentum, eps, training)


@cuda.jit(cache=True)
def _batch_norm_relu_backward(grad_output, output, input, weight, mean, invstd, grad_input, grad_weight, grad_bias,
                              training):
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
            g = float64(grad_output[n, c, s]) if output[n, c, s] > 0 else 0.0
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
        g = float64(grad_output[n, c, s]) if output[n, c, s] > 0 else 0.0
        if training:
            grad_input[n, c, s] = (g - mean_grad - (input[n, c, s] - channel_mean) * projection) * scale
        else:
            grad_input[n, c, s] = g * scale


def batch_norm_relu_backward(grad_output, output, input, weight, mean, invstd, grad_input, grad_weight, grad_bias,
                             training):
    _batch_norm_relu_backward[input.shape[1], THREADS](grad_output, output, input, weight, mean, invstd, grad_input,
                                                       grad_weight, grad_bias, training)
