"""2-D convolution kernels for NVIDIA GPUs, the CUDA twins of nbconv.kernels.cpu.conv.

Same names, parameters and shapes as the CPU kernels. Each kernel is an implicit matrix product tiled
through shared memory: a block of TILE x TILE threads owns a TILE x TILE tile of the result, and for each
step along the reduction, the threads load one tile of each operand into shared memory together (every
global value is read once per block instead of once per thread), synchronise, and accumulate. The
operands are never materialised: each tile element is gathered from the input, weight or output
gradient by index arithmetic (im2col on the fly), with zeros for padding.

- forward: output[n, d, p] = sum over k = (c, i, j) of weight[d, k] * unrolled_input[k, (n, p)];
- input gradient, gather form (no atomics): grad_input[n, c, q] = sum over r = (d, i, j) of
  weight[d, c, i, j] * grad_output[n, d, the output position whose window tap (i, j) reads q];
- weight gradient: grad_weight[d, k] = sum over (n, p) of grad_output[n, d, p] * unrolled_input[k, (n, p)],
  the long reduction split over the grid into partial sums that a second kernel adds in a fixed order.
Groups run on the grid's z axis. The shared tiles take the arrays' dtype, so kernels are built per dtype.
"""
import math

import numpy as np
from numba import cuda, float32, float64, int8

from .launch import grid_for, small_blocks
from .workspace import device_scratch

# 16 x 16 = 256 threads a block on a GPU; 4 x 4 under the simulator, which runs every thread as a Python
# thread (and where smaller tiles also exercise the tile edges on small test shapes).
TILE = 4 if small_blocks() else 16
SPLIT_COLUMNS = 64 * TILE  # reduction columns each block of the weight gradient sums at least
_NUMBA_TYPES = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}


@cuda.jit(device=True)
def _tap_position(oh, ow, k, kernel_w, taps, H, W, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w):
    """(c, ih, iw, inside): the input position that window tap k = (c, i, j) of output (oh, ow) reads, and
    whether it lies inside the input (not in the padding)."""
    c, i, j = k // taps, (k % taps) // kernel_w, k % kernel_w
    ih = oh * stride_h + i * dilation_h - padding_h
    iw = ow * stride_w + j * dilation_w - padding_w
    return c, ih, iw, 0 <= ih < H and 0 <= iw < W


