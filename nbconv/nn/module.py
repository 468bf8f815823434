"""Parameters, the Layer base class and Sequential.

A layer keeps what its backward needs from the last forward; `backward(grad_output)` returns the
gradient w.r.t. the layer's input and stores the parameters' gradients in `param.grad`
(overwritten on each backward, not accumulated).
"""
import numpy as np

from .. import backend


class Parameter:
    """A trainable array (`value`) and its latest gradient (`grad`), on one backend."""

    def __init__(self, value):
        self.value = value
        self.grad = None

    @property
    def shape(self):
        return tuple(self.value.shape)

    def to(self, device):
        self.value = backend.transfer(self.value, device)
        self.grad = None if self.grad is None else backend.transfer(self.grad, device)


class Layer:
    """Base class: forward/backward, train/eval mode, parameters, device moves."""

    name = None
    # Sequential may run a layer with commutes_with_max after a following layer with takes_window_max
    # (ReLU then max pooling): relu(max(S)) == max(relu(S)) with the same gradient, on 4x fewer values.
    commutes_with_max = False
    takes_window_max = False

    def __init__(self):
        self.training = True

    def __call__(self, input):
        return self.forward(input)

    def forward(self, input):
        raise NotImplementedError

    def backward(self, grad_output):
        """The gradient w.r.t. the last forward's input. Layers with weights also accept
        need_input_grad=False, which skips that gradient (returns None) and only sets param.grad."""
        raise NotImplementedError

    def named_parameters(self):
        """{'weight': Parameter, ...} for this layer (empty for layers without weights)."""
        return {}

    def parameters(self):
        return list(self.named_parameters().values())

    def train(self, mode=True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        for parameter in self.parameters():
            parameter.to(device)
        return self

    def spec(self):
        """This layer's token in the model spec language (nbconv.models)."""
        raise NotImplementedError

    def __repr__(self):
        return f"{self.name or type(self).__name__}: {self.spec()}"


class Sequential(Layer):
    """Layers applied in order; names are unique and address layers (model['conv1'])."""

    reorder = True  # run ReLU-then-max-pooling as pooling-then-ReLU (see execution_order)

    def __init__(self, layers):
        super().__init__()
        self.layers = list(layers)
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names) or None in names:
            raise ValueError(f"layers must have unique names, got {names}")

    def __getitem__(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer named {name!r}; layers are: {', '.join(self.layer_names())}")

    def layer_names(self):
        return [layer.name for layer in self.layers]

    def execution_order(self, count):
        """The order in which the first `count` layers run: their own, except that a ReLU directly followed
        by a max pooling runs after it. Both orders give the same output and gradients (the max of ReLUs is
        the ReLU of the max, and either way the gradient reaches the window's maximum only when it is
        positive), but pooling first leaves the ReLU a quarter of the values. `reorder = False` turns it off.
        """
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
        self._last_order = self.execution_order(count)
        for index in self._last_order:
            input = self.layers[index].forward(input)
        return input

    def backward(self, grad_output, start=None, need_input_grad=True, after_layer=None):
        """Back-propagate through the layers in reverse (from layer `start` when given) to the model's input,
        in the reverse of the order the last forward ran them, which must have covered the same layers
        (forward(x, until=start) before backward(g, start=start)).

        need_input_grad=False (training) lets the first layer skip the input gradient; returns None then.
        after_layer(layer), when given, runs as soon as each layer's backward is done (its parameters'
        gradients are final then: data-parallel training starts reducing them while earlier layers run).
        """
        count = len(self.layers) if start is None else self._index(start, "start") + 1
        order = self.execution_order(count)
        if getattr(self, "_last_order", None) is not None and self._last_order[:len(order)] != order:
            raise ValueError(f"backward(start={start!r}) needs the forward pass to stop at the same layer: "
                             f"call forward(..., until={start!r}) first")
        for position in range(len(order) - 1, -1, -1):
            layer = self.layers[order[position]]
            if position == 0 and not need_input_grad:
                if layer.parameters():
                    layer.backward(grad_output, need_input_grad=False)
                if after_layer is not None:
                    after_layer(layer)
                return None
            grad_output = layer.backward(grad_output)
            if after_layer is not None:
                after_layer(layer)
        return grad_output

    def named_parameters(self):
        return {f"{layer.name}.{key}": parameter
                for layer in self.layers for key, parameter in layer.named_parameters().items()}

    def train(self, mode=True):
        super().train(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def spec(self):
        return ",".join(layer.spec() for layer in self.layers)

    def state_dict(self):
        """{'conv1.weight': numpy array, ...} copied to the host."""
        return {key: np.array(backend.to_host(parameter.value)) for key, parameter in self.named_parameters().items()}

    def load_state_dict(self, state):
        parameters = self.named_parameters()
        missing = sorted(set(parameters) - set(state))
        unexpected = sorted(set(state) - set(parameters))
        if missing or unexpected:
            raise ValueError(f"state does not fit the model: missing {missing}, unexpected {unexpected}")
        for key, parameter in parameters.items():
            value = np.asarray(state[key])
            if value.shape != parameter.shape:
                raise ValueError(f"{key} must have shape {parameter.shape}, got {value.shape}")
            where = backend.backend_of(parameter.value)
            parameter.value = backend.transfer(np.ascontiguousarray(value, dtype=parameter.value.dtype), where)

    def __repr__(self):
        return "\n".join(repr(layer) for layer in self.layers)
