"""The weight gradient of a 3x3, stride-1, undilated, ungrouped convolution by Winograd's F(4x4, 3x3), for
the CPU.

The forward pass (winograd4.py) computes a 4x4 output tile as A^T [U * V] A, with U = G g G^T the
transformed filter and V = B^T d B the transformed 6x6 input patch under the tile. Its adjoint with respect
to g is the weight gradient: for output-gradient tiles y (4x4, zero past the output's edge),

    grad g[d, c] = G^T ( sum over tiles of (A y_d A^T) * (B^T d_c B) ) G,

so the 36 positions xi of the 6x6 transformed tile give 36 matrix products Y[xi]^T (D, tiles) @ V[xi]
(tiles, C), each D x C and as deep as there are tiles: 36 multiply-adds per 16 outputs per channel pair
instead of 144 (4x less arithmetic than im2col; F(2x2), winograd_weight.py: 2.25x). The points are
winograd4.py's (0, 1, -1, 1/2, -2, infinity): A's coefficients (halves to eighths, and up to 8) are exact
in binary; G's thirds and fifteenths are applied in float64, once per (d, c) pair, to the float32 sums.

The structure is winograd_weight.py's: the batch goes through in blocks of whole images (BLOCK_BYTES of
transformed tiles). For each block, one parallel pass transforms the input and the output gradient of
every (image, block of tile rows) task, channels last as winograd4.py lays them out (its
`pad_channels_last` and `transform_patches`: every transform step is a loop along the channels), into
`input_tiles` (36, capacity, C) and `output_tiles` (36, capacity, D); a second runs the 36 products, one
per thread at a time, adding into `sums` (36, D, C). Each product's sum over the batch runs in block order
inside single-threaded BLAS calls, so the result does not depend on the thread count. A last pass turns
`sums` into the 3x3 gradients.
"""
from numba import njit

import numpy as np

from ..blas import NO_TRANS, TRANS, address, gemm, single_threaded
from ..shared import chunk_bounds
from ..threads import num_threads, parallel_parts
from .blocks import CHUNKS_PER_THREAD
from .winograd4 import pad_channels_last, transform_patches
from . import winograd_weight

BLOCK_BYTES = 64 * 1024 * 1024  # transformed input and output-gradient tiles of one block of images (as F(2x2)'s)
SLAB_BYTES = 256 * 1024  # a task's rows of the input, channels last (its tile rows: as many as fit, at least one)
THIRD, FIFTEENTH = 1.0 / 3.0, 1.0 / 15.0


@njit(cache=True, inline="always")
def _gradient_rows(v0, v1, v2, v3, out0, out1, out2, out3, out4, out5):
    """out_a = row a of A applied to four vectors, for the six rows (A's rows: p^0..p^3 for the points 0, 1,
    -1, 1/2, -2, then (0, 0, 0, 1) for infinity). One loop along the vectors, constants of the data's type."""
    kind = out0.dtype.type
    for d in range(out0.shape[0]):
        y0, y1, y2, y3 = v0[d], v1[d], v2[d], v3[d]
        even, odd = y0 + y2, y1 + y3
        out0[d] = y0
        out1[d] = even + odd
        out2[d] = even - odd
        out3[d] = y0 + kind(0.5) * y1 + kind(0.25) * y2 + kind(0.125) * y3
        out4[d] = y0 - kind(2.0) * y1 + kind(4.0) * y2 - kind(8.0) * y3
        out5[d] = y3


