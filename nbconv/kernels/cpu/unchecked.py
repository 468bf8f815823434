"""The CPU kernels without the argument checks of nbconv.kernels.contracts: the same names and parameters as
nbconv.kernels.cpu, for the package's own callers (the layers and nbconv.functional through
nbconv.backend.kernels('cpu')), which build their arrays themselves. The kernels that check their own arguments
(contracts.SELF_CHECKED) are the same functions here as there."""
from .. import NAMES
from .activation import relu_forward, relu_backward, relu6_forward, relu6_backward, leaky_relu_forward, leaky_relu_backward, sigmoid_forward, sigmoid_backward, tanh_forward, tanh_backward  # noqa: F401
from .conv import conv2d_forward, conv2d_backward_input, conv2d_backward_weight, conv2d_backward_bias  # noqa: F401
from .linear import linear_forward, linear_backward_input, linear_backward_weight, linear_backward_bias  # noqa: F401
from .loss import softmax_cross_entropy  # noqa: F401
from .optim import sgd_update, adam_update  # noqa: F401
from .fused import conv2d_backward_weight_bias, linear_backward_weight_bias, sgd_update_flat, adam_update_flat  # noqa: F401
from .fused import linear_relu_forward, linear_relu_backward_input, linear_relu_backward_weight_bias  # noqa: F401
from .pool import max_pool2d_forward, max_pool2d_backward, avg_pool2d_forward, avg_pool2d_backward, global_avg_pool2d_forward, global_avg_pool2d_backward  # noqa: F401

__all__ = list(NAMES)

# Kernels of layers that not every network has, imported on first use (PEP 562): creating a module's Numba
# dispatchers costs ~5-12 ms of a start, and LeNet-5's epoch uses none of these (~45 ms of its start).
_ON_FIRST_USE = {
    "adaptive_avg_pool2d_forward": "adaptive_pool",
    "adaptive_avg_pool2d_backward": "adaptive_pool",
    "adaptive_max_pool2d_forward": "adaptive_pool",
    "adaptive_max_pool2d_backward": "adaptive_pool",
    "batch_norm_stats": "batch_norm",
    "batch_norm_forward": "batch_norm",
    "batch_norm_backward": "batch_norm",
    "batch_norm_relu_forward": "batch_norm_relu",
    "batch_norm_relu_backward": "batch_norm_relu",
    "add_forward": "combine",
    "cat_forward": "combine",
    "cat_backward": "combine",
    "dropout_forward": "dropout",
    "dropout_backward": "dropout",
    "local_conv2d_forward": "local",
    "local_conv2d_backward_input": "local",
    "local_conv2d_backward_weight": "local",
    "local_conv2d_backward_bias": "local",
    "local_response_norm_forward": "local_response_norm",
    "local_response_norm_backward": "local_response_norm",
    "scale_shift_forward": "scale_shift",
}


def __getattr__(name):
    if name in _ON_FIRST_USE:
        import importlib
        value = getattr(importlib.import_module(f".{_ON_FIRST_USE[name]}", __package__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_ON_FIRST_USE))
