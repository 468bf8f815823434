"""Optimizer update kernels for the CPU over flat (1-D) parameter arrays, updated in place (PyTorch's rules)."""
import math

from numba import njit, prange


@njit(inline="always")
def sgd_step(k, param, grad, velocity, lr, momentum, weight_decay, nesterov):
    """SGD's rule for the value at index k: g = grad + weight_decay*param; velocity = momentum*velocity + g;
    param -= lr * (g + momentum*velocity if nesterov else velocity)."""
    g = grad[k] + weight_decay * param[k]
    v = momentum * velocity[k] + g
    velocity[k] = v
    param[k] -= lr * (g + momentum * v if nesterov else v)


@njit(inline="always")
def adam_step(k, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, correction1, correction2):
    """Adam's rule for the value at index k, the bias corrections 1 - beta**step given."""
    g = grad[k] + weight_decay * param[k]
    m = beta1 * exp_avg[k] + (1.0 - beta1) * g
    v = beta2 * exp_avg_sq[k] + (1.0 - beta2) * g * g
    exp_avg[k] = m
    exp_avg_sq[k] = v
    param[k] -= lr * (m / correction1) / (math.sqrt(v / correction2) + eps)


@njit(parallel=True, cache=True)
def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    """SGD with momentum (PyTorch's rule, see sgd_step) over every value. With momentum 0 this is plain SGD
    (velocity then just holds g)."""
    for k in prange(param.shape[0]):
        sgd_step(k, param, grad, velocity, lr, momentum, weight_decay, nesterov)


@njit(parallel=True, cache=True)
def adam_update(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step):
    """Adam (Kingma & Ba) with bias correction at `step` (1-based) and L2 weight decay folded into the gradient."""
    correction1 = 1.0 - beta1 ** step
    correction2 = 1.0 - beta2 ** step
    for k in prange(param.shape[0]):
        adam_step(k, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, correction1, correction2)
