"""Per-channel scale and shift, an optional residual sum and an optional ReLU in one pass (CPU): what an
eval-mode batch normalization, the residual sum after it and the activation after that do, without an
array or a pass between them.

Shapes: input and output (N, C, S), S the positions per channel (H * W for images, 1 for features);
scale and shift (C,), or (0,) for none (scale 1, shift 0); residual (N, C, S), or (0, 0, 0) for none.
activation: 0 none, 1 ReLU, 2 ReLU6. output may be input itself (in place), and residual may be either;
other overlaps are read from a copy.
One task per (n, c) row of S values, so batch 1 still splits over the channels.
"""
import numpy as np
from numba import njit

from .shared import chunk_bounds, readable_apart, same_elements
from .threads import parallel_parts, thread_count

NO_ACTIVATION, RELU, RELU6 = 0, 1, 2


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def scale_shift_forward_span(span_part, span_parts, input, scale, shift, residual, output, activation):
    """scale_shift_forward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, S = input.shape
    scaled, shifted, summed = scale.shape[0] > 0, shift.shape[0] > 0, residual.shape[0] > 0
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n, c = task // C, task % C
        factor = scale[c] if scaled else output.dtype.type(1)
        offset = shift[c] if shifted else output.dtype.type(0)
        source, target = input[n, c], output[n, c]
        added = residual[n, c] if summed else target[0:0]
        if same_elements(target, source):
            scale_shift_span(target, added, factor, offset, summed, activation)
        elif summed and same_elements(target, added):
            _added_into(source, target, factor, offset, activation)
        else:
            _scale_shift_apart(source, target, added, factor, offset, summed, activation)


def scale_shift_forward(input, scale, shift, residual, output, activation):
    """output = activation(input * scale[c] + shift[c] + residual), per channel c of axis 1; the scaled
    value is rounded to the output's type before the residual is added (as two separate layers would). An input
    or residual that overlaps the output without being it is read as it was (shared.readable_apart)."""
    parallel_parts(scale_shift_forward_span, thread_count(input.size), readable_apart(input, output), scale, shift,
                   readable_apart(residual, output), output, activation)


# The loops below keep every branch but the activation's outside them, and read and write one array where
# the output is an input. A loop that tests `summed` inside stayed scalar where a residual is added (0.58
# against 0.15 ns a value), and one whose output is its input under another name runs scalar behind LLVM's
# runtime overlap check, and slower still on this AMD EPYC (5-7 ns a value: the loads wait on the stores).
@njit(cache=True, inline="always")
def activated(value, activation, zero, six):
    """value after the activation (0 none, 1 ReLU, 2 ReLU6; zero and six of value's type); NaN fails both
    tests and passes through."""
    if activation == RELU:
        return zero if value <= zero else value
    if activation == RELU6:
        return zero if value <= zero else (six if value >= six else value)
    return value


@njit(cache=True, inline="always")
def scale_shift_span(target, residual, factor, offset, summed, activation):
    """target = activation(target * factor + offset + residual) over one span of a channel, in place (the
    convolution kernels' epilogue; residual is read only when summed)."""
    if activation == RELU:  # the activation a constant in each loop: with it a variable, LLVM left them scalar
        _scale_shift_in_place(target, residual, factor, offset, summed, RELU)
    elif activation == RELU6:
        _scale_shift_in_place(target, residual, factor, offset, summed, RELU6)
    else:
        _scale_shift_in_place(target, residual, factor, offset, summed, NO_ACTIVATION)


@njit(cache=True, inline="always")
def _scale_shift_in_place(target, residual, factor, offset, summed, activation):
    zero, six = target.dtype.type(0), target.dtype.type(6)
    if summed:
        for s in range(target.shape[0]):
            target[s] = activated(target.dtype.type(target[s] * factor + offset) + residual[s], activation, zero,
                                  six)
    else:
        for s in range(target.shape[0]):
            target[s] = activated(target.dtype.type(target[s] * factor + offset), activation, zero, six)


@njit(cache=True, no_cfunc_wrapper=True)
def _scale_shift_apart(source, target, residual, factor, offset, summed, activation):
    """target = activation(source * factor + offset + residual), target apart from source and residual."""
    zero, six = target.dtype.type(0), target.dtype.type(6)
    if summed:
        for s in range(target.shape[0]):
            target[s] = activated(target.dtype.type(source[s] * factor + offset) + residual[s], activation, zero,
                                  six)
    else:
        for s in range(target.shape[0]):
            target[s] = activated(target.dtype.type(source[s] * factor + offset), activation, zero, six)


@njit(cache=True, no_cfunc_wrapper=True)
def _added_into(source, target, factor, offset, activation):
    """target = activation(source * factor + offset + target): the residual is the output."""
    zero, six = target.dtype.type(0), target.dtype.type(6)
    for s in range(target.shape[0]):
        target[s] = activated(target.dtype.type(source[s] * factor + offset) + target[s], activation, zero, six)


@njit(cache=True, inline="always")
def epilogue_span(output, n, d, start, stop, scale, shift, residual, activation):
    """The epilogue on output[n, d, start:stop] of a (N, D, P) output: scale and shift of channel d (each
    (D,) or (0,) for none), the residual (N, D, P) or (0, 0, 0) for none, the activation; nothing when all
    are absent."""
    scaled, shifted, summed = scale.shape[0] > 0, shift.shape[0] > 0, residual.shape[0] > 0
    if not (scaled or shifted or summed or activation != NO_ACTIVATION):
        return
    factor = scale[d] if scaled else output.dtype.type(1)
    offset = shift[d] if shifted else output.dtype.type(0)
    scale_shift_span(output[n, d, start:stop], residual[n, d, start:stop] if summed else output[n, d, 0:0],
                     factor, offset, summed, activation)


def no_epilogue(dtype):
    """The epilogue arguments (scale, shift, residual, activation) that leave a convolution's output as is."""
    return np.empty(0, dtype), np.empty(0, dtype), np.empty((0, 0, 0), dtype), NO_ACTIVATION
