"""Whether arrays hold only finite values: one vectorised pass on the calling thread, no branches, no temporary
arrays. (Reading them on every kernel thread measured 0.86-0.99x on nn.infer at two threads, its hand-off
costing more than the pass: benchmarks/NOTES.md, sections 61 and 67.)"""
from numba import njit

from .fastmath import REASSOC as _REASSOC  # reassoc lets the sum vectorise; x * 0 stays NaN for inf and NaN


@njit(cache=True, inline="always", fastmath=_REASSOC)
def _poison(flat):
    """0 if flat is all finite, else NaN (x * 0 is 0 for finite x, NaN for inf and NaN)."""
    zero = flat.dtype.type(0)
    total = zero
    for q in range(flat.shape[0]):
        total += flat[q] * zero
    return total


@njit(cache=True, error_model="numpy", fastmath=_REASSOC, no_cfunc_wrapper=True)
def all_finite_flat(first, second):
    """all_finite of two 1-D arrays."""
    return _poison(first) + _poison(second) == 0


def all_finite(first, second):
    """True when both C-contiguous arrays (any shapes) hold only finite values. Serial: about 20 GB/s on
    one core, a few microseconds for a layer's output, where a parallel launch alone costs more.

    The arrays are flattened here, not in the kernel: a reshape inside compiled code makes Numba compile its
    shape normaliser once a process (0.15-0.25 CPU s on a cold start, not cached on disk), and one signature
    serves arrays of every rank."""
    return all_finite_flat(first.reshape(-1), second.reshape(-1))
