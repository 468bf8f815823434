"""The CPU convolution plans of a model: for each convolution layer and pass, the algorithm
nbconv.kernels.cpu.conv.plan picks and its buffers, worked out from the layers' shapes without running
anything. `nbconv plan` prints them; the JIT warm-up compiles what they name.

A training step runs every convolution's forward pass, its weight gradient (unless its parameters take
no gradients) and its input gradient, except in the layers that read the model's input: the step asks
those for their weight gradients only.
"""
from typing import NamedTuple

import numpy as np

from . import functional as F
from .kernels.cpu.conv.plan import plan
from .nn import Concat, Conv1d, Conv2d, Residual, Sequential


class LayerPlan(NamedTuple):
    """One pass of one convolution layer: its dotted path in the model, the layer, and the Plan."""
    path: str
    layer: object
    plan: object


def _kernel_shapes(layer, input_shape, batch):
    """(input shape the 2-D kernels see, weight shape, hyper-parameters in the kernels' order) for a
    convolution layer and its input shape without the batch axis."""
    hyper = layer.hyper
    if isinstance(layer, Conv1d):
        C, W = input_shape
        D, Cg, K = layer.weight.shape
        padding = hyper["padding"] if isinstance(hyper["padding"], str) else (0, hyper["padding"])
        shape, weight_shape = (batch, C, 1, W), (D, Cg, 1, K)
        stride, dilation = (1, hyper["stride"]), (1, hyper["dilation"])
    else:
        shape, weight_shape = (batch,) + tuple(input_shape), tuple(layer.weight.shape)
        stride, padding, dilation = hyper["stride"], hyper["padding"], hyper["dilation"]
    geometry = F.conv_geometry(shape, weight_shape, stride, padding, dilation, hyper["groups"])
    padded = shape[:2] + (shape[2] + geometry.extra_h, shape[3] + geometry.extra_w)  # 'same' pads the far side
    return padded, weight_shape, geometry.kernel_args


def reading_the_input(model):
    """The layers whose backward a training step calls without the input gradient (need_input_grad=False):
    those that read the model's input through a chain of first layers, residual bodies, shortcuts and
    concatenated branches. A set of ids."""
    found = set()

    def visit(layer):
        if isinstance(layer, Sequential):
            if layer.layers:
                first = layer.layers[layer.execution_order(len(layer.layers))[0]]
                if first.parameters():
                    visit(first)
        elif isinstance(layer, Residual):
            visit(layer.body)
            if layer.shortcut is not None and layer.shortcut.parameters():
                visit(layer.shortcut)
        elif isinstance(layer, Concat):
            for branch in layer.branches:
                if branch.parameters():
                    visit(branch)
        else:
            found.add(id(layer))
    visit(model)
    return found


def layer_plans(model, input_shape, batch=1, training=True, threads=None):
    """[LayerPlan] for every convolution of `model` on inputs of `input_shape` (without the batch axis), in
    the order the layers run: the forward pass, and with `training` the passes a training step runs
    (weight gradient, then input gradient, as the backward pass calls them)."""
    convolutions = []
    model.trace(tuple(input_shape), lambda path, layer, before, after: convolutions.append((path, layer, before))
                if isinstance(layer, (Conv2d, Conv1d)) else None)
    skip_input = reading_the_input(model) if training else set()
    found = []
    for path, layer, before in convolutions:
        shape, weight_shape, hyper = _kernel_shapes(layer, before, batch)
        dtype = np.dtype(layer.weight.value.dtype)
        passes = ["forward"]
        if training and layer.param_grads:
            passes.append("backward_weight")
        if training and id(layer) not in skip_input:
            passes.append("backward_input")
        for pass_ in passes:
            found.append(LayerPlan(path, layer, plan(pass_, shape, weight_shape, *hyper, dtype=dtype,
                                                     threads=threads)))
    return found
