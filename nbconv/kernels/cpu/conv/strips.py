"""Stride-1 convolution by im2col over output rows, each row copied as whole 8-value strips.

wide.py unrolls whole padded rows, Wp values for each OW-wide output row, so its matrix products grow by
Wp/OW: 1.4x on LeNet-5's second layer (5x5 on 14x14, OW = 10). Unrolling output rows exactly (gemm.py's
im2col_rows) has no such waste but copies C*KH*KW*OH runs of OW values, and a copy loop of unknown, short
length costs more than the products it saves. Here each run is copied as ceil(OW/8) fixed blocks of 8
values, which LLVM turns into single vector moves: the last block runs past the row's OW values into the
next row's place (overwritten by the next copy) or into each col row's 8 values of slack, and reads up to
7 values past the run (inside the padded buffer's slack, or inside the image when unpadded; near an
unpadded image's end the copy is exact). The products then have exactly OH*OW columns and read the
output gradient and write the output in place: no spread of the output gradient, no compaction.

The input gradient's scatter (col2im) adds exact OW-value runs (8-value blocks, then the rest) into the
padded image gradient, or straight into grad_input when there is no padding.

Workspaces, one per parallel chunk: padded (C*slab*Wp + STRIP slack,), the padded rows a task reads (slab =
block_rows + (KH-1)*dh of them; a whole padded image for the input gradient; unused without padding); col
(C*KH*KW, block_rows*OW + STRIP). Tasks are blocks of output rows of an image for the forward and weight
gradient, whole images for the input gradient, as in wide.py.
"""
import numba
from numba import njit

from ..blas import NO_TRANS, TRANS, address, gemm, single_threaded
from ..shared import chunk_bounds, fill, fill_zero, sum_partials, task_rows
from ..threads import num_threads, parallel_parts
from ..vector_blocks import BLOCK, add_block, add_block_from, copy_block
from .blocks import block_rows, max_chunks
from .rows import crop_image, pad_rows

STRIP = BLOCK  # values a block copy moves: one 256-bit vector of float32


@njit(cache=True, inline="always")
def copy_rows(image, start, row_w, flat_col, target, out_w, rows, strips):
    """flat_col[target + r*OW + x] = image[start + r*row_w + x] for r < rows, x < strips*8 (the blocks'
    reads must lie inside image). One and two blocks a row get their own loops: a block loop of unknown
    length costs more than the move itself."""
    if strips == 1:
        for r in range(rows):
            copy_block(flat_col, target + r * out_w, image, start + r * row_w)
    elif strips == 2:
        for r in range(rows):
            copy_block(flat_col, target + r * out_w, image, start + r * row_w)
            copy_block(flat_col, target + r * out_w + STRIP, image, start + r * row_w + STRIP)
    else:
        for r in range(rows):
            for block in range(0, strips * STRIP, STRIP):
                copy_block(flat_col, target + r * out_w + block, image, start + r * row_w + block)


@njit(cache=True, no_cfunc_wrapper=True)
def im2col_strips(image, col, channels, first_row, rows, kernel_h, kernel_w, plane_rows, row_w, out_w,
                  dilation_h, dilation_w):
    """col[(c, i, j), r*OW + x] = image[(c*plane_rows + first_row + r + i*dh)*row_w + j*dw + x] for r < rows,
    x < OW, where image is flat (channels*plane_rows*row_w [+ slack],). Writes up to 7 values past each
    row's rows*OW (col rows have STRIP values of slack)."""
    strips = (out_w + STRIP - 1) // STRIP
    span = strips * STRIP
    size, width = image.shape[0], col.shape[1]
    flat_col = col.reshape(col.size)
    for c in range(channels):
        for i in range(kernel_h):
            for j in range(kernel_w):
                target = ((c * kernel_h + i) * kernel_w + j) * width
                start = (c * plane_rows + first_row + i * dilation_h) * row_w + j * dilation_w
                inside = rows  # rows whose blocks read inside the image: all but, unpadded, the last ones
                while inside > 0 and start + (inside - 1) * row_w + span > size:
                    inside -= 1
                copy_rows(image, start, row_w, flat_col, target, out_w, inside, strips)
                for r in range(inside, rows):  # nothing to read past an unpadded image's end: exact copies
                    for q in range(out_w):
                        flat_col[target + r * out_w + q] = image[start + r * row_w + q]


