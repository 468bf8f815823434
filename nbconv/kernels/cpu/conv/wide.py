"""Stride-1 convolution by "wide" im2col: whole padded rows instead of output rows.

With stride 1, the window tap (c, i, j) of the output rows [oh0, oh0 + rows) reads, in the zero-padded
image (C, Hp, Wp) laid out flat, the one contiguous run that starts at (c*Hp + oh0 + i*dh)*Wp + j*dw and
is rows*Wp long, if each output row is taken Wp wide instead of OW wide. So a col row is one long copy
(against OW-long pieces, rows*KH*KW of them, in im2col_rows), at the price of Wp - OW extra columns per row
whose results are dropped: the matrix products grow by Wp/OW (1.4x for LeNet-5's conv2, 1.04x for a 3x3
on 56x56), the unrolling gets about 4x cheaper. The extra columns of a gradient are zero, so they add
nothing, and they only ever read inside the padded buffer, which has (KW-1)*dw zeros of slack at its end.

Workspaces, one per parallel chunk: padded (C*slab*Wp + slack,), the padded rows a block of output rows
reads (slab = block_rows + (KH-1)*dh of them), col (C*KH*KW, block_rows*Wp) and wide (D, block_rows*Wp),
the product's output before compaction or the output gradient spread to Wp columns. A task of the
forward and weight kernels is one block of rows of one image, as in gemm.py; one of the input-gradient
kernel is a whole image, whose padded gradient its blocks add into.
"""
from numba import njit

from ..blas import NO_TRANS, TRANS, address, gemm, single_threaded
from ..shared import chunk_bounds, fill_zero, sum_partials, task_rows
from ..threads import num_threads, parallel_parts
from .blocks import block_rows, max_chunks
from .rows import compact_rows, crop_image, pad_rows, spread_rows


@njit(cache=True, no_cfunc_wrapper=True)
def im2col_wide(padded, col, channels, oh0, rows, kernel_h, kernel_w, padded_h, padded_w, dilation_h, dilation_w):
    """col[(c, i, j), r*Wp + x] = padded[c, oh0 + r + i*dh, x + j*dw] for r < rows, x < Wp, where padded
    holds padded_h rows a channel."""
    length = rows * padded_w
    for c in range(channels):
        for i in range(kernel_h):
            for j in range(kernel_w):
                start = (c * padded_h + oh0 + i * dilation_h) * padded_w + j * dilation_w
                source = padded[start:start + length]
                target = col[(c * kernel_h + i) * kernel_w + j]
                for q in range(length):
                    target[q] = source[q]


@njit(cache=True, no_cfunc_wrapper=True)
def col2im_wide(col, padded, channels, oh0, rows, kernel_h, kernel_w, padded_h, padded_w, dilation_h, dilation_w):
    """The adjoint of im2col_wide: padded[...] += each col entry at the position it was read from."""
    length = rows * padded_w
    for c in range(channels):
        for i in range(kernel_h):
            for j in range(kernel_w):
                start = (c * padded_h + oh0 + i * dilation_h) * padded_w + j * dilation_w
                target = padded[start:start + length]
                source = col[(c * kernel_h + i) * kernel_w + j]
                for q in range(length):
                    target[q] += source[q]


