"""2-D convolution kernels for NVIDIA GPUs, the CUDA twins of nbconv.kernels.cpu.conv.

Same names, parameters and shapes as the CPU kernels. Each pass is an implicit matrix product (the
unrolled operand is never materialised: each element is gathered by index arithmetic, im2col on the fly,
with zeros for padding), tiled twice:
- a block of TY x TX threads owns a BM x BN tile of the result (BM = TY*TM rows, BN = TX*TN columns);
  for each step of BK along the reduction, its threads load one BK x BM tile of each operand into shared
  memory together (every global value read once per block), synchronise and accumulate;
- each thread owns TM x TN results in registers (rows ty + i*TY, columns tx + j*TX), so that every value
  it reads from shared memory serves TN (or TM) multiply-adds instead of one.
Each thread gathers the unrolled operand for one fixed column, so it decomposes that column's position
once, not at every step. Two tile shapes: 64 x 64 for passes with at least 48 result rows (channels), and
16 x 128 for narrow ones (LeNet's 6 and 16 channels, a colour input's 3), where a 64-row tile would idle.

- forward: output[n, d, p] = sum over k = (c, i, j) of weight[d, k] * unrolled_input[k, (n, p)];
- input gradient, gather form (no atomics): grad_input[n, c, q] = sum over r = (d, i, j) of
  weight[d, c, i, j] * grad_output[n, d, the output position whose window tap (i, j) reads q];
- weight gradient: grad_weight[d, k] = sum over (n, p) of grad_output[n, d, p] * unrolled_input[k, (n, p)],
  the long reduction split over the grid into partial sums that a second kernel adds in a fixed order.
Groups run on the grid's z axis. Depthwise convolutions (one input and one output channel a group) have
their own direct kernels: as a matrix product each group would be a single row.
The shared tiles take the arrays' dtype, so kernels are built per dtype and tile shape.
"""
import math
import os

import numpy as np
from numba import cuda, float32, float64, int8

from .indexing import unravel3
from .launch import grid_for, small_blocks
from .reduce import REDUCE_THREADS, block_sum
from .workspace import device_scratch

SPLIT_COLUMNS = 256  # reduction columns each block of the weight gradient sums at least
TARGET_BLOCKS = 512  # blocks a weight gradient launch aims for (an H100 has 132 multiprocessors)
_NUMBA_TYPES = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}


class Tiles:
    """One tile shape: TY x TX threads, TM x TN results each, steps of BK along the reduction."""

    def __init__(self, name, ty, tx, tm, tn, bk):
        self.name, self.ty, self.tx, self.tm, self.tn, self.bk = name, ty, tx, tm, tn, bk
        self.rows, self.columns, self.threads = ty * tm, tx * tn, ty * tx
        # each thread gathers its column operand in one column: threads must cover whole rows of the tile
        if min(ty, tx, tm, tn, bk) < 1 or self.threads > 1024 or self.threads % self.columns or \
                (bk * self.columns) % self.threads:
            raise ValueError(f"tile shape {name}: {ty}x{tx} threads with {tm}x{tn} results each and steps of "
                             f"{bk} do not divide into whole loads")


# Under the simulator, which runs every thread as a Python thread, small tiles (that also exercise the tile
# edges and the register blocking on small test shapes).
TILES_VARIABLE = "NBCONV_CUDA_TILES"


def _gpu_tiles():
    """The tall and narrow tile shapes for a GPU: NBCONV_CUDA_TILES="ty,tx,tm,tn,bk/ty,tx,tm,tn,bk" overrides
    them (for benchmarks/gpu_tiles.py, which times the candidates)."""
    text = os.environ.get(TILES_VARIABLE, "")
    if not text:
        return Tiles("tall", 16, 16, 4, 4, 8), Tiles("narrow", 8, 32, 2, 4, 8)
    try:
        tall, narrow = ([int(part) for part in shape.split(",")] for shape in text.split("/"))
        return Tiles("tall", *tall), Tiles("narrow", *narrow)
    except (ValueError, TypeError):
        raise ValueError(f"{TILES_VARIABLE} must read 'ty,tx,tm,tn,bk/ty,tx,tm,tn,bk' (positive, at most 1024 "
                         f"threads, a multiple of the tile's columns), got {text!r}") from None


