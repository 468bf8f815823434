"""Inference: a model's output when no backward pass follows (prediction, evaluation, benchmarks).

`infer(model, input)` gives what `model.eval().forward(input)` gives, with less memory traffic and fewer
kernel launches:

- a batch normalization right after a 2-D convolution becomes a per-channel scale and shift
  (`functional.batch_norm_scale_shift`, computed once per version of its weights and running statistics)
  that the convolution's own kernel applies, with the ReLU or ReLU6 after it, to each block of output it
  has just written (gemm, pointwise and Winograd layers on the CPU; other algorithms and the CUDA backend
  run one `scale_shift` pass after the convolution);
- a residual block's shortcut runs first, so that the body's last convolution also adds it and applies the
  block's ReLU in that same epilogue;
- a batch normalization after another fresh output (a fully connected layer, a 1-D convolution) is one
  `scale_shift` pass in place, with the activation; a ReLU or ReLU6 after a fresh output works in place.

Batch normalization is not folded into the convolution's weights: every batch normalization of the
networks this serves is followed by an activation or a residual sum, so the pass over the convolution's
output stays, and applying the scale and shift in it costs next to nothing; folded weights would instead
be a second copy of every convolution's weights, rebuilt whenever they change (optimizer steps,
`load_state_dict`, a user's own edits), which cannot be noticed without reading them.

The convolutions run the algorithms `kernels/cpu/conv/plan.py`'s `choose_prepared` picks for passes that keep
their weight-only work (a packed weight for 1x1 layers on small maps, for strided layers with larger windows and
for 3x3 layers on 7x7 maps at batch 1; Winograd's F(4x4) or F(2x2) with transformed filters kept for the other
3x3 layers), which may differ from a training pass's.

A convolution keeps, per version of its weight (`Parameter.version`, which assigning a new array, an
optimizer step, `load_state_dict` and `Parameter.mark_changed()` advance), what depends on the weight
alone: on the CPU, its finiteness (checked once; then a layer's output only where its algorithm sums other
products than the definition's, as Winograd's transforms do), a packed weight and a Winograd layer's transformed filters
(computed once instead of at every call). An edit of a weight in place by other means
must be followed by `mark_changed()` (or a new array assigned) for `infer` to see it.

The scale and shift are cached on the batch-norm layer with a copy of the bytes of the (C,) arrays they came
from and recomputed when any of those differs from its copy, so a change by any means is seen; the comparison
reads 4 C values, far less than the pass it saves.

Nothing is kept for a backward pass: after `infer`, `backward` raises until `forward` runs again. A model in
training mode runs its ordinary `forward` (batch statistics, dropout).
"""
import numpy as np

from .. import backend
from .. import functional as F
from .graph import Residual
from .layers import Conv1d, Conv2d, Linear, ReLU, ReLU6
from .module import Sequential
from .norm import BatchNorm2d, _BatchNorm

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
    output = _convolve(layer, input) if type(layer) is Conv2d else layer.forward(input)
    return output, isinstance(layer, _FRESH)


def _convolve(layer, input, epilogue=None):
    """The convolution layer's output, with what depends on its weight alone (on the CPU: the weight's
    finiteness check, a Winograd layer's transformed filters) kept on the layer for as long as the weight's
    Parameter.version and array stay the same; then `epilogue` (scale, shift, residual, activation name),
    on the CPU inside the convolution kernels where they allow it."""
    weight = layer.weight
    key = (id(weight.value), weight.version)
    cached = getattr(layer, "_inference_prepared", None)
    if cached is None or cached[0] != key:
        cached = layer._inference_prepared = (key, {})
    hyper = layer.hyper
    return F._conv2d(input, weight.value, None if layer.bias is None else layer.bias.value, hyper["stride"],
                     hyper["padding"], hyper["dilation"], hyper["groups"], prepared=cached[1], epilogue=epilogue)


def _activation_name(layer):
    return None if layer is None else ("relu6" if isinstance(layer, ReLU6) else "relu")


