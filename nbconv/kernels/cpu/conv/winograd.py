"""3x3, stride-1, undilated, ungrouped convolution by Winograd's minimal filtering F(2x2, 3x3) for the CPU.

Each 2x2 block of outputs ("tile") of one channel pair is computed from the 4x4 input patch under it as
A^T [ (G g G^T) * (B^T d B) ] A, where g is the 3x3 filter and * multiplies element-wise. Summed over input
channels, the 16 element-wise products become 16 matrix products U[xi] (D, C) @ V[xi] (C, tiles), one per
position xi of the 4x4 transformed patch: 16 multiply-adds per 4 outputs per channel pair instead of 36, so
2.25x less arithmetic than im2col, for a few adds and some rounding (about 1e-6 relative in float32).

Tasks are blocks of tile rows of one image; each parallel chunk pads the input rows its block reads
(`pad_rows`), transforms its patches into V, runs the 16 products with the BLAS and transforms the results
into the output. The input gradient is the same computation on the output gradient, with the filters
turned by 180 degrees and their channel axes swapped, and padding 2 - p (so only for padding <= 2).
The weight gradient by the same transforms is winograd_weight.py (the plan runs F(4x4)'s, winograd4_weight.py).
"""
from numba import njit

import numpy as np

from ..blas import NO_TRANS, address, gemm, single_threaded
from ..scale_shift import epilogue_span, no_epilogue
from ..shared import chunk_bounds
from ..threads import num_threads, parallel_parts
from .blocks import balanced_rows, block_rows, channel_parts, max_chunks
from .rows import pad_rows


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def winograd_weights_span(span_part, span_parts, weight, transformed, turned):
    """winograd_weights over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    D, C = transformed.shape[1], transformed.shape[2]
    span_first, span_last = chunk_bounds(span_part, span_parts, D)
    for d in range(span_first, span_last):
        for c in range(C):
            g = weight[c, d] if turned else weight[d, c]
            for a in range(4):
                # row a of G g, one value per filter column j (G's rows: g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2)
                r0 = transformed.dtype.type(0)
                r1 = transformed.dtype.type(0)
                r2 = transformed.dtype.type(0)
                for j in range(3):
                    jj = 2 - j if turned else j
                    top = g[2, jj] if turned else g[0, jj]
                    middle = g[1, jj]
                    bottom = g[0, jj] if turned else g[2, jj]
                    if a == 0:
                        value = top
                    elif a == 1:
                        value = 0.5 * (top + middle + bottom)
                    elif a == 2:
                        value = 0.5 * (top - middle + bottom)
                    else:
                        value = bottom
                    if j == 0:
                        r0 = value
                    elif j == 1:
                        r1 = value
                    else:
                        r2 = value
                transformed[4 * a + 0, d, c] = r0  # (G g) G^T, row a
                transformed[4 * a + 1, d, c] = 0.5 * (r0 + r1 + r2)
                transformed[4 * a + 2, d, c] = 0.5 * (r0 - r1 + r2)
                transformed[4 * a + 3, d, c] = r2


def winograd_weights(weight, transformed, turned):
    """transformed[4a + b, d, c] = (G g G^T)[a, b] for g = weight[d, c]; with `turned`, for g = weight[c, d]
    rotated by 180 degrees (the filters of the input gradient). transformed: (16, D', C')."""
    parallel_parts(winograd_weights_span, num_threads(), weight, transformed, turned)


@njit(cache=True, no_cfunc_wrapper=True)
def transform_patches(slab, patches, channels, tile_rows, tiles_w, slab_rows, padded_w):
    """patches[4a + b, c, r*TW + tw] = (B^T d B)[a, b] for the 4x4 patch d at slab rows 2r.., columns 2tw..
    slab: (C*slab_rows*padded_w,) padded input rows; patches: (16, C, >= tile_rows*TW)."""
    for c in range(channels):
        for r in range(tile_rows):
            start = (c * slab_rows + 2 * r) * padded_w
            row0 = slab[start:start + padded_w]
            row1 = slab[start + padded_w:start + 2 * padded_w]
            row2 = slab[start + 2 * padded_w:start + 3 * padded_w]
            row3 = slab[start + 3 * padded_w:start + 4 * padded_w]
            base = r * tiles_w
            for tw in range(tiles_w):
                w = 2 * tw
                # B^T d: row combinations, column by column
                p0 = row0[w] - row2[w]
                p1 = row0[w + 1] - row2[w + 1]
                p2 = row0[w + 2] - row2[w + 2]
                p3 = row0[w + 3] - row2[w + 3]
                q0 = row1[w] + row2[w]
                q1 = row1[w + 1] + row2[w + 1]
                q2 = row1[w + 2] + row2[w + 2]
                q3 = row1[w + 3] + row2[w + 3]
                s0 = row2[w] - row1[w]
                s1 = row2[w + 1] - row1[w + 1]
                s2 = row2[w + 2] - row1[w + 2]
                s3 = row2[w + 3] - row1[w + 3]
                u0 = row1[w] - row3[w]
                u1 = row1[w + 1] - row3[w + 1]
                u2 = row1[w + 2] - row3[w + 2]
                u3 = row1[w + 3] - row3[w + 3]
                # (B^T d) B: the same combinations across the columns of each row
                t = base + tw
                patches[0, c, t] = p0 - p2
                patches[1, c, t] = p1 + p2
                patches[2, c, t] = p2 - p1
                patches[3, c, t] = p1 - p3
                patches[4, c, t] = q0 - q2
                patches[5, c, t] = q1 + q2
                patches[6, c, t] = q2 - q1
                patches[7, c, t] = q1 - q3
                patches[8, c, t] = s0 - s2
                patches[9, c, t] = s1 + s2
                patches[10, c, t] = s2 - s1
                patches[11, c, t] = s1 - s3
                patches[12, c, t] = u0 - u2
                patches[13, c, t] = u1 + u2
                patches[14, c, t] = u2 - u1
                patches[15, c, t] = u1 - u3


@njit(cache=True, no_cfunc_wrapper=True)
def untransform_tiles(products, output, bias, n, first_tile_row, tile_rows, tiles_w, d0, d1):
    """output[n, d, 2(tr) + i, 2tw + j] = (A^T m A)[i, j] + bias[d] for m = products[:, d, tile], where it
    falls inside the output, for the channels d in [d0, d1). products: (16, D, >= tile_rows*TW)."""
    OH, OW = output.shape[2], output.shape[3]
    has_bias = bias.shape[0] > 0
    for d in range(d0, d1):
        offset = bias[d] if has_bias else 0
        for r in range(tile_rows):
            oh = 2 * (first_tile_row + r)
            top = output[n, d, oh]
            bottom = output[n, d, oh + 1] if oh + 1 < OH else top  # an odd last row: written, then rewritten
            base = r * tiles_w
            for tw in range(tiles_w):
                t = base + tw
                m0, m1, m2, m3 = products[0, d, t], products[1, d, t], products[2, d, t], products[3, d, t]
                m4, m5, m6, m7 = products[4, d, t], products[5, d, t], products[6, d, t], products[7, d, t]
                m8, m9, m10, m11 = products[8, d, t], products[9, d, t], products[10, d, t], products[11, d, t]
                m12, m13, m14, m15 = products[12, d, t], products[13, d, t], products[14, d, t], products[15, d, t]
                # A^T m: rows 0 + 1 + 2 and 1 - 2 - 3
                a0, a1, a2, a3 = m0 + m4 + m8, m1 + m5 + m9, m2 + m6 + m10, m3 + m7 + m11
                b0, b1, b2, b3 = m4 - m8 - m12, m5 - m9 - m13, m6 - m10 - m14, m7 - m11 - m15
                ow = 2 * tw
                if oh + 1 < OH:
                    bottom[ow] = b0 + b1 + b2 + offset
                    if ow + 1 < OW:
                        bottom[ow + 1] = b1 - b2 - b3 + offset
                top[ow] = a0 + a1 + a2 + offset
                if ow + 1 < OW:
                    top[ow + 1] = a1 - a2 - a3 + offset


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_winograd_span(span_part, span_parts, input, transformed, bias, output, padded, patches, products, padding_h,
                         padding_w, parts, scale, shift, residual, activation):
    """conv2d_winograd over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    D, OH, OW = output.shape[1], output.shape[2], output.shape[3]
    tiles_h, tiles_w = (OH + 1) // 2, (OW + 1) // 2
    padded_w = 2 * tiles_w + 2
    chunks, block = patches.shape[0], patches.shape[3]
    block_rows = block // tiles_w
    blocks = (tiles_h + block_rows - 1) // block_rows
    size = output.itemsize
    flat_output = output.reshape((N, D, OH * OW))
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        slab, transformed_patches, tile_products = padded[chunk], patches[chunk], products[chunk]
        first, last = chunk_bounds(chunk, chunks, N * blocks * parts)
        for task in range(first, last):
            n = task // (blocks * parts)
            tr0 = (task // parts % blocks) * block_rows
            d0, d1 = chunk_bounds(task % parts, parts, D)
            rows = min(block_rows, tiles_h - tr0)
            slab_rows = 2 * rows + 2
            pad_rows(input[n], slab, 2 * tr0, slab_rows, padding_h, padding_w, padded_w)
            transform_patches(slab, transformed_patches, C, rows, tiles_w, slab_rows, padded_w)
            for xi in range(16):
                gemm(NO_TRANS, NO_TRANS, d1 - d0, rows * tiles_w, C, 1.0, address(transformed, (xi * D + d0) * C), C,
                     address(transformed_patches, xi * C * block), block, 0.0,
                     address(tile_products, (xi * D + d0) * block), block, size)
            untransform_tiles(tile_products, output, bias, n, tr0, rows, tiles_w, d0, d1)
            for d in range(d0, d1):
                epilogue_span(flat_output, n, d, 2 * tr0 * OW, min(OH, 2 * (tr0 + rows)) * OW, scale, shift,
                              residual, activation)


def conv2d_winograd(input, transformed, bias, output, padded, patches, products, padding_h, padding_w, parts,
                    scale, shift, residual, activation):
    """output (N, D, OH, OW) = the 3x3 stride-1 convolution of input (N, C, H, W) with the filters that
    `winograd_weights` turned into transformed (16, D, C), plus bias. padded, patches, products: one buffer
    per parallel chunk, (chunks, C*slab_rows*padded_w), (chunks, 16, C, block) and (chunks, 16, D, block),
    a block holding whole rows of tiles. Each (image, block) task is cut into `parts` slices of the D output
    channels (see blocks.channel_parts), each its own task, which transforms its patches itself and then
    applies the epilogue of scale_shift.epilogue_span to the output rows it wrote (see gemm.py)."""
    parallel_parts(conv2d_winograd_span, num_threads(), input, transformed, bias, output, padded, patches,
                   products, padding_h, padding_w, parts, scale, shift, residual, activation)


# The plan's surface: applies, buffers and the forward and input-gradient passes (see plan.py).
def applies(pass_, convolution):
    """3x3, stride 1, no dilation, no groups; the input gradient only with padding <= 2 (a full correlation
    of the output gradient, padded by 2 - padding); the weight gradient is winograd_weight.py's."""
    _, _, KH, KW = convolution.weight_shape
    shape = (KH == KW == 3 and convolution.stride_h == convolution.stride_w == 1
             and convolution.dilation_h == convolution.dilation_w == 1 and convolution.groups == 1)
    if pass_ == "backward_input":
        return shape and convolution.padding_h <= 2 and convolution.padding_w <= 2
    return shape and pass_ == "forward"


def _sides(pass_, convolution):
    """(N, channels in, channels out, output height, output width) of the Winograd convolution a pass runs:
    the layer itself, or for the input gradient the output gradient (N, D, OH, OW) into (N, C, H, W)."""
    N, C, H, W = convolution.input_shape
    _, D, OH, OW = convolution.output_shape
    return (N, D, C, H, W) if pass_ == "backward_input" else (N, C, D, OH, OW)


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer: filters (16, D', C'), the transformed filters; per
    parallel chunk, a block of whole rows of tiles: padded (C'*(2*block_rows + 2)*(2*TW + 2),), the input
    rows it reads; patches (16, C', block_rows*TW), the transformed patches; products (16, D', same)."""
    N, channels_in, channels_out, out_h, out_w = _sides(pass_, convolution)
    tiles_h, tiles_w = (out_h + 1) // 2, (out_w + 1) // 2
    rows = balanced_rows(block_rows(16 * channels_in, tiles_w, tiles_h, itemsize), tiles_h, N, channels_out,
                         threads)  # rows of tiles
    tasks = N * -(-tiles_h // rows)
    tasks *= channel_parts(tasks, channels_out, threads)
    chunks = max(1, min(tasks, max_chunks(pass_, threads)))
    return (("filters", "winograd_weights", (16, channels_out, channels_in)),
            ("padded", "padded", (chunks, channels_in * (2 * rows + 2) * (2 * tiles_w + 2))),
            ("patches", "col", (chunks, 16, channels_in, rows * tiles_w)),
            ("products", "wide", (chunks, 16, channels_out, rows * tiles_w)))


def _run(input, weight, bias, output, buffers, padding_h, padding_w, turned):
    winograd_weights(weight, buffers["filters"], turned)
    run_transformed(input, buffers["filters"], bias, output, buffers, padding_h, padding_w)


def transformed_filters(weight, plan):
    """A new array of the forward pass's transformed filters (16, D, C), for callers that keep them."""
    filters = np.empty(next(buffer.shape for buffer in plan.buffers if buffer.name == "filters"), weight.dtype)
    winograd_weights(weight, filters, False)
    return filters


def run_transformed(input, filters, bias, output, buffers, padding_h, padding_w, epilogue=None):
    """The convolution with filters already transformed (by winograd_weights); buffers as the plan's;
    epilogue: (scale, shift, residual, activation) as gemm.forward takes it, or None."""
    tiles_h, tiles_w = (output.shape[2] + 1) // 2, (output.shape[3] + 1) // 2
    tasks = input.shape[0] * -(-tiles_h // (buffers["patches"].shape[3] // tiles_w))
    parts = channel_parts(tasks, output.shape[1], num_threads())
    with single_threaded():
        conv2d_winograd(input, filters, bias, output, buffers["padded"], buffers["patches"],
                        buffers["products"], padding_h, padding_w, parts, *(epilogue or no_epilogue(output.dtype)))


def forward(input, weight, bias, output, buffers, plan):
    convolution = plan.convolution
    _run(input, weight, bias, output, buffers, convolution.padding_h, convolution.padding_w, turned=False)


def backward_input(grad_output, weight, grad_input, buffers, plan):
    convolution = plan.convolution
    _run(grad_output, weight, np.empty(0, grad_output.dtype), grad_input, buffers, 2 - convolution.padding_h,
         2 - convolution.padding_w, turned=True)
