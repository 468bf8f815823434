"""Pooling kernels for the CPU: max, average and global average, forward and backward.

Shapes: input (N, C, H, W), output (N, C, OH, OW); max pooling also writes indices (N, C, OH, OW),
the flat position ih * W + iw of each maximum inside its input plane. Windows start at
o*stride - padding and are clipped to the input, so ceil_mode only changes the output size,
which the caller chooses. Each task owns one (n, c) plane, so the backward scatters do not race.
"""
import math

import numpy as np

from numba import njit

from ... import checks
from .arguments import check_read, check_written
from .register_blocks import max_pool_2x2_4, max_pool_2x2_4_values, max_pool_2x2_8, max_pool_2x2_8_values
from .shared import chunk_bounds, fill, fill_plane, valid_range
from .threads import parallel_parts, thread_count


@njit(cache=True, inline="always")
def max_pool_tap(source, best, where, base, stride):
    """One window tap over a run of outputs: best[q], where[q] take source[q*stride] if it is larger (or
    the first NaN); where counts from base."""
    for q in range(best.shape[0]):
        value = source[q * stride]
        current = best[q]
        current_where = where[q]  # loaded up front so that both updates can become selects:
        take = (value > current) | ((value != value) & (current == current))
        best[q] = value if take else current  # a branch on random data mispredicts half the time
        where[q] = base + q * stride if take else current_where


@njit(cache=True, inline="always")
def _larger(value, current):
    """value if it is larger than current or a NaN, else current: a select (no branch), and a NaN anywhere
    in a run of these reaches its end."""
    return value if (value > current) | (value != value) else current


@njit(cache=True, inline="always")
def max_value_tap(source, best, stride):
    """max_pool_tap without the positions: 2.5x faster, as nothing keeps the comparison from being a select."""
    for q in range(best.shape[0]):
        best[q] = _larger(source[q * stride], best[q])


@njit(cache=True, inline="always")
def _first_max_tap(a, b, c, d, top_max):
    """0-3: the first of the window's taps (row-major) equal to its maximum, as arithmetic, not branches."""
    return np.int64(a != top_max) * (1 + np.int64(b != top_max) * (1 + np.int64(c != top_max)))


@njit(cache=True, inline="always")
def _has_nan(a, b, c, d):
    return np.int64(a != a) | np.int64(b != b) | np.int64(c != c) | np.int64(d != d)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def max_pool2d_forward_2x2_blocks_span(span_part, span_parts, input, output, indices, record, nan_found):
    """max_pool2d_forward_2x2's vector blocks over the span_part-th of span_parts slices of its outer loop
    (threads.py), for C-contiguous arrays and output rows at least 4 wide; nan_found[span_part] = 1 when a
    window of the slice holds a NaN (its outputs are then not the pooling's), else 0. Without record, indices
    is a placeholder that nothing writes (_NOT_RECORDED)."""
    N, C, H, W = input.shape
    OH, OW = output.shape[2], output.shape[3]
    lanes = 8 if OW >= 8 else 4
    nan = 0
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n, c = task // C, task % C
        plane = input[n, c]
        for oh in range(OH):
            top, bottom = plane[2 * oh], plane[2 * oh + 1]
            best = output[n, c, oh]
            where = indices[n, c, oh] if record else indices[0, 0, 0]
            base = 2 * oh * W
            ow = 0
            while ow < OW:  # the last block starts at OW - lanes (redoing some outputs: the same values)
                first = min(ow, OW - lanes)
                if lanes == 8:
                    if record:
                        nan |= max_pool_2x2_8(top, bottom, best, where, first, base, W)
                    else:
                        nan |= max_pool_2x2_8_values(top, bottom, best, where, first, base, W)
                elif record:
                    nan |= max_pool_2x2_4(top, bottom, best, where, first, base, W)
                else:
                    nan |= max_pool_2x2_4_values(top, bottom, best, where, first, base, W)
                ow += lanes
    nan_found[span_part] = nan


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def max_pool2d_forward_2x2_span(span_part, span_parts, input, output, indices, record):
    """max_pool2d_forward_2x2 one output at a time, any strides, NaNs included, over the span_part-th of
    span_parts slices of its outer loop (threads.py). Without record, indices is a placeholder that nothing
    writes (_NOT_RECORDED)."""
    N, C, H, W = input.shape
    OH, OW = output.shape[2], output.shape[3]
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n, c = task // C, task % C
        plane = input[n, c]
        for oh in range(OH):
            top, bottom = plane[2 * oh], plane[2 * oh + 1]
            best = output[n, c, oh]
            where = indices[n, c, oh] if record else indices[0, 0, 0]
            nan = 0
            if record:
                for ow in range(OW):
                    a, b, c_, d = top[2 * ow], top[2 * ow + 1], bottom[2 * ow], bottom[2 * ow + 1]
                    top_max = max(max(a, b), max(c_, d))
                    k = _first_max_tap(a, b, c_, d, top_max)
                    best[ow] = top_max
                    where[ow] = (2 * oh + (k >> 1)) * W + 2 * ow + (k & 1)
                    nan |= _has_nan(a, b, c_, d)
            else:
                for ow in range(OW):
                    a, b, c_, d = top[2 * ow], top[2 * ow + 1], bottom[2 * ow], bottom[2 * ow + 1]
                    best[ow] = max(max(a, b), max(c_, d))
                    nan |= _has_nan(a, b, c_, d)
            if nan:  # the first NaN of a window wins
                for ow in range(OW):
                    a, b, c_, d = top[2 * ow], top[2 * ow + 1], bottom[2 * ow], bottom[2 * ow + 1]
                    if _has_nan(a, b, c_, d):
                        k = 0 if a != a else 1 if b != b else 2 if c_ != c_ else 3
                        best[ow] = plane[2 * oh + (k >> 1), 2 * ow + (k & 1)]
                        if record:
                            where[ow] = (2 * oh + (k >> 1)) * W + 2 * ow + (k & 1)


