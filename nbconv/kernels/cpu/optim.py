"""Optimizer update kernels for the CPU over flat (1-D) parameter arrays, updated in place (PyTorch's rules)."""
from numba import njit

from .. import optim_rules
from .shared import chunk_bounds
from .threads import parallel_parts, thread_count


sgd_step = njit(inline="always")(optim_rules.sgd_step)
adam_step = njit(inline="always")(optim_rules.adam_step)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def sgd_update_span(span_part, span_parts, param, grad, velocity, lr, momentum, weight_decay, nesterov):
    """sgd_update over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    span_first, span_last = chunk_bounds(span_part, span_parts, param.shape[0])
    param_part = param[span_first:span_last]
    grad_part = grad[span_first:span_last]
    velocity_part = velocity[span_first:span_last]
    for k in range(span_last - span_first):  # from 0 over slices: indices LLVM knows are >= 0
        sgd_step(k, param_part, grad_part, velocity_part, lr, momentum, weight_decay, nesterov)


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    """SGD with momentum (PyTorch's rule, see sgd_step) over every value. With momentum 0 this is plain SGD
    (velocity then just holds g)."""
    parallel_parts(sgd_update_span, thread_count(param.size), param, grad, velocity, lr, momentum, weight_decay,
                   nesterov)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def adam_update_span(span_part, span_parts, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                     step):
    """adam_update over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    correction1 = 1.0 - beta1 ** step
    correction2 = 1.0 - beta2 ** step
    span_first, span_last = chunk_bounds(span_part, span_parts, param.shape[0])
    param_part = param[span_first:span_last]
    grad_part = grad[span_first:span_last]
    exp_avg_part = exp_avg[span_first:span_last]
    exp_avg_sq_part = exp_avg_sq[span_first:span_last]
    for k in range(span_last - span_first):  # from 0 over slices: indices LLVM knows are >= 0
        adam_step(k, param_part, grad_part, exp_avg_part, exp_avg_sq_part, lr, beta1, beta2, eps, weight_decay,
                  correction1, correction2)


def adam_update(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step):
    """Adam (Kingma & Ba) with bias correction at `step` (1-based) and L2 weight decay folded into the gradient."""
    parallel_parts(adam_update_span, thread_count(param.size), param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps,
                   weight_decay, step)
