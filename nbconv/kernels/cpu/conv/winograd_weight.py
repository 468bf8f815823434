"""The weight gradient of a 3x3, stride-1, undilated, ungrouped convolution by Winograd's F(2x2, 3x3), for
the CPU.

The forward pass (winograd.py) computes a 2x2 output tile as A^T [U * V] A, with U = G g G^T the
transformed filter and V = B^T d B the transformed 4x4 input patch under the tile. Its adjoint with respect
to g is the weight gradient: for output gradient tiles y (2x2, zero past the output's edge),

    grad g[d, c] = G^T ( sum over tiles of (A y_d A^T) * (B^T d_c B) ) G,

so the 16 positions xi of the 4x4 transformed tile give 16 matrix products Y[xi] (D, tiles) @ V[xi] (C,
tiles)^T, each D x C and as deep as there are tiles. That is 16 multiply-adds per 4 outputs per channel
pair instead of 36 (2.25x less arithmetic than im2col), exact in exact arithmetic.

The batch goes through in blocks of whole images (BLOCK_BYTES of transformed tiles). For each block, one
parallel pass transforms every input plane (padded) and every output-gradient plane into `input_tiles`
(16, C, tiles) and `output_tiles` (16, D, tiles); a second runs the 16 products, one per thread at a
time, adding into `sums` (16, D, C). Each product's sum over the batch runs in block order inside one
single-threaded BLAS call, so the result does not depend on the thread count, and there are no per-thread
partial gradients (16 x 9C x D floats each, 150 MB at 512 channels, for the unrolled weight gradient).
A last pass turns `sums` into the 3x3 gradients.
"""
from numba import njit

from ..blas import NO_TRANS, TRANS, address, gemm, single_threaded
from ..shared import chunk_bounds, fill_zero
from ..threads import num_threads, parallel_parts
from .blocks import CHUNKS_PER_THREAD

BLOCK_BYTES = 64 * 1024 * 1024  # transformed input and output-gradient tiles of one block of images (see NOTES.md 19)


@njit(cache=True, no_cfunc_wrapper=True)
def _pad_plane(source, plane, top, left, rows, cols):
    """plane (rows*cols,) = source (h, w) placed at row `top`, column `left` of a zero rows x cols plane,
    cut to the plane."""
    fill_zero(plane)
    H, W = source.shape
    first_w, last_w = max(0, -left), min(W, cols - left)
    for h in range(max(0, -top), min(H, rows - top)):
        target = plane[(h + top) * cols:(h + top + 1) * cols]
        row = source[h]
        for w in range(first_w, last_w):
            target[w + left] = row[w]


@njit(cache=True, no_cfunc_wrapper=True)
def _input_columns(row, out0, out1, out2, out3):
    """The column half of B^T d B along one row of (B^T d): out_b[tw] = (row[2tw..2tw+3] B)[b]. Separate
    loops with one source and four targets, so that LLVM vectorises them (stride-2 loads)."""
    for tw in range(out0.shape[0]):
        middle = row[2 * tw + 2]
        out0[tw] = row[2 * tw] - middle
        out1[tw] = row[2 * tw + 1] + middle
        out2[tw] = middle - row[2 * tw + 1]
        out3[tw] = row[2 * tw + 1] - row[2 * tw + 3]


@njit(cache=True, no_cfunc_wrapper=True)
def _transform_input_plane(plane, rows, input_tiles, c, first_tile, tiles_h, tiles_w):
    """input_tiles[4a + b, c, first_tile + tr*TW + tw] = (B^T d B)[a, b] for the 4x4 patch d at rows 2tr..,
    columns 2tw.. of plane, a padded (2TH + 2) x (2TW + 2) plane laid out flat. rows: (4, 2TW + 2) scratch
    for the row half, B^T d, of one row of tiles. B^T's rows: (1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0),
    (0, 1, 0, -1)."""
    cols = 2 * tiles_w + 2
    first, second, third, fourth = rows[0], rows[1], rows[2], rows[3]
    for tr in range(tiles_h):
        start = 2 * tr * cols
        row0 = plane[start:start + cols]
        row1 = plane[start + cols:start + 2 * cols]
        row2 = plane[start + 2 * cols:start + 3 * cols]
        row3 = plane[start + 3 * cols:start + 4 * cols]
        for w in range(cols):
            first[w] = row0[w] - row2[w]
            second[w] = row1[w] + row2[w]
            third[w] = row2[w] - row1[w]
            fourth[w] = row1[w] - row3[w]
        lo, hi = first_tile + tr * tiles_w, first_tile + (tr + 1) * tiles_w
        for a, row in enumerate((first, second, third, fourth)):
            _input_columns(row, input_tiles[4 * a, c, lo:hi], input_tiles[4 * a + 1, c, lo:hi],
                           input_tiles[4 * a + 2, c, lo:hi], input_tiles[4 * a + 3, c, lo:hi])