def max_pool2d_forward_2x2(input, output, indices):
    """max_pool2d_forward for 2x2 windows with stride 2 and every window inside the input (the common
    pooling layer). Contiguous arrays with output rows at least 4 wide run in vector blocks, 8 or 4
    outputs at a time (max_pool2d_forward_2x2_blocks_span: the maximum by selects, its position from
    equality tests turned into arithmetic); a call whose windows hold a NaN, which real data almost never
    do, is redone whole, like any other shape, one output at a time with the branches NaN needs
    (max_pool2d_forward_2x2_span). Two kernels instead of one holding both: a LeNet-5 or VGG compiles only
    the first (0.6 instead of 1.3 CPU s on a cold JIT cache: the scalar loops were the costly part)."""
    parts = thread_count(input.size)
    record = indices.shape[0] > 0
    if not record:
        indices = _NOT_RECORDED
    if (output.shape[3] >= 4 and input.flags.c_contiguous and output.flags.c_contiguous
            and indices.flags.c_contiguous):
        nan_found = np.zeros(parts, np.int64)
        parallel_parts(max_pool2d_forward_2x2_blocks_span, parts, input, output, indices, record, nan_found)
        if not nan_found.any():
            return
    parallel_parts(max_pool2d_forward_2x2_span, parts, input, output, indices, record)


# What the 2x2 kernels index instead of the positions when they are not recorded: an array of the same type,
# allocated here (an allocation inside compiled code makes Numba compile np.empty's overloads once a process,
# which its disk cache does not keep). The kernels write nothing to it.
_NOT_RECORDED = np.zeros((1, 1, 1, 1), np.int64)


def max_pool2d_forward(input, output, indices, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w):
    """output = max over each window (NaN propagates); indices = where in the plane it came from, or
    nothing when indices is empty, (0, 0, 0, 0) (inference needs no positions and runs 2.5x faster).
    Ties and NaNs resolve to the first in the window's row-major order (without positions, 3x3 windows at
    stride 2 may keep another of a window's NaNs, or one signed zero for the other: max_pool2d_forward_3x3).
    The arrays are checked first (arguments.py: the 2x2 path stores whole vectors of the input's dtype and of
    int64 positions): an input (N, C, H, W), an output (N, C, OH, OW) of its dtype, indices empty or int64 of the
    output's shape, the written ones C-contiguous."""
    checks.ndim("input", input, (4,), "(N, C, H, W)")
    check_read(input.dtype)
    checks.ndim("output", output, (4,), "(N, C, OH, OW)")
    check_written("output", output, input.shape[:2] + output.shape[2:], input.dtype)
    if indices.size or indices.shape != (0, 0, 0, 0):
        check_written("indices", indices, output.shape, np.int64)
    OH, OW = output.shape[2], output.shape[3]
    if ((kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w) == (2, 2, 2, 2, 0, 0)
            and 2 * OH <= input.shape[2] and 2 * OW <= input.shape[3]):
        return max_pool2d_forward_2x2(input, output, indices)
    if (POOL_3X3_VALUES and indices.shape[0] == 0
            and (kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w) == (3, 3, 2, 2, 1, 1)
            and 2 * OH - 3 < input.shape[2] and 2 * OW - 3 < input.shape[3]):  # each window starts inside
        return max_pool2d_forward_3x3(input, output)
    max_pool2d_forward_windows(input, output, indices, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w)


