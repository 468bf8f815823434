"""CPU convolution: the public kernels (dispatch.py), the plan that picks an algorithm and its buffers per
pass (plan.py), one module per algorithm (direct, gemm, wide, shift, winograd, depthwise) with the same
surface, and the helpers they share (rows.py, blocks.py)."""
from .dispatch import conv2d_backward_bias, conv2d_backward_input, conv2d_backward_weight, conv2d_forward  # noqa: F401
