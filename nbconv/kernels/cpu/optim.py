"""Optimizer update kernels for the CPU over flat (1-D) parameter arrays, updated in place (PyTorch's rules)."""
from numba import njit, prange

from .. import optim_rules


sgd_step = njit(inline="always")(optim_rules.sgd_step)
adam_step = njit(inline="always")(optim_rules.adam_step)


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