@njit(cache=True, no_cfunc_wrapper=True)
def transform_gradients(slab, half, tiles, first_tile, tile_rows, tiles_w, width):
    """tiles[6a + b, first_tile + r*TW + tw, :] = (A y A^T)[a, b] for the 4x4 tile y of D-vectors at slab rows
    4r.., columns 4tw.. . slab: (4*tile_rows*width*D,) channels last, zero past the output (width = 4TW);
    half: (>= 24, D) scratch for A y; tiles: (36, >= first_tile + tile_rows*TW, D)."""
    D = tiles.shape[2]
    step = width * D
    for r in range(tile_rows):
        for tw in range(tiles_w):
            t = first_tile + r * tiles_w + tw
            for k in range(4):  # A y, column k of the tile
                at = ((4 * r) * width + 4 * tw + k) * D
                _gradient_rows(slab[at:at + D], slab[at + step:at + step + D], slab[at + 2 * step:at + 2 * step + D],
                               slab[at + 3 * step:at + 3 * step + D], half[k], half[4 + k], half[8 + k],
                               half[12 + k], half[16 + k], half[20 + k])
            for a in range(6):  # (A y) A^T, row a
                _gradient_rows(half[4 * a], half[4 * a + 1], half[4 * a + 2], half[4 * a + 3], tiles[6 * a, t],
                               tiles[6 * a + 1, t], tiles[6 * a + 2, t], tiles[6 * a + 3, t], tiles[6 * a + 4, t],
                               tiles[6 * a + 5, t])


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def _transform_block_span(span_part, span_parts, input, grad_output, scratch, input_tiles, output_tiles,
                          first_image, images, rows, padding_h, padding_w):
    """_transform_block over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    C, D = input.shape[1], grad_output.shape[1]
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    tiles_h, tiles_w = (OH + 3) // 4, (OW + 3) // 4
    per_image = tiles_h * tiles_w
    padded_w = 4 * tiles_w + 2
    blocks = (tiles_h + rows - 1) // rows
    slab_size = max((4 * rows + 2) * padded_w * C, 4 * rows * 4 * tiles_w * D)
    chunks = scratch.shape[0]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        slab = scratch[chunk, :slab_size]
        spare = scratch[chunk, slab_size:]
        input_half = spare[:36 * C].reshape((36, C))
        output_half = spare[:24 * D].reshape((24, D))
        first, last = chunk_bounds(chunk, chunks, images * blocks)
        for task in range(first, last):
            n, tr0 = task // blocks, (task % blocks) * rows
            tile_rows = min(rows, tiles_h - tr0)
            first_tile = n * per_image + tr0 * tiles_w
            pad_channels_last(input[first_image + n], slab, 4 * tr0, 4 * tile_rows + 2, padding_h, padding_w,
                              padded_w)
            transform_patches(slab, input_half, input_tiles, first_tile, tile_rows, tiles_w, padded_w)
            pad_channels_last(grad_output[first_image + n], slab, 4 * tr0, 4 * tile_rows, 0, 0, 4 * tiles_w)
            transform_gradients(slab, output_half, output_tiles, first_tile, tile_rows, tiles_w, 4 * tiles_w)


def _transform_block(input, grad_output, scratch, input_tiles, output_tiles, first_image, images, rows, padding_h,
                     padding_w):
    """Transform the input and output gradient of images [first_image, first_image + images), `rows` tile rows
    a task."""
    parallel_parts(_transform_block_span, num_threads(), input, grad_output, scratch, input_tiles,
                   output_tiles, first_image, images, rows, padding_h, padding_w)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def _multiply_block_span(span_part, span_parts, input_tiles, output_tiles, sums, tiles, accumulate):
    """_multiply_block over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    capacity, C = input_tiles.shape[1], input_tiles.shape[2]
    D = output_tiles.shape[2]
    size = sums.itemsize
    span_first, span_last = chunk_bounds(span_part, span_parts, 36)
    for xi in range(span_first, span_last):
        gemm(TRANS, NO_TRANS, D, C, tiles, 1.0, address(output_tiles, xi * capacity * D), D,
             address(input_tiles, xi * capacity * C), C, 1.0 if accumulate else 0.0, address(sums, xi * D * C), C,
             size)


def _multiply_block(input_tiles, output_tiles, sums, tiles, accumulate):
    """sums[xi] (D, C) (+)= output_tiles[xi, :tiles].T @ input_tiles[xi, :tiles] for the 36 xi."""
    parallel_parts(_multiply_block_span, num_threads(), input_tiles, output_tiles, sums, tiles, accumulate)


