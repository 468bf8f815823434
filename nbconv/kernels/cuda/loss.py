"""Softmax cross-entropy for NVIDIA GPUs; twin of nbconv.kernels.cpu.loss (one thread per sample)."""
import math

from numba import cuda

from .launch import grid_for


@cuda.jit(cache=True)
def _softmax_cross_entropy(logits, labels, losses, grad_logits):
    N, K = logits.shape
    n = cuda.grid(1)
    if n >= N:
        return
    peak = logits[n, 0]
    for k in range(1, K):
        peak = max(peak, logits[n, k])
    total = 0.0
    for k in range(K):
        total += math.exp(logits[n, k] - peak)
    log_total = math.log(total)
    label = labels[n]
    losses[n] = log_total + peak - logits[n, label]
    for k in range(K):
        probability = math.exp(logits[n, k] - peak - log_total)
        grad_logits[n, k] = (probability - (1.0 if k == label else 0.0)) / N


def softmax_cross_entropy(logits, labels, losses, grad_logits):
    _softmax_cross_entropy[grid_for(logits.shape[0])](logits, labels, losses, grad_logits)
