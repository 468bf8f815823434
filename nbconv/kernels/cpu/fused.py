"""Fused kernels: one call where the CUDA backend saves launches, the CPU twins of their CUDA versions.

The convolution's and the fully connected layer's weight and bias gradients come from one call (on a GPU
the bias gradient rides in the weight gradient's launches); the optimizers update every parameter of a
model in one call over flat buffers that hold all parameters back to back, with the weight decay of each
parameter's segment (segment_ends[s] is the end of segment s, increasing; segment_decay[s] its decay);
a fully connected layer followed by a ReLU runs as one layer (the backward takes the ReLU's output, whose
positive entries are where the gradient passes).
"""

from numba import njit

import numpy as np

from .activation import ZERO
from ... import checks
from .arguments import check_read, check_written, contiguous
from .conv import conv2d_backward_bias, conv2d_backward_weight
from .fastmath import REDUCE as _REDUCE
from .linear import linear_backward_bias, linear_backward_input, linear_backward_weight, linear_forward_relu
from .optim import adam_step, sgd_step
from .shared import chunk_bounds
from .threads import parallel_parts, thread_count


def conv2d_backward_weight_bias(grad_output, input, grad_weight, grad_bias, stride_h, stride_w, padding_h, padding_w,
                                dilation_h, dilation_w, groups):
    """conv2d_backward_weight into grad_weight (D, C/groups, KH, KW), conv2d_backward_bias into grad_bias (D,)."""
    check_written("grad_bias", grad_bias, grad_weight.shape[:1], grad_output.dtype)  # before grad_weight is written
    conv2d_backward_weight(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w,
                           dilation_h, dilation_w, groups)
    conv2d_backward_bias(grad_output, grad_bias)


def linear_backward_weight_bias(grad_output, input, grad_weight, grad_bias):
    """linear_backward_weight into grad_weight (O, I), linear_backward_bias into grad_bias (O,)."""
    check_written("grad_bias", grad_bias, grad_weight.shape[:1], grad_output.dtype)  # before grad_weight is written
    linear_backward_weight(grad_output, input, grad_weight)
    linear_backward_bias(grad_output, grad_bias)


def linear_relu_forward(input, weight, bias, output):
    """output (N, O) = relu(input (N, I) @ weight (O, I).T + bias), the ReLU inside the product's kernel."""
    linear_forward_relu(input, weight, bias, output, 1)


# serial, as linear_backward_bias: (N, O) of a fully connected layer is little work
@njit(cache=True, fastmath=_REDUCE, no_cfunc_wrapper=True)
def relu_mask_bias(grad_output, output, masked, grad_bias):
    """masked (N, O) = grad_output where the ReLU's output (N, O) is positive, else 0 (relu_backward, given the
    output), and grad_bias (O,) = masked summed over N (linear_backward_bias's sums, in its order), in one
    pass; a zero-size grad_bias (no bias) takes no sums."""
    N, O = grad_output.shape
    sums = grad_bias.shape[0] > 0
    if sums:
        grad_bias[:] = 0
    for n in range(N):
        for o in range(O):
            masked[n, o] = grad_output[n, o] if output[n, o] > 0 else ZERO
            if sums:
                grad_bias[o] += masked[n, o]  # the stored value: the unfused path's sums, bit for bit


def _relu_mask_arguments(grad_output, output, grad_bias):
    """The ReLU mask's arrays, checked (arguments.py): grad_output and output (N, O) of one dtype, grad_bias (O,)
    or (0,); returns grad_output and output C-contiguous."""
    grad_output, output = contiguous(grad_output), contiguous(output)
    checks.ndim("grad_output", grad_output, (2,), "(N, O)")
    check_read(grad_output.dtype, output=output)
    checks.shape("output", output, grad_output.shape)
    if grad_bias.shape != (0,):
        check_written("grad_bias", grad_bias, grad_output.shape[1:], grad_output.dtype)
    return grad_output, output


def linear_relu_backward_input(grad_output, output, weight, grad_input):
    """grad_input (N, I) of relu(linear(input)), from the ReLU's output gradient and output (N, O)."""
    grad_output, output = _relu_mask_arguments(grad_output, output, grad_output[:0, 0])
    masked = np.empty_like(grad_output)
    relu_mask_bias(grad_output, output, masked, np.empty((0,), grad_output.dtype))
    linear_backward_input(masked, weight, grad_input)


