"""3x3, stride-1, undilated, ungrouped convolution by Winograd's minimal filtering F(4x4, 3x3) for the CPU.

Each 4x4 block of outputs ("tile") of one channel pair is A^T [ (G g G^T) * (B^T d B) ] A for the 6x6 input
patch d under it and the 3x3 filter g. Summed over input channels, the 36 element-wise products become 36
matrix products U[xi] (D, C) @ V[xi] (C, tiles): 36 multiply-adds per 16 outputs per channel pair instead
of 144, 4x less arithmetic than im2col (F(2x2, 3x3), winograd.py: 2.25x).

The transforms interpolate at the points 0, 1, -1, 1/2, -2 and infinity. Lavin's usual 0, +-1, +-2 make
float32 results about 2.5x less accurate: the float32 error is that of the products M[xi], which A^T
weighs by the points' powers (up to 8 here, as with +-2) and which B^T's and G's coefficients make larger
than the outputs; these points keep it about half that of 0, +-1, +-2 (benchmarks/NOTES.md, section 63).
Exact in exact arithmetic; each transform is exact in binary except G's thirds and fifteenths, which are
computed in float64 once per filter.

The work is cut as in winograd.py: tasks are (image, block of tile rows, slice of output channels); each
parallel chunk pads the input rows its block reads (`pad_rows`), transforms its patches into V (a pass
along the rows, contiguous, then one across columns), runs the 36 products with the BLAS and transforms
the results into the output (across columns, then along rows), then applies the epilogue. The input
gradient is the same computation on the output gradient with the filters turned by 180 degrees, their
channel axes swapped, and padding 2 - p.
"""
import numba
from numba import njit

import numpy as np

from ..blas import NO_TRANS, address, gemm, single_threaded
from ..scale_shift import epilogue_span, no_epilogue
from ..shared import chunk_bounds
from ..threads import parallel_parts
from .blocks import balanced_rows, block_rows, channel_parts, max_chunks
from .rows import pad_rows

