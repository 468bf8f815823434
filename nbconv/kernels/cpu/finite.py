"""Whether arrays hold only finite values: one vectorised pass, no branches, no temporary arrays; large arrays
(an inference pass's outputs and inputs) may be read by every kernel thread at once (PARALLEL_VALUES)."""
import numba
import numpy as np
from numba import njit

from .fastmath import REASSOC as _REASSOC  # reassoc lets the sum vectorise; x * 0 stays NaN for inf and NaN
from .shared import chunk_bounds
from .threads import parallel_parts

# all_finite_parallel's arrays of at least this many values together use every thread; None: never (nn.infer's
# checks on two threads measured 0.86x at batch 1, 0.94x at batch 8 with 1 << 17 on the loaded machine, where
# each hand-off may wait for a descheduled worker: benchmarks/NOTES.md, section 61)
PARALLEL_VALUES = None


@njit(cache=True, inline="always", fastmath=_REASSOC)
def _poison(flat):
    """0 if flat is all finite, else NaN (x * 0 is 0 for finite x, NaN for inf and NaN)."""
    zero = flat.dtype.type(0)
    total = zero
    for q in range(flat.shape[0]):
        total += flat[q] * zero
    return total


@njit(cache=True, fastmath=_REASSOC, no_cfunc_wrapper=True)
def all_finite(first, second):
    """True when both C-contiguous arrays (any shapes) hold only finite values. Serial: about 20 GB/s on
    one core, a few microseconds for a layer's output, where a parallel launch alone costs more."""
    return _poison(first.reshape(first.size)) + _poison(second.reshape(second.size)) == 0


@njit(nogil=True, cache=True, fastmath=_REASSOC, no_cfunc_wrapper=True)
def _poison_span(span_part, span_parts, first, second, poison):
    """poison[span_part] = _poison of the span_part-th of span_parts slices of each flat array (threads.py)."""
    flat_first, flat_second = first.reshape(first.size), second.reshape(second.size)
    a0, a1 = chunk_bounds(span_part, span_parts, flat_first.shape[0])
    b0, b1 = chunk_bounds(span_part, span_parts, flat_second.shape[0])
    poison[span_part] = _poison(flat_first[a0:a1]) + _poison(flat_second[b0:b1])


def all_finite_parallel(first, second):
    """all_finite, with each kernel thread reading a slice of both arrays when they hold PARALLEL_VALUES values
    or more together (a ResNet-50 forward's outputs and inputs: ~20 M values, 3-4 ms on one core); on the
    calling thread alone while PARALLEL_VALUES is None."""
    threads = numba.get_num_threads()
    if threads == 1 or PARALLEL_VALUES is None or first.size + second.size < PARALLEL_VALUES:
        return bool(all_finite(first, second))
    poison = np.zeros(threads, first.dtype)
    parallel_parts(_poison_span, threads, first, second, poison)
    return bool(poison.sum() == 0)
