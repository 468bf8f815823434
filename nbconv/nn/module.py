"""Parameters, the Layer base class and Sequential.

A layer keeps what its backward needs from the last forward; `backward(grad_output)` returns the
gradient w.r.t. the layer's input and stores the parameters' gradients in `param.grad`
(overwritten on each backward, not accumulated).

Weights travel as a state dict: {hierarchical name: numpy array}, parameters and buffers (e.g. batch
norm's running statistics) alike, names joined with dots from the containers down ("layer1.0.conv1.weight").
"""
import contextlib
from collections import namedtuple

import numpy as np

from .. import backend

LoadResult = namedtuple("LoadResult", "missing_keys unexpected_keys")


class Parameter:
    """A trainable array (`value`) and its latest gradient (`grad`), on one backend.

    `grad_buffer`, when an optimizer sets it (a view of its flat gradient buffer, see nbconv.optim and
    nbconv.flat_parameters), is where the layers write the gradient, so that `grad` is that buffer, one
    kernel call updates every parameter and data-parallel training reduces the gradients in place; it is
    overwritten by each backward pass.
    """

    grad_buffer = None

    def __init__(self, value):
        self.version = 0
        self.value = value
        self.grad = None

    # `version` counts the changes of the value: a new array assigned, an optimizer step, load_state_dict, or
    # mark_changed() after an edit in place. Caches of values derived from the weights (nn.infer's prepared
    # convolution weights) compare it to know they are still valid.
    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, array):
        self._value = array
        self.version += 1

    def mark_changed(self):
        """Say that the value was edited in place (`param.value[...] = ...`), which nothing else can notice."""
        self.version += 1

    @property
    def shape(self):
        return tuple(self.value.shape)

    def to(self, device):
        self.value = backend.transfer(self.value, device)
        self.grad = None if self.grad is None else backend.transfer(self.grad, device)


