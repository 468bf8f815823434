"""2-D convolution (cross-correlation) kernels for the CPU: the public kernels, which pick an algorithm.

Shapes: input (N, C, H, W), weight (D, C // groups, KH, KW), bias (D,) or (0,) for none,
output (N, D, OH, OW). Every kernel overwrites its outputs completely, so callers may pass
uninitialised buffers.

Algorithms, each in its own module:
- conv_winograd: 3x3 stride-1 layers with enough channels and width (WINOGRAD_CHANNELS, WINOGRAD_WORK),
  by Winograd's F(2x2, 3x3) (2.25x less arithmetic), forward and input gradient;
- conv_shift: stride 1 with 16 or more channels per group in and out: one matrix product per window tap
  over shifted views of the padded image, nothing unrolled; also the input gradients Winograd leaves and
  the weight gradients of layers with at most SHIFT_WEIGHT_CHANNELS channels;
- conv_wide: other stride-1 layers and weight gradients, im2col over whole padded rows, then matrix products;
- conv_gemm: any stride, im2col over output rows, then matrix products; used for strides above 1 and
  for 1x1 convolutions, which need no unrolling;
- conv_depthwise: depthwise 3x3 stride-1 layers, every tap unrolled;
- conv_direct: loop nests for other depthwise convolutions, where a product per group would be tiny.
The products call numpy's BLAS single-threaded from inside the parallel kernels (see blas.py).

Non-finite values follow the definition (README, "Guarantees"): the output and the weight gradient are sums
of products with the explicitly zero-padded input (an inf weight meets the padding: NaN), the input gradient
a sum over the (output, tap) pairs that cover each pixel. The fast algorithms compute extra products (the
Wp - OW columns of conv_wide/conv_shift, Winograd's tile transforms, conv_direct's skipped padding) that
only matter when a value is not finite; so each public kernel checks its result (and the array that
multiplies padding or extra zeros) in one pass, and when anything is not finite recomputes by the
definition with conv_direct's loop nests over an explicitly padded input. Finite data never takes that path.
"""
import numba
import numpy as np
from numba import njit, prange

from . import conv_gemm
from .blas import single_threaded
from .conv_depthwise import (conv2d_backward_input_depthwise3x3, conv2d_backward_weight_depthwise3x3,
                             conv2d_forward_depthwise3x3)
from .conv_direct import conv2d_backward_input_direct, conv2d_backward_weight_direct, conv2d_forward_direct
from .conv_gemm import conv2d_backward_input_gemm, conv2d_backward_weight_gemm, conv2d_forward_gemm
from .conv_shift import (conv2d_backward_input_shift, conv2d_backward_weight_shift, conv2d_forward_shift,
                         sum_tap_partials, weight_taps)
from .conv_wide import conv2d_backward_input_wide, conv2d_backward_weight_wide, conv2d_forward_wide
from .conv_winograd import conv2d_winograd, winograd_weights
from . import conv_winograd_weight
from .finite import all_finite
from .workspace import scratch

_REDUCE = {"reassoc", "contract", "nsz"}
# Stride-1 layers: Winograd where it pays, else conv_shift with enough channels, else conv_wide. Measured
# (forward + input gradient, 3x3, alternating runs), Winograd against conv_shift: 64 channels 1.26x at 14
# wide but 0.49x at 7; 48 channels 1.10x at 14; 32 channels 1.06x at 28 and 0.91x at 14; 16 channels
# 0.86x at 56 and 0.72x at 28. Its 16 products per block are min(C, D) deep and about OW/2 wide.
WINOGRAD_CHANNELS = 32
WINOGRAD_WORK = 672  # min(C, D) x output width
SHIFT_CHANNELS = 16  # conv_shift's products are this deep (channels per group, in and out); below, conv_wide
# The weight gradient by conv_shift packs the image once per tap inside the BLAS, against one big product
# for conv_wide: it wins up to 32 channels (1.5x at 16 and 28 wide, 1.25x at 32 and 28 wide; but 0.85x at
# 32 and 56 wide), and loses from 48 (0.85-0.9x at 48-128).
SHIFT_WEIGHT_CHANNELS = 32
PARTIAL_BYTES = 8 * 1024 * 1024  # the unrolled weight gradients' partial sums, all chunks together
WINOGRAD_WEIGHT_CHANNELS = 32  # Winograd layers from this many channels take conv_winograd_weight's gradient


