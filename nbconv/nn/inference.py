"""Inference: a model's output when no backward pass follows (prediction, evaluation, benchmarks).

`infer(model, input)` gives what `model.eval().forward(input)` gives, with less memory traffic:

- a batch normalization right after a convolution or fully connected layer normalises that layer's new
  output in place (its running statistics, as in eval mode) instead of writing a new array;
- a ReLU or ReLU6 after such a layer (or after a residual sum into one) works in place too;
- a residual sum adds the shortcut into the body's new output, then applies the block's activation in place.

Batch normalization is not folded into the convolution's weights: folded weights would have to be
recomputed (or a cache invalidated) whenever the parameters or running statistics change, and the pass
over the convolution's output that applies the per-channel scale and shift in place costs about what the
ReLU pass after a folded convolution would cost anyway. Models keep their batch-norm layers, so they train
and fine-tune as they are.

Nothing is kept for a backward pass: after `infer`, `backward` raises until `forward` runs again. A model in
training mode runs its ordinary `forward` (batch statistics, dropout).
"""
from .. import backend
from .. import functional as F
from .graph import Residual
from .layers import Conv1d, Conv2d, Linear, ReLU, ReLU6
from .module import Sequential
from .norm import _BatchNorm

# Layers whose forward returns a new array that nothing else holds: inference may overwrite it.
_FRESH = (Conv2d, Conv1d, Linear)


def infer(model, input):
    """model's output for `input` as in eval mode, for inference only (see the module docstring)."""
    if model.training or not isinstance(model, (Sequential, Residual)):
        return model.forward(input)
    output, _ = _run(model, input)
    _forget_forward(model)
    return output


def _forget_forward(model):
    """Make a later backward fail clearly: the layers did not keep what it needs."""
    containers = [model] + [layer for _, layer in model.named_layers() if isinstance(layer, Sequential)]
    for container in containers:
        container._last_order = None
        container._inferred = True


def _run(layer, input):
    """(output, fresh): fresh when the output is a new array that may be overwritten in place."""
    if isinstance(layer, Sequential):
        return _sequence(layer.layers, input)
    if isinstance(layer, Residual):
        return _residual(layer, input, None), True
    output = layer.forward(input)
    return output, isinstance(layer, _FRESH)


def _sequence(layers, input, skip_last_norm=False):
    """Run `layers` in order, fusing norms and activations into fresh outputs. With skip_last_norm, a final
    batch norm after a fresh output is left out and returned: ((output, fresh), norm or None)."""
    output, fresh, index, pending = input, False, 0, None
    while index < len(layers):
        layer = layers[index]
        following = layers[index + 1] if index + 1 < len(layers) else None
        if isinstance(layer, Residual):
            activation = following if isinstance(following, (ReLU, ReLU6)) and layer.activation is None else None
            output, fresh = _residual(layer, output, activation), True
            index += 2 if activation is not None else 1
            continue
        if isinstance(layer, _BatchNorm) and fresh:
            if skip_last_norm and index == len(layers) - 1:
                pending = layer
                break
            activation = following if isinstance(following, (ReLU, ReLU6)) else None
            _normalize_in_place(layer, output, activation)
            index += 2 if activation is not None else 1
            continue
        if isinstance(layer, (ReLU, ReLU6)) and fresh:
            _activate_in_place(layer, output)
            index += 1
            continue
        output, fresh = _run(layer, output)
        index += 1
    return (output, fresh) if not skip_last_norm else ((output, fresh), pending)


def _residual(block, input, activation):
    """activation(body(input) + shortcut(input)), adding into the body's fresh output in place."""
    (output, fresh), norm = _sequence(block.body.layers, input, skip_last_norm=True)
    if norm is not None:
        _normalize_in_place(norm, output, None)
    shortcut = input if block.shortcut is None else _run(block.shortcut, input)[0]
    if fresh:
        F.add_(output, shortcut)
    else:
        output = F.add(output, shortcut)
    for layer in (block.activation, activation):
        if layer is not None:
            if isinstance(layer, (ReLU, ReLU6)):
                _activate_in_place(layer, output)
            else:
                output = layer.forward(output)
    return output


def _normalize_in_place(norm, output, activation):
    """output = norm(output) with the running statistics, in place; then the activation, in place."""
    if output.ndim not in norm.layouts or output.shape[1] != norm.num_features:
        norm._check_input(output)  # raises the layer's own message
    where = backend.backend_of(output)
    channels = output.shape[1]
    positions = 1
    for extent in output.shape[2:]:
        positions *= extent
    view = output.reshape((output.shape[0], channels, positions))
    dtype = output.dtype
    empty = backend.empty((0,), dtype, where)
    statistics = backend.empty((channels,), dtype, where), backend.empty((channels,), dtype, where)
    backend.kernels(where).batch_norm_forward(
        view, empty if norm.weight is None else norm.weight.value, empty if norm.bias is None else norm.bias.value,
        norm.running_mean, norm.running_var, view, *statistics, 0.0, norm.eps, 0)
    if activation is not None:
        _activate_in_place(activation, output)


def _activate_in_place(activation, output):
    flat = backend.flat(output)
    kernels = backend.kernels(backend.backend_of(output))
    (kernels.relu6_forward if isinstance(activation, ReLU6) else kernels.relu_forward)(flat, flat)


__all__ = ["infer"]