def linear_relu_backward_weight_bias(grad_output, output, input, grad_weight, grad_bias):
    """grad_weight (O, I) and grad_bias (O,) of relu(linear(input))."""
    grad_output, output = _relu_mask_arguments(grad_output, output, grad_bias)
    check_written("grad_weight", grad_weight, (grad_output.shape[1], input.shape[-1]), grad_output.dtype)
    masked = np.empty_like(grad_output)
    relu_mask_bias(grad_output, output, masked, grad_bias)
    linear_backward_weight(masked, input, grad_weight)


def linear_relu_backward(grad_output, output, input, weight, grad_input, grad_weight, grad_bias):
    """Every gradient of relu(linear(input)) from one mask: grad_input (N, I) (skipped when None),
    grad_weight (O, I) and grad_bias (O,) (zero-size: no bias). Three kernel calls where the two above make
    four and mask twice (the CPU layer's fused backward; not one of the exported kernels, so it runs outside
    nbconv.kernels.serial's lock, which guards the convolutions' shared scratch: it has none)."""
    grad_output, output = _relu_mask_arguments(grad_output, output, grad_bias)
    masked = np.empty_like(grad_output)
    relu_mask_bias(grad_output, output, masked, grad_bias)
    if grad_input is not None:
        linear_backward_input(masked, weight, grad_input)
    linear_backward_weight(masked, input, grad_weight)


@njit(cache=True, no_cfunc_wrapper=True)
def segment_of(k, segment_ends):
    """The segment holding flat index k: the first s with k < segment_ends[s] (binary search)."""
    low, high = 0, segment_ends.shape[0] - 1
    while low < high:
        middle = (low + high) // 2
        if k < segment_ends[middle]:
            high = middle
        else:
            low = middle + 1
    return low


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def sgd_update_flat_span(span_part, span_parts, param, grad, velocity, segment_ends, segment_decay, lr, momentum,
                         nesterov):
    """sgd_update_flat over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    span_first, span_last = chunk_bounds(span_part, span_parts, param.shape[0])
    param_part = param[span_first:span_last]
    grad_part = grad[span_first:span_last]
    velocity_part = velocity[span_first:span_last]
    for k in range(span_last - span_first):  # from 0 over slices: indices LLVM knows are >= 0
        sgd_step(k, param_part, grad_part, velocity_part, lr, momentum, segment_decay[segment_of(span_first + k,
                 segment_ends)], nesterov)


def sgd_update_flat(param, grad, velocity, segment_ends, segment_decay, lr, momentum, nesterov):
    """sgd_update over all parameters at once (flat param, grad, velocity), each segment with its decay."""
    parallel_parts(sgd_update_flat_span, thread_count(param.size), param, grad, velocity, segment_ends, segment_decay,
                   lr, momentum, nesterov)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def adam_update_flat_span(span_part, span_parts, param, grad, exp_avg, exp_avg_sq, segment_ends, segment_decay, lr,
                          beta1, beta2, eps, step):
    """adam_update_flat over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    correction1 = 1.0 - beta1 ** step
    correction2 = 1.0 - beta2 ** step
    span_first, span_last = chunk_bounds(span_part, span_parts, param.shape[0])
    param_part = param[span_first:span_last]
    grad_part = grad[span_first:span_last]
    exp_avg_part = exp_avg[span_first:span_last]
    exp_avg_sq_part = exp_avg_sq[span_first:span_last]
    for k in range(span_last - span_first):  # from 0 over slices: indices LLVM knows are >= 0
        adam_step(k, param_part, grad_part, exp_avg_part, exp_avg_sq_part, lr, beta1, beta2, eps,
                  segment_decay[segment_of(span_first + k, segment_ends)], correction1, correction2)


def adam_update_flat(param, grad, exp_avg, exp_avg_sq, segment_ends, segment_decay, lr, beta1, beta2, eps, step):
    """adam_update over all parameters at once (flat buffers), each segment with its decay."""
    parallel_parts(adam_update_flat_span, thread_count(param.size), param, grad, exp_avg, exp_avg_sq, segment_ends,
                   segment_decay, lr, beta1, beta2, eps, step)