@njit(cache=True, no_cfunc_wrapper=True)
def unroll_task(input, slab, col, task, blocks, block_rows, out_h, kernel_h, kernel_w, padding_h, padding_w,
                dilation_h, dilation_w):
    """Pad the input rows that one task's block of output rows reads into slab, and unroll them into col.
    Returns (image n, first output row, number of rows)."""
    n, oh0, oh1 = task_rows(task, blocks, block_rows, out_h)
    rows, slab_rows = oh1 - oh0, oh1 - oh0 + (kernel_h - 1) * dilation_h
    padded_w = input.shape[3] + 2 * padding_w
    pad_rows(input[n], slab, oh0, slab_rows, padding_h, padding_w, padded_w)
    im2col_wide(slab, col, input.shape[1], 0, rows, kernel_h, kernel_w, slab_rows, padded_w, dilation_h, dilation_w)
    return n, oh0, rows


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_forward_wide_span(span_part, span_parts, input, weight, bias, output, padded, col, wide, padding_h,
                             padding_w, dilation_h, dilation_w, groups):
    """conv2d_forward_wide over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    D, Cg, KH, KW = weight.shape
    OH = output.shape[2]
    padded_w = W + 2 * padding_w
    depth, Dg = Cg * KH * KW, D // groups
    chunks, block_rows = col.shape[0], col.shape[2] // padded_w
    blocks = (OH + block_rows - 1) // block_rows
    size = output.itemsize
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        slab, buffer, product = padded[chunk], col[chunk], wide[chunk]
        first, last = chunk_bounds(chunk, chunks, N * blocks)
        for task in range(first, last):
            n, oh0, rows = unroll_task(input, slab, buffer, task, blocks, block_rows, OH, KH, KW, padding_h,
                                       padding_w, dilation_h, dilation_w)
            for g in range(groups):
                gemm(NO_TRANS, NO_TRANS, Dg, rows * padded_w, depth, 1.0, address(weight, g * Dg * depth), depth,
                     address(buffer, g * depth * buffer.shape[1]), buffer.shape[1], 0.0,
                     address(product, g * Dg * product.shape[1]), product.shape[1], size)
            compact_rows(product, output, n, oh0, rows, padded_w, bias)


def conv2d_forward_wide(input, weight, bias, output, padded, col, wide, padding_h, padding_w, dilation_h,
                        dilation_w, groups):
    """output[n, :, rows] = weight @ wide-im2col(input[n], rows) (+ bias), compacted from Wp to OW columns."""
    parallel_parts(conv2d_forward_wide_span, num_threads(), input, weight, bias, output, padded, col, wide,
                   padding_h, padding_w, dilation_h, dilation_w, groups)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_input_wide_span(span_part, span_parts, grad_output, weight, grad_input, padded, col, wide,
                                    padding_h, padding_w, dilation_h, dilation_w, groups):
    """conv2d_backward_input_wide over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = grad_input.shape
    D, Cg, KH, KW = weight.shape
    OH = grad_output.shape[2]
    padded_h, padded_w = H + 2 * padding_h, W + 2 * padding_w
    depth, Dg = Cg * KH * KW, D // groups
    chunks, block_rows = col.shape[0], col.shape[2] // padded_w
    size = grad_output.itemsize
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        image_buffer, buffer, spread = padded[chunk], col[chunk], wide[chunk]
        first, last = chunk_bounds(chunk, chunks, N)
        for n in range(first, last):
            fill_zero(image_buffer)
            for oh0 in range(0, OH, block_rows):
                rows = min(block_rows, OH - oh0)
                spread_rows(grad_output, spread, n, oh0, rows, padded_w)
                for g in range(groups):
                    gemm(TRANS, NO_TRANS, depth, rows * padded_w, Dg, 1.0, address(weight, g * Dg * depth), depth,
                         address(spread, g * Dg * spread.shape[1]), spread.shape[1], 0.0,
                         address(buffer, g * depth * buffer.shape[1]), buffer.shape[1], size)
                col2im_wide(buffer, image_buffer, C, oh0, rows, KH, KW, padded_h, padded_w, dilation_h, dilation_w)
            crop_image(image_buffer, grad_input[n], padding_h, padding_w, padded_h, padded_w)