def _sequence(layers, input, tail=None):
    """Run `layers` in order, fusing batch norms, activations and (with tail = (residual, ReLU/ReLU6 layer or
    None)) a residual sum and activation after the last layer into fresh outputs: (output, fresh)."""
    output, fresh, index, tail_done = input, False, 0, tail is None
    while index < len(layers):
        layer = layers[index]
        following = layers[index + 1] if index + 1 < len(layers) else None
        if isinstance(layer, Residual):
            activation = following if isinstance(following, (ReLU, ReLU6)) and layer.activation is None else None
            output, fresh = _residual(layer, output, activation), True
            index += 2 if activation is not None else 1
            continue
        if type(layer) is Conv2d and isinstance(following, BatchNorm2d) and \
                following.num_features == layer.weight.shape[0]:  # convolution, batch norm (and more) at once
            scale, shift = _scale_and_shift(following)
            index += 2
            if index == len(layers) and not tail_done:
                epilogue, tail_done = (scale, shift, tail[0], _activation_name(tail[1])), True
            else:
                after = layers[index] if index < len(layers) else None
                activation = after if isinstance(after, (ReLU, ReLU6)) else None
                index += activation is not None
                epilogue = (scale, shift, None, _activation_name(activation))
            output, fresh = _convolve(layer, output, epilogue), True
            continue
        if isinstance(layer, _BatchNorm) and fresh:
            if index == len(layers) - 1 and not tail_done:
                _scale_shift_in_place(layer, output, tail[1], tail[0])
                tail_done = True
                index += 1
                continue
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
    if not tail_done:
        residual, activation = tail
        if fresh:
            _scale_shift_in_place(None, output, activation, residual)
        else:
            output, fresh = F.add(output, residual), True
            if activation is not None:
                _activate_in_place(activation, output)
    return output, fresh


def _residual(block, input, activation):
    """activation(body(input) + shortcut(input)): the shortcut first, then the body, whose last convolution
    (or batch norm, or a pass over its fresh output) also adds the shortcut and applies a ReLU/ReLU6."""
    shortcut = input if block.shortcut is None else _run(block.shortcut, input)[0]
    activations = [layer for layer in (block.activation, activation) if layer is not None]
    fused = activations[0] if activations and isinstance(activations[0], (ReLU, ReLU6)) else None
    output, _ = _sequence(block.body.layers, input, tail=(shortcut, fused))
    for layer in activations[1:] if fused is not None else activations:
        if isinstance(layer, (ReLU, ReLU6)):
            _activate_in_place(layer, output)
        else:
            output = layer.forward(output)
    return output


def _normalize_in_place(norm, output, activation):
    """output = activation(norm(output)) with the running statistics, in place, in one pass."""
    _scale_shift_in_place(norm, output, activation, None)


def _scale_shift_in_place(norm, output, activation, residual):
    """output = activation(norm(output) + residual) in place; norm, activation and residual may be None."""
    scale = shift = None
    if norm is not None:
        if output.ndim not in norm.layouts or output.shape[1] != norm.num_features:
            norm._check_input(output)  # raises the layer's own message
        scale, shift = _scale_and_shift(norm)
    name = None if activation is None else ("relu6" if isinstance(activation, ReLU6) else "relu")
    F.scale_shift(output, scale, shift, residual, name, out=output)


def _scale_and_shift(norm):
    """The eval-mode (scale, shift) of a batch-norm layer, cached on it and recomputed when its weights, running
    statistics, eps or backend are not those they were computed from."""
    sources = (norm.running_mean, norm.running_var, None if norm.weight is None else norm.weight.value,
               None if norm.bias is None else norm.bias.value)
    key = (norm.eps, backend.backend_of(norm.running_mean), tuple(_contents(source) for source in sources))
    cached = getattr(norm, "_inference_scale_shift", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    scale_shift = F.batch_norm_scale_shift(*sources, eps=norm.eps)
    norm._inference_scale_shift = (key, scale_shift)
    return scale_shift


def _contents(array):
    """What a (C,) array holds, for an exact comparison with a later call's: its dtype, shape and bytes (one
    copy and one memcmp, ~1 us; np.array_equal took ~7 us, 53 times a ResNet-50 forward)."""
    if array is None:
        return None
    host = np.ascontiguousarray(backend.to_host(array))
    return host.dtype.str, host.shape, host.tobytes()


def _activate_in_place(activation, output):
    flat = backend.flat(output)
    kernels = backend.kernels(backend.backend_of(output))
    (kernels.relu6_forward if isinstance(activation, ReLU6) else kernels.relu_forward)(flat, flat)


__all__ = ["infer"]