# G (6x3): the filter transform, rows p^0, p^1, p^2 over prod_{q != p}(p - q) for each finite point p, then
# (0, 0, 1) for infinity
FILTER_TRANSFORM = np.array([[1.0, 0.0, 0.0],
                             [1 / 3, 1 / 3, 1 / 3],
                             [-1 / 3, 1 / 3, -1 / 3],
                             [-16 / 15, -8 / 15, -4 / 15],
                             [1 / 15, -2 / 15, 4 / 15],
                             [0.0, 0.0, 1.0]])


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def winograd4_weights_span(span_part, span_parts, weight, transformed, turned, transform):
    """winograd4_weights over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    D, C = transformed.shape[1], transformed.shape[2]
    left = np.empty((6, 3))  # G g, in float64
    span_first, span_last = chunk_bounds(span_part, span_parts, D)
    for d in range(span_first, span_last):
        for c in range(C):
            g = weight[c, d] if turned else weight[d, c]
            for a in range(6):
                for j in range(3):
                    total = 0.0
                    for i in range(3):
                        total += transform[a, i] * (g[2 - i, 2 - j] if turned else g[i, j])
                    left[a, j] = total
            for a in range(6):
                for b in range(6):
                    transformed[6 * a + b, d, c] = (left[a, 0] * transform[b, 0] + left[a, 1] * transform[b, 1]
                                                    + left[a, 2] * transform[b, 2])


def winograd4_weights(weight, transformed, turned):
    """transformed[6a + b, d, c] = (G g G^T)[a, b] for g = weight[d, c]; with `turned`, for g = weight[c, d]
    rotated by 180 degrees (the filters of the input gradient). transformed: (36, D', C')."""
    parallel_parts(winograd4_weights_span, numba.get_num_threads(), weight, transformed, turned, FILTER_TRANSFORM)


@njit(cache=True, inline="always")
def _input_combinations(d0, d1, d2, d3, d4, d5):
    """The six rows of B^T applied to six values (B^T's rows: the coefficients of prod_{q != p}(x - q) for
    each finite point p, then of prod_q (x - q) for infinity)."""
    return (d0 - 1.5 * d1 - 2.0 * d2 + 1.5 * d3 + d4,
            0.5 * d2 - d1 + 2.5 * d3 + d4,
            d1 - 2.5 * d2 + 0.5 * d3 + d4,
            2.0 * (d3 - d1) - d2 + d4,
            0.5 * (d1 - d3) - d2 + d4,
            d1 - 1.5 * d2 - 2.0 * d3 + 1.5 * d4 + d5)


@njit(cache=True, no_cfunc_wrapper=True)
def _patch_columns(row, patches, xi0, c, base, tiles_w):
    """patches[xi0 + b, c, base + tw] = (row[4tw..4tw+5] B)[b] for b < 6: the column half of B^T d B along
    one row of B^T d."""
    for tw in range(tiles_w):
        w = 4 * tw
        v0, v1, v2, v3, v4, v5 = _input_combinations(row[w], row[w + 1], row[w + 2], row[w + 3], row[w + 4],
                                                     row[w + 5])
        patches[xi0, c, base + tw] = v0
        patches[xi0 + 1, c, base + tw] = v1
        patches[xi0 + 2, c, base + tw] = v2
        patches[xi0 + 3, c, base + tw] = v3
        patches[xi0 + 4, c, base + tw] = v4
        patches[xi0 + 5, c, base + tw] = v5


@njit(cache=True, no_cfunc_wrapper=True)
def transform_patches(slab, rows, patches, channels, tile_rows, tiles_w, slab_rows, padded_w):
    """patches[6a + b, c, r*TW + tw] = (B^T d B)[a, b] for the 6x6 patch d at slab rows 4r.., columns 4tw..
    slab: (C*slab_rows*padded_w,) padded input rows; rows: (6, padded_w) scratch for B^T d of one row of
    tiles; patches: (36, C, >= tile_rows*TW)."""
    for c in range(channels):
        for r in range(tile_rows):
            start = (c * slab_rows + 4 * r) * padded_w
            row0 = slab[start:start + padded_w]
            row1 = slab[start + padded_w:start + 2 * padded_w]
            row2 = slab[start + 2 * padded_w:start + 3 * padded_w]
            row3 = slab[start + 3 * padded_w:start + 4 * padded_w]
            row4 = slab[start + 4 * padded_w:start + 5 * padded_w]
            row5 = slab[start + 5 * padded_w:start + 6 * padded_w]
            out0, out1, out2, out3, out4, out5 = rows[0], rows[1], rows[2], rows[3], rows[4], rows[5]
            for w in range(padded_w):  # B^T d: along the rows
                out0[w], out1[w], out2[w], out3[w], out4[w], out5[w] = _input_combinations(
                    row0[w], row1[w], row2[w], row3[w], row4[w], row5[w])
            for a in range(6):  # (B^T d) B: across the columns
                _patch_columns(rows[a], patches, 6 * a, c, r * tiles_w, tiles_w)


@njit(cache=True, inline="always")
def _output_combinations(m0, m1, m2, m3, m4, m5):
    """The four rows of A^T applied to six values (A^T's columns: p^0..p^3 for each finite point p, then
    (0, 0, 0, 1) for infinity)."""
    plus, minus = m1 + m2, m1 - m2
    return (m0 + plus + m3 + m4,
            minus + 0.5 * m3 - 2.0 * m4,
            plus + 0.25 * m3 + 4.0 * m4,
            minus + 0.125 * m3 - 8.0 * m4 + m5)


@njit(cache=True, no_cfunc_wrapper=True)
def _tile_columns(products, xi0, d, base, tiles_w, row):
    """row[4tw + i] = (m A)[i] for i < 4, m = products[xi0:xi0 + 6, d, base + tw]: the column half of
    A^T m A along one row of m."""
    for tw in range(tiles_w):
        t = base + tw
        w = 4 * tw
        row[w], row[w + 1], row[w + 2], row[w + 3] = _output_combinations(
            products[xi0, d, t], products[xi0 + 1, d, t], products[xi0 + 2, d, t], products[xi0 + 3, d, t],
            products[xi0 + 4, d, t], products[xi0 + 5, d, t])


@njit(cache=True, no_cfunc_wrapper=True)
def untransform_tiles(products, rows, output, bias, n, first_tile_row, tile_rows, tiles_w, d0, d1):
    """output[n, d, 4(first_tile_row + r) + i, 4tw + j] = (A^T m A)[i, j] + bias[d] for m = products[:, d,
    r*TW + tw], where it falls inside the output, for the channels d in [d0, d1). products: (36, D,
    >= tile_rows*TW); rows: (6, >= 4TW) scratch for m A of one row of tiles."""
    OH, OW = output.shape[2], output.shape[3]
    has_bias = bias.shape[0] > 0
    for d in range(d0, d1):
        offset = bias[d] if has_bias else 0
        for r in range(tile_rows):
            for a in range(6):  # m A: across the columns
                _tile_columns(products, 6 * a, d, r * tiles_w, tiles_w, rows[a])
            row0, row1, row2, row3, row4, row5 = rows[0], rows[1], rows[2], rows[3], rows[4], rows[5]
            oh = 4 * (first_tile_row + r)
            lines = min(4, OH - oh)
            for w in range(OW):  # A^T (m A): along the rows, into the output rows that exist
                y0, y1, y2, y3 = _output_combinations(row0[w], row1[w], row2[w], row3[w], row4[w], row5[w])
                output[n, d, oh, w] = y0 + offset
                if lines > 1:
                    output[n, d, oh + 1, w] = y1 + offset
                if lines > 2:
                    output[n, d, oh + 2, w] = y2 + offset
                if lines > 3:
                    output[n, d, oh + 3, w] = y3 + offset


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_winograd4_span(span_part, span_parts, input, transformed, bias, output, padded, patches, products,
                          padding_h, padding_w, parts, scale, shift, residual, activation):
    """conv2d_winograd4 over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    D, OH, OW = output.shape[1], output.shape[2], output.shape[3]
    tiles_h, tiles_w = (OH + 3) // 4, (OW + 3) // 4
    padded_w = 4 * tiles_w + 2
    chunks, block = patches.shape[0], patches.shape[3]
    block_rows = block // tiles_w
    blocks = (tiles_h + block_rows - 1) // block_rows
    slab_size = C * (4 * block_rows + 2) * padded_w
    size = output.itemsize
    flat_output = output.reshape((N, D, OH * OW))
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        slab = padded[chunk, :slab_size]
        rows = padded[chunk, slab_size:slab_size + 6 * padded_w].reshape((6, padded_w))
        transformed_patches, tile_products = patches[chunk], products[chunk]
        first, last = chunk_bounds(chunk, chunks, N * blocks * parts)
        for task in range(first, last):
            n = task // (blocks * parts)
            tr0 = (task // parts % blocks) * block_rows
            d0, d1 = chunk_bounds(task % parts, parts, D)
            tile_rows = min(block_rows, tiles_h - tr0)
            slab_rows = 4 * tile_rows + 2
            pad_rows(input[n], slab, 4 * tr0, slab_rows, padding_h, padding_w, padded_w)
            transform_patches(slab, rows, transformed_patches, C, tile_rows, tiles_w, slab_rows, padded_w)
            for xi in range(36):
                gemm(NO_TRANS, NO_TRANS, d1 - d0, tile_rows * tiles_w, C, 1.0,
                     address(transformed, (xi * D + d0) * C), C, address(transformed_patches, xi * C * block), block,
                     0.0, address(tile_products, (xi * D + d0) * block), block, size)
            untransform_tiles(tile_products, rows, output, bias, n, tr0, tile_rows, tiles_w, d0, d1)
            for d in range(d0, d1):
                epilogue_span(flat_output, n, d, 4 * tr0 * OW, min(OH, 4 * (tr0 + tile_rows)) * OW, scale, shift,
                              residual, activation)


def conv2d_winograd4(input, transformed, bias, output, padded, patches, products, padding_h, padding_w, parts,
                     scale, shift, residual, activation):
    """output (N, D, OH, OW) = the 3x3 stride-1 convolution of input (N, C, H, W) with the filters that
    `winograd4_weights` turned into transformed (36, D, C), plus bias. padded, patches, products: one buffer
    per parallel chunk, (chunks, C*(4*block_rows + 2)*padded_w + 6*padded_w) (the padded input rows, then
    six rows of transform scratch), (chunks, 36, C, block) and (chunks, 36, D, block), a block holding whole
    rows of tiles; parts: slices of the D output channels per task (blocks.channel_parts); the epilogue as
    winograd.conv2d_winograd's."""
    parallel_parts(conv2d_winograd4_span, numba.get_num_threads(), input, transformed, bias, output, padded,
                   patches, products, padding_h, padding_w, parts, scale, shift, residual, activation)


# The plan's surface: applies, buffers and the forward and input-gradient passes (see plan.py).
def applies(pass_, convolution):
    """3x3, stride 1, no dilation, no groups; the input gradient only with padding <= 2 (as winograd.py)."""
    _, _, KH, KW = convolution.weight_shape
    shape = (KH == KW == 3 and convolution.stride_h == convolution.stride_w == 1
             and convolution.dilation_h == convolution.dilation_w == 1 and convolution.groups == 1)
    if pass_ == "backward_input":
        return shape and convolution.padding_h <= 2 and convolution.padding_w <= 2
    return shape and pass_ == "forward"


def _sides(pass_, convolution):
    """(N, channels in, channels out, output height, output width) of the Winograd convolution a pass runs."""
    N, C, H, W = convolution.input_shape
    _, D, OH, OW = convolution.output_shape
    return (N, D, C, H, W) if pass_ == "backward_input" else (N, C, D, OH, OW)


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer: filters (36, D', C'), the transformed filters; per
    parallel chunk, a block of whole rows of tiles: padded (C'*(4*block_rows + 2)*(4*TW + 2) + 6*(4*TW + 2),),
    the input rows it reads and six rows of scratch; patches (36, C', block_rows*TW); products (36, D', same)."""
    N, channels_in, channels_out, out_h, out_w = _sides(pass_, convolution)
    tiles_h, tiles_w = (out_h + 3) // 4, (out_w + 3) // 4
    padded_w = 4 * tiles_w + 2
    rows = balanced_rows(block_rows(36 * channels_in, tiles_w, tiles_h, itemsize), tiles_h, N, channels_out,
                         threads)  # rows of tiles
    tasks = N * -(-tiles_h // rows)
    tasks *= channel_parts(tasks, channels_out, threads)
    chunks = max(1, min(tasks, max_chunks(pass_, threads)))
    return (("filters", "winograd_weights", (36, channels_out, channels_in)),
            ("padded", "padded", (chunks, channels_in * (4 * rows + 2) * padded_w + 6 * padded_w)),
            ("patches", "col", (chunks, 36, channels_in, rows * tiles_w)),
            ("products", "wide", (chunks, 36, channels_out, rows * tiles_w)))


def transformed_filters(weight, plan):
    """A new array of the forward pass's transformed filters (36, D, C), for callers that keep them."""
    filters = np.empty(next(buffer.shape for buffer in plan.buffers if buffer.name == "filters"), weight.dtype)
    winograd4_weights(weight, filters, False)
    return filters


def run_transformed(input, filters, bias, output, buffers, padding_h, padding_w, epilogue=None):
    """The convolution with filters already transformed (by winograd4_weights); buffers as the plan's;
    epilogue: (scale, shift, residual, activation) as gemm.forward takes it, or None."""
    tiles_h, tiles_w = (output.shape[2] + 3) // 4, (output.shape[3] + 3) // 4
    tasks = input.shape[0] * -(-tiles_h // (buffers["patches"].shape[3] // tiles_w))
    parts = channel_parts(tasks, output.shape[1], numba.get_num_threads())
    with single_threaded():
        conv2d_winograd4(input, filters, bias, output, buffers["padded"], buffers["patches"], buffers["products"],
                         padding_h, padding_w, parts, *(epilogue or no_epilogue(output.dtype)))


def _run(input, weight, bias, output, buffers, padding_h, padding_w, turned):
    winograd4_weights(weight, buffers["filters"], turned)
    run_transformed(input, buffers["filters"], bias, output, buffers, padding_h, padding_w)


def forward(input, weight, bias, output, buffers, plan):
    convolution = plan.convolution
    _run(input, weight, bias, output, buffers, convolution.padding_h, convolution.padding_w, turned=False)


def backward_input(grad_output, weight, grad_input, buffers, plan):
    convolution = plan.convolution
    _run(grad_output, weight, np.empty(0, grad_output.dtype), grad_input, buffers, 2 - convolution.padding_h,
         2 - convolution.padding_w, turned=True)
