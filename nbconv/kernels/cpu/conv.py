"""2-D convolution (cross-correlation) kernels for the CPU.

Shapes: input (N, C, H, W), weight (D, C // groups, KH, KW), bias (D,) or (0,) for none,
output (N, D, OH, OW). Every kernel overwrites its outputs completely, so callers may pass
uninitialised buffers.

Two algorithms:
- im2col + GEMM (the default): an @njit kernel unrolls the input's windows into a matrix
  col (C*KH*KW, N*OH*OW), one matrix product per group does the arithmetic, and @njit kernels
  scatter the result back (col2im) or re-lay it out. The product goes through numpy's BLAS:
  Numba's own np.dot inside @njit needs SciPy, which nbconv does not depend on.
- direct loop nests (`*_direct`) for depthwise convolutions (one input channel per group), where a
  matrix product per group would be tiny. Their innermost loop runs over a precomputed valid range
  of output columns, so it has no bounds test and LLVM can vectorise it.
"""
import numba
import numpy as np
from numba import njit, prange

from .blas import NO_TRANS, TRANS, address, gemm, single_threaded
from .workspace import scratch

_REDUCE = {"reassoc", "contract", "nsz"}


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
def scaled_add(target, source, scale, stride):
    """target[q] += scale * source[q * stride] for every q of target (views indexed from 0)."""
    for q in range(target.shape[0]):
        target[q] += scale * source[q * stride]


@njit(cache=True, inline="always", fastmath=_REDUCE)
def strided_dot(values, source, stride):
    """sum over q of values[q] * source[q * stride]."""
    total = values.dtype.type(0)
    for q in range(values.shape[0]):
        total += values[q] * source[q * stride]
    return total


@njit(cache=True, inline="always")
def scatter_add(target, values, scale, stride):
    """target[q * stride] += scale * values[q] for every q of values."""
    for q in range(values.shape[0]):
        target[q * stride] += scale * values[q]


# The direct kernels' inner loops run over views, with a literal 1 passed for unit strides so that LLVM
# specialises (and vectorises) them; with computed indices Numba's negative-index handling prevents that.

@njit(parallel=True, cache=True)
def conv2d_forward_direct(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w,
                          dilation_h, dilation_w, groups):
    """output[n, d] = bias[d] + sum_{c, i, j} weight[d, c, i, j] * padded_input[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw]."""
    N, C, H, W = input.shape
    D, Cg, KH, KW = weight.shape
    OH, OW = output.shape[2], output.shape[3]
    Dg = D // groups
    has_bias = bias.shape[0] > 0
    for task in prange(N * D):
        n = task // D
        d = task % D
        g = d // Dg
        out = output[n, d]
        out[:, :] = bias[d] if has_bias else 0
        for c in range(Cg):
            plane = input[n, g * Cg + c]
            for i in range(KH):
                offset_h = i * dilation_h - padding_h
                oh_lo, oh_hi = valid_range(OH, H, stride_h, offset_h)
                for j in range(KW):
                    offset_w = j * dilation_w - padding_w
                    ow_lo, ow_hi = valid_range(OW, W, stride_w, offset_w)
                    if ow_lo >= ow_hi:
                        continue
                    w = weight[d, c, i, j]
                    for oh in range(oh_lo, oh_hi):
                        target = out[oh, ow_lo:ow_hi]
                        source = plane[oh * stride_h + offset_h, ow_lo * stride_w + offset_w:]
                        if stride_w == 1:
                            scaled_add(target, source, w, 1)
                        else:
                            scaled_add(target, source, w, stride_w)


@njit(parallel=True, cache=True)
def conv2d_backward_input_direct(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w,
                                 dilation_h, dilation_w, groups):
    """grad_input (N, C, H, W) from grad_output (N, D, OH, OW); each task owns one input plane."""
    N, C, H, W = grad_input.shape
    D, Cg, KH, KW = weight.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    Dg = D // groups
    for task in prange(N * C):
        n = task // C
        channel = task % C
        g = channel // Cg
        c = channel % Cg
        plane = grad_input[n, channel]
        plane[:, :] = 0
        for dd in range(Dg):
            d = g * Dg + dd
            grad_plane = grad_output[n, d]
            for i in range(KH):
                offset_h = i * dilation_h - padding_h
                oh_lo, oh_hi = valid_range(OH, H, stride_h, offset_h)
                for j in range(KW):
                    offset_w = j * dilation_w - padding_w
                    ow_lo, ow_hi = valid_range(OW, W, stride_w, offset_w)
                    if ow_lo >= ow_hi:
                        continue
                    w = weight[d, c, i, j]
                    for oh in range(oh_lo, oh_hi):
                        target = plane[oh * stride_h + offset_h, ow_lo * stride_w + offset_w:]
                        values = grad_plane[oh, ow_lo:ow_hi]
                        if stride_w == 1:
                            scatter_add(target, values, w, 1)
                        else:
                            scatter_add(target, values, w, stride_w)