class Layer:
    """Base class: forward/backward, train/eval mode, parameters, device moves."""

    name = None
    param_grads = True  # False (see input_gradients_only): backward leaves the parameters' gradients out
    # Sequential may run a layer with commutes_with_max after a following layer with takes_window_max
    # (ReLU then max pooling): relu(max(S)) == max(relu(S)) with the same gradient, on 4x fewer values.
    commutes_with_max = False
    takes_window_max = False

    def __init__(self):
        self.training = True

    def __call__(self, input):
        return self.forward(input)

    def __getstate__(self):
        """Copies and pickles leave out the remembered last calls (nbconv.nn.last_call) and nn.infer's recorded
        programs (nbconv.nn.inference): they name arrays and layers by identity and hold kernel callables, and a
        copy records its own."""
        state = dict(self.__dict__)
        for name in ("_last_forward", "_last_backward", "_last_fused_forward", "_last_fused_backward",
                     "_inference_programs"):
            state.pop(name, None)
        return state

    def forward(self, input):
        raise NotImplementedError

    def backward(self, grad_output):
        """The gradient w.r.t. the last forward's input. Layers with weights also accept
        need_input_grad=False, which skips that gradient (returns None) and only sets param.grad."""
        raise NotImplementedError

    def fuses_with(self, following, input):
        """Whether this layer runs `following` (the layer Sequential runs next) inside its own kernel calls for
        this input: then Sequential calls forward_fused and backward_fused instead of both layers' own."""
        return False

    def named_parameters(self):
        """{'weight': Parameter, ...} for this layer (empty for layers without weights)."""
        return {}

    def named_buffers(self):
        """{'running_mean': array, ...}: state that is not trained but saved (the live arrays, which
        load_state_dict overwrites in place). Empty by default."""
        return {}

    def children(self):
        """[(name, layer), ...]: the layers inside a container, in the order they run (empty for a leaf)."""
        return []

    def parameters(self):
        return list(self.named_parameters().values())

    def named_layers(self, prefix=""):
        """(dotted path, layer) for every layer inside this one, depth first, in the order they run."""
        for name, child in self.children():
            path = f"{prefix}.{name}" if prefix else name
            yield path, child
            yield from child.named_layers(path)

    def train(self, mode=True):
        self.training = mode
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        if self.children():
            for _, child in self.children():
                child.to(device)
        else:
            for parameter in self.parameters():
                parameter.to(device)
        return self

    def output_shape(self, input_shape):
        """The shape (without the batch axis) this layer gives for an input of `input_shape` (also without
        it), computed without running the layer; ValueError when the input does not fit."""
        from .shapes import output_shape
        return output_shape(self, tuple(input_shape))

    def trace(self, input_shape, visit=None, prefix=""):
        """output_shape, calling visit(path, layer, input_shape, output_shape) for this layer (containers: for
        each layer inside, then for themselves)."""
        output = self.output_shape(input_shape)
        if visit is not None:
            visit(prefix or self.name or "", self, tuple(input_shape), output)
        return output

    def state_dict(self):
        """{name: numpy array}: every parameter and buffer, copied to the host."""
        state = {key: np.array(backend.to_host(parameter.value)) for key, parameter in self.named_parameters().items()}
        state.update({key: np.array(backend.to_host(buffer)) for key, buffer in self.named_buffers().items()})
        return state

    def load_state_dict(self, state, strict=True):
        """Load {name: array} into the parameters and buffers (cast to their dtypes, kept on their devices).

        Every key is checked before anything changes: a key of the model missing from `state`, a key of
        `state` the model does not have (both only with strict=True), or an array of the wrong shape is a
        ValueError naming it. Returns (missing_keys, unexpected_keys): what strict=False skipped.
        """
        if not hasattr(state, "keys"):
            raise TypeError(f"state must be a mapping of names to arrays, got {type(state).__name__}")
        parameters, buffers = self.named_parameters(), self.named_buffers()
        expected = {key: parameter.shape for key, parameter in parameters.items()}
        expected.update({key: tuple(buffer.shape) for key, buffer in buffers.items()})
        missing = [key for key in expected if key not in state]
        unexpected = [key for key in state if key not in expected]
        if strict and (missing or unexpected):
            raise ValueError("state does not fit the model: "
                             + "; ".join(part for part in (f"missing keys {missing}" if missing else "",
                                                           f"unexpected keys {unexpected}" if unexpected else "")
                                         if part))
        values = {}
        for key in expected:
            if key not in state:
                continue
            value = state[key]
            if not isinstance(value, np.ndarray):
                value = backend.to_host(value) if backend.is_device_array(value) else np.asarray(value)
            if value.dtype.kind not in "fiub":
                raise TypeError(f"state[{key!r}] must hold numbers, got dtype {value.dtype}")
            if tuple(value.shape) != expected[key]:
                raise ValueError(f"state[{key!r}] must have shape {expected[key]}, got {tuple(value.shape)}")
            values[key] = value
        for key, value in values.items():
            if key in parameters:
                parameter = parameters[key]
                where = backend.backend_of(parameter.value)
                # a copy, as PyTorch copies into its tensors: the caller's array may be read-only, or be changed
                # or given for another key later, and training updates parameters in place
                parameter.value = backend.transfer(np.array(value, dtype=parameter.value.dtype, order="C"), where)
            else:
                _copy_into(buffers[key], value)
        return LoadResult(missing, unexpected)

    def spec(self):
        """This layer's token in the model spec language (nbconv.models)."""
        raise NotImplementedError

    def __repr__(self):
        return f"{self.name or type(self).__name__}: {self.spec()}"


class WeightedLayer(Layer):
    """A layer with trained weights: the Parameter `weight` and the Parameter `bias`, or None for no bias
    (convolutions, locally connected and fully connected layers). Subclasses set both in __init__."""

    def named_parameters(self):
        return {"weight": self.weight, **({"bias": self.bias} if self.bias is not None else {})}


_NO_REGION = contextlib.nullcontext()


_single_threaded = None  # nbconv.kernels.cpu.blas.single_threaded, imported on the first pass over numpy arrays


def single_threaded_blas(array):
    """For a pass over numpy arrays, the region in which the CPU kernels run OpenBLAS on one thread, entered
    once for all the layers (nbconv.kernels.cpu.blas.single_threaded: the kernels' own regions inside it
    cost a counter); a region that does nothing for device arrays."""
    global _single_threaded
    if type(array) is not np.ndarray:
        return _NO_REGION
    if _single_threaded is None:
        from ..kernels.cpu.blas import single_threaded
        _single_threaded = single_threaded
    return _single_threaded()


