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

The walk through the model that decides these fusions runs once per input signature (type, shape, dtype,
contiguity; on the CPU also the thread count and conv/plan.py's settings): it records the forward as a
program, a list of steps bound to their layers, that later calls with the same signature run without walking
the model again. A convolution's step on the CPU has its plan, algorithm, packed or transformed weight and
kernel arguments resolved once (dispatch.bind_forward_prepared) and checks at each call only that its layer,
weight (array and version), bias, hyper-parameters and input are those it was bound for; the containers'
layer lists are compared by identity at each call. When anything differs the model is walked and recorded
again (and, when a program finds the model changed, the model's other programs, which hold the arrays they
were bound to, are dropped; a model edited and then called with a new signature keeps its older programs,
at most PROGRAMS_KEPT, until one of them is called), so what a call computes is always what the walk would
compute. Every call gets its own arrays (the
steps allocate their outputs, and an array is let go after its last reader), so calls from several threads
at once give their own results.

Nothing is kept for a backward pass: after `infer`, `backward` raises until `forward` runs again. A model in
training mode, or with any layer in it in training mode (a batch norm or dropout switched back with `.train()`),
runs its ordinary `forward` (batch statistics, dropout), as its layers' modes ask.
"""
import operator

import numpy as np

from .. import backend
from .. import functional as F
from ..kernels.serial import LAUNCH_LOCK
from .graph import Residual
from .layers import Conv1d, Conv2d, Linear, ReLU, ReLU6
from .module import Layer, Sequential
from .norm import BatchNorm2d, _BatchNorm

# Layers whose forward returns a new array that nothing else holds: inference may overwrite it.
_FRESH = (Conv2d, Conv1d, Linear)

PROGRAMS_KEPT = 8  # input signatures per model whose recorded program is kept (past it, all are recorded again)


def infer(model, input):
    """model's output for `input` as in eval mode, for inference only (see the module docstring)."""
    if not isinstance(model, Layer):
        raise TypeError(f"model must be an nbconv layer or model (nbconv.nn.Layer, such as nbconv.models.build "
                        f"gives), got {type(model).__name__}")
    if model.training or not isinstance(model, (Sequential, Residual)):
        return model.forward(input)
    key = _signature(input)
    programs = model.__dict__.get("_inference_programs")
    program = None if programs is None or key is None else programs.get(key)
    output = _STALE
    if program is not None:
        output = program.run(input)
        if output is _STALE:  # the model changed: no program may keep its old weights alive
            programs = None
    if output is _STALE:
        if any(layer.training for _, layer in model.named_layers()):  # a layer the user put in training mode
            if programs is None:  # the kept programs are stale: let go of the old weights they hold
                model.__dict__.pop("_inference_programs", None)
            return model.forward(input)
        program, output = _record(model, input)
        if key is not None:
            if programs is None or len(programs) >= PROGRAMS_KEPT:
                programs = model._inference_programs = {}
            programs[key] = program
    _forget_forward(program.containers)
    return output


def _signature(input):
    """What a program is recorded for: a numpy array's type, shape, dtype and contiguity, with the thread count
    and the plans' settings its convolutions were bound under; None (record every call) for other inputs."""
    if type(input) is not np.ndarray:
        return None
    from ..kernels.cpu.conv.plan import _settings
    from ..kernels.cpu.threads import num_threads
    return input.shape, input.dtype.str, input.flags.c_contiguous, num_threads(), _settings()


def _forget_forward(containers):
    """Make a later backward fail clearly: the layers did not keep what it needs."""
    for container in containers:
        container._last_order = None
        container._inferred = True


class _Stale(Exception):
    """A recorded step's layer, weights or input are no longer those it was bound for."""


_STALE = object()  # what Program.run returns when a step is stale


class Program:
    """A model's inference forward for one input signature: steps(slots) in order, each reading and writing
    entries of `slots` (slot 0 the input), with the slots whose last reader a step is emptied after it."""

    def __init__(self, steps, releases, slot_count, output_slot, watched, containers):
        self.schedule = list(zip(steps, releases))
        self.slot_count, self.output_slot = slot_count, output_slot
        self.watched = watched  # (object, attribute name, the value it held), compared by identity
        self.containers = containers

    def run(self, input):
        """The output, or _STALE when the model changed since the recording (nothing outside the call's own
        arrays has been written then)."""
        for owner, name, value in self.watched:
            now = getattr(owner, name)
            if type(value) is list:
                if len(now) != len(value) or not all(map(operator.is_, now, value)):
                    return _STALE
            elif now is not value:
                return _STALE
        slots = [None] * self.slot_count
        slots[0] = input
        try:
            for step, release in self.schedule:
                step(slots)
                for slot in release:
                    slots[slot] = None
        except _Stale:
            return _STALE
        return slots[self.output_slot]


class _Recorder:
    """Runs the steps of a forward as the walk emits them, and keeps them as a Program."""

    def __init__(self, input):
        self.slots = [input]
        self.steps, self.reads = [], []
        self.watched, self.containers = [], []

    def watch(self, owner, *names):
        """Have the program compare owner.<name> with what it is now at every call (a list: its items)."""
        for name in names:
            value = getattr(owner, name)
            self.watched.append((owner, name, list(value) if type(value) is list else value))

    def new_slot(self):
        self.slots.append(None)
        return len(self.slots) - 1

    def emit(self, step, reads):
        """Run step(slots) now and keep it; `reads`: the slots it reads."""
        step(self.slots)
        self.keep(step, reads)

    def keep(self, step, reads):
        """Keep step(slots), already run, for the program; `reads`: the slots it reads."""
        self.steps.append(step)
        self.reads.append(tuple(reads))

    def program(self, output_slot):
        last_reader = {}
        for index, reads in enumerate(self.reads):
            for slot in reads:
                last_reader[slot] = index
        releases = [[] for _ in self.steps]
        for slot, index in last_reader.items():
            if slot != output_slot:
                releases[index].append(slot)
        return Program(self.steps, [tuple(release) for release in releases], len(self.slots), output_slot,
                       self.watched, self.containers)


def _record(model, input):
    """(Program, output): the model walked once for this input, its steps run as they are recorded."""
    recorder = _Recorder(input)
    layers = [layer for _, layer in model.named_layers()]
    recorder.containers = [model] + [layer for layer in layers if isinstance(layer, Sequential)]
    for layer in layers:  # a layer switched to training mode makes the program stale (see infer)
        recorder.watch(layer, "training")
    output_slot, _ = _run(recorder, model, 0)
    return recorder.program(output_slot), recorder.slots[output_slot]


def _run(rec, layer, x):
    """(output slot, fresh): fresh when the output is a new array that may be overwritten in place."""
    if isinstance(layer, Sequential):
        rec.watch(layer, "layers")
        return _sequence(rec, layer.layers, x)
    if isinstance(layer, Residual):
        return _residual(rec, layer, x, None), True
    if type(layer) is Conv2d:
        return _convolve(rec, layer, x), True
    out = rec.new_slot()

    def forward(slots):
        slots[out] = layer.forward(slots[x])
    rec.emit(forward, (x,))
    return out, isinstance(layer, _FRESH)


def _prepared(layer):
    """The dict of what depends on the convolution layer's weight alone (dispatch.conv2d_forward_prepared),
    kept on the layer for as long as its weight's array and Parameter.version stay the same."""
    weight = layer.weight
    key = (id(weight.value), weight.version)
    cached = getattr(layer, "_inference_prepared", None)
    if cached is None or cached[0] != key:
        cached = layer._inference_prepared = (key, {})
    return cached[1]


def _convolve_now(layer, input, epilogue):
    hyper = layer.hyper
    return F._conv2d(input, layer.weight.value, None if layer.bias is None else layer.bias.value, hyper["stride"],
                     hyper["padding"], hyper["dilation"], hyper["groups"], prepared=_prepared(layer),
                     epilogue=epilogue)


def _convolve(rec, layer, x, fuse=None):
    """The convolution layer's output slot, with what depends on its weight alone (on the CPU: the weight's
    finiteness check, a Winograd layer's transformed filters, a packed weight) kept on the layer; then, with
    fuse = (batch-norm layer, residual slot or None, activation name or None), the batch norm's scale and
    shift, the residual and the activation, on the CPU inside the convolution kernels where they allow it."""
    out = rec.new_slot()
    norm, residual, activation = fuse if fuse is not None else (None, None, None)

    def convolve(slots):
        epilogue = None
        if fuse is not None:
            if layer.weight.value.shape[0] != norm.num_features:  # a new weight the walk would not fuse
                raise _Stale
            scale, shift = _scale_and_shift(norm)
            epilogue = (scale, shift, None if residual is None else slots[residual], activation)
        slots[out] = _convolve_now(layer, slots[x], epilogue)
    reads = (x,) if residual is None else (x, residual)
    convolve(rec.slots)
    bound = _bound_convolution(rec, layer, x, out, fuse)
    rec.keep(bound or convolve, reads)
    return out


def _bound_convolution(rec, layer, x, out, fuse):
    """The CPU step of a convolution just run by the walk, with its plan and kernel arguments resolved once
    (dispatch.bind_forward_prepared); None where the walk's own step must run (other backends and layouts,
    'same' padding's extra row or column)."""
    norm, residual, activation = fuse if fuse is not None else (None, None, None)
    input, output = rec.slots[x], rec.slots[out]
    weight_parameter, bias_parameter = layer.weight, layer.bias
    weight = weight_parameter.value
    bias = None if bias_parameter is None else bias_parameter.value
    arrays = [input, weight, output] + ([] if bias is None else [bias])
    if residual is not None:
        arrays.append(rec.slots[residual])
    if not all(type(a) is np.ndarray and a.dtype == input.dtype and a.flags.c_contiguous for a in arrays) or \
            input.ndim != 4 or output.ndim != 4 or input.dtype not in (np.float32, np.float64):
        return None
    hyper = dict(layer.hyper)
    geometry = F.conv_geometry(input.shape, weight.shape, hyper["stride"], hyper["padding"], hyper["dilation"],
                               hyper["groups"])
    if geometry.extra_h or geometry.extra_w or geometry.output_shape != output.shape:
        return None
    from ..kernels.cpu.conv.dispatch import bind_forward_prepared
    input_shape, dtype, output_shape = input.shape, input.dtype, output.shape
    bias_array = np.empty((0,), dtype) if bias is None else bias
    with LAUNCH_LOCK:
        run = bind_forward_prepared(input_shape, weight, bias_array, _prepared(layer), *geometry.kernel_args,
                                    dtype=dtype)
    version = weight_parameter.version
    channels = output_shape[1]
    flat = (output_shape[0], channels, output_shape[2] * output_shape[3])
    no_residual = np.empty((0, 0, 0), dtype)
    code = F._SCALE_SHIFT_ACTIVATIONS[activation]
    checked = [_scale_and_shift(norm) if norm is not None else None]  # the (scale, shift) last seen valid

    def convolve(slots):
        source = slots[x]
        if (layer.weight is not weight_parameter or weight_parameter.value is not weight
                or weight_parameter.version != version or layer.bias is not bias_parameter
                or (bias_parameter is not None and bias_parameter.value is not bias) or layer.hyper != hyper
                or type(source) is not np.ndarray or source.shape != input_shape or source.dtype != dtype
                or not source.flags.c_contiguous):
            raise _Stale
        epilogue = None
        if fuse is not None:
            pair = _scale_and_shift(norm)
            if pair is not checked[0]:
                if not all(type(a) is np.ndarray and a.dtype == dtype and a.shape == (channels,) for a in pair):
                    raise _Stale  # the walk's own step raises the error that says what is wrong
                checked[0] = pair
            added = no_residual
            if residual is not None:
                added = slots[residual]
                if type(added) is not np.ndarray or added.shape != output_shape or added.dtype != dtype or \
                        not added.flags.c_contiguous:
                    raise _Stale
                added = added.reshape(flat)
            epilogue = (pair[0], pair[1], added, code)
        result = np.empty(output_shape, dtype)
        with LAUNCH_LOCK:
            run(source, result, epilogue)
        slots[out] = result
    return convolve


def _activation_name(layer):
    return None if layer is None else ("relu6" if isinstance(layer, ReLU6) else "relu")


def _sequence(rec, layers, x, tail=None):
    """Run `layers` in order on slot x, fusing batch norms, activations and (with tail = (residual slot, ReLU/ReLU6
    layer or None)) a residual sum and activation after the last layer into fresh outputs: (output slot, fresh)."""
    output, fresh, index, tail_done = x, False, 0, tail is None
    while index < len(layers):
        layer = layers[index]
        following = layers[index + 1] if index + 1 < len(layers) else None
        if isinstance(layer, Residual):
            activation = following if isinstance(following, (ReLU, ReLU6)) and layer.activation is None else None
            output, fresh = _residual(rec, layer, output, activation), True
            index += 2 if activation is not None else 1
            continue
        if type(layer) is Conv2d and isinstance(following, BatchNorm2d) and \
                following.num_features == layer.weight.shape[0]:  # convolution, batch norm (and more) at once
            index += 2
            if index == len(layers) and not tail_done:
                fuse, tail_done = (following, tail[0], _activation_name(tail[1])), True
            else:
                after = layers[index] if index < len(layers) else None
                activation = after if isinstance(after, (ReLU, ReLU6)) else None
                index += activation is not None
                fuse = (following, None, _activation_name(activation))
            output, fresh = _convolve(rec, layer, output, fuse), True
            continue
        if isinstance(layer, _BatchNorm) and fresh:
            if index == len(layers) - 1 and not tail_done:
                _scale_shift_in_place(rec, layer, output, tail[1], tail[0])
                tail_done = True
                index += 1
                continue
            activation = following if isinstance(following, (ReLU, ReLU6)) else None
            _scale_shift_in_place(rec, layer, output, activation, None)
            index += 2 if activation is not None else 1
            continue
        if isinstance(layer, (ReLU, ReLU6)) and fresh:
            _activate_in_place(rec, layer, output)
            index += 1
            continue
        output, fresh = _run(rec, layer, output)
        index += 1
    if not tail_done:
        residual, activation = tail
        if fresh:
            _scale_shift_in_place(rec, None, output, activation, residual)
        else:
            total = rec.new_slot()

            def add(slots, first=output):
                slots[total] = F.add(slots[first], slots[residual])
            rec.emit(add, (output, residual))
            output, fresh = total, True
            if activation is not None:
                _activate_in_place(rec, activation, output)
    return output, fresh


def _residual(rec, block, x, activation):
    """activation(body(x) + shortcut(x)): the shortcut first, then the body, whose last convolution (or batch
    norm, or a pass over its fresh output) also adds the shortcut and applies a ReLU/ReLU6."""
    rec.watch(block, "body", "shortcut", "activation")
    rec.watch(block.body, "layers")
    shortcut = x if block.shortcut is None else _run(rec, block.shortcut, x)[0]
    activations = [layer for layer in (block.activation, activation) if layer is not None]
    fused = activations[0] if activations and isinstance(activations[0], (ReLU, ReLU6)) else None
    output, _ = _sequence(rec, block.body.layers, x, tail=(shortcut, fused))
    for layer in activations[1:] if fused is not None else activations:
        if isinstance(layer, (ReLU, ReLU6)):
            _activate_in_place(rec, layer, output)
        else:
            output = _run(rec, layer, output)[0]
    return output


def _scale_shift_in_place(rec, norm, output, activation, residual):
    """slot output = activation(norm(output) + residual) in place; norm, activation and residual may be None."""
    name = _activation_name(activation)

    def scale_shift(slots):
        array = slots[output]
        scale = shift = None
        if norm is not None:
            if array.ndim not in norm.layouts or array.shape[1] != norm.num_features:
                norm._check_input(array)  # raises the layer's own message
            scale, shift = _scale_and_shift(norm)
        F.scale_shift(array, scale, shift, None if residual is None else slots[residual], name, out=array)
    rec.emit(scale_shift, (output,) if residual is None else (output, residual))


def _scale_and_shift(norm):
    """The eval-mode (scale, shift) of a batch-norm layer, cached on it and recomputed when its weights, running
    statistics, eps or backend are not those they were computed from."""
    sources = (norm.running_mean, norm.running_var, None if norm.weight is None else norm.weight.value,
               None if norm.bias is None else norm.bias.value)
    where = "cpu" if type(norm.running_mean) is np.ndarray else backend.backend_of(norm.running_mean)
    key = (norm.eps, where, (_contents(sources[0]), _contents(sources[1]), _contents(sources[2]),
                             _contents(sources[3])))
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
    if type(array) is np.ndarray and array.flags.c_contiguous:
        return array.dtype.str, array.shape, array.tobytes()
    host = np.ascontiguousarray(backend.to_host(array))
    return host.dtype.str, host.shape, host.tobytes()


def _activate_in_place(rec, activation, output):
    relu6 = isinstance(activation, ReLU6)

    def activate(slots):
        array = slots[output]
        flat = backend.flat(array)
        kernels = backend.kernels(backend.backend_of(array))
        (kernels.relu6_forward if relu6 else kernels.relu_forward)(flat, flat)
    rec.emit(activate, (output,))


__all__ = ["infer"]
