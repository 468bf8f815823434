"""Compiled kernels: `cpu` (@njit) and `cuda` (@cuda.jit), one contract for both: the same names (NAMES), each
with the same parameters (inputs, then preallocated outputs written in place, then scalar hyper-parameters),
checked against one table (contracts.py)."""

NAMES = (
    "relu_forward", "relu_backward", "relu6_forward", "relu6_backward", "leaky_relu_forward", "leaky_relu_backward",
    "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward", "conv2d_forward", "conv2d_backward_input",
    "conv2d_backward_weight", "conv2d_backward_bias", "conv2d_backward_weight_bias", "dropout_forward",
    "dropout_backward", "add_forward", "cat_forward", "cat_backward", "batch_norm_stats", "batch_norm_forward",
    "batch_norm_backward", "batch_norm_relu_forward", "batch_norm_relu_backward", "scale_shift_forward",
    "local_response_norm_forward", "local_response_norm_backward", "adaptive_avg_pool2d_forward",
    "adaptive_avg_pool2d_backward", "adaptive_max_pool2d_forward", "adaptive_max_pool2d_backward", "linear_forward",
    "linear_backward_input", "linear_backward_weight", "linear_backward_bias", "linear_backward_weight_bias",
    "linear_relu_forward", "linear_relu_backward_input", "linear_relu_backward_weight_bias", "local_conv2d_forward",
    "local_conv2d_backward_input", "local_conv2d_backward_weight", "local_conv2d_backward_bias",
    "softmax_cross_entropy", "sgd_update", "adam_update", "sgd_update_flat", "adam_update_flat", "max_pool2d_forward",
    "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward", "global_avg_pool2d_forward",
    "global_avg_pool2d_backward",
)
