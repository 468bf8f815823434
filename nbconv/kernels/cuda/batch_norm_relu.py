"""Batch normalization followed by a ReLU, optionally with a residual sum between them, for NVIDIA GPUs: the
CUDA twins of nbconv.kernels.cpu.batch_norm_relu (same shapes and rules). One block per channel, as the
batch normalization kernels; the backward is batch normalization's own kernel, told to mask."""
from numba import cuda, float64

from .batch_norm import _batch_norm_backward, _channel_statistics
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


def batch_norm_relu_backward(grad_output, output, input, weight, mean, invstd, grad_input, grad_weight, grad_bias,
                             training):
    _batch_norm_backward[input.shape[1], THREADS](grad_output, output, input, weight, mean, invstd, grad_input,
                                                  grad_weight, grad_bias, training, 1)
