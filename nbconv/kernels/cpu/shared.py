"""Helpers shared by the CPU kernels: output ranges, chunking, zero fill, ordered partial sums."""
import numpy as np
from numba import njit

from .threads import parallel_parts, thread_count


@njit(cache=True, inline="always")
def valid_range(out_size, in_size, stride, offset):
    """Output positions o in [lo, hi) whose input position o*stride + offset lies in [0, in_size)."""
    if stride == 1:  # no divisions: this runs for every tap of every im2col block
        lo = max(0, -offset)
        return lo, max(lo, min(out_size, in_size - offset))
    if offset >= 0:
        lo = 0
    else:
        lo = (-offset + stride - 1) // stride
    last = in_size - 1 - offset
    if last < 0:
        return lo, lo
    hi = min(out_size, last // stride + 1)
    return lo, max(lo, hi)


@njit(cache=True, inline="always")
def fill(array, value):
    """array[:] = value for a 1-D array, as an explicit loop: inside a parallel kernel, Numba turns a slice
    assignment into a nested parallel loop, slow to run and slower to compile (2.5 s for one)."""
    for q in range(array.shape[0]):
        array[q] = value


@njit(cache=True, inline="always")
def fill_plane(plane, value):
    """plane[:, :] = value for a 2-D array (see fill)."""
    for r in range(plane.shape[0]):
        fill(plane[r], value)


@njit(cache=True, inline="always")
def fill_zero(array):
    fill(array, 0)


@njit(cache=True, inline="always")
def chunk_bounds(chunk, chunks, tasks):
    """Tasks [first, last) of one of `chunks` near-equal contiguous chunks."""
    return chunk * tasks // chunks, (chunk + 1) * tasks // chunks


@njit(cache=True, inline="always")
def task_rows(task, blocks, block_rows, out_h):
    """(image n, output rows [oh0, oh1)) of a task: tasks run over images, then over blocks of rows."""
    n = task // blocks
    oh0 = (task % blocks) * block_rows
    return n, oh0, min(out_h, oh0 + block_rows)


@njit(cache=True, inline="always")
def same_elements(a, b):
    """Whether two arrays are views of the very same elements in the same order: the same first address,
    strides and shape (a kernel called in place), not merely overlapping memory."""
    return a.ctypes.data == b.ctypes.data and a.strides == b.strides and a.shape == b.shape


def readable_apart(source, output):
    """`source` for a kernel that reads it while it writes `output`: itself when the two share no memory or
    are the very same elements (a call in place), else a copy of it, so that every value is read as it was
    before the call, as numpy's ufuncs read an input that overlaps their output (an output one value past
    its input, or starting there with other strides, would otherwise read values the call has written; the
    kernel threads, each on its own slice, would race)."""
    if source is output or not np.may_share_memory(source, output) or same_elements(source, output):
        return source
    return source.copy()


TRANSPOSE_ROWS = 16  # partial rows whose sums are written into grad_weight together: 64 bytes a row


def flat_view(array, shape=(-1,)):
    """array reshaped to `shape` without a copy (a view that the kernels write through), for a compiled kernel to
    take instead of reshaping inside: a reshape in compiled code makes Numba compile its shape normaliser, once a
    process and error model, 0.15-0.25 CPU s of a cold start each, which its disk cache does not keep. Raises
    ValueError for an array that is not C-contiguous (no view of it has that shape)."""
    if not array.flags.c_contiguous:
        raise ValueError(f"a flat view needs a C-contiguous array, got strides {array.strides} for {array.shape}")
    return array.reshape(shape)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def sum_partials_span(span_part, span_parts, partial, flat):
    """sum_partials over the span_part-th of span_parts slices of its outer loop (threads.py): blocks of
    TRANSPOSE_ROWS rows of one group. flat: grad_weight as (groups * D/groups, C/groups*KH*KW)."""
    chunks, groups, depth, Dg = partial.shape
    blocks = (depth + TRANSPOSE_ROWS - 1) // TRANSPOSE_ROWS
    span_first, span_last = chunk_bounds(span_part, span_parts, groups * blocks)
    for block in range(span_first, span_last):
        g, k0 = block // blocks, (block % blocks) * TRANSPOSE_ROWS
        k1 = min(depth, k0 + TRANSPOSE_ROWS)
        for k in range(k0, k1):
            total = partial[0, g, k]
            for chunk in range(1, chunks):
                source = partial[chunk, g, k]
                for dd in range(Dg):
                    total[dd] += source[dd]
        for dd in range(Dg):
            target = flat[g * Dg + dd, k0:k1]
            for k in range(k1 - k0):
                target[k] = partial[0, g, k0 + k, dd]


def sum_partials(partial, grad_weight):
    """grad_weight[g*Dg + dd, k] = sum over chunks, in chunk order, of partial[chunk, g, k, dd].

    partial: (chunks, groups, C/groups*KH*KW, D/groups), the transposed per-chunk sums of the weight
    gradient kernels; the fixed order makes the result independent of the thread count. The sums run
    along partial's contiguous rows (into chunk 0's, which this overwrites), so each partial value is read
    once: summing down its columns read a new cache line per value, seconds for 512-channel layers. The
    sums are then written TRANSPOSE_ROWS rows at a time, a run of contiguous values in each row of
    grad_weight: one value a row wrote D/groups values C*KH*KW apart, whose cache lines share a few cache
    sets (two 8 MB partials of a 1024 -> 2048 layer: 14.4 ms, against 6.6 ms in runs of 16).
    """
    chunks, groups, depth, Dg = partial.shape
    target = grad_weight if grad_weight.flags.c_contiguous else np.empty(grad_weight.shape, grad_weight.dtype)
    parallel_parts(sum_partials_span, thread_count(partial.size), partial, flat_view(target, (groups * Dg, depth)))
    if target is not grad_weight:
        grad_weight[...] = target