@njit(parallel=True, cache=True, fastmath=_REDUCE)
def conv2d_backward_weight_direct(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w,
                                  dilation_h, dilation_w, groups):
    """grad_weight (D, C // groups, KH, KW), summed over the batch; each task owns one (d, c) filter slice."""
    N, C, H, W = input.shape
    D, Cg, KH, KW = grad_weight.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    Dg = D // groups
    for task in prange(D * Cg):
        d = task // Cg
        c = task % Cg
        channel = (d // Dg) * Cg + c
        for i in range(KH):
            offset_h = i * dilation_h - padding_h
            oh_lo, oh_hi = valid_range(OH, H, stride_h, offset_h)
            for j in range(KW):
                offset_w = j * dilation_w - padding_w
                ow_lo, ow_hi = valid_range(OW, W, stride_w, offset_w)
                total = grad_weight.dtype.type(0)
                if ow_lo < ow_hi:
                    for n in range(N):
                        plane = input[n, channel]
                        grad_plane = grad_output[n, d]
                        for oh in range(oh_lo, oh_hi):
                            values = grad_plane[oh, ow_lo:ow_hi]
                            source = plane[oh * stride_h + offset_h, ow_lo * stride_w + offset_w:]
                            if stride_w == 1:
                                total += strided_dot(values, source, 1)
                            else:
                                total += strided_dot(values, source, stride_w)
                grad_weight[d, c, i, j] = total


@njit(parallel=True, cache=True, fastmath=_REDUCE)
def conv2d_backward_bias(grad_output, grad_bias):
    """grad_bias (D,) = grad_output (N, D, OH, OW) summed over N, OH, OW."""
    N, D, OH, OW = grad_output.shape
    for d in prange(D):
        total = grad_bias.dtype.type(0)
        for n in range(N):
            for oh in range(OH):
                for ow in range(OW):
                    total += grad_output[n, d, oh, ow]
        grad_bias[d] = total



# ----------------------------------------------------------------------------- im2col + GEMM
#
# The batch is cut into tasks of one image and one block of its output rows, sized so that the block's
# unrolled windows ("col", (C*KH*KW, rows*OW)) stay in the core's cache. Each parallel
# chunk of tasks owns one col buffer and calls the single-threaded BLAS itself, writing straight into the
# (N, D, OH*OW) output: no whole-batch col matrix, no re-layout pass, no second thread pool.

CACHE_BYTES = 512 * 1024  # a col block's budget: most of a core's L2
WEIGHT_CHUNKS = 16  # partial weight gradients summed in a fixed order, whatever the thread count


@njit(cache=True, inline="always")
def fill_zero(array):
    """array[:] = 0 for a 1-D array (an explicit loop: Numba's scalar slice assignment is far slower)."""
    for q in range(array.shape[0]):
        array[q] = 0


@njit(cache=True, inline="always")
def im2col_rows(image, col, oh0, oh1, kernel_h, kernel_w, out_w, stride_h, stride_w, padding_h, padding_w,
                dilation_h, dilation_w):
    """col[(c, i, j), (oh - oh0)*OW + ow] = padded image[c, oh*sh + i*dh - ph, ow*sw + j*dw - pw] for the
    output rows oh in [oh0, oh1); zero where the window reads padding. image (C, H, W), col (C*KH*KW, >=).

    Copies go through slice views indexed from 0: with computed indices Numba's negative-index handling
    keeps LLVM from vectorising the copy (measured 4x slower on LeNet-5's layers).
    """
    C, H, W = image.shape
    for i in range(kernel_h):
        offset_h = i * dilation_h - padding_h
        row_lo, row_hi = valid_range(oh1, H, stride_h, offset_h)
        row_lo, row_hi = max(row_lo, oh0), max(min(row_hi, oh1), oh0)
        for j in range(kernel_w):
            offset_w = j * dilation_w - padding_w
            ow_lo, ow_hi = valid_range(out_w, W, stride_w, offset_w)
            for c in range(C):
                target = col[(c * kernel_h + i) * kernel_w + j]
                fill_zero(target[:(row_lo - oh0) * out_w])
                fill_zero(target[(row_hi - oh0) * out_w:(oh1 - oh0) * out_w])
                for oh in range(row_lo, row_hi):
                    window = target[(oh - oh0) * out_w:(oh - oh0 + 1) * out_w]
                    source = image[c, oh * stride_h + offset_h]
                    for ow in range(ow_lo):
                        window[ow] = 0
                    inside = window[ow_lo:ow_hi]
                    if stride_w == 1:
                        shifted = source[ow_lo + offset_w:ow_hi + offset_w]
                        for q in range(ow_hi - ow_lo):
                            inside[q] = shifted[q]
                    else:
                        for q in range(ow_hi - ow_lo):
                            inside[q] = source[(ow_lo + q) * stride_w + offset_w]
                    for ow in range(ow_hi, out_w):
                        window[ow] = 0


@njit(cache=True, inline="always")
def col2im_rows(col, grad_image, oh0, oh1, kernel_h, kernel_w, out_w, stride_h, stride_w, padding_h, padding_w,
                dilation_h, dilation_w):
    """The adjoint of im2col_rows: grad_image[c, ih, iw] += every col entry that read (ih, iw)."""
    C, H, W = grad_image.shape
    for i in range(kernel_h):
        offset_h = i * dilation_h - padding_h
        row_lo, row_hi = valid_range(oh1, H, stride_h, offset_h)
        row_lo, row_hi = max(row_lo, oh0), max(min(row_hi, oh1), oh0)
        for j in range(kernel_w):
            offset_w = j * dilation_w - padding_w
            ow_lo, ow_hi = valid_range(out_w, W, stride_w, offset_w)
            for c in range(C):
                source = col[(c * kernel_h + i) * kernel_w + j]
                for oh in range(row_lo, row_hi):
                    inside = source[(oh - oh0) * out_w + ow_lo:(oh - oh0) * out_w + ow_hi]
                    row = grad_image[c, oh * stride_h + offset_h]
                    if stride_w == 1:
                        shifted = row[ow_lo + offset_w:ow_hi + offset_w]
                        for q in range(ow_hi - ow_lo):
                            shifted[q] += inside[q]
                    else:
                        for q in range(ow_hi - ow_lo):
                            row[(ow_lo + q) * stride_w + offset_w] += inside[q]


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
def unrolled(input, buffer, n, oh0, oh1, pointwise, kernel_h, kernel_w, out_w, stride_h, stride_w, padding_h,
             padding_w, dilation_h, dilation_w):
    """(address, row stride in elements) of image n's unrolled windows for the output rows [oh0, oh1): the
    input itself for a pointwise convolution, else `buffer` filled by im2col_rows."""
    if pointwise:
        return address(input, n * input[0].size + oh0 * out_w), input.shape[2] * input.shape[3]
    if stride_w == 1:  # a literal 1 lets LLVM specialise the copy loops (4x faster on LeNet-5's layers)
        im2col_rows(input[n], buffer, oh0, oh1, kernel_h, kernel_w, out_w, stride_h, 1, padding_h, padding_w,
                    dilation_h, dilation_w)
    else:
        im2col_rows(input[n], buffer, oh0, oh1, kernel_h, kernel_w, out_w, stride_h, stride_w, padding_h,
                    padding_w, dilation_h, dilation_w)
    return address(buffer, 0), buffer.shape[1]


@njit(parallel=True, cache=True)
def conv2d_forward_gemm(input, weight, bias, output, col, stride_h, stride_w, padding_h, padding_w,
                        dilation_h, dilation_w, groups, pointwise):
    """output[n, group g's Dg channels, rows] = weight_g (Dg, Cg*KH*KW) @ col_g (Cg*KH*KW, rows*OW) + bias.

    col: (chunks, C*KH*KW, block_rows*OW) workspace; pointwise (1x1, stride 1, no padding) reads the
    input directly.
    """
    N, C, H, W = input.shape
    D, Cg, KH, KW = weight.shape
    OH, OW = output.shape[2], output.shape[3]
    P, depth, Dg = OH * OW, Cg * KH * KW, D // groups
    chunks, block_rows = col.shape[0], col.shape[2] // OW
    blocks = (OH + block_rows - 1) // block_rows
    has_bias = bias.shape[0] > 0
    size = output.itemsize
    flat_output = output.reshape((N, D, P))
    for chunk in prange(chunks):
        buffer = col[chunk]
        first, last = chunk_bounds(chunk, chunks, N * blocks)
        for task in range(first, last):
            n, oh0, oh1 = task_rows(task, blocks, block_rows, OH)
            source, source_ld = unrolled(input, buffer, n, oh0, oh1, pointwise, KH, KW, OW, stride_h, stride_w,
                                         padding_h, padding_w, dilation_h, dilation_w)
            if has_bias:
                for d in range(D):
                    flat_output[n, d, oh0 * OW:oh1 * OW] = bias[d]
            for g in range(groups):
                gemm(NO_TRANS, NO_TRANS, Dg, (oh1 - oh0) * OW, depth, 1.0, address(weight, g * Dg * depth), depth,
                     source + g * depth * source_ld * size, source_ld, 1.0 if has_bias else 0.0,
                     address(output, (n * D + g * Dg) * P + oh0 * OW), P, size)


@njit(parallel=True, cache=True)
def conv2d_backward_input_gemm(grad_output, weight, grad_input, col, stride_h, stride_w, padding_h, padding_w,
                               dilation_h, dilation_w, groups, pointwise):
    """grad_input[n] = col2im(weight_g.T @ grad_output[n, g]) per group. A task is a whole image, so the
    scatter of overlapping windows never races."""
    N, C, H, W = grad_input.shape
    D, Cg, KH, KW = weight.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    P, depth, Dg = OH * OW, Cg * KH * KW, D // groups
    chunks, block_rows = col.shape[0], col.shape[2] // OW
    size = grad_output.itemsize
    for chunk in prange(chunks):
        buffer = col[chunk]
        first, last = chunk_bounds(chunk, chunks, N)
        for n in range(first, last):
            if pointwise:
                for g in range(groups):
                    gemm(TRANS, NO_TRANS, depth, P, Dg, 1.0, address(weight, g * Dg * depth), depth,
                         address(grad_output, (n * D + g * Dg) * P), P, 0.0,
                         address(grad_input, (n * C + g * Cg) * P), P, size)
                continue
            grad_input[n] = 0
            for oh0 in range(0, OH, block_rows):
                oh1 = min(OH, oh0 + block_rows)
                for g in range(groups):
                    gemm(TRANS, NO_TRANS, depth, (oh1 - oh0) * OW, Dg, 1.0, address(weight, g * Dg * depth), depth,
                         address(grad_output, (n * D + g * Dg) * P + oh0 * OW), P, 0.0,
                         address(buffer, g * depth * buffer.shape[1]), buffer.shape[1], size)
                if stride_w == 1:  # see unrolled
                    col2im_rows(buffer, grad_input[n], oh0, oh1, KH, KW, OW, stride_h, 1, padding_h, padding_w,
                                dilation_h, dilation_w)
                else:
                    col2im_rows(buffer, grad_input[n], oh0, oh1, KH, KW, OW, stride_h, stride_w, padding_h,
                                padding_w, dilation_h, dilation_w)


@njit(parallel=True, cache=True)
def conv2d_backward_weight_gemm(grad_output, input, grad_weight, col, partial, stride_h, stride_w, padding_h,
                                padding_w, dilation_h, dilation_w, groups, pointwise):
    """grad_weight_g = sum over tasks of grad_output[n, g, rows] @ col_g(rows).T. Each chunk sums its tasks,
    transposed, into partial[chunk] (groups, C/groups*KH*KW, D/groups): with the long side first the small
    products run twice as fast on LeNet-5's layers. The partials are then added in chunk order, so the
    result does not depend on how many threads ran the chunks."""
    N, C, H, W = input.shape
    D, Cg, KH, KW = grad_weight.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    P, depth, Dg = OH * OW, Cg * KH * KW, D // groups
    chunks, block_rows = col.shape[0], col.shape[2] // OW
    blocks = (OH + block_rows - 1) // block_rows
    size = input.itemsize
    for chunk in prange(chunks):
        buffer = col[chunk]
        first, last = chunk_bounds(chunk, chunks, N * blocks)
        for task in range(first, last):
            n, oh0, oh1 = task_rows(task, blocks, block_rows, OH)
            source, source_ld = unrolled(input, buffer, n, oh0, oh1, pointwise, KH, KW, OW, stride_h, stride_w,
                                         padding_h, padding_w, dilation_h, dilation_w)
            for g in range(groups):  # the transposed product: col_g @ grad_output_g.T, (depth, Dg)
                gemm(NO_TRANS, TRANS, depth, Dg, (oh1 - oh0) * OW, 1.0, source + g * depth * source_ld * size,
                     source_ld, address(grad_output, (n * D + g * Dg) * P + oh0 * OW), P,
                     0.0 if task == first else 1.0, address(partial[chunk], g * depth * Dg), Dg, size)
    flat = grad_weight.reshape((D, depth))
    for d in prange(D):
        g, dd = d // Dg, d % Dg
        row = flat[d]
        for k in range(depth):
            total = partial[0, g, k, dd]
            for chunk in range(1, chunks):
                total += partial[chunk, g, k, dd]
            row[k] = total


# ----------------------------------------------------------------------------- the public kernels


def _use_direct(weight, groups):
    return groups > 1 and weight.shape[1] == 1  # depthwise: a product per group would be tiny


def _is_pointwise(weight, stride_h, stride_w, padding_h, padding_w):
    return weight.shape[2] == weight.shape[3] == 1 and stride_h == stride_w == 1 and padding_h == padding_w == 0


def _workspace(input, weight, output_shape, max_chunks, per_image):
    """(col, block_rows, blocks): col buffers (chunks, C*KH*KW, block_rows*OW), one per parallel chunk, a
    block of output rows sized to fit CACHE_BYTES; tasks are images (per_image) or (image, block) pairs."""
    N, _, OH, OW = output_shape
    depth = input.shape[1] * weight.shape[2] * weight.shape[3]
    block_rows = max(1, min(OH, CACHE_BYTES // (depth * OW * input.dtype.itemsize)))
    blocks = -(-OH // block_rows)
    chunks = max(1, min(N if per_image else N * blocks, max_chunks))
    return scratch("col", (chunks, depth, block_rows * OW), input.dtype)


def conv2d_forward(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w,
                   dilation_h, dilation_w, groups):
    """output = conv2d(input, weight) + bias, by im2col + one matrix product per block of rows and group."""
    args = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    if _use_direct(weight, groups):
        return conv2d_forward_direct(input, weight, bias, output, *args)
    col = _workspace(input, weight, output.shape, 4 * numba.get_num_threads(), per_image=False)
    with single_threaded():
        conv2d_forward_gemm(input, weight, bias, output, col, *args, _is_pointwise(weight, *args[:4]))


def conv2d_backward_input(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w,
                          dilation_h, dilation_w, groups):
    """grad_input (N, C, H, W) = col2im(weight.T @ grad_output), per image and group."""
    args = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    if _use_direct(weight, groups):
        return conv2d_backward_input_direct(grad_output, weight, grad_input, *args)
    col = _workspace(grad_input, weight, grad_output.shape, 4 * numba.get_num_threads(), per_image=True)
    with single_threaded():
        conv2d_backward_input_gemm(grad_output, weight, grad_input, col, *args, _is_pointwise(weight, *args[:4]))


def conv2d_backward_weight(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w,
                           dilation_h, dilation_w, groups):
    """grad_weight (D, C/groups, KH, KW) = sum over the batch of grad_output @ im2col(input).T, per group."""
    args = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    if _use_direct(grad_weight, groups):
        return conv2d_backward_weight_direct(grad_output, input, grad_weight, *args)
    col = _workspace(input, grad_weight, grad_output.shape, WEIGHT_CHUNKS, per_image=False)
    partial = scratch("partial", (col.shape[0], groups, grad_weight[0].size, grad_weight.shape[0] // groups),
                      input.dtype)
    with single_threaded():
        conv2d_backward_weight_gemm(grad_output, input, grad_weight, col, partial, *args,
                                    _is_pointwise(grad_weight, *args[:4]))