@njit(parallel=True, cache=True, fastmath=_REDUCE)
def conv2d_backward_bias(grad_output, grad_bias):
    """grad_bias (D,) = grad_output (N, D, OH, OW) summed over N, OH, OW."""
    N, D, OH, OW = grad_output.shape
    planes = grad_output.reshape((N, D, OH * OW))  # one flat loop a plane vectorizes; (oh, ow) loops did not
    for d in prange(D):
        total = grad_bias.dtype.type(0)
        for n in range(N):
            plane = planes[n, d]
            for q in range(plane.shape[0]):
                total += plane[q]
        grad_bias[d] = total


def _algorithm(input_shape, weight, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups):
    """'depthwise3x3', 'direct', 'pointwise', 'winograd', 'wide' or 'gemm' for one convolution."""
    if groups > 1 and weight.shape[1] == 1:
        if (weight.shape[0] == groups and weight.shape[2] == weight.shape[3] == 3 and stride_h == stride_w == 1
                and dilation_h == dilation_w == 1 and padding_h <= 2 and padding_w <= 2):
            return "depthwise3x3"
        return "direct"
    if weight.shape[2] == weight.shape[3] == 1 and stride_h == stride_w == 1 and padding_h == padding_w == 0:
        return "pointwise"  # conv_gemm reads the input itself as the unrolled matrix
    if stride_h == stride_w == 1:
        channels, out_w = min(weight.shape[0] // groups, weight.shape[1]), input_shape[3] + 2 * padding_w - 2
        if (weight.shape[2] == weight.shape[3] == 3 and dilation_h == dilation_w == 1 and groups == 1
                and channels >= WINOGRAD_CHANNELS and channels * out_w >= WINOGRAD_WORK):
            return "winograd"
        return "shift" if channels >= SHIFT_CHANNELS else "wide"
    return "gemm"


def _shift_workspace(input_shape, weight, output_shape, padding_h, padding_w, dilation_w, dtype, chunks):
    """conv_shift's buffers (taps, padded, wide): the filters tap by tap (KH*KW, D, C/groups), filled here,
    and per parallel chunk (at most one per image) a padded image with its slack and the Wp-wide product."""
    N, C, H, W = input_shape
    D, Cg, KH, KW = weight.shape
    padded_w = W + 2 * padding_w
    chunks = max(1, min(N, chunks))
    taps = scratch("taps", (KH * KW, D, Cg), dtype)
    weight_taps(weight, taps)
    return (taps, scratch("padded", (chunks, C * (H + 2 * padding_h) * padded_w + (KW - 1) * dilation_w), dtype),
            scratch("wide", (chunks, D, output_shape[2] * padded_w), dtype))


def _depthwise_planes(input_shape, dtype):
    """conv_depthwise's scratch, one zero-padded plane (H + 4, W + 4) per parallel chunk: room for the
    input with padding up to 2 and for the output gradient padded by 2 - padding."""
    N, C, H, W = input_shape
    chunks = max(1, min(N * C, 4 * numba.get_num_threads()))
    return scratch("padded", (chunks, (H + 4) * (W + 4)), dtype)


def _block_rows(depth, row_width, out_h, itemsize):
    """How many of out_h rows, each depth x row_width values, fit the cache budget (at least one)."""
    return max(1, min(out_h, conv_gemm.CACHE_BYTES // (depth * row_width * itemsize)))


def _gemm_col(input, weight, output_shape, max_chunks, per_image):
    """conv_gemm's col buffers (chunks, C*KH*KW, block_rows*OW), one per parallel chunk; its tasks are
    images (per_image) or (image, block of rows) pairs."""
    N, _, OH, OW = output_shape
    depth = input.shape[1] * weight.shape[2] * weight.shape[3]
    block_rows = _block_rows(depth, OW, OH, input.dtype.itemsize)
    chunks = max(1, min(N if per_image else N * -(-OH // block_rows), max_chunks))
    return scratch("col", (chunks, depth, block_rows * OW), input.dtype)


def _winograd(input, weight, bias, output, padding_h, padding_w, turned, max_chunks):
    """conv_winograd over input (N, C', H', W') into output (N, D', OH', OW'), the filters `weight` transformed
    (turned by 180 degrees, channel axes swapped, for the input gradient)."""
    N, channels_in = input.shape[0], input.shape[1]
    channels_out, out_h, out_w = output.shape[1], output.shape[2], output.shape[3]
    tiles_h, tiles_w = (out_h + 1) // 2, (out_w + 1) // 2
    block_rows = _block_rows(16 * channels_in, tiles_w, tiles_h, input.dtype.itemsize)  # rows of tiles
    chunks = max(1, min(N * -(-tiles_h // block_rows), max_chunks))
    transformed = scratch("winograd_weights", (16, channels_out, channels_in), input.dtype)
    winograd_weights(weight, transformed, turned)
    padded = scratch("padded", (chunks, channels_in * (2 * block_rows + 2) * (2 * tiles_w + 2)), input.dtype)
    patches = scratch("col", (chunks, 16, channels_in, block_rows * tiles_w), input.dtype)
    products = scratch("wide", (chunks, 16, channels_out, block_rows * tiles_w), input.dtype)
    conv2d_winograd(input, transformed, bias, output, padded, patches, products, padding_h, padding_w)


def _wide_workspace(input_shape, weight, output_shape, padding_h, padding_w, dilation_h, dilation_w, dtype,
                    max_chunks, whole_images):
    """conv_wide's buffers (padded, col, wide), one of each per parallel chunk. Tasks are whole images
    (whole_images, for the input gradient) or blocks of rows of an image; padded holds the padded rows
    one task reads."""
    N, C, H, W = input_shape
    D, _, KH, KW = weight.shape
    OH = output_shape[2]
    padded_w = W + 2 * padding_w
    depth = C * KH * KW
    block_rows = _block_rows(depth, padded_w, OH, np.dtype(dtype).itemsize)
    slab_rows = H + 2 * padding_h if whole_images else block_rows + (KH - 1) * dilation_h
    chunks = max(1, min(N if whole_images else N * -(-OH // block_rows), max_chunks))
    slack = (KW - 1) * dilation_w
    return (scratch("padded", (chunks, C * slab_rows * padded_w + slack), dtype),
            scratch("col", (chunks, depth, block_rows * padded_w), dtype),
            scratch("wide", (chunks, D, block_rows * padded_w), dtype))


def _explicitly_padded(input, padding_h, padding_w):
    return np.pad(input, ((0, 0), (0, 0), (padding_h, padding_h), (padding_w, padding_w)))


def conv2d_forward(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w,
                   dilation_h, dilation_w, groups):
    """output = conv2d(input, weight) + bias."""
    _forward_fast(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w,
                  groups)
    if not all_finite(output, weight):  # by the definition: every product with the padded input
        conv2d_forward_direct(_explicitly_padded(input, padding_h, padding_w), weight, bias, output, stride_h,
                              stride_w, 0, 0, dilation_h, dilation_w, groups)


def _forward_fast(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w,
                  dilation_h, dilation_w, groups):
    args = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    algorithm = _algorithm(input.shape, weight, *args)
    if algorithm == "depthwise3x3":
        return conv2d_forward_depthwise3x3(input, weight, bias, output, _depthwise_planes(input.shape, input.dtype),
                                           padding_h, padding_w)
    if algorithm == "direct":
        return conv2d_forward_direct(input, weight, bias, output, *args)
    chunks = 4 * numba.get_num_threads()
    with single_threaded():
        if algorithm == "winograd":
            _winograd(input, weight, bias, output, padding_h, padding_w, turned=False, max_chunks=chunks)
        elif algorithm == "shift":
            buffers = _shift_workspace(input.shape, weight, output.shape, padding_h, padding_w, dilation_w,
                                       input.dtype, chunks)
            conv2d_forward_shift(input, buffers[0], bias, output, *buffers[1:], weight.shape[3], *args[2:])
        elif algorithm == "wide":
            buffers = _wide_workspace(input.shape, weight, output.shape, padding_h, padding_w, dilation_h,
                                      dilation_w, input.dtype, chunks, whole_images=False)
            conv2d_forward_wide(input, weight, bias, output, *buffers, *args[2:])
        else:
            col = _gemm_col(input, weight, output.shape, chunks, per_image=False)
            conv2d_forward_gemm(input, weight, bias, output, col, *args, algorithm == "pointwise")


def conv2d_backward_input(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w,
                          dilation_h, dilation_w, groups):
    """grad_input (N, C, H, W) of conv2d, given grad_output (N, D, OH, OW)."""
    args = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    _backward_input_fast(grad_output, weight, grad_input, *args)
    if not all_finite(grad_input, weight):  # by the definition: only the (output, tap) pairs covering a pixel
        conv2d_backward_input_direct(grad_output, weight, grad_input, *args)


def _backward_input_fast(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w,
                         dilation_h, dilation_w, groups):
    args = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    algorithm = _algorithm(grad_input.shape, weight, *args)
    if algorithm == "depthwise3x3":
        turned = scratch("turned_filters", (weight.shape[0], 3, 3), weight.dtype)
        return conv2d_backward_input_depthwise3x3(grad_output, weight, grad_input, turned,
                                                  _depthwise_planes(grad_input.shape, grad_input.dtype),
                                                  padding_h, padding_w)
    if algorithm == "direct":
        return conv2d_backward_input_direct(grad_output, weight, grad_input, *args)
    chunks = 4 * numba.get_num_threads()
    with single_threaded():
        if algorithm == "winograd" and padding_h <= 2 and padding_w <= 2:  # a full correlation, padding 2 - p
            _winograd(grad_output, weight, np.empty(0, grad_output.dtype), grad_input, 2 - padding_h,
                      2 - padding_w, turned=True, max_chunks=chunks)
        elif algorithm in ("winograd", "shift"):  # Winograd layers have the channels conv_shift needs
            buffers = _shift_workspace(grad_input.shape, weight, grad_output.shape, padding_h, padding_w, dilation_w,
                                       grad_output.dtype, chunks)
            conv2d_backward_input_shift(grad_output, buffers[0], grad_input, *buffers[1:], weight.shape[3],
                                        *args[2:])
        elif algorithm == "wide":
            buffers = _wide_workspace(grad_input.shape, weight, grad_output.shape, padding_h, padding_w, dilation_h,
                                      dilation_w, grad_output.dtype, chunks, whole_images=True)
            conv2d_backward_input_wide(grad_output, weight, grad_input, *buffers, *args[2:])
        else:
            col = _gemm_col(grad_input, weight, grad_output.shape, chunks, per_image=True)
            conv2d_backward_input_gemm(grad_output, weight, grad_input, col, *args, algorithm == "pointwise")


def conv2d_backward_weight(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w,
                           dilation_h, dilation_w, groups):
    """grad_weight (D, C/groups, KH, KW) of conv2d, summed over the batch."""
    args = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    if grad_output.size == 0:  # an empty batch: a sum of nothing (the chunked kernels would leave it unwritten)
        grad_weight[...] = 0
        return
    _backward_weight_fast(grad_output, input, grad_weight, *args)
    if not all_finite(grad_weight, grad_output):  # by the definition: every product with the padded input
        conv2d_backward_weight_direct(grad_output, _explicitly_padded(input, padding_h, padding_w), grad_weight,
                                      stride_h, stride_w, 0, 0, dilation_h, dilation_w, groups)


def _backward_weight_fast(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w,
                          dilation_h, dilation_w, groups):
    args = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    algorithm = _algorithm(input.shape, grad_weight, *args)
    if algorithm == "depthwise3x3":
        return conv2d_backward_weight_depthwise3x3(grad_output, input, grad_weight,
                                                   _depthwise_planes(input.shape, input.dtype), padding_h, padding_w)
    if algorithm == "direct":
        return conv2d_backward_weight_direct(grad_output, input, grad_weight, *args)
    chunks = _weight_chunks(grad_weight)  # from the shape alone, so the sum's order ignores the thread count
    with single_threaded():
        channels = min(grad_weight.shape[0] // groups, grad_weight.shape[1])
        if algorithm == "winograd" and channels >= WINOGRAD_WEIGHT_CHANNELS:
            _winograd_weight(grad_output, input, grad_weight, padding_h, padding_w)
        elif algorithm in ("winograd", "shift") and channels <= SHIFT_WEIGHT_CHANNELS:
            taps, padded, wide = _shift_workspace(input.shape, grad_weight, grad_output.shape, padding_h, padding_w,
                                                  dilation_w, input.dtype, chunks)
            partial = scratch("partial", (padded.shape[0],) + taps.shape, grad_weight.dtype)
            conv2d_backward_weight_shift(grad_output, input, partial, padded, wide, grad_weight.shape[3], *args[2:])
            sum_tap_partials(partial, grad_weight)
        elif algorithm in ("winograd", "shift", "wide"):
            padded, col, wide = _wide_workspace(input.shape, grad_weight, grad_output.shape, padding_h, padding_w,
                                                dilation_h, dilation_w, input.dtype, chunks, whole_images=False)
            partial = _partial_sums(col.shape[0], grad_weight, groups)
            conv2d_backward_weight_wide(grad_output, input, grad_weight, padded, col, wide, partial, *args[2:])
        else:
            col = _gemm_col(input, grad_weight, grad_output.shape, chunks, per_image=False)
            partial = _partial_sums(col.shape[0], grad_weight, groups)
            conv2d_backward_weight_gemm(grad_output, input, grad_weight, col, partial, *args,
                                        algorithm == "pointwise")


def _winograd_weight(grad_output, input, grad_weight, padding_h, padding_w):
    """conv_winograd_weight over the batch, its buffers from the scratch."""
    shapes = conv_winograd_weight.workspace_shapes(input.shape, grad_output.shape, grad_weight.shape[0],
                                                   input.dtype.itemsize, 4 * numba.get_num_threads())
    buffers = [scratch(name, shape, input.dtype) for name, shape in zip(("padded", "col", "wide", "partial"), shapes)]
    conv_winograd_weight.conv2d_backward_weight_winograd(grad_output, input, grad_weight, *buffers, padding_h,
                                                         padding_w)


def _weight_chunks(grad_weight):
    """How many partial weight gradients the unrolled weight kernels sum: conv_gemm.WEIGHT_CHUNKS, fewer
    (but at least 2) when they would take more than PARTIAL_BYTES together. Beyond the cache they are written
    and summed from memory: a 512-channel stride-2 layer (8 x 256 x 14 x 14) took 410 ms with 8 partials of
    4.7 MB and 68 ms with 2 (one thread)."""
    return max(2, min(conv_gemm.WEIGHT_CHUNKS, PARTIAL_BYTES // (grad_weight.size * grad_weight.itemsize)))


def _partial_sums(chunks, grad_weight, groups):
    """The weight kernels' per-chunk transposed sums: (chunks, groups, C/groups*KH*KW, D/groups)."""
    return scratch("partial", (chunks, groups, grad_weight[0].size, grad_weight.shape[0] // groups),
                   grad_weight.dtype)
