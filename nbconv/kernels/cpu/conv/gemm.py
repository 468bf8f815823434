"""2-D convolution by im2col + GEMM for the CPU, any stride (the plan sends it strided convolutions, and
1x1 stride-1 unpadded ones as "pointwise", which read the input itself as the unrolled matrix).

The batch is cut into tasks of one image and one block of its output rows, sized so that the block's
unrolled windows ("col", (C*KH*KW, rows*OW)) stay in the core's cache. Each parallel chunk of tasks owns
one col buffer and calls the single-threaded BLAS itself, writing straight into the (N, D, OH*OW) output:
no whole-batch col matrix, no re-layout pass, no second thread pool. The threads claim the chunks one at a
time (claims.py), so a thread slowed by another process leaves its share to the others; what a chunk computes,
and into which buffers, does not depend on which thread claimed it.
"""
from numba import njit

from ..blas import NO_TRANS, TRANS, address, gemm, single_threaded
from ..scale_shift import epilogue_span, no_epilogue
from ..shared import chunk_bounds, fill, fill_plane, fill_zero, sum_partials, task_rows, valid_range
from ..threads import num_threads, parallel_parts
from .blocks import balanced_rows, block_rows, channel_parts, max_chunks
from .claims import claim, claims

FORWARD_COLUMNS = 196  # forward blocks of at least this many output positions (whole rows), tasks allowing


@njit(cache=True, no_cfunc_wrapper=True)
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


@njit(cache=True, no_cfunc_wrapper=True)
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