POOL_3X3_VALUES = True  # 3x3 windows at stride 2, padding 1, no positions: max_pool2d_forward_3x3 (else windows)


@njit(cache=True, inline="always")
def _window_rows_split(plane, first_h, last_h, even, odd, spare_even, spare_odd, half):
    """even[k], odd[k] = the max (a NaN winning) of plane[first_h:last_h, 2k] and [.., 2k + 1] for k < half,
    in (even, odd) or the spares (returned). The pairs of loads become vector loads and shuffles, and each
    run writes to buffers it does not read: an update in place, even[k] = select(..., even[k]), becomes a
    masked store (vmaskmovps), which measured ~14x slower a value on this AMD EPYC."""
    top = plane[first_h]
    if last_h - first_h == 1:
        for k in range(half):
            even[k] = top[2 * k]
            odd[k] = top[2 * k + 1]
        return even, odd
    second = plane[first_h + 1]
    for k in range(half):
        even[k] = _larger(second[2 * k], top[2 * k])
        odd[k] = _larger(second[2 * k + 1], top[2 * k + 1])
    for ih in range(first_h + 2, last_h):
        row = plane[ih]
        for k in range(half):
            spare_even[k] = _larger(row[2 * k], even[k])
            spare_odd[k] = _larger(row[2 * k + 1], odd[k])
        even, spare_even = spare_even, even
        odd, spare_odd = spare_odd, odd
    return even, odd


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def max_pool2d_forward_3x3_span(span_part, span_parts, input, output):
    """max_pool2d_forward_3x3 over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    OH, OW = output.shape[2], output.shape[3]
    half = W // 2
    buffers = np.empty((4, half + 1), input.dtype)  # even and odd columns, and their spares
    full_hi = min(OW, half)  # outputs 1 <= ow < full_hi have all three columns 2ow - 1, 2ow, 2ow + 1
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n, c = task // C, task % C
        plane = input[n, c]
        for oh in range(OH):
            best = output[n, c, oh]
            first_h, last_h = max(2 * oh - 1, 0), min(2 * oh + 2, H)
            even, odd = _window_rows_split(plane, first_h, last_h, buffers[0], buffers[1], buffers[2], buffers[3],
                                           half)
            if W % 2:  # the last column, even[half]
                value = plane[first_h, W - 1]
                for ih in range(first_h + 1, last_h):
                    value = _larger(plane[ih, W - 1], value)
                even[half] = value
            best[0] = _larger(odd[0], even[0]) if W > 1 else even[0]  # columns -1 (padding), 0, 1
            for ow in range(1, full_hi):
                best[ow] = _larger(odd[ow], _larger(even[ow], odd[ow - 1]))
            for ow in range(max(1, full_hi), OW):  # windows that end past the row (odd W, ceil_mode)
                best[ow] = _larger(even[ow], odd[ow - 1]) if 2 * ow < W else odd[ow - 1]


def max_pool2d_forward_3x3(input, output):
    """max_pool2d_forward's values alone (inference) for 3x3 windows, stride 2, padding 1 (ResNet's pooling),
    every window starting inside the input. Each output row's three input rows are first reduced to one,
    its even and odd columns apart (vector selects, contiguous runs); output ow's window is then odd[ow - 1],
    even[ow], odd[ow], also contiguous runs. NaN propagates by the selects (a window holding a NaN gives a
    NaN, with no second pass); which of a window's NaNs, or of its equal values 0.0 and -0.0, is kept may
    not be the row-major first, which only the positions (not computed here) would show."""
    parallel_parts(max_pool2d_forward_3x3_span, thread_count(input.size), input, output)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def max_pool2d_forward_windows_span(span_part, span_parts, input, output, indices, kernel_h, kernel_w, stride_h,
                                    stride_w, padding_h, padding_w):
    """max_pool2d_forward_windows over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    OH, OW = output.shape[2], output.shape[3]
    record = indices.shape[0] > 0
    if not record:
        indices = np.empty((1, 1, 1, 1), np.int64)  # a placeholder view for the typing of the loop below
    column_ranges = np.empty((kernel_w, 2), np.int64)  # [lo, hi) of the outputs each column tap reaches
    for j in range(kernel_w):
        column_ranges[j, 0], column_ranges[j, 1] = valid_range(OW, W, stride_w, j - padding_w)
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n = task // C
        c = task % C
        plane, best_plane = input[n, c], output[n, c]
        where_plane = indices[n, c] if record else indices[0, 0]
        for oh in range(OH):
            best, where = best_plane[oh], where_plane[oh if record else 0]
            h0 = oh * stride_h - padding_h
            first_h = max(h0, 0)
            for ow in range(OW):
                best[ow] = -math.inf
                if record:
                    where[ow] = first_h * W + max(ow * stride_w - padding_w, 0)
            for ih in range(first_h, min(h0 + kernel_h, H)):
                row = plane[ih]
                for j in range(kernel_w):
                    lo, hi = column_ranges[j, 0], column_ranges[j, 1]
                    if lo >= hi:
                        continue
                    start = lo * stride_w + j - padding_w
                    if record:
                        max_pool_tap(row[start:], best[lo:hi], where[lo:hi], ih * W + start, stride_w)
                    else:
                        max_value_tap(row[start:], best[lo:hi], stride_w)