class Sequential(Layer):
    """Layers applied in order; names are unique and address layers (model['conv1'])."""

    reorder = True  # run ReLU-then-max-pooling as pooling-then-ReLU (see execution_order)

    architecture = None  # "resnet20:classes=10" for a model built by name (see nbconv.models.build)

    def __init__(self, layers, name=None):
        super().__init__()
        self.name = name
        self.layers = list(layers)
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names) or None in names:
            raise ValueError(f"layers must have unique names, got {names}")

    def __getitem__(self, name):
        """The layer of that name; a dotted path reaches into containers ('layer1.0.conv1')."""
        head, _, rest = str(name).partition(".")
        for layer in self.layers:
            if layer.name == name:
                return layer
            if rest and layer.name == head:
                return _descend(layer, rest)
        raise KeyError(f"no layer named {name!r}; layers are: {', '.join(self.layer_names())}")

    def layer_names(self):
        return [layer.name for layer in self.layers]

    _orders = None  # {count: order} for the layers and the `reorder` in _orders_key (see execution_order)
    _orders_key = None

    def execution_order(self, count):
        """The order in which the first `count` layers run: their own, except that a ReLU directly followed
        by a max pooling runs after it. Both orders give the same output and gradients (the max of ReLUs is
        the ReLU of the max, and either way the gradient reaches the window's maximum only when it is
        positive), but pooling first leaves the ReLU a quarter of the values. `reorder = False` turns it off.
        Worked out once per count for the same layers (by identity) and `reorder`; a new list is returned.
        """
        key = (self.reorder, *self.layers)
        if key != self._orders_key:
            self._orders, self._orders_key = {}, key
        order = self._orders.get(count)
        if order is None:
            order = self._orders[count] = self._work_out_order(count)
        return list(order)

    def _work_out_order(self, count):
        order, index = [], 0
        while index < count:
            if (self.reorder and index + 1 < count and self.layers[index].commutes_with_max
                    and self.layers[index + 1].takes_window_max):
                order += [index + 1, index]
                index += 2
            else:
                order.append(index)
                index += 1
        return order

    def _index(self, name, argument):
        names = self.layer_names()
        if name not in names:
            raise KeyError(f"{argument}={name!r} is not a layer; layers are: {', '.join(names)}")
        return names.index(name)

    def forward(self, input, until=None):
        """Run the layers (see execution_order); with `until`, stop after the layer of that name and return
        its output."""
        count = len(self.layers) if until is None else self._index(until, "until") + 1
        order = self._last_order = self.execution_order(count)
        return self._forward_layers(input, order)

    def forward_all_but_last(self, input):
        """Run every layer but the last (see execution_order; fusions among them included) and return the
        last layer's input, leaving the state of a forward over all the layers: the caller runs the last
        layer itself (a residual block's closing batch norm, which also takes the shortcut), and backward
        then covers all of them."""
        order = self.execution_order(len(self.layers))
        if not order or order[-1] != len(self.layers) - 1:
            raise ValueError(f"forward_all_but_last needs a last layer that runs last, got the order {order}")
        output = self._forward_layers(input, order[:-1])
        self._last_order = order
        return output

    def _forward_layers(self, input, order):
        """Run the layers at the positions of `order`, fusing a layer with the next where it can."""
        self._inferred = False
        self._fused = set()  # positions in `order` whose layer also ran the next one (see Layer.fuses_with)
        position = 0
        with single_threaded_blas(input):
            while position < len(order):
                layer = self.layers[order[position]]
                if position + 1 < len(order) and layer.fuses_with(self.layers[order[position + 1]], input):
                    input = layer.forward_fused(input)
                    self._fused.add(position)
                    position += 2
                else:
                    input = layer.forward(input)
                    position += 1
        return input

    def backward(self, grad_output, start=None, need_input_grad=True, after_layer=None):
        """Back-propagate through the layers in reverse (from layer `start` when given) to the model's input,
        in the reverse of the order the last forward ran them, which must have covered the same layers
        (forward(x, until=start) before backward(g, start=start)).

        need_input_grad=False (training) lets the first layer skip the input gradient; returns None then.
        after_layer(layer), when given, runs as soon as each layer's backward is done (its parameters'
        gradients are final then: data-parallel training starts reducing them while earlier layers run).
        """
        inferred = getattr(self, "_inferred", None)  # None until a forward pass or nn.infer runs
        if inferred is None:
            raise ValueError("backward needs a forward pass first: call forward(input) before backward")
        if inferred:
            raise ValueError("backward needs a forward pass first: nn.infer keeps nothing for a backward pass")
        count = len(self.layers) if start is None else self._index(start, "start") + 1
        order = self.execution_order(count)
        if getattr(self, "_last_order", None) is not None and self._last_order[:len(order)] != order:
            raise ValueError(f"backward(start={start!r}) needs the forward pass to stop at the same layer: "
                             f"call forward(..., until={start!r}) first")
        fused = {position for position in getattr(self, "_fused", ()) if position + 1 < len(order)}
        with single_threaded_blas(grad_output):
            return self._backward_layers(order, fused, grad_output, need_input_grad, after_layer)

    def _backward_layers(self, order, fused, grad_output, need_input_grad, after_layer):
        for position in range(len(order) - 1, -1, -1):
            layer = self.layers[order[position]]
            if position - 1 in fused:  # ran inside the layer before it, whose backward covers both
                if after_layer is not None:
                    after_layer(layer)
                continue
            backward = layer.backward_fused if position in fused else layer.backward
            if position == 0 and not need_input_grad:
                if layer.parameters():
                    backward(grad_output, need_input_grad=False)
                if after_layer is not None:
                    after_layer(layer)
                return None
            grad_output = backward(grad_output)
            if after_layer is not None:
                after_layer(layer)
        return grad_output

    def named_parameters(self):
        return {f"{layer.name}.{key}": parameter
                for layer in self.layers for key, parameter in layer.named_parameters().items()}

    def named_buffers(self):
        return {f"{layer.name}.{key}": buffer
                for layer in self.layers for key, buffer in layer.named_buffers().items()}

    def children(self):
        return [(layer.name, layer) for layer in self.layers]

    def output_shape(self, input_shape):
        return self.trace(input_shape)

    def trace(self, input_shape, visit=None, prefix=""):
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = trace_child(layer, shape, visit, prefix)
        if visit is not None and prefix:
            visit(prefix, self, tuple(input_shape), shape)
        return shape

    def spec(self):
        """The model in the spec language (nbconv.models); a named architecture gives its name and options."""
        if self.architecture is not None:
            return self.architecture
        return ",".join(layer.spec() for layer in self.layers)

    def __repr__(self):
        return "\n".join(repr(layer) for layer in self.layers)


