"""The optimizers' per-value update rules (PyTorch's), written once as plain Python and compiled by each
backend: an inlined @njit function for the CPU kernels (nbconv.kernels.cpu.optim) and a CUDA device function
for the GPU ones (nbconv.kernels.cuda.optim). Each updates index k of flat arrays in place."""
import math


def sgd_step(k, param, grad, velocity, lr, momentum, weight_decay, nesterov):
    """SGD's rule for the value at index k: g = grad + weight_decay*param; velocity = momentum*velocity + g;
    param -= lr * (g + momentum*velocity if nesterov else velocity)."""
    g = grad[k] + weight_decay * param[k]
    v = momentum * velocity[k] + g
    velocity[k] = v
    param[k] -= lr * (g + momentum * v if nesterov else v)


def adam_step(k, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, correction1, correction2):
    """Adam's rule for the value at index k, the bias corrections 1 - beta**step given."""
    g = grad[k] + weight_decay * param[k]
    m = beta1 * exp_avg[k] + (1.0 - beta1) * g
    v = beta2 * exp_avg_sq[k] + (1.0 - beta2) * g * g
    exp_avg[k] = m
    exp_avg_sq[k] = v
    param[k] -= lr * (m / correction1) / (math.sqrt(v / correction2) + eps)
