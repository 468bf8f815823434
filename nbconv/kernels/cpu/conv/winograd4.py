"""3x3, stride-1, undilated, ungrouped convolution by Winograd's minimal filtering F(4x4, 3x3) for the CPU.

Each 4x4 block of outputs ("tile") of one channel pair is A^T [ (G g G^T) * (B^T d B) ] A for the 6x6 input
patch d under it and the 3x3 filter g. Summed over input channels, the 36 element-wise products become 36
matrix products V[xi] (tiles, C) @ U[xi] (C, D): 36 multiply-adds per 16 outputs per channel pair instead
of 144, 4x less arithmetic than im2col (F(2x2, 3x3), winograd.py: 2.25x).

The transforms interpolate at the points 0, 1, -1, 1/2, -2 and infinity. Lavin's usual 0, +-1, +-2 make
float32 results about 2.5x less accurate: the float32 error is that of the products M[xi], which A^T
weighs by the points' powers (up to 8 here, as with +-2) and which B^T's and G's coefficients make larger
than the outputs; these points keep it about half that of 0, +-1, +-2 (benchmarks/NOTES.md, section 63).
Exact in exact arithmetic; B^T's and A^T's coefficients (halves to eighths) are exact in binary, and G's
thirds and fifteenths are applied in float64, once per filter.

The work is cut as in winograd.py: tasks are (images, block of tile rows, slice of output channels). Each
parallel chunk pads the input rows its block reads channels last (`pad_channels_last`, a transposition), so
that every step of the transforms is a loop along the channels over contiguous vectors; transforms the
patches into V (36, tiles, C); runs the 36 products (tiles, C) @ (C, D) with the BLAS; transforms the
results back into the output, channels first, then applies the epilogue. A block holds at least BLOCK_TILES
tiles where it can: more rows than the cache budget gives, or several whole images when one has fewer (the
products ran ~25% slower 49 tiles wide than 98). The input gradient is the same computation on the output
gradient with the filters turned by 180 degrees, their channel axes swapped, and padding 2 - p.
"""
from numba import njit

import numpy as np

from ..blas import NO_TRANS, address, gemm, single_threaded
from ..scale_shift import epilogue_span, no_epilogue
from ..shared import chunk_bounds
from ..threads import num_threads, parallel_parts
from .blocks import balanced_rows, block_rows, channel_parts, max_chunks