@njit(cache=True, inline="always")
def _filter_columns(m0, m1, m2, m3, m4, m5):
    """(m G)[0..2] for a row m of six values, in float64 (G's columns: winograd4.FILTER_ROWS, read
    down: the points 0, 1, -1, 1/2, -2 and infinity)."""
    odd, even = (m1 - m2) * THIRD, (m1 + m2) * THIRD
    return (m0 + odd + (m4 - 16.0 * m3) * FIFTEENTH, even - (8.0 * m3 + 2.0 * m4) * FIFTEENTH,
            odd + 4.0 * (m4 - m3) * FIFTEENTH + m5)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def _untransform_sums_span(span_part, span_parts, sums, grad_weight):
    """_untransform_sums over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    D, C = grad_weight.shape[0], grad_weight.shape[1]
    span_first, span_last = chunk_bounds(span_part, span_parts, D)
    left = np.empty((18, C))  # m G (6 x 3) for every input channel, in float64: row a, column j at 3a + j
    for d in range(span_first, span_last):
        for a in range(6):  # loops along the input channels: sums[xi, d] is contiguous
            m0, m1, m2 = sums[6 * a, d], sums[6 * a + 1, d], sums[6 * a + 2, d]
            m3, m4, m5 = sums[6 * a + 3, d], sums[6 * a + 4, d], sums[6 * a + 5, d]
            target0, target1, target2 = left[3 * a], left[3 * a + 1], left[3 * a + 2]
            for c in range(C):
                target0[c], target1[c], target2[c] = _filter_columns(
                    float(m0[c]), float(m1[c]), float(m2[c]), float(m3[c]), float(m4[c]), float(m5[c]))
        target = grad_weight[d]
        for j in range(3):  # G^T (m G), column j
            for c in range(C):
                g0, g1, g2 = _filter_columns(left[j, c], left[3 + j, c], left[6 + j, c], left[9 + j, c],
                                             left[12 + j, c], left[15 + j, c])
                target[c, 0, j], target[c, 1, j], target[c, 2, j] = g0, g1, g2


def _untransform_sums(sums, grad_weight):
    """grad_weight[d, c] (3x3) = G^T m G for m = sums[:, d, c] (6x6)."""
    parallel_parts(_untransform_sums_span, num_threads(), sums, grad_weight)


def conv2d_backward_weight_winograd4(grad_output, input, grad_weight, scratch, input_tiles, output_tiles, sums,
                                     rows, padding_h, padding_w):
    """grad_weight (D, C, 3, 3) of the 3x3 stride-1 convolution of input (N, C, H, W) with output gradient
    grad_output (N, D, OH, OW), summed over the batch. Buffers (see `buffers`): scratch (chunks, slab + 36
    vectors), input_tiles (36, capacity, C), output_tiles (36, capacity, D), sums (36, D, C); capacity is a
    whole number of images' tiles; rows: tile rows a transform task. Call with the BLAS single-threaded."""
    N = input.shape[0]
    per_image = ((grad_output.shape[2] + 3) // 4) * ((grad_output.shape[3] + 3) // 4)
    block_images = input_tiles.shape[1] // per_image
    for first_image in range(0, N, block_images):
        images = min(block_images, N - first_image)
        _transform_block(input, grad_output, scratch, input_tiles, output_tiles, first_image, images, rows,
                         padding_h, padding_w)
        _multiply_block(input_tiles, output_tiles, sums, images * per_image, first_image > 0)
    _untransform_sums(sums, grad_weight)


# The plan's surface: applies, buffers and the weight-gradient pass (see plan.py).
applies = winograd_weight.applies  # the same layers as F(2x2)'s weight gradient: 3x3, stride 1, any padding


def _rows(convolution, itemsize):
    """Tile rows a transform task: as many as keep its input slab within SLAB_BYTES, at least one."""
    C, D = convolution.input_shape[1], convolution.weight_shape[0]
    _, _, out_h, out_w = convolution.output_shape
    tiles_h, padded_w = (out_h + 3) // 4, 4 * ((out_w + 3) // 4) + 2
    return max(1, min(tiles_h, (SLAB_BYTES // (itemsize * padded_w * max(C, D)) - 2) // 4))


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer: scratch (chunks, slab + 36 vectors), a task's input or
    output-gradient rows channels last and transform scratch, per parallel chunk; input_tiles (36, capacity,
    C) and output_tiles (36, capacity, D), the transformed tiles of one block of whole images (about
    BLOCK_BYTES, at least one image); sums (36, D, C)."""
    N, C, _, _ = convolution.input_shape
    D = convolution.weight_shape[0]
    _, _, out_h, out_w = convolution.output_shape
    tiles_h, tiles_w = (out_h + 3) // 4, (out_w + 3) // 4
    per_image = tiles_h * tiles_w
    block_images = max(1, min(N, BLOCK_BYTES // (36 * (C + D) * per_image * itemsize)))
    rows = _rows(convolution, itemsize)
    tasks = block_images * -(-tiles_h // rows)
    chunks = max(1, min(CHUNKS_PER_THREAD * threads, tasks))
    slab = max((4 * rows + 2) * (4 * tiles_w + 2) * C, 4 * rows * 4 * tiles_w * D)
    return (("scratch", "padded", (chunks, slab + 36 * max(C, D))),
            ("input_tiles", "col", (36, block_images * per_image, C)),
            ("output_tiles", "wide", (36, block_images * per_image, D)),
            ("sums", "partial", (36, D, C)))


def backward_weight(grad_output, input, grad_weight, buffers, plan):
    convolution = plan.convolution
    with single_threaded():
        conv2d_backward_weight_winograd4(grad_output, input, grad_weight, buffers["scratch"], buffers["input_tiles"],
                                         buffers["output_tiles"], buffers["sums"],
                                         _rows(convolution, grad_output.itemsize), convolution.padding_h,
                                         convolution.padding_w)