def _build(real, tile):
    """The three tiled kernels for one element type."""

    @cuda.jit
    def forward(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w,
                groups):
        N, C, H, W = input.shape
        D, Cg, KH, KW = weight.shape
        OH, OW = output.shape[2], output.shape[3]
        Dg, depth, taps = D // groups, Cg * KH * KW, KH * KW
        columns = N * OH * OW
        g = cuda.blockIdx.z
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        row = cuda.blockIdx.y * tile + ty        # output channel within the group
        column = cuda.blockIdx.x * tile + tx     # (n, oh, ow)
        n, oh, ow = column // (OH * OW), (column // OW) % OH, column % OW
        weights = cuda.shared.array((tile, tile), real)
        unrolled = cuda.shared.array((tile, tile), real)
        total = real(0)
        for k0 in range(0, depth, tile):
            k = k0 + tx                          # weights[ty][tx] = weight[g*Dg + row, k]
            value = real(0)
            if row < Dg and k < depth:
                value = weight[g * Dg + row, k // taps, (k % taps) // KW, k % KW]
            weights[ty, tx] = value
            k = k0 + ty                          # unrolled[ty][tx] = input tap k of output position `column`
            value = real(0)
            if k < depth and column < columns:
                c, ih, iw, inside = _tap_position(oh, ow, k, KW, taps, H, W, stride_h, stride_w, padding_h,
                                                  padding_w, dilation_h, dilation_w)
                if inside:
                    value = input[n, g * Cg + c, ih, iw]
            unrolled[ty, tx] = value
            cuda.syncthreads()
            for kk in range(tile):
                total += weights[ty, kk] * unrolled[kk, tx]
            cuda.syncthreads()
        if row < Dg and column < columns:
            d = g * Dg + row
            output[n, d, oh, ow] = total + (bias[d] if bias.shape[0] > 0 else real(0))

    @cuda.jit
    def backward_input(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w, dilation_h,
                       dilation_w, groups):
        N, C, H, W = grad_input.shape
        D, Cg, KH, KW = weight.shape
        OH, OW = grad_output.shape[2], grad_output.shape[3]
        Dg, taps = D // groups, KH * KW
        reduction, columns = Dg * taps, N * H * W
        g = cuda.blockIdx.z
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        row = cuda.blockIdx.y * tile + ty        # input channel within the group
        column = cuda.blockIdx.x * tile + tx     # (n, ih, iw)
        n, ih, iw = column // (H * W), (column // W) % H, column % W
        weights = cuda.shared.array((tile, tile), real)
        gradients = cuda.shared.array((tile, tile), real)
        covers = cuda.shared.array((tile, tile), int8)  # whether output tap r reads input `column` at all
        total = real(0)
        for r0 in range(0, reduction, tile):
            r = r0 + tx                          # weights[ty][tx] = weight[g*Dg + dd, row, i, j], r = (dd, i, j)
            value = real(0)
            if row < Cg and r < reduction:
                value = weight[g * Dg + r // taps, row, (r % taps) // KW, r % KW]
            weights[ty, tx] = value
            r = r0 + ty                          # gradients[ty][tx]: the output tap r that reads input `column`
            value = real(0)
            covered = 0
            if r < reduction and column < columns:
                dd, i, j = r // taps, (r % taps) // KW, r % KW
                reach_h = ih + padding_h - i * dilation_h
                reach_w = iw + padding_w - j * dilation_w
                if reach_h >= 0 and reach_w >= 0 and reach_h % stride_h == 0 and reach_w % stride_w == 0:
                    oh, ow = reach_h // stride_h, reach_w // stride_w
                    if oh < OH and ow < OW:
                        value = grad_output[n, g * Dg + dd, oh, ow]
                        covered = 1
            gradients[ty, tx] = value
            covers[ty, tx] = covered
            cuda.syncthreads()
            for rr in range(tile):  # only covering pairs count: an inf weight must not meet the zeros between
                product = weights[ty, rr] * gradients[rr, tx]
                total += product if covers[rr, tx] else real(0)
            cuda.syncthreads()
        if row < Cg and column < columns:
            grad_input[n, g * Cg + row, ih, iw] = total

    @cuda.jit
    def backward_weight(grad_output, input, partial, partial_bias, kernel_h, kernel_w, stride_h, stride_w, padding_h,
                        padding_w, dilation_h, dilation_w, groups):
        N, C, H, W = input.shape
        D, OH, OW = grad_output.shape[1], grad_output.shape[2], grad_output.shape[3]
        splits, depth = partial.shape[0], partial.shape[2]
        Dg, Cg, taps, KW = D // groups, C // groups, kernel_h * kernel_w, kernel_w
        columns = N * OH * OW
        g, split = cuda.blockIdx.z % groups, cuda.blockIdx.z // groups
        first, last = split * columns // splits, (split + 1) * columns // splits
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        row = cuda.blockIdx.y * tile + ty        # output channel within the group
        column = cuda.blockIdx.x * tile + tx     # k = (c, i, j)
        gradients = cuda.shared.array((tile, tile), real)
        unrolled = cuda.shared.array((tile, tile), real)
        total = real(0)
        # the bias gradient rides along: the threads of column 0 also sum the grad_output tiles every block
        # loads anyway (the rows of their channel), into one partial sum per split (float64, as the
        # separate bias kernel sums)
        sums_bias = partial_bias.shape[0] > 0 and column == 0
        bias_total = 0.0
        for q0 in range(first, last, tile):
            q = q0 + tx                          # gradients[ty][tx] = grad_output[n, g*Dg + row, oh, ow], q = (n, oh, ow)
            value = real(0)
            if row < Dg and q < last:
                value = grad_output[q // (OH * OW), g * Dg + row, (q // OW) % OH, q % OW]
            gradients[ty, tx] = value
            q = q0 + ty                          # unrolled[ty][tx] = input tap `column` of output position q
            value = real(0)
            if q < last and column < depth:
                n, oh, ow = q // (OH * OW), (q // OW) % OH, q % OW
                c, ih, iw, inside = _tap_position(oh, ow, column, KW, taps, H, W, stride_h, stride_w, padding_h,
                                                  padding_w, dilation_h, dilation_w)
                if inside:
                    value = input[n, g * Cg + c, ih, iw]
            unrolled[ty, tx] = value
            cuda.syncthreads()
            for qq in range(tile):
                total += gradients[ty, qq] * unrolled[qq, tx]
            if sums_bias:
                for qq in range(tile):
                    bias_total += gradients[ty, qq]
            cuda.syncthreads()
        if row < Dg and column < depth:
            partial[split, g * Dg + row, column] = total
        if sums_bias and row < Dg:
            partial_bias[split, g * Dg + row] = bias_total

    return forward, backward_input, backward_weight


# Built for both element types up front (nothing compiles until a launch), so every kernel is reachable
# from the module for nbconv.cuda_compile.
_KERNELS = {dtype: _build(numba_type, TILE) for dtype, numba_type in _NUMBA_TYPES.items()}


def _kernels(dtype):
    return _KERNELS[np.dtype(dtype)]


def _tiles(count):
    return max(1, math.ceil(count / TILE))


@cuda.jit(cache=True)
def _sum_partials(partial, grad_weight, partial_bias, grad_bias):
    """grad_weight (D, Cg, KH, KW) = partial (splits, D, Cg*KH*KW) summed over splits, in order; likewise
    grad_bias (D,) from partial_bias (splits, D) when grad_bias is not empty."""
    D, Cg, KH, KW = grad_weight.shape
    index = cuda.grid(1)
    if index >= D * Cg * KH * KW:
        return
    if index < grad_bias.shape[0]:
        bias_total = partial_bias[0, index]
        for split in range(1, partial_bias.shape[0]):
            bias_total += partial_bias[split, index]
        grad_bias[index] = bias_total
    d, k = index // (Cg * KH * KW), index % (Cg * KH * KW)
    total = partial[0, d, k]
    for split in range(1, partial.shape[0]):
        total += partial[split, d, k]
    grad_weight[d, k // (KH * KW), (k % (KH * KW)) // KW, k % KW] = total


BIAS_THREADS = 128


@cuda.jit(cache=True)
def _conv2d_backward_bias(grad_output, grad_bias):
    """One block per channel d: its threads sum strided shares of grad_output[:, d], then a tree in shared
    memory adds the shares (a fixed order, so the result is deterministic)."""
    N, D, OH, OW = grad_output.shape
    d = cuda.blockIdx.x
    t = cuda.threadIdx.x
    shares = cuda.shared.array(BIAS_THREADS, float64)
    total = 0.0
    for q in range(t, N * OH * OW, BIAS_THREADS):
        total += grad_output[q // (OH * OW), d, (q // OW) % OH, q % OW]
    shares[t] = total
    cuda.syncthreads()
    width = BIAS_THREADS // 2
    while width > 0:
        if t < width:
            shares[t] += shares[t + width]
        cuda.syncthreads()
        width //= 2
    if t == 0:
        grad_bias[d] = shares[0]


def conv2d_forward(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w,
                   dilation_h, dilation_w, groups):
    N, D, OH, OW = output.shape
    forward = _kernels(output.dtype)[0]
    grid = (_tiles(N * OH * OW), _tiles(D // groups), groups)
    forward[grid, (TILE, TILE)](input, weight, bias, output, stride_h, stride_w, padding_h, padding_w,
                                dilation_h, dilation_w, groups)


def conv2d_backward_input(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w,
                          dilation_h, dilation_w, groups):
    N, C, H, W = grad_input.shape
    backward_input = _kernels(grad_input.dtype)[1]
    grid = (_tiles(N * H * W), _tiles(C // groups), groups)
    backward_input[grid, (TILE, TILE)](grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w,
                                       dilation_h, dilation_w, groups)


def conv2d_backward_weight(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w,
                           dilation_h, dilation_w, groups):
    _backward_weight(grad_output, input, grad_weight, None, stride_h, stride_w, padding_h, padding_w,
                     dilation_h, dilation_w, groups)


def conv2d_backward_weight_bias(grad_output, input, grad_weight, grad_bias, stride_h, stride_w, padding_h, padding_w,
                                dilation_h, dilation_w, groups):
    """conv2d_backward_weight and conv2d_backward_bias in the weight gradient's two launches."""
    _backward_weight(grad_output, input, grad_weight, grad_bias, stride_h, stride_w, padding_h, padding_w,
                     dilation_h, dilation_w, groups)


def _backward_weight(grad_output, input, grad_weight, grad_bias, stride_h, stride_w, padding_h, padding_w,
                     dilation_h, dilation_w, groups):
    N, D, OH, OW = grad_output.shape
    _, Cg, KH, KW = grad_weight.shape
    depth = Cg * KH * KW
    splits = max(1, min(64, (N * OH * OW) // SPLIT_COLUMNS))
    partial = device_scratch("conv_weight_partial", (splits, D, depth), grad_weight.dtype)
    if grad_bias is None:
        partial_bias = device_scratch("conv_bias_partial", (0, D), np.float64)
        grad_bias = device_scratch("conv_bias_absent", (0,), grad_weight.dtype)
    else:
        partial_bias = device_scratch("conv_bias_partial", (splits, D), np.float64)
    backward_weight = _kernels(grad_weight.dtype)[2]
    grid = (_tiles(depth), _tiles(D // groups), groups * splits)
    backward_weight[grid, (TILE, TILE)](grad_output, input, partial, partial_bias, KH, KW, stride_h, stride_w,
                                        padding_h, padding_w, dilation_h, dilation_w, groups)
    _sum_partials[grid_for(grad_weight.size)](partial, grad_weight, partial_bias, grad_bias)


def conv2d_backward_bias(grad_output, grad_bias):
    _conv2d_backward_bias[grad_bias.shape[0], BIAS_THREADS](grad_output, grad_bias)