@njit(cache=True, no_cfunc_wrapper=True)
def col2im_strips(col, image, channels, first_row, rows, kernel_h, kernel_w, plane_rows, row_w, out_w,
                  dilation_h, dilation_w):
    """The adjoint of im2col_strips: image[...] += each col entry at the position it was read from (exact
    runs: 8-value blocks, then the run's last 8 values with the lanes the blocks covered masked off; a scalar
    loop for the rest was 4x slower than the blocks, each short loop vectorised with a costly set-up)."""
    width, whole = col.shape[1], out_w // STRIP * STRIP
    flat_col = col.reshape(col.size)
    for c in range(channels):
        for i in range(kernel_h):
            for j in range(kernel_w):
                source = ((c * kernel_h + i) * kernel_w + j) * width
                start = (c * plane_rows + first_row + i * dilation_h) * row_w + j * dilation_w
                if whole == STRIP:  # one block a row (OW 8-15): no block loop
                    for r in range(rows):
                        add_block(image, start + r * row_w, flat_col, source + r * out_w)
                else:
                    for r in range(rows):
                        for block in range(0, whole, STRIP):
                            add_block(image, start + r * row_w + block, flat_col, source + r * out_w + block)
                if whole == out_w:
                    continue
                if whole > 0:  # the rest: the run's last 8 values, without those the blocks added
                    for r in range(rows):
                        add_block_from(image, start + r * row_w + out_w - STRIP, flat_col,
                                       source + r * out_w + out_w - STRIP, whole - out_w + STRIP)
                else:  # runs shorter than a block, one value at a time
                    for r in range(rows):
                        for q in range(out_w):
                            image[start + r * row_w + q] += flat_col[source + r * out_w + q]


