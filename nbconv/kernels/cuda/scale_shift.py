"""Per-channel scale and shift, optional residual sum and optional ReLU in one pass for NVIDIA GPUs, the
CUDA twin of nbconv.kernels.cpu.scale_shift (same shapes and rules): one thread per element."""
from numba import cuda

from .indexing import unravel3
from .launch import grid_for


@cuda.jit(cache=True)
def _scale_shift_forward(input, scale, shift, residual, output, activation):
    N, C, S = input.shape
    k = cuda.grid(1)
    if k < N * C * S:
        n, c, s = unravel3(k, C, S)
        zero, six = output.dtype.type(0), output.dtype.type(6)
        factor = scale[c] if scale.shape[0] > 0 else output.dtype.type(1)
        offset = shift[c] if shift.shape[0] > 0 else zero
        value = output.dtype.type(input[n, c, s] * factor + offset)
        if residual.shape[0] > 0:
            value += residual[n, c, s]
        if activation == 1:
            value = zero if value <= zero else value
        elif activation == 2:
            value = zero if value <= zero else (six if value >= six else value)
        output[n, c, s] = value


def scale_shift_forward(input, scale, shift, residual, output, activation):
    _scale_shift_forward[grid_for(input.size)](input, scale, shift, residual, output, activation)