def max_pool2d_forward_windows(input, output, indices, kernel_h, kernel_w, stride_h, stride_w, padding_h,
                               padding_w):
    """max_pool2d_forward for any window, stride and padding.

    Ties and NaNs resolve to the first in the window's row-major order. The loops run tap by tap over a
    whole output row, through views indexed from 0 (so no negative-index handling), with the outputs each
    column tap reaches computed once per call.
    """
    parallel_parts(max_pool2d_forward_windows_span, thread_count(input.size), input, output, indices, kernel_h,
                   kernel_w, stride_h, stride_w, padding_h, padding_w)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def max_pool2d_backward_span(span_part, span_parts, grad_output, indices, grad_input):
    """max_pool2d_backward over the span_part-th of span_parts slices of its outer loop (threads.py), on planes
    laid out flat: grad_output and indices (planes, OH * OW), grad_input (planes, H * W)."""
    planes, plane_size = grad_input.shape
    outputs = min(grad_output.shape[1], indices.shape[1])
    if min(grad_output.shape[0], indices.shape[0]) < planes:
        outputs = 0  # mismatched planes: nothing valid to route (the planes are still cleared)
    span_first, span_last = chunk_bounds(span_part, span_parts, planes)
    for task in range(span_first, span_last):
        plane = grad_input[task]
        fill(plane, 0)
        grad_row, where = grad_output[task], indices[task]
        for q in range(outputs):
            position = where[q]
            if 0 <= position < plane_size:
                plane[position] += grad_row[q]


def max_pool2d_backward(grad_output, indices, grad_input, kernel_h, kernel_w, stride_h, stride_w,
                        padding_h, padding_w):
    """grad_input: each output gradient is routed to the input position its maximum came from.
    Positions outside the plane (which max_pool2d_forward never makes) are skipped: a scatter must not
    write outside its output whatever it is given.

    The kernel sees each (n, c) plane as one flat row (views of contiguous arrays, else copies): a kernel
    over 2-D arrays compiles in half the time of one that reshapes 4-D planes inside (0.35 against 0.75
    CPU s on a cold JIT cache) and runs the same loop."""
    N, C, H, W = grad_input.shape
    OH, OW = min(grad_output.shape[2], indices.shape[2]), min(grad_output.shape[3], indices.shape[3])
    if min(grad_output.shape[0], indices.shape[0]) < N or min(grad_output.shape[1], indices.shape[1]) < C:
        OH = OW = 0  # mismatched batches: nothing valid to route (the planes are still cleared)
    grad_rows = _flat_planes(grad_output[:N, :C, :OH, :OW])
    index_rows = _flat_planes(indices[:N, :C, :OH, :OW])
    flat_input = grad_input.reshape(N * C, H * W) if grad_input.flags.c_contiguous else \
        np.empty((N * C, H * W), grad_input.dtype)
    parallel_parts(max_pool2d_backward_span, thread_count(grad_rows.size), grad_rows, index_rows, flat_input)
    if not grad_input.flags.c_contiguous:
        grad_input[...] = flat_input.reshape(N, C, H, W)


