"""CPU kernels (@njit). Same public names and parameters as nbconv.kernels.cuda: inputs, then
preallocated outputs (overwritten), then scalar hyper-parameters."""
from .activation import (leaky_relu_backward, leaky_relu_forward, relu_backward, relu_forward, sigmoid_backward,
                         sigmoid_forward, tanh_backward, tanh_forward)
from .conv import conv2d_backward_bias, conv2d_backward_input, conv2d_backward_weight, conv2d_forward
from .pool import (avg_pool2d_backward, avg_pool2d_forward, global_avg_pool2d_backward, global_avg_pool2d_forward,
                   max_pool2d_backward, max_pool2d_forward)

__all__ = [
    "conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight", "conv2d_backward_bias",
    "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "global_avg_pool2d_forward", "global_avg_pool2d_backward",
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
]