@njit(cache=True, no_cfunc_wrapper=True)
def unroll_task(input, slab, col, n, oh0, rows, kernel_h, kernel_w, out_w, padding_h, padding_w, dilation_h,
                dilation_w):
    """Unroll the input rows that image n's output rows [oh0, oh0 + rows) read into col: from the image
    itself when unpadded, else through slab, a padded copy of those rows."""
    C, H, W = input.shape[1], input.shape[2], input.shape[3]
    if padding_h == 0 and padding_w == 0:
        im2col_strips(input[n].reshape(C * H * W), col, C, oh0, rows, kernel_h, kernel_w, H, W, out_w,
                      dilation_h, dilation_w)
    else:
        slab_rows, padded_w = rows + (kernel_h - 1) * dilation_h, W + 2 * padding_w
        pad_rows(input[n], slab, oh0, slab_rows, padding_h, padding_w, padded_w)
        im2col_strips(slab, col, C, numba.int64(0), rows, kernel_h, kernel_w, slab_rows, padded_w, out_w,
                      dilation_h, dilation_w)  # an int64 0, not a literal: one im2col_strips for both branches


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_forward_strips_span(span_part, span_parts, input, weight, bias, output, padded, col, padding_h, padding_w,
                               dilation_h, dilation_w, groups):
    """conv2d_forward_strips over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    D, Cg, KH, KW = weight.shape
    OH, OW = output.shape[2], output.shape[3]
    P, depth, Dg = OH * OW, Cg * KH * KW, D // groups
    chunks, block_rows = col.shape[0], (col.shape[2] - STRIP) // OW
    blocks = (OH + block_rows - 1) // block_rows
    has_bias = bias.shape[0] > 0
    size = output.itemsize
    flat_output = output.reshape((N, D, P))
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        slab, buffer = padded[chunk], col[chunk]
        first, last = chunk_bounds(chunk, chunks, N * blocks)
        for task in range(first, last):
            n, oh0, oh1 = task_rows(task, blocks, block_rows, OH)
            unroll_task(input, slab, buffer, n, oh0, oh1 - oh0, KH, KW, OW, padding_h, padding_w, dilation_h,
                        dilation_w)
            if has_bias:
                for d in range(D):
                    fill(flat_output[n, d, oh0 * OW:oh1 * OW], bias[d])
            for g in range(groups):
                gemm(NO_TRANS, NO_TRANS, Dg, (oh1 - oh0) * OW, depth, 1.0, address(weight, g * Dg * depth), depth,
                     address(buffer, g * depth * buffer.shape[1]), buffer.shape[1], 1.0 if has_bias else 0.0,
                     address(output, (n * D + g * Dg) * P + oh0 * OW), P, size)


def conv2d_forward_strips(input, weight, bias, output, padded, col, padding_h, padding_w, dilation_h, dilation_w,
                          groups):
    """output[n, g's channels, rows] = weight_g @ col_g(input[n], rows) + bias, written in place."""
    parallel_parts(conv2d_forward_strips_span, num_threads(), input, weight, bias, output, padded, col,
                   padding_h, padding_w, dilation_h, dilation_w, groups)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_input_strips_span(span_part, span_parts, grad_output, weight, grad_input, padded, col, padding_h,
                                      padding_w, dilation_h, dilation_w, groups):
    """conv2d_backward_input_strips over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = grad_input.shape
    D, Cg, KH, KW = weight.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    P, depth, Dg = OH * OW, Cg * KH * KW, D // groups
    padded_h, padded_w = H + 2 * padding_h, W + 2 * padding_w
    unpadded = padding_h == 0 and padding_w == 0
    chunks, block_rows = col.shape[0], (col.shape[2] - STRIP) // OW
    size = grad_output.itemsize
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        image_buffer, buffer = padded[chunk], col[chunk]
        first, last = chunk_bounds(chunk, chunks, N)
        for n in range(first, last):
            target = grad_input[n].reshape(C * H * W) if unpadded else image_buffer
            fill_zero(target)
            for oh0 in range(0, OH, block_rows):
                rows = min(block_rows, OH - oh0)
                for g in range(groups):
                    gemm(TRANS, NO_TRANS, depth, rows * OW, Dg, 1.0, address(weight, g * Dg * depth), depth,
                         address(grad_output, (n * D + g * Dg) * P + oh0 * OW), P, 0.0,
                         address(buffer, g * depth * buffer.shape[1]), buffer.shape[1], size)
                col2im_strips(buffer, target, C, oh0, rows, KH, KW, padded_h, padded_w, OW, dilation_h, dilation_w)
            if not unpadded:
                crop_image(image_buffer, grad_input[n], padding_h, padding_w, padded_h, padded_w)


def conv2d_backward_input_strips(grad_output, weight, grad_input, padded, col, padding_h, padding_w, dilation_h,
                                 dilation_w, groups):
    """grad_input[n] = crop(col2im(weight_g.T @ grad_output[n, g])) per group, a whole image a task; without
    padding the scatter adds straight into grad_input[n]."""
    parallel_parts(conv2d_backward_input_strips_span, num_threads(), grad_output, weight, grad_input, padded,
                   col, padding_h, padding_w, dilation_h, dilation_w, groups)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_weight_strips_span(span_part, span_parts, grad_output, input, grad_weight, padded, col, partial,
                                       padding_h, padding_w, dilation_h, dilation_w, groups):
    """conv2d_backward_weight_strips over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    D, Cg, KH, KW = grad_weight.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    P, depth, Dg = OH * OW, Cg * KH * KW, D // groups
    chunks, block_rows = col.shape[0], (col.shape[2] - STRIP) // OW
    blocks = (OH + block_rows - 1) // block_rows
    size = input.itemsize
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        slab, buffer = padded[chunk], col[chunk]
        first, last = chunk_bounds(chunk, chunks, N * blocks)
        for task in range(first, last):
            n, oh0, oh1 = task_rows(task, blocks, block_rows, OH)
            unroll_task(input, slab, buffer, n, oh0, oh1 - oh0, KH, KW, OW, padding_h, padding_w, dilation_h,
                        dilation_w)
            for g in range(groups):
                gemm(NO_TRANS, TRANS, depth, Dg, (oh1 - oh0) * OW, 1.0,
                     address(buffer, g * depth * buffer.shape[1]), buffer.shape[1],
                     address(grad_output, (n * D + g * Dg) * P + oh0 * OW), P,
                     0.0 if task == first else 1.0, address(partial[chunk], g * depth * Dg), Dg, size)


def conv2d_backward_weight_strips(grad_output, input, grad_weight, padded, col, partial, padding_h, padding_w,
                                  dilation_h, dilation_w, groups):
    """grad_weight = sum over tasks of col(input[n], rows) @ grad_output[n, :, rows].T, as transposed partial
    sums per chunk (groups, C/groups*KH*KW, D/groups) added in chunk order (see wide.py)."""
    parallel_parts(conv2d_backward_weight_strips_span, num_threads(), grad_output, input, grad_weight, padded,
                   col, partial, padding_h, padding_w, dilation_h, dilation_w, groups)
    sum_partials(partial, grad_weight)


# The plan's surface: applies, buffers and the three passes (see plan.py).
def applies(pass_, convolution):
    """Stride 1, every pass."""
    return convolution.stride_h == convolution.stride_w == 1


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer, one of each per parallel chunk: padded (C*slab*Wp +
    STRIP,), the padded rows a task reads (a whole padded image for the input gradient); col (C*KH*KW,
    block_rows*OW + STRIP); the weight gradient adds partial_sums (chunks, groups, C/groups*KH*KW,
    D/groups)."""
    N, C, H, W = convolution.input_shape
    D, Cg, KH, KW = convolution.weight_shape
    _, _, OH, OW = convolution.output_shape
    padded_w = W + 2 * convolution.padding_w
    depth = C * KH * KW
    rows = block_rows(depth, OW, OH, itemsize)
    whole_images = pass_ == "backward_input"
    slab_rows = H + 2 * convolution.padding_h if whole_images else rows + (KH - 1) * convolution.dilation_h
    tasks = N if whole_images else N * -(-OH // rows)
    chunks = max(1, min(tasks, max_chunks(pass_, threads, Cg * KH * KW * D * itemsize)))
    own = (("padded", "padded", (chunks, C * slab_rows * padded_w + STRIP)),
           ("col", "col", (chunks, depth, rows * OW + STRIP)))
    if pass_ == "backward_weight":
        groups = convolution.groups
        return own + (("partial_sums", "partial", (chunks, groups, Cg * KH * KW, D // groups)),)
    return own


def forward(input, weight, bias, output, buffers, plan):
    with single_threaded():
        conv2d_forward_strips(input, weight, bias, output, buffers["padded"], buffers["col"],
                              *plan.convolution.hyper[2:])


def backward_input(grad_output, weight, grad_input, buffers, plan):
    with single_threaded():
        conv2d_backward_input_strips(grad_output, weight, grad_input, buffers["padded"], buffers["col"],
                                     *plan.convolution.hyper[2:])


def backward_weight(grad_output, input, grad_weight, buffers, plan):
    with single_threaded():
        conv2d_backward_weight_strips(grad_output, input, grad_weight, buffers["padded"], buffers["col"],
                                      buffers["partial_sums"], *plan.convolution.hyper[2:])
