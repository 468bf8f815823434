"""The weight gradient of a 3x3, stride-1 convolution by Winograd's F(2x2, 3x3), for the CPU.

The forward pass (conv_winograd) computes a 2x2 output tile as A^T [U * V] A, with U = G g G^T the
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
from numba import njit, prange

from .blas import NO_TRANS, TRANS, address, gemm
from .shared import chunk_bounds, fill_zero

BLOCK_BYTES = 16 * 1024 * 1024  # transformed input and output-gradient tiles of one block of images


@njit(cache=True)
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


@njit(cache=True)
def _transform_input_plane(plane, input_tiles, c, first_tile, tiles_h, tiles_w):
    """input_tiles[4a + b, c, first_tile + tr*TW + tw] = (B^T d B)[a, b] for the 4x4 patch d at rows 2tr..,
    columns 2tw.. of plane, a padded (2TH + 2) x (2TW + 2) plane laid out flat."""
    cols = 2 * tiles_w + 2
    for tr in range(tiles_h):
        start = 2 * tr * cols
        row0 = plane[start:start + cols]
        row1 = plane[start + cols:start + 2 * cols]
        row2 = plane[start + 2 * cols:start + 3 * cols]
        row3 = plane[start + 3 * cols:start + 4 * cols]
        base = first_tile + tr * tiles_w
        for tw in range(tiles_w):
            w = 2 * tw
            # B^T d: row combinations, column by column
            p0, p1, p2, p3 = row0[w] - row2[w], row0[w + 1] - row2[w + 1], row0[w + 2] - row2[w + 2], \
                row0[w + 3] - row2[w + 3]
            q0, q1, q2, q3 = row1[w] + row2[w], row1[w + 1] + row2[w + 1], row1[w + 2] + row2[w + 2], \
                row1[w + 3] + row2[w + 3]
            s0, s1, s2, s3 = row2[w] - row1[w], row2[w + 1] - row1[w + 1], row2[w + 2] - row1[w + 2], \
                row2[w + 3] - row1[w + 3]
            u0, u1, u2, u3 = row1[w] - row3[w], row1[w + 1] - row3[w + 1], row1[w + 2] - row3[w + 2], \
                row1[w + 3] - row3[w + 3]
            # (B^T d) B: the same combinations across the columns of each row
            t = base + tw
            input_tiles[0, c, t], input_tiles[1, c, t] = p0 - p2, p1 + p2
            input_tiles[2, c, t], input_tiles[3, c, t] = p2 - p1, p1 - p3
            input_tiles[4, c, t], input_tiles[5, c, t] = q0 - q2, q1 + q2
            input_tiles[6, c, t], input_tiles[7, c, t] = q2 - q1, q1 - q3
            input_tiles[8, c, t], input_tiles[9, c, t] = s0 - s2, s1 + s2
            input_tiles[10, c, t], input_tiles[11, c, t] = s2 - s1, s1 - s3
            input_tiles[12, c, t], input_tiles[13, c, t] = u0 - u2, u1 + u2
            input_tiles[14, c, t], input_tiles[15, c, t] = u2 - u1, u1 - u3


@njit(cache=True)
def _transform_output_plane(plane, output_tiles, d, first_tile, tiles_h, tiles_w):
    """output_tiles[4a + b, d, first_tile + tr*TW + tw] = (A y A^T)[a, b] for the 2x2 tile y at rows 2tr..,
    columns 2tw.. of plane, a zero-padded 2TH x 2TW plane laid out flat. A's rows: (1, 0), (1, 1), (1, -1),
    (0, -1)."""
    cols = 2 * tiles_w
    for tr in range(tiles_h):
        top = plane[2 * tr * cols:(2 * tr + 1) * cols]
        bottom = plane[(2 * tr + 1) * cols:(2 * tr + 2) * cols]
        base = first_tile + tr * tiles_w
        for tw in range(tiles_w):
            y00, y01, y10, y11 = top[2 * tw], top[2 * tw + 1], bottom[2 * tw], bottom[2 * tw + 1]
            # A y: rows y0, y0 + y1, y0 - y1, -y1 (of two columns each)
            r0, r1, r2, r3 = y00 + y10, y00 - y10, y01 + y11, y01 - y11  # sums/differences down each column
            t = base + tw
            output_tiles[0, d, t], output_tiles[1, d, t] = y00, y00 + y01
            output_tiles[2, d, t], output_tiles[3, d, t] = y00 - y01, -y01
            output_tiles[4, d, t], output_tiles[5, d, t] = r0, r0 + r2
            output_tiles[6, d, t], output_tiles[7, d, t] = r0 - r2, -r2
            output_tiles[8, d, t], output_tiles[9, d, t] = r1, r1 + r3
            output_tiles[10, d, t], output_tiles[11, d, t] = r1 - r3, -r3
            output_tiles[12, d, t], output_tiles[13, d, t] = -y10, -y10 - y11
            output_tiles[14, d, t], output_tiles[15, d, t] = y11 - y10, y11


@njit(cache=True, inline="always")
def _g_transpose_column(sums, b, d, c):
    """Column b of G^T m for m = sums[:, d, c] (4x4); G^T's rows: (1, .5, .5, 0), (0, .5, -.5, 0), (0, .5, .5, 1)."""
    m0, m1, m2, m3 = sums[b, d, c], sums[4 + b, d, c], sums[8 + b, d, c], sums[12 + b, d, c]
    half = 0.5 * (m1 + m2)
    return m0 + half, 0.5 * (m1 - m2), half + m3