if small_blocks():
    TALL, NARROW = Tiles("tall", 4, 4, 2, 2, 4), Tiles("narrow", 2, 8, 2, 2, 4)
    TALL_FROM_ROWS = 6
else:
    TALL, NARROW = _gpu_tiles()
    TALL_FROM_ROWS = 48
DEPTHWISE_THREADS = 4 * 4 if small_blocks() else 256


def _tiles_for(rows):
    return TALL if rows >= TALL_FROM_ROWS else NARROW


@cuda.jit(device=True, inline=True)
def _advance(high, middle, low, step_high, step_middle, step_low, middle_radix, low_radix):
    """(high, middle, low) + (step_high, step_middle, step_low) in the mixed radix (., middle_radix,
    low_radix), both in range: one compare and carry per digit instead of a division."""
    low += step_low
    carry = 0
    if low >= low_radix:
        low -= low_radix
        carry = 1
    middle += step_middle + carry
    carry = 0
    if middle >= middle_radix:
        middle -= middle_radix
        carry = 1
    return high + step_high + carry, middle, low


def _build(real, tiles):
    """The three tiled kernels for one element type and one tile shape.

    Index arithmetic is most of a naive kernel's instructions (a 64-bit division by a runtime divisor
    costs dozens), so each thread decomposes the reduction positions it loads only once, before the loop,
    and then steps them by BK in mixed radix (one compare and carry per digit), with the digits of BK
    worked out once too."""
    TY, TX, TM, TN, BK = tiles.ty, tiles.tx, tiles.tm, tiles.tn, tiles.bk
    BM, BN, NT = tiles.rows, tiles.columns, tiles.threads
    A_LOADS = (BM * BK + NT - 1) // NT       # loads a thread makes of the BK x BM row-operand tile
    B_LOADS = BK * BN // NT                  # and of the BK x BN column-operand tile, all in one column
    B_ROW_STEP = NT // BN
    RESULTS = TM * TN

    @cuda.jit(device=True, inline=True)
    def multiply_tiles(rows_tile, columns_tile, acc, ty, tx):
        a = cuda.local.array(TM, real)
        b = cuda.local.array(TN, real)
        for kk in range(BK):
            for i in range(TM):
                a[i] = rows_tile[kk, ty + i * TY]
            for j in range(TN):
                b[j] = columns_tile[kk, tx + j * TX]
            for i in range(TM):
                for j in range(TN):
                    acc[i * TN + j] += a[i] * b[j]

    @cuda.jit(device=True, inline=True)
    def multiply_covered(rows_tile, columns_tile, covers, acc, ty, tx):
        """multiply_tiles over the pairs whose cover flag is set only (an inf or NaN weight must not meet
        the zeros of the taps that do not read a pixel)."""
        for kk in range(BK):
            for i in range(TM):
                a = rows_tile[kk, ty + i * TY]
                for j in range(TN):
                    if covers[kk, tx + j * TX]:
                        acc[i * TN + j] += a * columns_tile[kk, tx + j * TX]

    @cuda.jit
    def forward(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w,
                groups):
        N, C, H, W = input.shape
        D, Cg, KH, KW = weight.shape
        OH, OW = output.shape[2], output.shape[3]
        Dg, taps = D // groups, KH * KW
        depth, columns = Cg * taps, N * OH * OW
        g = cuda.blockIdx.z
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        thread = ty * TX + tx
        row0, column0 = cuda.blockIdx.y * BM, cuda.blockIdx.x * BN
        weights = cuda.shared.array((BK, BM), real)
        unrolled = cuda.shared.array((BK, BN), real)
        acc = cuda.local.array(RESULTS, real)
        for e in range(RESULTS):
            acc[e] = real(0)
        step_c, step_i, step_j = unravel3(BK, KH, KW)
        # the weight tile positions this thread loads: (kk, r) fixed, k = k0 + kk stepped in (c, i, j)
        a_c = cuda.local.array(A_LOADS, np.int32)
        a_i = cuda.local.array(A_LOADS, np.int32)
        a_j = cuda.local.array(A_LOADS, np.int32)
        for load in range(A_LOADS):
            a_c[load], a_i[load], a_j[load] = unravel3((thread + load * NT) % BK, KH, KW)
        # the unrolled-input column this thread gathers, and its taps k = k0 + kk in (c, i, j)
        my_column = thread % BN
        column = column0 + my_column
        n, oh, ow = unravel3(column, OH, OW)
        top, left = oh * stride_h - padding_h, ow * stride_w - padding_w
        b_c = cuda.local.array(B_LOADS, np.int32)
        b_i = cuda.local.array(B_LOADS, np.int32)
        b_j = cuda.local.array(B_LOADS, np.int32)
        for load in range(B_LOADS):
            b_c[load], b_i[load], b_j[load] = unravel3(thread // BN + load * B_ROW_STEP, KH, KW)
        for k0 in range(0, depth, BK):
            for load in range(A_LOADS):          # weights[kk][r] = weight[g*Dg + row0 + r, k0 + kk]
                e = thread + load * NT
                if e < BM * BK:
                    kk, r = e % BK, e // BK
                    value = real(0)
                    if row0 + r < Dg and k0 + kk < depth:
                        value = weight[g * Dg + row0 + r, a_c[load], a_i[load], a_j[load]]
                    weights[kk, r] = value
                a_c[load], a_i[load], a_j[load] = _advance(a_c[load], a_i[load], a_j[load], step_c, step_i,
                                                           step_j, KH, KW)
            for load in range(B_LOADS):          # unrolled[kk][my_column] = input tap k0 + kk of `column`
                kk = thread // BN + load * B_ROW_STEP
                value = real(0)
                if k0 + kk < depth and column < columns:
                    ih, iw = top + b_i[load] * dilation_h, left + b_j[load] * dilation_w
                    if 0 <= ih < H and 0 <= iw < W:
                        value = input[n, g * Cg + b_c[load], ih, iw]
                unrolled[kk, my_column] = value
                b_c[load], b_i[load], b_j[load] = _advance(b_c[load], b_i[load], b_j[load], step_c, step_i,
                                                           step_j, KH, KW)
            cuda.syncthreads()
            multiply_tiles(weights, unrolled, acc, ty, tx)
            cuda.syncthreads()
        for j in range(TN):
            column = column0 + tx + j * TX
            if column < columns:
                n, oh, ow = unravel3(column, OH, OW)
                for i in range(TM):
                    row = row0 + ty + i * TY
                    if row < Dg:
                        d = g * Dg + row
                        output[n, d, oh, ow] = acc[i * TN + j] + (bias[d] if bias.shape[0] > 0 else real(0))

    @cuda.jit
    def backward_input(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w, dilation_h,
                       dilation_w, groups):
        """The input gradient by phases where an axis has stride 1 or dilation 1: the pixels ih whose
        (ih + padding_h) % stride_h is the same, rh, are read only by the taps i = rh, rh + stride_h, ...,
        so each phase (rh, rw), on the grid's z axis with the group, is a matrix product over just those
        taps (1/stride_h/stride_w of them) with no divisions: output row oh = base_h + a - ii for pixel
        ih = h_start + a*stride_h and tap i = rh + ii*stride_h. With stride 1 there is one phase and
        oh = ih + padding_h - i*dilation_h. An axis with both a stride and a dilation above 1 has one phase
        too and tests each tap: whether (ih + padding_h - i*dilation_h) is a multiple of the stride."""
        N, C, H, W = grad_input.shape
        D, Cg, KH, KW = weight.shape
        OH, OW = grad_output.shape[2], grad_output.shape[3]
        Dg = D // groups
        g = cuda.blockIdx.z % groups
        phase = cuda.blockIdx.z // groups
        phases_w = stride_w if dilation_w == 1 else 1
        rh, rw = phase // phases_w, phase % phases_w
        tested_h = stride_h > 1 and dilation_h > 1  # an axis whose taps are tested one by one
        tested_w = stride_w > 1 and dilation_w > 1
        if dilation_h == 1:                     # taps i = i_start + ii*i_step, pixels ih = h_start + a*h_step
            i_start, i_step, h_start, h_step = rh, stride_h, (rh - padding_h) % stride_h, stride_h
            base_h, tap_h = ((rh - padding_h) % stride_h + padding_h - rh) // stride_h, 1
        else:                                   # stride 1 (or tested)
            i_start, i_step, h_start, h_step, base_h, tap_h = 0, 1, 0, 1, padding_h, dilation_h
        if dilation_w == 1:
            j_start, j_step, w_start, w_step = rw, stride_w, (rw - padding_w) % stride_w, stride_w
            base_w, tap_w = ((rw - padding_w) % stride_w + padding_w - rw) // stride_w, 1
        else:
            j_start, j_step, w_start, w_step, base_w, tap_w = 0, 1, 0, 1, padding_w, dilation_w
        KHp = max(0, (KH - i_start + i_step - 1) // i_step)
        KWp = max(0, (KW - j_start + j_step - 1) // j_step)
        Hp = max(0, (H - h_start + h_step - 1) // h_step)
        Wp = max(0, (W - w_start + w_step - 1) // w_step)
        reduction, columns = Dg * KHp * KWp, N * Hp * Wp
        KHd, KWd, Hd, Wd = max(KHp, 1), max(KWp, 1), max(Hp, 1), max(Wp, 1)  # divisors when a phase is empty
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        thread = ty * TX + tx
        row0, column0 = cuda.blockIdx.y * BM, cuda.blockIdx.x * BN
        weights = cuda.shared.array((BK, BM), real)
        gradients = cuda.shared.array((BK, BN), real)
        covers = cuda.shared.array((BK, BN), int8)   # whether output tap r reads input `column` at all
        acc = cuda.local.array(RESULTS, real)
        for e in range(RESULTS):
            acc[e] = real(0)
        step_d, step_i, step_j = unravel3(BK, KHd, KWd)
        a_d = cuda.local.array(A_LOADS, np.int32)
        a_i = cuda.local.array(A_LOADS, np.int32)
        a_j = cuda.local.array(A_LOADS, np.int32)
        for load in range(A_LOADS):
            a_d[load], a_i[load], a_j[load] = unravel3((thread + load * NT) % BK, KHd, KWd)
        my_column = thread % BN
        column = column0 + my_column
        n, a, b = unravel3(column, Hd, Wd)
        b_d = cuda.local.array(B_LOADS, np.int32)
        b_i = cuda.local.array(B_LOADS, np.int32)
        b_j = cuda.local.array(B_LOADS, np.int32)
        for load in range(B_LOADS):
            b_d[load], b_i[load], b_j[load] = unravel3(thread // BN + load * B_ROW_STEP, KHd, KWd)
        for r0 in range(0, reduction, BK):
            finite = 1
            for load in range(A_LOADS):          # weights[rr][c] = weight[g*Dg + dd, row0 + c, i, j]
                e = thread + load * NT
                if e < BM * BK:
                    rr, c = e % BK, e // BK
                    value = real(0)
                    if row0 + c < Cg and r0 + rr < reduction:
                        value = weight[g * Dg + a_d[load], row0 + c, i_start + a_i[load] * i_step,
                                       j_start + a_j[load] * j_step]
                        if (value - value) != real(0):  # inf or NaN
                            finite = 0
                    weights[rr, c] = value
                a_d[load], a_i[load], a_j[load] = _advance(a_d[load], a_i[load], a_j[load], step_d, step_i,
                                                           step_j, KHd, KWd)
            for load in range(B_LOADS):          # gradients[rr][my_column]: output tap r of pixel `column`
                rr = thread // BN + load * B_ROW_STEP
                value = real(0)
                covered = 0
                if r0 + rr < reduction and column < columns:
                    oh = base_h + a - b_i[load] * tap_h  # for a tested axis: the stride's multiple, if it is one
                    if tested_h:
                        oh = oh // stride_h if oh >= 0 and oh % stride_h == 0 else -1
                    ow = base_w + b - b_j[load] * tap_w
                    if tested_w:
                        ow = ow // stride_w if ow >= 0 and ow % stride_w == 0 else -1
                    if 0 <= oh < OH and 0 <= ow < OW:
                        value = grad_output[n, g * Dg + b_d[load], oh, ow]
                        covered = 1
                gradients[rr, my_column] = value
                covers[rr, my_column] = covered
                b_d[load], b_i[load], b_j[load] = _advance(b_d[load], b_i[load], b_j[load], step_d, step_i,
                                                           step_j, KHd, KWd)
            if cuda.syncthreads_and(finite):
                multiply_tiles(weights, gradients, acc, ty, tx)
            else:
                multiply_covered(weights, gradients, covers, acc, ty, tx)
            cuda.syncthreads()
        for jj in range(TN):
            column = column0 + tx + jj * TX
            if column < columns:
                n, a, b = unravel3(column, Hd, Wd)
                for ii in range(TM):
                    row = row0 + ty + ii * TY
                    if row < Cg:
                        grad_input[n, g * Cg + row, h_start + a * h_step, w_start + b * w_step] = acc[ii * TN + jj]

    @cuda.jit
    def backward_weight(grad_output, input, partial, partial_bias, kernel_h, kernel_w, stride_h, stride_w, padding_h,
                        padding_w, dilation_h, dilation_w, groups):
        N, C, H, W = input.shape
        D, OH, OW = grad_output.shape[1], grad_output.shape[2], grad_output.shape[3]
        splits, depth = partial.shape[0], partial.shape[2]
        Dg, Cg, KW = D // groups, C // groups, kernel_w
        columns = N * OH * OW
        g, split = cuda.blockIdx.z % groups, cuda.blockIdx.z // groups
        first, last = split * columns // splits, (split + 1) * columns // splits
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        thread = ty * TX + tx
        row0, column0 = cuda.blockIdx.y * BM, cuda.blockIdx.x * BN
        gradients = cuda.shared.array((BK, BM), real)
        unrolled = cuda.shared.array((BK, BN), real)
        acc = cuda.local.array(RESULTS, real)
        for e in range(RESULTS):
            acc[e] = real(0)
        step_n, step_h, step_w = unravel3(BK, OH, OW)
        # the output positions q = q0 + qq this thread loads, stepped in (n, oh, ow)
        a_n = cuda.local.array(A_LOADS, np.int32)
        a_h = cuda.local.array(A_LOADS, np.int32)
        a_w = cuda.local.array(A_LOADS, np.int32)
        for load in range(A_LOADS):
            a_n[load], a_h[load], a_w[load] = unravel3(first + (thread + load * NT) % BK, OH, OW)
        my_column = thread % BN                  # the tap k = (c, i, j) this thread gathers
        k = column0 + my_column
        c, i, j = unravel3(k, kernel_h, KW)
        b_n = cuda.local.array(B_LOADS, np.int32)
        b_h = cuda.local.array(B_LOADS, np.int32)
        b_w = cuda.local.array(B_LOADS, np.int32)
        for load in range(B_LOADS):
            b_n[load], b_h[load], b_w[load] = unravel3(first + thread // BN + load * B_ROW_STEP, OH, OW)
        # the bias gradient rides along: in the blocks of the first column tile, thread r also sums row r
        # of every grad_output tile the block loads anyway, into one partial sum per split (float64, as the
        # separate bias kernel sums)
        sums_bias = partial_bias.shape[0] > 0 and cuda.blockIdx.x == 0 and thread < BM
        bias_total = 0.0
        for q0 in range(first, last, BK):
            for load in range(A_LOADS):          # gradients[qq][r] = grad_output[n, g*Dg + row0 + r, oh, ow]
                e = thread + load * NT
                if e < BM * BK:
                    qq, r = e % BK, e // BK
                    value = real(0)
                    if row0 + r < Dg and q0 + qq < last:
                        value = grad_output[a_n[load], g * Dg + row0 + r, a_h[load], a_w[load]]
                    gradients[qq, r] = value
                a_n[load], a_h[load], a_w[load] = _advance(a_n[load], a_h[load], a_w[load], step_n, step_h,
                                                           step_w, OH, OW)
            for load in range(B_LOADS):          # unrolled[qq][my_column] = input tap k of output position q
                qq = thread // BN + load * B_ROW_STEP
                value = real(0)
                if q0 + qq < last and k < depth:
                    ih = b_h[load] * stride_h - padding_h + i * dilation_h
                    iw = b_w[load] * stride_w - padding_w + j * dilation_w
                    if 0 <= ih < H and 0 <= iw < W:
                        value = input[b_n[load], g * Cg + c, ih, iw]
                unrolled[qq, my_column] = value
                b_n[load], b_h[load], b_w[load] = _advance(b_n[load], b_h[load], b_w[load], step_n, step_h,
                                                           step_w, OH, OW)
            cuda.syncthreads()
            multiply_tiles(gradients, unrolled, acc, ty, tx)
            if sums_bias:
                for qq in range(BK):
                    bias_total += gradients[qq, thread]
            cuda.syncthreads()
        for jj in range(TN):
            column = column0 + tx + jj * TX
            if column < depth:
                for ii in range(TM):
                    row = row0 + ty + ii * TY
                    if row < Dg:
                        partial[split, g * Dg + row, column] = acc[ii * TN + jj]
        if sums_bias and row0 + thread < Dg:
            partial_bias[split, g * Dg + row0 + thread] = bias_total

    return forward, backward_input, backward_weight


def _build_depthwise(real):
    """Direct kernels for depthwise convolutions (groups == channels == filters). The grid's x axis runs
    over the positions of one map and its y axis over the (image, channel) planes, so that a thread finds
    its position with one division and its plane with another."""

    @cuda.jit
    def forward(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w,
                groups):
        N, D, OH, OW = output.shape
        H, W = input.shape[2], input.shape[3]
        KH, KW = weight.shape[2], weight.shape[3]
        position = cuda.grid(1)
        if position >= OH * OW:
            return
        oh = position // OW
        ow = position - oh * OW
        top, left = oh * stride_h - padding_h, ow * stride_w - padding_w
        for plane in range(cuda.blockIdx.y, N * D, cuda.gridDim.y):
            n = plane // D
            d = plane - n * D
            total = real(0)
            for i in range(KH):
                ih = top + i * dilation_h
                for j in range(KW):
                    iw = left + j * dilation_w
                    value = real(0)
                    if 0 <= ih < H and 0 <= iw < W:
                        value = input[n, d, ih, iw]
                    total += weight[d, 0, i, j] * value   # every product, padding included (the definition)
            output[n, d, oh, ow] = total + (bias[d] if bias.shape[0] > 0 else real(0))

    @cuda.jit
    def backward_input(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w, dilation_h,
                       dilation_w, groups):
        N, C, H, W = grad_input.shape
        OH, OW = grad_output.shape[2], grad_output.shape[3]
        KH, KW = weight.shape[2], weight.shape[3]
        position = cuda.grid(1)
        if position >= H * W:
            return
        ih = position // W
        iw = position - ih * W
        for plane in range(cuda.blockIdx.y, N * C, cuda.gridDim.y):
            n = plane // C
            c = plane - n * C
            total = real(0)
            for i in range(KH):
                reach_h = ih + padding_h - i * dilation_h
                if reach_h < 0 or reach_h % stride_h != 0 or reach_h // stride_h >= OH:
                    continue
                for j in range(KW):
                    reach_w = iw + padding_w - j * dilation_w
                    if reach_w < 0 or reach_w % stride_w != 0 or reach_w // stride_w >= OW:
                        continue
                    total += weight[c, 0, i, j] * grad_output[n, c, reach_h // stride_h, reach_w // stride_w]
            grad_input[n, c, ih, iw] = total

    @cuda.jit
    def backward_weight(grad_output, input, partial, partial_bias, kernel_h, kernel_w, stride_h, stride_w, padding_h,
                        padding_w, dilation_h, dilation_w, groups):
        """One block per (tap, channel, split of the images): a strided share of each map per thread, then
        a tree in shared memory."""
        N, C, H, W = input.shape
        OH, OW = grad_output.shape[2], grad_output.shape[3]
        splits, taps = partial.shape[0], kernel_h * kernel_w
        tap, d, split = cuda.blockIdx.x, cuda.blockIdx.y, cuda.blockIdx.z
        first, last = split * N // splits, (split + 1) * N // splits
        t = cuda.threadIdx.x
        i, j = tap // kernel_w, tap % kernel_w
        bias_row = tap == taps                 # the extra tap row sums the bias gradient
        shares = cuda.shared.array(REDUCE_THREADS, float64)
        total = 0.0
        for n in range(first, last):
            for position in range(t, OH * OW, REDUCE_THREADS):
                oh = position // OW
                ow = position - oh * OW
                gradient = grad_output[n, d, oh, ow]
                if bias_row:
                    total += gradient
                else:
                    ih = oh * stride_h - padding_h + i * dilation_h
                    iw = ow * stride_w - padding_w + j * dilation_w
                    value = real(0)
                    if 0 <= ih < H and 0 <= iw < W:
                        value = input[n, d, ih, iw]
                    total += gradient * value
        total = block_sum(shares, total)
        if t == 0:
            if bias_row:
                if partial_bias.shape[0] > 0:
                    partial_bias[split, d] = total
            else:
                partial[split, d, tap] = total

    return forward, backward_input, backward_weight


# Built for every element type and tile shape up front (nothing compiles until a launch), so every kernel
# is reachable from the module for nbconv.cuda_compile.
_KERNELS = {(dtype, tiles.name): _build(numba_type, tiles)
            for dtype, numba_type in _NUMBA_TYPES.items() for tiles in (TALL, NARROW)}
_DEPTHWISE = {dtype: _build_depthwise(numba_type) for dtype, numba_type in _NUMBA_TYPES.items()}


def _plane_grid(positions, planes):
    """(blocks over the positions of a map, blocks over the planes: at most the grid's y limit, each block
    looping over the planes a stride apart)."""
    return (max(1, math.ceil(positions / DEPTHWISE_THREADS)), max(1, min(planes, 65535)))


def _is_depthwise(channels, filters, groups):
    return groups > 1 and channels == groups and filters == groups


def _kernels(dtype, tiles):
    return _KERNELS[(np.dtype(dtype), tiles.name)]


def _grid(columns, rows, tiles, depth):
    return (max(1, math.ceil(columns / tiles.columns)), max(1, math.ceil(rows / tiles.rows)), depth)


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


@cuda.jit(cache=True)
def _conv2d_backward_bias(grad_output, grad_bias):
    """One block per channel d: its threads sum strided shares of grad_output[:, d], then a tree in shared
    memory adds the shares (a fixed order, so the result is deterministic)."""
    N, D, OH, OW = grad_output.shape
    d = cuda.blockIdx.x
    t = cuda.threadIdx.x
    shares = cuda.shared.array(REDUCE_THREADS, float64)
    total = 0.0
    for n in range(N):
        for position in range(t, OH * OW, REDUCE_THREADS):
            oh = position // OW
            total += grad_output[n, d, oh, position - oh * OW]
    total = block_sum(shares, total)
    if t == 0:
        grad_bias[d] = total


def conv2d_forward(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w,
                   dilation_h, dilation_w, groups):
    N, D, OH, OW = output.shape
    hyper = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    if _is_depthwise(input.shape[1], D, groups):
        _DEPTHWISE[np.dtype(output.dtype)][0][_plane_grid(OH * OW, N * D), DEPTHWISE_THREADS](
            input, weight, bias, output, *hyper)
        return
    tiles = _tiles_for(D // groups)
    forward = _kernels(output.dtype, tiles)[0]
    forward[_grid(N * OH * OW, D // groups, tiles, groups), (tiles.tx, tiles.ty)](input, weight, bias, output, *hyper)


def conv2d_backward_input(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w,
                          dilation_h, dilation_w, groups):
    N, C, H, W = grad_input.shape
    hyper = (stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    if _is_depthwise(C, weight.shape[0], groups):
        _DEPTHWISE[np.dtype(grad_input.dtype)][1][_plane_grid(H * W, N * C), DEPTHWISE_THREADS](
            grad_output, weight, grad_input, *hyper)
        return
    tiles = _tiles_for(C // groups)
    backward_input = _kernels(grad_input.dtype, tiles)[1]
    phases_h, phases_w = (stride_h if dilation_h == 1 else 1), (stride_w if dilation_w == 1 else 1)
    pixels = N * (-(-H // phases_h)) * (-(-W // phases_w))  # the most a phase has
    backward_input[_grid(pixels, C // groups, tiles, groups * phases_h * phases_w), (tiles.tx, tiles.ty)](
        grad_output, weight, grad_input, *hyper)


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
    depthwise = _is_depthwise(input.shape[1], D, groups)
    # enough blocks to fill the device: the fewer blocks the result needs, the more ways the reduction splits
    if depthwise:
        result_blocks = (KH * KW + 1) * D
    else:
        tiles = _tiles_for(D // groups)
        columns, rows, _ = _grid(depth, D // groups, tiles, groups)
        result_blocks = columns * rows * groups
    splits = max(1, min(64, (N * OH * OW) // SPLIT_COLUMNS, -(-TARGET_BLOCKS // result_blocks)))
    if depthwise:
        splits = max(1, min(splits, N))  # the depthwise kernel splits the images
    partial = device_scratch("conv_weight_partial", (splits, D, depth), grad_weight.dtype)
    if grad_bias is None:
        partial_bias = device_scratch("conv_bias_partial", (0, D), np.float64)
        grad_bias = device_scratch("conv_bias_absent", (0,), grad_weight.dtype)
    else:
        partial_bias = device_scratch("conv_bias_partial", (splits, D), np.float64)
    hyper = (KH, KW, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w, groups)
    if depthwise:
        kernel = _DEPTHWISE[np.dtype(grad_weight.dtype)][2]
        kernel[(KH * KW + 1, D, splits), REDUCE_THREADS](grad_output, input, partial, partial_bias, *hyper)
    else:
        backward_weight = _kernels(grad_weight.dtype, tiles)[2]
        backward_weight[_grid(depth, D // groups, tiles, groups * splits), (tiles.tx, tiles.ty)](
            grad_output, input, partial, partial_bias, *hyper)
    _sum_partials[grid_for(grad_weight.size)](partial, grad_weight, partial_bias, grad_bias)


def conv2d_backward_bias(grad_output, grad_bias):
    _conv2d_backward_bias[grad_bias.shape[0], REDUCE_THREADS](grad_output, grad_bias)