@njit(cache=True, no_cfunc_wrapper=True)
def _output_columns(row, out0, out1, out2, out3):
    """The column half of A y A^T along one row of (A y): out_b[tw] = (row[2tw..2tw+1] A^T)[b]."""
    for tw in range(out0.shape[0]):
        left, right = row[2 * tw], row[2 * tw + 1]
        out0[tw] = left
        out1[tw] = left + right
        out2[tw] = left - right
        out3[tw] = -right


@njit(cache=True, no_cfunc_wrapper=True)
def _transform_output_plane(plane, rows, output_tiles, d, first_tile, tiles_h, tiles_w):
    """output_tiles[4a + b, d, first_tile + tr*TW + tw] = (A y A^T)[a, b] for the 2x2 tile y at rows 2tr..,
    columns 2tw.. of plane, a zero-padded 2TH x 2TW plane laid out flat; rows: (4, >= 2TW) scratch. A's rows:
    (1, 0), (1, 1), (1, -1), (0, -1)."""
    cols = 2 * tiles_w
    first, second, third, fourth = rows[0], rows[1], rows[2], rows[3]
    for tr in range(tiles_h):
        top = plane[2 * tr * cols:(2 * tr + 1) * cols]
        bottom = plane[(2 * tr + 1) * cols:(2 * tr + 2) * cols]
        for w in range(cols):
            first[w] = top[w]
            second[w] = top[w] + bottom[w]
            third[w] = top[w] - bottom[w]
            fourth[w] = -bottom[w]
        lo, hi = first_tile + tr * tiles_w, first_tile + (tr + 1) * tiles_w
        for a, row in enumerate((first, second, third, fourth)):
            _output_columns(row, output_tiles[4 * a, d, lo:hi], output_tiles[4 * a + 1, d, lo:hi],
                            output_tiles[4 * a + 2, d, lo:hi], output_tiles[4 * a + 3, d, lo:hi])


@njit(cache=True, inline="always")
def _g_transpose_column(sums, b, d, c):
    """Column b of G^T m for m = sums[:, d, c] (4x4); G^T's rows: (1, .5, .5, 0), (0, .5, -.5, 0), (0, .5, .5, 1)."""
    m0, m1, m2, m3 = sums[b, d, c], sums[4 + b, d, c], sums[8 + b, d, c], sums[12 + b, d, c]
    half = 0.5 * (m1 + m2)
    return m0 + half, 0.5 * (m1 - m2), half + m3


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def _untransform_sums_span(span_part, span_parts, sums, grad_weight):
    """_untransform_sums over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    D, C = grad_weight.shape[0], grad_weight.shape[1]
    span_first, span_last = chunk_bounds(span_part, span_parts, D)
    for d in range(span_first, span_last):
        for c in range(C):
            target = grad_weight[d, c]
            a0, a1, a2 = _g_transpose_column(sums, 0, d, c)
            b0, b1, b2 = _g_transpose_column(sums, 1, d, c)
            c0, c1, c2 = _g_transpose_column(sums, 2, d, c)
            d0, d1, d2 = _g_transpose_column(sums, 3, d, c)
            # (G^T m) G, row by row: the same combinations across the four columns
            target[0, 0], target[0, 1], target[0, 2] = a0 + 0.5 * (b0 + c0), 0.5 * (b0 - c0), 0.5 * (b0 + c0) + d0
            target[1, 0], target[1, 1], target[1, 2] = a1 + 0.5 * (b1 + c1), 0.5 * (b1 - c1), 0.5 * (b1 + c1) + d1
            target[2, 0], target[2, 1], target[2, 2] = a2 + 0.5 * (b2 + c2), 0.5 * (b2 - c2), 0.5 * (b2 + c2) + d2


def _untransform_sums(sums, grad_weight):
    """grad_weight[d, c] (3x3) = G^T m G for m = sums[:, d, c] (4x4)."""
    parallel_parts(_untransform_sums_span, num_threads(), sums, grad_weight)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def _transform_block_span(span_part, span_parts, input, grad_output, planes, input_tiles, output_tiles, first_image,
                          images, padding_h, padding_w):
    """_transform_block over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    C, D = input.shape[1], grad_output.shape[1]
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    tiles_h, tiles_w = (OH + 1) // 2, (OW + 1) // 2
    per_image = tiles_h * tiles_w
    input_size = (2 * tiles_h + 2) * (2 * tiles_w + 2)
    output_size = 4 * per_image
    chunks = planes.shape[0]
    span_first, span_last = chunk_bounds(span_part, span_parts, chunks)
    for chunk in range(span_first, span_last):
        plane, rows = planes[chunk, :input_size], planes[chunk, input_size:].reshape((4, 2 * tiles_w + 2))
        first, last = chunk_bounds(chunk, chunks, images * (C + D))
        for task in range(first, last):
            n, channel = task // (C + D), task % (C + D)
            if channel < C:
                _pad_plane(input[first_image + n, channel], plane, padding_h, padding_w, 2 * tiles_h + 2,
                           2 * tiles_w + 2)
                _transform_input_plane(plane, rows, input_tiles, channel, n * per_image, tiles_h, tiles_w)
            else:
                _pad_plane(grad_output[first_image + n, channel - C], plane[:output_size], 0, 0, 2 * tiles_h,
                           2 * tiles_w)
                _transform_output_plane(plane, rows, output_tiles, channel - C, n * per_image, tiles_h, tiles_w)


