"""2-D convolution kernels for NVIDIA GPUs, the CUDA twins of nbconv.kernels.cpu.conv.

Same names, parameters and shapes as the CPU kernels. Each output element is owned by one thread
and written once (gather form), so no atomics are needed and outputs may be uninitialised.
"""
from numba import cuda

from .launch import grid_for


@cuda.jit(cache=True)
def _conv2d_forward(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w,
                    dilation_h, dilation_w, groups):
    N, C, H, W = input.shape
    D, Cg, KH, KW = weight.shape
    OH, OW = output.shape[2], output.shape[3]
    index = cuda.grid(1)
    if index >= N * D * OH * OW:
        return
    ow = index % OW
    oh = (index // OW) % OH
    d = (index // (OW * OH)) % D
    n = index // (OW * OH * D)
    g = d // (D // groups)
    total = bias[d] if bias.shape[0] > 0 else 0.0
    for c in range(Cg):
        for i in range(KH):
            ih = oh * stride_h + i * dilation_h - padding_h
            if ih < 0 or ih >= H:
                continue
            for j in range(KW):
                iw = ow * stride_w + j * dilation_w - padding_w
                if 0 <= iw < W:
                    total += weight[d, c, i, j] * input[n, g * Cg + c, ih, iw]
    output[n, d, oh, ow] = total


def conv2d_forward(input, weight, bias, output, stride_h, stride_w, padding_h, padding_w,
                   dilation_h, dilation_w, groups):
    _conv2d_forward[grid_for(output.size)](input, weight, bias, output, stride_h, stride_w,
                                           padding_h, padding_w, dilation_h, dilation_w, groups)


@cuda.jit(cache=True)
def _conv2d_backward_input(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w,
                           dilation_h, dilation_w, groups):
    N, C, H, W = grad_input.shape
    D, Cg, KH, KW = weight.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    index = cuda.grid(1)
    if index >= N * C * H * W:
        return
    iw = index % W
    ih = (index // W) % H
    channel = (index // (W * H)) % C
    n = index // (W * H * C)
    Dg = D // groups
    g = channel // Cg
    c = channel % Cg
    total = 0.0
    for dd in range(Dg):
        d = g * Dg + dd
        for i in range(KH):
            t_h = ih + padding_h - i * dilation_h
            if t_h < 0 or t_h % stride_h != 0:
                continue
            oh = t_h // stride_h
            if oh >= OH:
                continue
            for j in range(KW):
                t_w = iw + padding_w - j * dilation_w
                if t_w < 0 or t_w % stride_w != 0:
                    continue
                ow = t_w // stride_w
                if ow < OW:
                    total += weight[d, c, i, j] * grad_output[n, d, oh, ow]
    grad_input[n, channel, ih, iw] = total


def conv2d_backward_input(grad_output, weight, grad_input, stride_h, stride_w, padding_h, padding_w,
                          dilation_h, dilation_w, groups):
    _conv2d_backward_input[grid_for(grad_input.size)](grad_output, weight, grad_input, stride_h, stride_w,
                                                      padding_h, padding_w, dilation_h, dilation_w, groups)


@cuda.jit(cache=True)
def _conv2d_backward_weight(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w,
                            dilation_h, dilation_w, groups):
    N, C, H, W = input.shape
    D, Cg, KH, KW = grad_weight.shape
    OH, OW = grad_output.shape[2], grad_output.shape[3]
    index = cuda.grid(1)
    if index >= D * Cg * KH * KW:
        return
    j = index % KW
    i = (index // KW) % KH
    c = (index // (KW * KH)) % Cg
    d = index // (KW * KH * Cg)
    channel = (d // (D // groups)) * Cg + c
    total = 0.0
    for n in range(N):
        for oh in range(OH):
            ih = oh * stride_h + i * dilation_h - padding_h
            if ih < 0 or ih >= H:
                continue
            for ow in range(OW):
                iw = ow * stride_w + j * dilation_w - padding_w
                if 0 <= iw < W:
                    total += grad_output[n, d, oh, ow] * input[n, channel, ih, iw]
    grad_weight[d, c, i, j] = total


def conv2d_backward_weight(grad_output, input, grad_weight, stride_h, stride_w, padding_h, padding_w,
                           dilation_h, dilation_w, groups):
    _conv2d_backward_weight[grid_for(grad_weight.size)](grad_output, input, grad_weight, stride_h, stride_w,
                                                        padding_h, padding_w, dilation_h, dilation_w, groups)


@cuda.jit(cache=True)
def _conv2d_backward_bias(grad_output, grad_bias):
    N, D, OH, OW = grad_output.shape
    d = cuda.grid(1)
    if d >= D:
        return
    total = 0.0
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                total += grad_output[n, d, oh, ow]
    grad_bias[d] = total


def conv2d_backward_bias(grad_output, grad_bias):
    _conv2d_backward_bias[grid_for(grad_bias.size)](grad_output, grad_bias)
