"""The CUDA launchers without the argument checks of nbconv.kernels.contracts: the same names and parameters as
nbconv.kernels.cuda, for the package's own callers (the layers and nbconv.functional through
nbconv.backend.kernels('cuda')), which build their arrays themselves."""
from .. import NAMES
from .activation import relu_forward, relu_backward, relu6_forward, relu6_backward, leaky_relu_forward, leaky_relu_backward, sigmoid_forward, sigmoid_backward, tanh_forward, tanh_backward  # noqa: F401
from .adaptive_pool import adaptive_avg_pool2d_forward, adaptive_avg_pool2d_backward, adaptive_max_pool2d_forward, adaptive_max_pool2d_backward  # noqa: F401
from .batch_norm import batch_norm_stats, batch_norm_forward, batch_norm_backward  # noqa: F401
from .batch_norm_relu import batch_norm_relu_forward, batch_norm_relu_backward  # noqa: F401
from .combine import add_forward, cat_forward, cat_backward  # noqa: F401
from .conv import conv2d_forward, conv2d_backward_input, conv2d_backward_weight, conv2d_backward_bias  # noqa: F401
from .conv import conv2d_backward_weight_bias  # noqa: F401
from .dropout import dropout_forward, dropout_backward  # noqa: F401
from .linear import linear_forward, linear_backward_input, linear_backward_weight, linear_backward_bias  # noqa: F401
from .linear import linear_backward_weight_bias, linear_relu_forward, linear_relu_backward_input, linear_relu_backward_weight_bias  # noqa: F401
from .local import local_conv2d_forward, local_conv2d_backward_input, local_conv2d_backward_weight, local_conv2d_backward_bias  # noqa: F401
from .local_response_norm import local_response_norm_forward, local_response_norm_backward  # noqa: F401
from .loss import softmax_cross_entropy  # noqa: F401
from .optim import sgd_update, adam_update, sgd_update_flat, adam_update_flat  # noqa: F401
from .scale_shift import scale_shift_forward  # noqa: F401
from .pool import max_pool2d_forward, max_pool2d_backward, avg_pool2d_forward, avg_pool2d_backward, global_avg_pool2d_forward, global_avg_pool2d_backward  # noqa: F401

__all__ = list(NAMES)