@contextlib.contextmanager
def input_gradients_only(model):
    """Within: the model's backward passes give the input gradient alone, without the parameters' (their
    .grad left None where a layer can skip them): for gradient ascent on the input, which never steps."""
    layers = [model] + [layer for _, layer in model.named_layers()]
    for layer in layers:
        layer.param_grads = False
    try:
        yield model
    finally:
        for layer in layers:
            layer.__dict__.pop("param_grads", None)


def prefix_model(model, path):
    """A Sequential that runs `model` up to the layer at dotted `path` ('conv3', 'features.10',
    'layer2.1') and returns that layer's output. It shares the model's layers. A path may go down through
    Sequential containers only: a layer inside a residual block or a branch has no output of its own."""
    parts = str(path).split(".")
    container, kept = model, []
    for depth, part in enumerate(parts):
        names = [name for name, _ in container.children()] if isinstance(container, Sequential) else []
        if part not in names:
            where = ".".join(parts[:depth]) or "the model"
            if not names:
                raise ValueError(f"layer {path!r}: {where} is not a sequence of layers, so {part!r} inside it "
                                 f"has no output of its own")
            raise ValueError(f"layer {path!r}: {where} has no layer {part!r}; its layers are: {', '.join(names)}")
        index = names.index(part)
        kept.append((container, container.layers[:index]))
        container = container.layers[index]
    layers = [container]
    for outer, before in reversed(kept[1:]):
        layers = [Sequential(before + layers, name=outer.name)]
    top = Sequential(kept[0][1] + layers)
    top.reorder = False  # the output asked for is the layer's own (a ReLU's, before any pooling)
    return top


class ShapeMismatch(ValueError):
    """A layer that does not fit its input: `path` names it from the outermost container down."""

    def __init__(self, path, layer, input_shape, detail):
        self.path, self.layer, self.input_shape, self.detail = list(path), layer, tuple(input_shape), detail
        super().__init__(str(self))

    def __str__(self):
        return (f"layer {'.'.join(self.path)} ({self.layer.spec()}) does not fit its input of shape "
                f"{self.input_shape}: {self.detail}")


def trace_child(layer, input_shape, visit, prefix):
    """layer.trace with its path, turning a plain ValueError into a ShapeMismatch that names the layer."""
    path = f"{prefix}.{layer.name}" if prefix and layer.name else (layer.name or prefix)
    try:
        return layer.trace(input_shape, visit, path)
    except ShapeMismatch:
        raise
    except ValueError as error:
        raise ShapeMismatch(path.split("."), layer, input_shape, str(error)) from None


def _copy_into(buffer, value):
    """Overwrite a buffer in place with `value` cast to its dtype, on the buffer's backend."""
    if isinstance(buffer, np.ndarray):
        buffer[...] = value.astype(buffer.dtype, copy=False)
    else:
        buffer.copy_to_device(np.ascontiguousarray(value, dtype=buffer.dtype))


def _descend(layer, path):
    for part in path.split("."):
        found = dict(layer.children()).get(part)
        if found is None:
            raise KeyError(f"no layer named {part!r} inside {layer.name!r}; it holds: "
                           f"{', '.join(name for name, _ in layer.children()) or 'nothing'}")
        layer = found
    return layer
