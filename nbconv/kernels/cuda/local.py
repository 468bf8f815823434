"""Locally connected 2-D layer kernels for NVIDIA GPUs; twins of nbconv.kernels.cpu.local (gather form, no atomics)."""
from numba import cuda

from .indexing import unravel3, unravel4
from .launch import grid_for


@cuda.jit(cache=True)
def _local_conv2d_forward(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w):
    N, C, H, W = input.shape
    OH, OW, D, _, KH, KW = weight.shape
    index = cuda.grid(1)
    if index >= N * D * OH * OW:
        return
    n, d, oh, ow = unravel4(index, D, OH, OW)
    total = bias[d, oh, ow] if bias.shape[0] > 0 else 0.0
    for c in range(C):
        for i in range(KH):
            ih = oh * stride_h + i - padding_h
            for j in range(KW):
                iw = ow * stride_w + j - padding_w
                if 0 <= ih < H and 0 <= iw < W:
                    total += weight[oh, ow, d, c, i, j] * input[n, c, ih, iw]
                else:  # a padding zero, multiplied in as the definition does (inf weight: NaN)
                    total += weight[oh, ow, d, c, i, j] * 0.0
    output[n, d, oh, ow] = total


def local_conv2d_forward(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w):
    _local_conv2d_forward[grid_for(output.size)](input, weight, bias, output, stride_h, stride_w, padding_h, padding_w)


@cuda.jit(cache=True)
def _local_conv2d_backward_input(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w):
    N, C, H, W = grad_input.shape
    OH, OW, D, _, KH, KW = weight.shape
    index = cuda.grid(1)
    if index >= N * C * H * W:
        return
    n, c, ih, iw = unravel4(index, C, H, W)
    total = 0.0
    for i in range(KH):
        t_h = ih + padding_h - i
        if t_h < 0 or t_h % stride_h != 0 or t_h // stride_h >= OH:
            continue
        oh = t_h // stride_h
        for j in range(KW):
            t_w = iw + padding_w - j
            if t_w < 0 or t_w % stride_w != 0 or t_w // stride_w >= OW:
                continue
            ow = t_w // stride_w
            for d in range(D):
                total += weight[oh, ow, d, c, i, j] * grad_output[n, d, oh, ow]
    grad_input[n, c, ih, iw] = total


def local_conv2d_backward_input(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w):
    _local_conv2d_backward_input[grid_for(grad_input.size)](grad_output, weight, grad_input, stride_h, stride_w,
                                                            padding_h, padding_w)


@cuda.jit(cache=True)
def _local_conv2d_backward_weight(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w):
    N, C, H, W = input.shape
    OH, OW, D, _, KH, KW = grad_weight.shape
    index = cuda.grid(1)
    if index >= OH * OW * D * C * KH * KW:
        return
    position, d, c, tap = unravel4(index, D, C, KH * KW)  # position = (oh, ow), tap = (i, j)
    oh, ow = position // OW, position % OW
    i, j = tap // KW, tap % KW
    ih = oh * stride_h + i - padding_h
    iw = ow * stride_w + j - padding_w
    total = 0.0
    inside = 0 <= ih < H and 0 <= iw < W
    for n in range(N):  # outside, a padding zero multiplied in (an inf output gradient gives NaN)
        total += grad_output[n, d, oh, ow] * (input[n, c, ih, iw] if inside else 0.0)
    grad_weight[oh, ow, d, c, i, j] = total


def local_conv2d_backward_weight(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w):
    _local_conv2d_backward_weight[grid_for(grad_weight.size)](grad_output, input, grad_weight, stride_h, stride_w,
                                                              padding_h, padding_w)


@cuda.jit(cache=True)
def _local_conv2d_backward_bias(grad_output, grad_bias):
    N, D, OH, OW = grad_output.shape
    index = cuda.grid(1)
    if index >= D * OH * OW:
        return
    d, oh, ow = unravel3(index, OH, OW)
    total = 0.0
    for n in range(N):
        total += grad_output[n, d, oh, ow]
    grad_bias[d, oh, ow] = total


def local_conv2d_backward_bias(grad_output, grad_bias):
    _local_conv2d_backward_bias[grid_for(grad_bias.size)](grad_output, grad_bias)