def _flat_planes(array):
    """(N, C, A, B) -> (N * C, A * B): a view of a C-contiguous array, else a contiguous copy."""
    N, C, A, B = array.shape
    return np.ascontiguousarray(array).reshape(N * C, A * B)


@njit(cache=True, inline="always")
def avg_pool_window(o, stride, padding, kernel, size, count_include_pad):
    """Clipped window [lo, hi) along one axis and that axis's share of the divisor."""
    start = o * stride - padding
    end = min(start + kernel, size + padding)
    padded_extent = end - start
    lo, hi = max(start, 0), min(end, size)
    if count_include_pad:
        return lo, hi, padded_extent
    return lo, hi, hi - lo


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def avg_pool2d_forward_span(span_part, span_parts, input, output, kernel_h, kernel_w, stride_h, stride_w, padding_h,
                            padding_w, count_include_pad):
    """avg_pool2d_forward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    OH, OW = output.shape[2], output.shape[3]
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n = task // C
        c = task % C
        plane = input[n, c]
        for oh in range(OH):
            h_lo, h_hi, h_count = avg_pool_window(oh, stride_h, padding_h, kernel_h, H, count_include_pad)
            for ow in range(OW):
                w_lo, w_hi, w_count = avg_pool_window(ow, stride_w, padding_w, kernel_w, W, count_include_pad)
                total = 0.0
                for ih in range(h_lo, h_hi):
                    for iw in range(w_lo, w_hi):
                        total += plane[ih, iw]
                output[n, c, oh, ow] = total / max(h_count * w_count, 1)


def avg_pool2d_forward(input, output, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w,
                       count_include_pad):
    """output = window mean; the divisor counts padding cells when count_include_pad is 1 (PyTorch's rule)."""
    parallel_parts(avg_pool2d_forward_span, thread_count(input.size), input, output, kernel_h, kernel_w, stride_h,
                   stride_w, padding_h, padding_w, count_include_pad)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def avg_pool2d_backward_span(span_part, span_parts, grad_output, grad_input, kernel_h, kernel_w, stride_h, stride_w,
                             padding_h, padding_w, count_include_pad):
    """avg_pool2d_backward over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = grad_input.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    span_first, span_last = chunk_bounds(span_part, span_parts, N * C)
    for task in range(span_first, span_last):
        n = task // C
        c = task % C
        plane = grad_input[n, c]
        fill_plane(plane, 0)
        for oh in range(OH):
            h_lo, h_hi, h_count = avg_pool_window(oh, stride_h, padding_h, kernel_h, H, count_include_pad)
            for ow in range(OW):
                w_lo, w_hi, w_count = avg_pool_window(ow, stride_w, padding_w, kernel_w, W, count_include_pad)
                share = grad_output[n, c, oh, ow] / max(h_count * w_count, 1)
                for ih in range(h_lo, h_hi):
                    for iw in range(w_lo, w_hi):
                        plane[ih, iw] += share


def avg_pool2d_backward(grad_output, grad_input, kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w,
                        count_include_pad):
    """grad_input: each output gradient spread evenly (by the forward's divisor) over its window."""
    parallel_parts(avg_pool2d_backward_span, thread_count(grad_output.size), grad_output, grad_input, kernel_h,
                   kernel_w, stride_h, stride_w, padding_h, padding_w, count_include_pad)


# serial: a pass over a small map (N*C*H*W of a network's last block) costs less than
# waking Numba's threads, and compiles in a third of the time of a parallel loop
@njit(cache=True, no_cfunc_wrapper=True)
def global_avg_pool2d_forward(input, output):
    """output (N, C, 1, 1) = mean of each (H, W) plane of input (N, C, H, W)."""
    N, C, H, W = input.shape
    for task in range(N * C):
        n = task // C
        c = task % C
        total = 0.0
        for ih in range(H):
            for iw in range(W):
                total += input[n, c, ih, iw]
        output[n, c, 0, 0] = total / (H * W)


# serial, as the forward
@njit(cache=True, no_cfunc_wrapper=True)
def global_avg_pool2d_backward(grad_output, grad_input):
    """grad_input (N, C, H, W) = grad_output (N, C, 1, 1) / (H * W), broadcast over each plane."""
    N, C, H, W = grad_input.shape
    for task in range(N * C):
        n = task // C
        c = task % C
        fill_plane(grad_input[n, c], grad_output[n, c, 0, 0] / (H * W))