def conv2d_backward_input_wide(grad_output, weight, grad_input, padded, col, wide, padding_h, padding_w,
                               dilation_h, dilation_w, groups):
    """grad_input[n] = crop(wide-col2im(weight.T @ spread(grad_output[n]))), a whole image a task."""
    parallel_parts(conv2d_backward_input_wide_span, num_threads(), grad_output, weight, grad_input, padded,
                   col, wide, padding_h, padding_w, dilation_h, dilation_w, groups)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_weight_wide_span(span_part, span_parts, grad_output, input, grad_weight, padded, col, wide, partial,
                                     padding_h, padding_w, dilation_h, dilation_w, groups):
    """conv2d_backward_weight_wide over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    D, Cg, KH, KW = grad_weight.shape
    OH = grad_output.shape[2]
    padded_w = W + 2 * padding_w
    depth, Dg = Cg * KH * KW, D // groups
    chunks, block_rows = col.shape[0], col.shape[2] // padded_w
    blocks = (OH + block_rows - 1) // block_rows
    size = input.itemsize
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        slab, buffer, spread = padded[chunk], col[chunk], wide[chunk]
        first, last = chunk_bounds(chunk, chunks, N * blocks)
        for task in range(first, last):
            n, oh0, rows = unroll_task(input, slab, buffer, task, blocks, block_rows, OH, KH, KW, padding_h,
                                       padding_w, dilation_h, dilation_w)
            spread_rows(grad_output, spread, n, oh0, rows, padded_w)
            for g in range(groups):
                gemm(NO_TRANS, TRANS, depth, Dg, rows * padded_w, 1.0,
                     address(buffer, g * depth * buffer.shape[1]), buffer.shape[1],
                     address(spread, g * Dg * spread.shape[1]), spread.shape[1],
                     0.0 if task == first else 1.0, address(partial[chunk], g * depth * Dg), Dg, size)


def conv2d_backward_weight_wide(grad_output, input, grad_weight, padded, col, wide, partial, padding_h, padding_w,
                                dilation_h, dilation_w, groups):
    """grad_weight = sum over tasks of wide-im2col(input[n], rows) @ spread(grad_output[n, :, rows]).T.

    Like conv2d_backward_weight_gemm: transposed partial sums per chunk (groups, C/groups*KH*KW, D/groups),
    added in chunk order."""
    parallel_parts(conv2d_backward_weight_wide_span, num_threads(), grad_output, input, grad_weight, padded,
                   col, wide, partial, padding_h, padding_w, dilation_h, dilation_w, groups)
    sum_partials(partial, grad_weight)


# The plan's surface: applies, buffers and the three passes (see plan.py).
def applies(pass_, convolution):
    """Stride 1, every pass."""
    return convolution.stride_h == convolution.stride_w == 1


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer, one of each per parallel chunk: padded (C*slab*Wp +
    slack,), the padded rows a task reads; col (C*KH*KW, block_rows*Wp); wide (D, block_rows*Wp); the
    weight gradient adds partial_sums (chunks, groups, C/groups*KH*KW, D/groups). Tasks are whole images
    for the input gradient (slab = Hp), else blocks of rows of an image."""
    N, C, H, W = convolution.input_shape
    D, Cg, KH, KW = convolution.weight_shape
    OH = convolution.output_shape[2]
    padded_w = W + 2 * convolution.padding_w
    depth = C * KH * KW
    rows = block_rows(depth, padded_w, OH, itemsize)
    whole_images = pass_ == "backward_input"
    slab_rows = H + 2 * convolution.padding_h if whole_images else rows + (KH - 1) * convolution.dilation_h
    tasks = N if whole_images else N * -(-OH // rows)
    chunks = max(1, min(tasks, max_chunks(pass_, threads, Cg * KH * KW * D * itemsize)))
    slack = (KW - 1) * convolution.dilation_w
    own = (("padded", "padded", (chunks, C * slab_rows * padded_w + slack)),
           ("col", "col", (chunks, depth, rows * padded_w)),
           ("wide", "wide", (chunks, D, rows * padded_w)))
    if pass_ == "backward_weight":
        groups = convolution.groups
        return own + (("partial_sums", "partial", (chunks, groups, Cg * KH * KW, D // groups)),)
    return own


def forward(input, weight, bias, output, buffers, plan):
    with single_threaded():
        conv2d_forward_wide(input, weight, bias, output, buffers["padded"], buffers["col"], buffers["wide"],
                            *plan.convolution.hyper[2:])


def backward_input(grad_output, weight, grad_input, buffers, plan):
    with single_threaded():
        conv2d_backward_input_wide(grad_output, weight, grad_input, buffers["padded"], buffers["col"],
                                   buffers["wide"], *plan.convolution.hyper[2:])


def backward_weight(grad_output, input, grad_weight, buffers, plan):
    with single_threaded():
        conv2d_backward_weight_wide(grad_output, input, grad_weight, buffers["padded"], buffers["col"],
                                    buffers["wide"], buffers["partial_sums"], *plan.convolution.hyper[2:])