def _transform_block(input, grad_output, planes, input_tiles, output_tiles, first_image, images, padding_h,
                     padding_w):
    """Transform the input and output-gradient planes of images [first_image, first_image + images)."""
    parallel_parts(_transform_block_span, num_threads(), input, grad_output, planes, input_tiles,
                   output_tiles, first_image, images, padding_h, padding_w)


@njit(nogil=True, cache=True, error_model="numpy", no_cfunc_wrapper=True)
def _multiply_block_span(span_part, span_parts, input_tiles, output_tiles, sums, tiles, accumulate):
    """_multiply_block over the span_part-th of span_parts slices of its outer loop (threads.py)."""
    C, capacity = input_tiles.shape[1], input_tiles.shape[2]
    D = output_tiles.shape[1]
    size = sums.itemsize
    span_first, span_last = chunk_bounds(span_part, span_parts, 16)
    for xi in range(span_first, span_last):
        gemm(NO_TRANS, TRANS, D, C, tiles, 1.0, address(output_tiles, xi * D * capacity), capacity,
             address(input_tiles, xi * C * capacity), capacity, 1.0 if accumulate else 0.0,
             address(sums, xi * D * C), C, size)


def _multiply_block(input_tiles, output_tiles, sums, tiles, accumulate):
    """sums[xi] (D, C) (+)= output_tiles[xi, :, :tiles] @ input_tiles[xi, :, :tiles].T for the 16 xi."""
    parallel_parts(_multiply_block_span, num_threads(), input_tiles, output_tiles, sums, tiles, accumulate)


def conv2d_backward_weight_winograd(grad_output, input, grad_weight, planes, input_tiles, output_tiles, sums,
                                    padding_h, padding_w):
    """grad_weight (D, C, 3, 3) of the 3x3 stride-1 convolution of input (N, C, H, W) with output gradient
    grad_output (N, D, OH, OW), summed over the batch. Buffers (see `buffers`): planes (chunks,
    plane), input_tiles (16, C, capacity), output_tiles (16, D, capacity), sums (16, D, C); capacity is a
    whole number of images' tiles. Call with the BLAS single-threaded (blas.single_threaded)."""
    N = input.shape[0]
    per_image = ((grad_output.shape[2] + 1) // 2) * ((grad_output.shape[3] + 1) // 2)
    block_images = input_tiles.shape[2] // per_image
    for first_image in range(0, N, block_images):
        images = min(block_images, N - first_image)
        _transform_block(input, grad_output, planes, input_tiles, output_tiles, first_image, images, padding_h,
                         padding_w)
        _multiply_block(input_tiles, output_tiles, sums, images * per_image, first_image > 0)
    _untransform_sums(sums, grad_weight)


# The plan's surface: applies, buffers and the weight-gradient pass (see plan.py).
def applies(pass_, convolution):
    """The weight gradient of 3x3, stride-1, undilated, ungrouped layers (any padding)."""
    _, _, KH, KW = convolution.weight_shape
    return (pass_ == "backward_weight" and KH == KW == 3 and convolution.stride_h == convolution.stride_w == 1
            and convolution.dilation_h == convolution.dilation_w == 1 and convolution.groups == 1)


def buffers(pass_, convolution, itemsize, threads):
    """(name, scratch slot, shape) of each buffer: planes (chunks, plane), a padded plane and 4 rows of
    scratch per parallel chunk; input_tiles (16, C, capacity) and output_tiles (16, D, capacity), the
    transformed tiles of one block of whole images (about BLOCK_BYTES, at least one image); sums (16, D, C)."""
    N, C, _, _ = convolution.input_shape
    D = convolution.weight_shape[0]
    _, _, out_h, out_w = convolution.output_shape
    tiles_h, tiles_w = (out_h + 1) // 2, (out_w + 1) // 2
    per_image = tiles_h * tiles_w
    block_images = max(1, min(N, BLOCK_BYTES // (16 * (C + D) * per_image * itemsize)))
    capacity = block_images * per_image
    chunks = max(1, min(CHUNKS_PER_THREAD * threads, block_images * (C + D)))
    return (("planes", "padded", (chunks, (2 * tiles_h + 6) * (2 * tiles_w + 2))),
            ("input_tiles", "col", (16, C, capacity)),
            ("output_tiles", "wide", (16, D, capacity)),
            ("sums", "partial", (16, D, C)))


def backward_weight(grad_output, input, grad_weight, buffers, plan):
    convolution = plan.convolution
    with single_threaded():
        conv2d_backward_weight_winograd(grad_output, input, grad_weight, buffers["planes"], buffers["input_tiles"],
                                        buffers["output_tiles"], buffers["sums"], convolution.padding_h,
                                        convolution.padding_w)