@njit(parallel=True, cache=True)
def _untransform_sums(sums, grad_weight):
    """grad_weight[d, c] (3x3) = G^T m G for m = sums[:, d, c] (4x4)."""
    D, C = grad_weight.shape[0], grad_weight.shape[1]
    for d in prange(D):
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


@njit(parallel=True, cache=True)
def _transform_block(input, grad_output, planes, input_tiles, output_tiles, first_image, images, padding_h,
                     padding_w):
    """Transform the input and output-gradient planes of images [first_image, first_image + images)."""
    C, D = input.shape[1], grad_output.shape[1]
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    tiles_h, tiles_w = (OH + 1) // 2, (OW + 1) // 2
    per_image = tiles_h * tiles_w
    input_size = (2 * tiles_h + 2) * (2 * tiles_w + 2)
    output_size = 4 * per_image
    chunks = planes.shape[0]
    for chunk in prange(chunks):
        plane = planes[chunk]
        first, last = chunk_bounds(chunk, chunks, images * (C + D))
        for task in range(first, last):
            n, channel = task // (C + D), task % (C + D)
            if channel < C:
                _pad_plane(input[first_image + n, channel], plane[:input_size], padding_h, padding_w,
                           2 * tiles_h + 2, 2 * tiles_w + 2)
                _transform_input_plane(plane, input_tiles, channel, n * per_image, tiles_h, tiles_w)
            else:
                _pad_plane(grad_output[first_image + n, channel - C], plane[:output_size], 0, 0, 2 * tiles_h,
                           2 * tiles_w)
                _transform_output_plane(plane, output_tiles, channel - C, n * per_image, tiles_h, tiles_w)


@njit(parallel=True, cache=True)
def _multiply_block(input_tiles, output_tiles, sums, tiles, accumulate):
    """sums[xi] (D, C) (+)= output_tiles[xi, :, :tiles] @ input_tiles[xi, :, :tiles].T for the 16 xi."""
    C, capacity = input_tiles.shape[1], input_tiles.shape[2]
    D = output_tiles.shape[1]
    size = sums.itemsize
    for xi in prange(16):
        gemm(NO_TRANS, TRANS, D, C, tiles, 1.0, address(output_tiles, xi * D * capacity), capacity,
             address(input_tiles, xi * C * capacity), capacity, 1.0 if accumulate else 0.0,
             address(sums, xi * D * C), C, size)


def conv2d_backward_weight_winograd(grad_output, input, grad_weight, planes, input_tiles, output_tiles, sums,
                                    padding_h, padding_w):
    """grad_weight (D, C, 3, 3) of the 3x3 stride-1 convolution of input (N, C, H, W) with output gradient
    grad_output (N, D, OH, OW), summed over the batch. Buffers (see `workspace_shapes`): planes (chunks,
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


def workspace_shapes(input_shape, output_shape, channels_out, itemsize, chunks):
    """Shapes of (planes, input_tiles, output_tiles, sums) for conv2d_backward_weight_winograd: blocks of
    whole images whose transformed tiles take about BLOCK_BYTES (at least one image), planes for `chunks`
    parallel chunks."""
    N, C = input_shape[0], input_shape[1]
    tiles_h, tiles_w = (output_shape[2] + 1) // 2, (output_shape[3] + 1) // 2
    per_image = tiles_h * tiles_w
    image_bytes = 16 * (C + channels_out) * per_image * itemsize
    block_images = max(1, min(N, BLOCK_BYTES // image_bytes))
    capacity = block_images * per_image
    chunks = max(1, min(chunks, block_images * (C + channels_out)))
    return ((chunks, (2 * tiles_h + 2) * (2 * tiles_w + 2)), (16, C, capacity), (16, channels_out, capacity),
            (16, channels_out, C))
