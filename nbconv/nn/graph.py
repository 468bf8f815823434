"""Containers that make a model a graph: residual sums and channel concatenations, nestable to any depth.

    Residual:  y = activation(body(x) + shortcut(x))     shortcut: the identity when none is given
    Concat:    y = cat([branch(x) for branch in branches], dim=1)

Both take one input and give one output, so they sit in a Sequential (or in each other) like any layer.
Gradients flow through every path: the input gradient is the sum of what each path gives back (an
identity shortcut passes grad_output on unchanged).
"""
from .. import functional as F
from .layers import ReLU
from .module import Layer, Sequential, ShapeMismatch, trace_child
from .norm import _BatchNorm


def _run_backward(layer, grad_output, need_input_grad):
    """layer.backward, or with need_input_grad=False only the parameters' gradients (None back)."""
    if need_input_grad:
        return layer.backward(grad_output)
    if layer.parameters():
        layer.backward(grad_output, need_input_grad=False)
    return None


# Layers whose forward returns a new array that nothing else keeps, and whose backward returns a new input
# gradient: a residual sum may add into those in place instead of allocating another array.
_FRESH_RESULTS = ("Conv2d", "Conv1d", "Linear", "BatchNorm2d", "BatchNorm1d")


def _fresh(layer):
    return type(layer).__name__ in _FRESH_RESULTS


def _sum(gradients):
    total = None
    for gradient in gradients:
        if gradient is not None:
            total = gradient if total is None else F.add(total, gradient)
    return total


def _as_sequential(layers, name):
    if isinstance(layers, Sequential):
        layers.name = name if layers.name is None else layers.name
        return layers
    return Sequential(layers, name=name)


class Residual(Layer):
    """y = activation(body(x) + shortcut(x)).

    body: a list of layers (or a Sequential) whose parameters are named without a prefix inside the block
    ("conv1.weight"), as torchvision's blocks name theirs. shortcut: None (the identity), or a layer or list of
    layers (named by `shortcut_name`, "shortcut" unless given: torchvision's is "downsample"). activation: an
    optional parameter-free layer applied after the sum (ResNet's ReLU). Body and shortcut must give the same
    shape; building the model checks that.
    """

    def __init__(self, body, shortcut=None, activation=None, shortcut_name="shortcut"):
        super().__init__()
        self.body = _as_sequential(body, None)
        if shortcut is not None and not isinstance(shortcut, Layer):
            shortcut = Sequential(shortcut)
        if shortcut is not None:
            shortcut.name = shortcut.name or shortcut_name
        self.shortcut = shortcut
        if activation is not None and activation.parameters():
            raise ValueError("activation must be a layer without parameters (e.g. ReLU)")
        if activation is not None:
            activation.name = activation.name or "relu"
        self.activation = activation
        names = self.body.layer_names() + ([shortcut.name] if shortcut is not None else [])
        if len(set(names)) != len(names):
            raise ValueError(f"the layers of a residual block must have unique names, got {names}")

    def children(self):
        return (self.body.children() + ([(self.shortcut.name, self.shortcut)] if self.shortcut else [])
                + ([(self.activation.name, self.activation)] if self.activation else []))

    def named_parameters(self):
        named = dict(self.body.named_parameters())
        if self.shortcut is not None:
            named.update({f"{self.shortcut.name}.{key}": value
                          for key, value in self.shortcut.named_parameters().items()})
        return named

    def named_buffers(self):
        named = dict(self.body.named_buffers())
        if self.shortcut is not None:
            named.update({f"{self.shortcut.name}.{key}": value for key, value in self.shortcut.named_buffers().items()})
        return named

    def _fused_tail(self):
        """The body's last layer when it is a batch norm, which can run the sum and a ReLU after it in one
        pass (a ResNet block's bn2, sum and ReLU), else None."""
        last = self.body.layers[-1] if self.body.layers else None
        return last if isinstance(last, _BatchNorm) else None

    def fuses_with(self, following, input):
        # a ReLU after the block (a spec's res[...],relu) runs inside the body's closing batch norm
        return self.activation is None and type(following) is ReLU and self._fused_tail() is not None

    def forward_fused(self, input):
        """relu(self.forward(input)), the sum and the ReLU inside the body's closing batch norm."""
        return self._forward_sum_relu(input, self._fused_tail())

    def backward_fused(self, grad_output, need_input_grad=True):
        return self.backward(grad_output, need_input_grad=need_input_grad)

    def _forward_sum_relu(self, input, tail):
        """relu(body(input) + shortcut(input)) with the body's last layer, a batch norm, run as
        batch_norm_relu with the shortcut as its residual; keeps the output (the ReLU's gradient gate)."""
        self._fused_sum = True
        hidden = self.body.forward_all_but_last(input)  # the body is left ready for a backward over all layers
        shortcut = input if self.shortcut is None else self.shortcut.forward(input)
        output = tail.forward_fused(hidden, residual=shortcut)
        self.output = output
        return output  # this call's own, whatever another thread's forward has stored since

    def forward(self, input):
        tail = self._fused_tail()
        if tail is not None and type(self.activation) is ReLU:
            return self._forward_sum_relu(input, tail)
        self._fused_sum = False
        output = self.body.forward(input)
        shortcut = input if self.shortcut is None else self.shortcut.forward(input)
        if self.body.layers and _fresh(self.body.layers[-1]):
            output = F.add_(output, shortcut)  # the body's own new array: no copy
        else:
            output = F.add(output, shortcut)
        return output if self.activation is None else self.activation.forward(output)

    def backward(self, grad_output, need_input_grad=True):
        if getattr(self, "_fused_sum", False):  # the ReLU's gradient gate from its output: positive where its input was
            grad_output = F.relu_backward(grad_output, self.output)
        elif self.activation is not None:
            grad_output = self.activation.backward(grad_output)
        grad_body = self.body.backward(grad_output, need_input_grad=need_input_grad)
        if self.shortcut is None:
            grad_shortcut = grad_output if need_input_grad else None
        else:
            grad_shortcut = _run_backward(self.shortcut, grad_output, need_input_grad)
        if grad_body is not None and grad_shortcut is not None and _fresh(self.body.layers[0]):
            return F.add_(grad_body, grad_shortcut)
        return _sum([grad_body, grad_shortcut])

    def output_shape(self, input_shape):
        return self.trace(input_shape)

    def trace(self, input_shape, visit=None, prefix=""):
        input_shape = tuple(input_shape)
        body_shape = input_shape
        for layer in self.body.layers:
            body_shape = trace_child(layer, body_shape, visit, prefix)
        shortcut_shape = input_shape if self.shortcut is None else trace_child(self.shortcut, input_shape, visit,
                                                                              prefix)
        if body_shape != shortcut_shape:
            raise ShapeMismatch(prefix.split(".") if prefix else [self.name or "res"], self, input_shape,
                                f"the residual sum needs equal shapes, but the body gives {body_shape} and the "
                                f"{'identity ' if self.shortcut is None else ''}shortcut gives {shortcut_shape}")
        if self.activation is not None:
            trace_child(self.activation, body_shape, visit, prefix)
        if visit is not None:
            visit(prefix, self, input_shape, body_shape)
        return body_shape

    def spec(self):
        inner = self.body.spec() + ("" if self.shortcut is None else "|" + self.shortcut.spec())
        return f"res[{inner}]" + ("" if self.activation is None else "," + self.activation.spec())