@njit(cache=True, no_cfunc_wrapper=True)
def unrolled(input, buffer, n, oh0, oh1, pointwise, kernel_h, kernel_w, out_w, stride_h, stride_w, padding_h,
             padding_w, dilation_h, dilation_w):
    """(address, row stride in elements) of image n's unrolled windows for the output rows [oh0, oh1): the
    input itself for a pointwise convolution, else `buffer` filled by im2col_rows."""
    if pointwise:
        return address(input, n * input[0].size + oh0 * out_w), input.shape[2] * input.shape[3]
    im2col_rows(input[n], buffer, oh0, oh1, kernel_h, kernel_w, out_w, stride_h, stride_w, padding_h, padding_w,
                dilation_h, dilation_w)
    return address(buffer, 0), buffer.shape[1]


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_forward_gemm_span(span_part, span_parts, input, weight, bias, output, col, stride_h, stride_w, padding_h,
                             padding_w, dilation_h, dilation_w, groups, pointwise, parts, scale, shift, residual,
                             activation, counter):
    """conv2d_forward_gemm, part span_part of span_parts (threads.py): chunks claimed one at a time from counter."""
    N, C, H, W = input.shape
    D, Cg, KH, KW = weight.shape
    OH, OW = output.shape[2], output.shape[3]
    P, depth, Dg = OH * OW, Cg * KH * KW, D // groups
    chunks, block_rows = col.shape[0], col.shape[2] // OW
    blocks = (OH + block_rows - 1) // block_rows
    has_bias = bias.shape[0] > 0
    size = output.itemsize
    flat_output = output.reshape((N, D, P))
    while True:
        chunk = claim(counter)
        if chunk >= chunks:
            break
        buffer = col[chunk]
        first, last = chunk_bounds(chunk, chunks, N * blocks * parts)
        for task in range(first, last):
            n, oh0, oh1 = task_rows(task // parts, blocks, block_rows, OH)
            d0, d1 = chunk_bounds(task % parts, parts, Dg)  # this task's slice of each group's channels
            source, source_ld = unrolled(input, buffer, n, oh0, oh1, pointwise, KH, KW, OW, stride_h, stride_w,
                                         padding_h, padding_w, dilation_h, dilation_w)
            for g in range(groups):
                if has_bias:
                    for d in range(g * Dg + d0, g * Dg + d1):
                        fill(flat_output[n, d, oh0 * OW:oh1 * OW], bias[d])
                gemm(NO_TRANS, NO_TRANS, d1 - d0, (oh1 - oh0) * OW, depth, 1.0,
                     address(weight, (g * Dg + d0) * depth), depth, source + g * depth * source_ld * size,
                     source_ld, 1.0 if has_bias else 0.0, address(output, (n * D + g * Dg + d0) * P + oh0 * OW), P,
                     size)
                for d in range(g * Dg + d0, g * Dg + d1):
                    epilogue_span(flat_output, n, d, oh0 * OW, oh1 * OW, scale, shift, residual, activation)


def conv2d_forward_gemm(input, weight, bias, output, col, stride_h, stride_w, padding_h, padding_w,
                        dilation_h, dilation_w, groups, pointwise, parts, scale, shift, residual, activation):
    """output[n, group g's Dg channels, rows] = weight_g (Dg, Cg*KH*KW) @ col_g (Cg*KH*KW, rows*OW) + bias.

    col: (chunks, C*KH*KW, block_rows*OW) workspace; pointwise (1x1, stride 1, no padding) reads the
    input directly. Each (image, block of rows) task is cut into `parts` slices of every group's Dg output
    channels (see blocks.channel_parts), each its own task. Then each task applies the epilogue of
    scale_shift.epilogue_span to what it wrote (scale, shift (D,) or (0,), residual (N, D, OH*OW) or
    (0, 0, 0), activation; nothing when all are absent), while it is still in the cache.
    """
    parallel_parts(conv2d_forward_gemm_span, min(num_threads(), col.shape[0]), input, weight, bias, output, col,
                   stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups, pointwise, parts, scale,
                   shift, residual, activation, claims())


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_input_gemm_span(span_part, span_parts, grad_output, weight, grad_input, col, stride_h, stride_w,
                                    padding_h, padding_w, dilation_h, dilation_w, groups, pointwise, counter):
    """conv2d_backward_input_gemm, part span_part of span_parts (threads.py): chunks claimed from counter."""
    N, C, H, W = grad_input.shape
    D, Cg, KH, KW = weight.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    P, depth, Dg = OH * OW, Cg * KH * KW, D // groups
    chunks, block_rows = col.shape[0], col.shape[2] // OW
    size = grad_output.itemsize
    while True:
        chunk = claim(counter)
        if chunk >= chunks:
            break
        buffer = col[chunk]
        first, last = chunk_bounds(chunk, chunks, N)
        for n in range(first, last):
            if pointwise:
                for g in range(groups):
                    gemm(TRANS, NO_TRANS, depth, P, Dg, 1.0, address(weight, g * Dg * depth), depth,
                         address(grad_output, (n * D + g * Dg) * P), P, 0.0,
                         address(grad_input, (n * C + g * Cg) * P), P, size)
                continue
            for c in range(C):
                fill_plane(grad_input[n, c], 0)
            for oh0 in range(0, OH, block_rows):
                oh1 = min(OH, oh0 + block_rows)
                for g in range(groups):
                    gemm(TRANS, NO_TRANS, depth, (oh1 - oh0) * OW, Dg, 1.0, address(weight, g * Dg * depth), depth,
                         address(grad_output, (n * D + g * Dg) * P + oh0 * OW), P, 0.0,
                         address(buffer, g * depth * buffer.shape[1]), buffer.shape[1], size)
                col2im_rows(buffer, grad_input[n], oh0, oh1, KH, KW, OW, stride_h, stride_w, padding_h, padding_w,
                            dilation_h, dilation_w)


def conv2d_backward_input_gemm(grad_output, weight, grad_input, col, stride_h, stride_w, padding_h, padding_w,
                               dilation_h, dilation_w, groups, pointwise):
    """grad_input[n] = col2im(weight_g.T @ grad_output[n, g]) per group. A task is a whole image, so the
    scatter of overlapping windows never races."""
    parallel_parts(conv2d_backward_input_gemm_span, min(num_threads(), col.shape[0]), grad_output, weight,
                   grad_input, col, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups,
                   pointwise, claims())


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_backward_weight_gemm_span(span_part, span_parts, grad_output, input, grad_weight, col, partial, stride_h,
                                     stride_w, padding_h, padding_w, dilation_h, dilation_w, groups, pointwise,
                                     counter):
    """conv2d_backward_weight_gemm, part span_part of span_parts (threads.py): chunks claimed from counter."""
    N, C, H, W = input.shape
    D, Cg, KH, KW = grad_weight.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    P, depth, Dg = OH * OW, Cg * KH * KW, D // groups
    chunks, block_rows = col.shape[0], col.shape[2] // OW
    blocks = (OH + block_rows - 1) // block_rows
    size = input.itemsize
    while True:
        chunk = claim(counter)
        if chunk >= chunks:
            break
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


def conv2d_backward_weight_gemm(grad_output, input, grad_weight, col, partial, stride_h, stride_w, padding_h,
                                padding_w, dilation_h, dilation_w, groups, pointwise):
    """grad_weight_g = sum over tasks of grad_output[n, g, rows] @ col_g(rows).T. Each chunk sums its tasks,
    transposed, into partial[chunk] (groups, C/groups*KH*KW, D/groups): with the long side first the small
    products run twice as fast on LeNet-5's layers. The partials are then added in chunk order, so the
    result does not depend on how many threads ran the chunks."""
    parallel_parts(conv2d_backward_weight_gemm_span, min(num_threads(), col.shape[0]), grad_output, input,
                   grad_weight, col, partial, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups,
                   pointwise, claims())
    sum_partials(partial, grad_weight)


# The plan's surface: applies, buffers and the three passes (see plan.py). "gemm" and "pointwise" both run here.
def applies(pass_, convolution):
    """im2col applies to every convolution and pass."""
    return True


def applies_pointwise(pass_, convolution):
    """The pointwise shortcut: 1x1, stride-1, unpadded convolutions."""
    _, _, KH, KW = convolution.weight_shape
    return (KH == KW == 1 and convolution.stride_h == convolution.stride_w == 1
            and convolution.padding_h == convolution.padding_w == 0)


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer: col (chunks, C*KH*KW, block_rows*OW), one block of
    unrolled windows per parallel chunk (its first axis sets the chunks, even for pointwise, which leaves
    it unread); the weight gradient adds partial_sums (chunks, groups, C/groups*KH*KW, D/groups). Tasks
    are whole images for the input gradient, else (image, block of rows) pairs."""
    N, C = convolution.input_shape[:2]
    D, Cg, KH, KW = convolution.weight_shape
    _, _, OH, OW = convolution.output_shape
    depth = C * KH * KW
    rows = block_rows(depth, OW, OH, itemsize)
    if pass_ == "forward":
        # deep layers on narrow maps: blocks past the cache budget rather than thin products, while every
        # thread still gets a block (else channel_parts would cut the block, each slice unrolling all of it)
        wide = max(rows, min(OH, -(-FORWARD_COLUMNS // OW)))
        if N * -(-OH // wide) >= threads:
            rows = wide
        rows = balanced_rows(rows, OH, N, D // convolution.groups, threads)
    tasks = N if pass_ == "backward_input" else N * -(-OH // rows)
    if pass_ == "forward":
        tasks *= channel_parts(tasks, D // convolution.groups, threads)
    chunks = max(1, min(tasks, max_chunks(pass_, threads, Cg * KH * KW * D * itemsize)))
    col = ("col", "col", (chunks, depth, rows * OW))
    if pass_ == "backward_weight":
        groups = convolution.groups
        return col, ("partial_sums", "partial", (chunks, groups, Cg * KH * KW, D // groups))
    return (col,)


def forward(input, weight, bias, output, buffers, plan, epilogue=None):
    """output = conv2d(input, weight) + bias, then `epilogue` (scale, shift, residual, activation as
    conv2d_forward_gemm takes them) when given."""
    convolution = plan.convolution
    _, _, OH, OW = convolution.output_shape
    col = buffers["col"]
    tasks = convolution.input_shape[0] * -(-OH // (col.shape[2] // OW))
    parts = channel_parts(tasks, convolution.weight_shape[0] // convolution.groups, num_threads())
    with single_threaded():
        conv2d_forward_gemm(input, weight, bias, output, col, *convolution.hyper, plan.algorithm == "pointwise",
                            parts, *(epilogue or no_epilogue(output.dtype)))


def backward_input(grad_output, weight, grad_input, buffers, plan):
    with single_threaded():
        conv2d_backward_input_gemm(grad_output, weight, grad_input, buffers["col"], *plan.convolution.hyper,
                                   plan.algorithm == "pointwise")


def backward_weight(grad_output, input, grad_weight, buffers, plan):
    with single_threaded():
        conv2d_backward_weight_gemm(grad_output, input, grad_weight, buffers["col"], buffers["partial_sums"],
                                    *plan.convolution.hyper, plan.algorithm == "pointwise")
