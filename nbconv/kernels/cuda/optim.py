"""Optimizer update kernels for NVIDIA GPUs; twins of nbconv.kernels.cpu.optim (one thread per parameter)."""
from numba import cuda

from .. import optim_rules
from .launch import grid_for


_sgd_step = cuda.jit(device=True, inline=True)(optim_rules.sgd_step)
_adam_step = cuda.jit(device=True, inline=True)(optim_rules.adam_step)


@cuda.jit(cache=True)
def _sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    k = cuda.grid(1)
    if k < param.shape[0]:
        _sgd_step(k, param, grad, velocity, lr, momentum, weight_decay, nesterov)


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    _sgd_update[grid_for(param.shape[0])](param, grad, velocity, lr, momentum, weight_decay, nesterov)


@cuda.jit(cache=True)
def _adam_update(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, correction1, correction2):
    k = cuda.grid(1)
    if k < param.shape[0]:
        _adam_step(k, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, correction1,
                   correction2)


def adam_update(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step):
    _adam_update[grid_for(param.shape[0])](param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                                           1.0 - beta1 ** step, 1.0 - beta2 ** step)


@cuda.jit(device=True, inline=True)
def _segment_of(k, segment_ends):
    """The segment holding flat index k: the first s with k < segment_ends[s] (binary search)."""
    low, high = 0, segment_ends.shape[0] - 1
    while low < high:
        middle = (low + high) // 2
        if k < segment_ends[middle]:
            high = middle
        else:
            low = middle + 1
    return low


@cuda.jit(cache=True)
def _sgd_update_flat(param, grad, velocity, segment_ends, segment_decay, lr, momentum, nesterov):
    k = cuda.grid(1)
    if k < param.shape[0]:
        _sgd_step(k, param, grad, velocity, lr, momentum, segment_decay[_segment_of(k, segment_ends)], nesterov)


def sgd_update_flat(param, grad, velocity, segment_ends, segment_decay, lr, momentum, nesterov):
    """sgd_update over all of a model's parameters (flat buffers) in one launch."""
    _sgd_update_flat[grid_for(param.shape[0])](param, grad, velocity, segment_ends, segment_decay, lr, momentum,
                                               nesterov)


@cuda.jit(cache=True)
def _adam_update_flat(param, grad, exp_avg, exp_avg_sq, segment_ends, segment_decay, lr, beta1, beta2, eps,
                      correction1, correction2):
    k = cuda.grid(1)
    if k < param.shape[0]:
        _adam_step(k, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps,
                   segment_decay[_segment_of(k, segment_ends)], correction1, correction2)


def adam_update_flat(param, grad, exp_avg, exp_avg_sq, segment_ends, segment_decay, lr, beta1, beta2, eps, step):
    """adam_update over all of a model's parameters (flat buffers) in one launch."""
    _adam_update_flat[grid_for(param.shape[0])](param, grad, exp_avg, exp_avg_sq, segment_ends, segment_decay, lr,
                                                beta1, beta2, eps, 1.0 - beta1 ** step, 1.0 - beta2 ** step)