# G, in float64: row a weighs a filter's three rows (or columns) for the point a, p^0, p^1, p^2 over
# prod_{q != p}(p - q) for each finite point p (0, 1, -1, 1/2, -2), then (0, 0, 1) for infinity. One loop of
# three multiply-adds serves every row: LLVM compiles it once, not once per row.
FILTER_ROWS = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [-1 / 3, 1 / 3, -1 / 3],
                        [-16 / 15, -8 / 15, -4 / 15], [1 / 15, -2 / 15, 4 / 15], [0.0, 0.0, 1.0]])


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def winograd4_weights_span(span_part, span_parts, weight, transformed, turned):
    """winograd4_weights over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    channels_in, channels_out = transformed.shape[1], transformed.shape[2]
    taps = np.empty((9, channels_out))  # the filters from input channel ci, tap by tap, in float64
    left = np.empty((18, channels_out))  # G g
    span_first, span_last = chunk_bounds(span_part, span_parts, channels_in)
    for ci in range(span_first, span_last):
        for i in range(3):
            for j in range(3):
                row = taps[3 * i + j]
                if turned:
                    for co in range(channels_out):
                        row[co] = weight[ci, co, 2 - i, 2 - j]
                else:
                    for co in range(channels_out):
                        row[co] = weight[co, ci, i, j]
        for a in range(6):  # G g: row a of G over the filter's rows, column by column
            g0, g1, g2 = FILTER_ROWS[a, 0], FILTER_ROWS[a, 1], FILTER_ROWS[a, 2]
            for j in range(3):
                out, v0, v1, v2 = left[3 * a + j], taps[j], taps[3 + j], taps[6 + j]
                for co in range(channels_out):
                    out[co] = g0 * v0[co] + g1 * v1[co] + g2 * v2[co]
        for ab in range(36):  # (G g) G^T: element (a, b)
            a, b = ab // 6, ab % 6
            g0, g1, g2 = FILTER_ROWS[b, 0], FILTER_ROWS[b, 1], FILTER_ROWS[b, 2]
            v0, v1, v2, target = left[3 * a], left[3 * a + 1], left[3 * a + 2], transformed[ab, ci]
            for co in range(channels_out):
                target[co] = g0 * v0[co] + g1 * v1[co] + g2 * v2[co]


def winograd4_weights(weight, transformed, turned):
    """transformed[6a + b, c, d] = (G g G^T)[a, b] for g = weight[d, c]; with `turned`, for g = weight[c, d]
    rotated by 180 degrees (the filters of the input gradient). transformed: (36, C', D'), input channels
    first, so that each product is (tiles, C') @ (C', D')."""
    parallel_parts(winograd4_weights_span, num_threads(), weight, transformed, turned)


@njit(cache=True, no_cfunc_wrapper=True)
def pad_channels_last(image, slab, first_row, rows, padding_h, padding_w, padded_w):
    """slab[(r*Wp + w + pw)*C + c] = image[c, first_row + r - ph, w] for r < rows, zero in the padding: the
    rows an image's block of tiles reads, channels last (a transposition)."""
    C, H, W = image.shape
    for q in range(rows * padded_w * C):
        slab[q] = 0
    for r in range(rows):
        h = first_row + r - padding_h
        if 0 <= h < H:
            plane_row = image[:, h]
            for w in range(W):  # a position's C values stored together (C apart: 0.22 against 0.13 ms, 64 x 56 x 56)
                target = slab[(r * padded_w + padding_w + w) * C:(r * padded_w + padding_w + w + 1) * C]
                for c in range(C):
                    target[c] = plane_row[c, w]


@njit(cache=True, inline="always")
def _input_rows(v0, v1, v2, v3, v4, v5, out0, out1, out2, out3, out4, out5):
    """out_a = row a of B^T applied to six vectors, for the six rows (B^T's rows: the coefficients of
    prod_{q != p}(x - q) for each finite point p, then of prod_q (x - q) for infinity). One loop along the
    vectors; constants of the data's type, so that float32 stays in float32 vectors."""
    kind = out0.dtype.type
    for c in range(out0.shape[0]):
        d0, d1, d2, d3, d4, d5 = v0[c], v1[c], v2[c], v3[c], v4[c], v5[c]
        out0[c] = d0 - kind(1.5) * d1 - kind(2.0) * d2 + kind(1.5) * d3 + d4
        out1[c] = kind(0.5) * d2 - d1 + kind(2.5) * d3 + d4
        out2[c] = d1 - kind(2.5) * d2 + kind(0.5) * d3 + d4
        out3[c] = kind(2.0) * (d3 - d1) - d2 + d4
        out4[c] = kind(0.5) * (d1 - d3) - d2 + d4
        out5[c] = d1 - kind(1.5) * d2 - kind(2.0) * d3 + kind(1.5) * d4 + d5


@njit(cache=True, no_cfunc_wrapper=True)
def transform_patches(slab, half, patches, first_tile, tile_rows, tiles_w, padded_w):
    """patches[6a + b, first_tile + r*TW + tw, :] = (B^T d B)[a, b] for the 6x6 patch d of C-vectors at slab rows 4r..,
    columns 4tw.. . slab: (rows*padded_w*C,) channels last (pad_channels_last); half: (36, C) scratch for
    B^T d; patches: (36, >= tile_rows*TW, C). Every loop runs along the channels."""
    C = patches.shape[2]
    step = padded_w * C
    for r in range(tile_rows):
        for tw in range(tiles_w):
            t = first_tile + r * tiles_w + tw
            for k in range(6):  # B^T d, column k of the patch
                at = ((4 * r) * padded_w + 4 * tw + k) * C
                _input_rows(slab[at:at + C], slab[at + step:at + step + C], slab[at + 2 * step:at + 2 * step + C],
                            slab[at + 3 * step:at + 3 * step + C], slab[at + 4 * step:at + 4 * step + C],
                            slab[at + 5 * step:at + 5 * step + C],
                            half[k], half[6 + k], half[12 + k], half[18 + k], half[24 + k], half[30 + k])
            for a in range(6):  # (B^T d) B, row a
                _input_rows(half[6 * a], half[6 * a + 1], half[6 * a + 2], half[6 * a + 3], half[6 * a + 4],
                            half[6 * a + 5], patches[6 * a, t], patches[6 * a + 1, t], patches[6 * a + 2, t],
                            patches[6 * a + 3, t], patches[6 * a + 4, t], patches[6 * a + 5, t])


@njit(cache=True, inline="always")
def _output_rows(v0, v1, v2, v3, v4, v5, out0, out1, out2, out3):
    """out_i = row i of A^T applied to six vectors, for the four rows (A^T's columns: p^0..p^3 for each
    finite point p, then (0, 0, 0, 1) for infinity); one loop along the vectors."""
    kind = out0.dtype.type
    for d in range(out0.shape[0]):
        m0, m1, m2, m3, m4, m5 = v0[d], v1[d], v2[d], v3[d], v4[d], v5[d]
        plus, minus = m1 + m2, m1 - m2
        out0[d] = m0 + plus + m3 + m4
        out1[d] = minus + kind(0.5) * m3 - kind(2.0) * m4
        out2[d] = plus + kind(0.25) * m3 + kind(4.0) * m4
        out3[d] = minus + kind(0.125) * m3 - kind(8.0) * m4 + m5


@njit(cache=True, no_cfunc_wrapper=True)
def untransform_tiles(products, scratch, output, bias, n, first_tile, first_tile_row, tile_rows, tiles_w, d0,
                      d1):
    """output[n, d, 4(first_tile_row + r) + i, 4tw + j] = (A^T m A)[i, j] + bias[d] for m = products[:,
    first_tile + r*TW + tw, d - d0], where it falls inside the output, for the channels d in [d0, d1). products: (36,
    >= tile_rows*TW, >= d1 - d0); scratch: (>= (24 + 16*TW)*(d1 - d0),), for m A of one tile and a row of tiles'
    outputs, channels last.

    A row of tiles is finished channels last, along contiguous vectors of channels, and then written out a
    channel's output row at a time: storing each tile's 16 values of a channel straight into the channels-first
    output touched 16 lines a channel (1.7 ns a value on 64 channels at 56x56)."""
    OH, OW = output.shape[2], output.shape[3]
    has_bias = bias.shape[0] > 0
    width = d1 - d0
    row_width = 4 * tiles_w  # the outputs of a row of tiles, a row of them, before the crop to OW
    half = scratch[:24 * width].reshape((24, width))
    staged = scratch[24 * width:(24 + 16 * tiles_w) * width]  # [(i*row_width + column)*width + d]
    for r in range(tile_rows):
        oh = 4 * (first_tile_row + r)
        for tw in range(tiles_w):
            t = first_tile + r * tiles_w + tw
            for a in range(6):  # m A, row a
                _output_rows(products[6 * a, t, :width], products[6 * a + 1, t, :width],
                             products[6 * a + 2, t, :width], products[6 * a + 3, t, :width],
                             products[6 * a + 4, t, :width], products[6 * a + 5, t, :width],
                             half[4 * a], half[4 * a + 1], half[4 * a + 2], half[4 * a + 3])
            for j in range(4):  # A^T (m A), column j: the outputs (i, 4tw + j) of the row of tiles
                at = (4 * tw + j) * width
                _output_rows(half[j], half[4 + j], half[8 + j], half[12 + j], half[16 + j], half[20 + j],
                             staged[at:at + width], staged[row_width * width + at:row_width * width + at + width],
                             staged[2 * row_width * width + at:2 * row_width * width + at + width],
                             staged[3 * row_width * width + at:3 * row_width * width + at + width])
        for i in range(min(4, OH - oh)):  # into the output, channels first
            for d in range(width):
                target = output[n, d0 + d, oh + i]
                values = staged[i * row_width * width + d:]
                if has_bias:
                    offset = bias[d0 + d]
                    for column in range(OW):
                        target[column] = values[column * width] + offset
                else:
                    for column in range(OW):
                        target[column] = values[column * width]


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def conv2d_winograd4_span(span_part, span_parts, input, transformed, bias, output, padded, patches, products,
                          padding_h, padding_w, parts, scale, shift, residual, activation):
    """conv2d_winograd4 over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    N, C, H, W = input.shape
    D, OH, OW = output.shape[1], output.shape[2], output.shape[3]
    tiles_h, tiles_w = (OH + 3) // 4, (OW + 3) // 4
    padded_w = 4 * tiles_w + 2
    chunks, block = patches.shape[0], patches.shape[2]
    images = max(1, block // (tiles_h * tiles_w))  # whole images a block, or one image's rows of tiles
    block_rows = min(tiles_h, block // tiles_w)
    blocks = (tiles_h + block_rows - 1) // block_rows
    groups = (N + images - 1) // images
    slab_size = (4 * block_rows + 2) * padded_w * C
    size = output.itemsize
    flat_output = output.reshape((N, D, OH * OW))
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        slab = padded[chunk, :slab_size]
        half = padded[chunk, slab_size:slab_size + 36 * C].reshape((36, C))
        scratch = padded[chunk, slab_size + 36 * C:]
        transformed_patches, tile_products = patches[chunk], products[chunk]
        first, last = chunk_bounds(chunk, chunks, groups * blocks * parts)
        for task in range(first, last):
            n0 = task // (blocks * parts) * images
            n1 = min(N, n0 + images)
            tr0 = (task // parts % blocks) * block_rows
            d0, d1 = chunk_bounds(task % parts, parts, D)
            tile_rows = min(block_rows, tiles_h - tr0)
            per_image = tile_rows * tiles_w
            for n in range(n0, n1):
                pad_channels_last(input[n], slab, 4 * tr0, 4 * tile_rows + 2, padding_h, padding_w, padded_w)
                transform_patches(slab, half, transformed_patches, (n - n0) * per_image, tile_rows, tiles_w,
                                  padded_w)
            tiles = (n1 - n0) * per_image
            for xi in range(36):  # (tiles, C) @ (C, D slice): the products' channels last, as the patches'
                gemm(NO_TRANS, NO_TRANS, tiles, d1 - d0, C, 1.0, address(transformed_patches, xi * block * C), C,
                     address(transformed, xi * C * D + d0), D, 0.0, address(tile_products, xi * block * D), D,
                     size)
            for n in range(n0, n1):
                untransform_tiles(tile_products, scratch, output, bias, n, (n - n0) * per_image, tr0, tile_rows,
                                  tiles_w, d0, d1)
                for d in range(d0, d1):
                    epilogue_span(flat_output, n, d, 4 * tr0 * OW, min(OH, 4 * (tr0 + tile_rows)) * OW, scale,
                                  shift, residual, activation)


def conv2d_winograd4(input, transformed, bias, output, padded, patches, products, padding_h, padding_w, parts,
                     scale, shift, residual, activation):
    """output (N, D, OH, OW) = the 3x3 stride-1 convolution of input (N, C, H, W) with the filters that
    `winograd4_weights` turned into transformed (36, C, D), plus bias. padded, patches, products: one buffer
    per parallel chunk, (chunks, (4*block_rows + 2)*padded_w*C + 36*C + (24 + 16*TW)*D) (one image's padded input rows,
    channels last, then transform scratch), (chunks, 36, block, C) and (chunks, 36, block, D), a block
    holding whole rows of tiles of one image, or several whole images when it has room for them; parts:
    slices of the D output channels per task (blocks.channel_parts); the epilogue as
    winograd.conv2d_winograd's."""
    parallel_parts(conv2d_winograd4_span, num_threads(), input, transformed, bias, output, padded,
                   patches, products, padding_h, padding_w, parts, scale, shift, residual, activation)


BLOCK_TILES = 96  # a block has at least this many tiles, where there are images enough: OpenBLAS ran the products
                  # (tiles, C) @ (C, D) ~25% slower 49 tiles wide (a 28x28 image) than 98 wide

# A pass with fewer blocks than threads cuts its image's rows of tiles into one block a thread, instead of
# slicing the output channels, when it has at most this many output channels: each slice transforms the whole
# input again, each block of rows packs every transformed filter again, and the filters (36 x C x D) grow with D.
# ResNet-50's 128-channel layers on 28x28 at batch 1, two threads: 0.54 -> 0.46 ms (rows of tiles 4 + 3); 256
# channels the same; 512 channels 0.93x (benchmarks/NOTES.md, section 92).
ROWS_NOT_SLICES_MOST_CHANNELS = 128


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


def _tasks(images, tiles_h, tiles_w, block):
    """How many (images, block of rows) tasks a pass with blocks of `block` tiles has (see conv2d_winograd4)."""
    together = max(1, block // (tiles_h * tiles_w))
    return -(-images // together) * -(-tiles_h // min(tiles_h, block // tiles_w))


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer: filters (36, C', D'), the transformed filters; per
    parallel chunk: padded ((4*block_rows + 2)*(4*TW + 2)*C' + 36*C' + (24 + 16*TW)*D',), one image's input rows it
    reads and transform scratch; patches (36, block, C'); products (36, block, D'). A block is the rows of
    tiles that fill the cache budget (blocks.block_rows), but at least BLOCK_TILES tiles where the image has
    them (each product reads only its own slice of the block); where that is a whole image of fewer than
    BLOCK_TILES tiles, enough whole images to reach it, while every thread still gets a task."""
    N, channels_in, channels_out, out_h, out_w = _sides(pass_, convolution)
    tiles_h, tiles_w = (out_h + 3) // 4, (out_w + 3) // 4
    padded_w = 4 * tiles_w + 2
    rows = max(block_rows(36 * channels_in, tiles_w, tiles_h, itemsize), min(tiles_h, -(-BLOCK_TILES // tiles_w)))
    rows = balanced_rows(rows, tiles_h, N, channels_out, threads)  # rows of tiles
    if N * -(-tiles_h // rows) < threads and channels_out <= ROWS_NOT_SLICES_MOST_CHANNELS:
        rows = -(-tiles_h // min(tiles_h, -(-threads // N)))
    block = rows * tiles_w
    if rows == tiles_h:
        images = max(1, min(N, -(-BLOCK_TILES // block)))
        while images > 1 and -(-N // images) < threads:
            images -= 1
        images = -(-N // -(-N // images))  # groups of near-equal size: 8 images in 4 + 4, not 7 + 1
        block *= images
    tasks = _tasks(N, tiles_h, tiles_w, block)
    tasks *= channel_parts(tasks, channels_out, threads)
    chunks = max(1, min(tasks, max_chunks(pass_, threads)))
    return (("filters", "winograd_weights", (36, channels_in, channels_out)),
            ("padded", "padded", (chunks, (4 * rows + 2) * padded_w * channels_in + 36 * channels_in
                                  + (24 + 16 * tiles_w) * channels_out)),
            ("patches", "col", (chunks, 36, block, channels_in)),
            ("products", "wide", (chunks, 36, block, channels_out)))


def transformed_filters(weight, plan):
    """A new array of the forward pass's transformed filters (36, C, D), for callers that keep them."""
    filters = np.empty(next(buffer.shape for buffer in plan.buffers if buffer.name == "filters"), weight.dtype)
    winograd4_weights(weight, filters, False)
    return filters


def run_transformed(input, filters, bias, output, buffers, padding_h, padding_w, epilogue=None):
    """The convolution with filters already transformed (by winograd4_weights); buffers as the plan's;
    epilogue: (scale, shift, residual, activation) as gemm.forward takes it, or None."""
    tiles_h, tiles_w = (output.shape[2] + 3) // 4, (output.shape[3] + 3) // 4
    tasks = _tasks(input.shape[0], tiles_h, tiles_w, buffers["patches"].shape[2])
    parts = channel_parts(tasks, output.shape[1], num_threads())
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