class Concat(Layer):
    """y = cat([branch(x) for branch in branches], dim=1): parallel branches joined along channels, as in
    an inception module. Each branch is a layer (or a list of layers) named `branch1`, `branch2`, ... unless
    it has a name; branches must give the same height and width (checked when the model is built).
    """

    def __init__(self, branches):
        super().__init__()
        self.branches = []
        for index, branch in enumerate(branches):
            if not isinstance(branch, Layer):
                branch = Sequential(branch)
            branch.name = branch.name or f"branch{index + 1}"
            self.branches.append(branch)
        if not self.branches:
            raise ValueError("a concatenation needs at least one branch")
        names = [branch.name for branch in self.branches]
        if len(set(names)) != len(names):
            raise ValueError(f"branches must have unique names, got {names}")

    def children(self):
        return [(branch.name, branch) for branch in self.branches]

    def named_parameters(self):
        return {f"{branch.name}.{key}": value for branch in self.branches
                for key, value in branch.named_parameters().items()}

    def named_buffers(self):
        return {f"{branch.name}.{key}": value for branch in self.branches
                for key, value in branch.named_buffers().items()}

    def forward(self, input):
        outputs = [branch.forward(input) for branch in self.branches]
        self.sizes = [output.shape[1] for output in outputs]
        return F.cat(outputs, dim=1)

    def backward(self, grad_output, need_input_grad=True):
        grads = F.cat_backward(grad_output, self.sizes, dim=1)
        return _sum([_run_backward(branch, grad, need_input_grad) for branch, grad in zip(self.branches, grads)])

    def output_shape(self, input_shape):
        return self.trace(input_shape)

    def trace(self, input_shape, visit=None, prefix=""):
        input_shape = tuple(input_shape)
        shapes = [trace_child(branch, input_shape, visit, prefix) for branch in self.branches]
        first = shapes[0]
        for branch, shape in zip(self.branches, shapes):
            if len(shape) != len(first) or shape[1:] != first[1:]:
                raise ShapeMismatch(prefix.split(".") if prefix else [self.name or "cat"], self, input_shape,
                                    f"branches must agree on all but the channel axis, but {self.branches[0].name} "
                                    f"gives {first} and {branch.name} gives {shape}")
        output = (sum(shape[0] for shape in shapes),) + first[1:]
        if visit is not None:
            visit(prefix, self, input_shape, output)
        return output

    def spec(self):
        return "cat[" + "|".join(branch.spec() for branch in self.branches) + "]"
