"""nbconv model -> ONNX graph. Each layer becomes the ONNX nodes that compute the same function in
inference mode (dropout is the identity, batch norm uses its running statistics); weights become
initializers. The batch axis is left symbolic ("N"), the other axes are the model's input shape."""
import os

import numpy as np

from .. import backend, checks, nn
from .. import functional as F
from ..data.idx import atomic_write_bytes

OPSET = 17


def require_onnx():
    """The onnx module, or an ImportError that says which extra provides it."""
    try:
        import onnx
    except ImportError:
        raise ImportError('ONNX support needs the onnx extra: pip install "nbconv[onnx]"') from None
    return onnx


class GraphBuilder:
    """Nodes and initializers of the graph being written, with unique tensor names."""

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype = onnx, np.dtype(dtype)
        self.nodes, self.initializers, self._used = [], [], set()

    def fresh(self, hint):
        name, count = hint, 1
        while name in self._used:
            count += 1
            name = f"{hint}_{count}"
        self._used.add(name)
        return name

    def constant(self, hint, array):
        name = self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def weight(self, hint, parameter):
        return self.constant(hint, np.asarray(backend.to_host(parameter.value), dtype=self.dtype))

    def node(self, op_type, inputs, hint, **attributes):
        output = self.fresh(hint)
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [output], name=output, **attributes))
        return output


def save(model, path, input_shape, opset=OPSET):
    """Write `model` for inputs of shape (N,) + input_shape to `path` (atomically), checked by onnx.checker."""
    proto = to_onnx(model, input_shape, opset)
    atomic_write_bytes(os.fspath(path), proto.SerializeToString())
    return path


def to_onnx(model, input_shape, opset=OPSET):
    """The ONNX ModelProto of `model` (any nbconv layer or Sequential) for inputs (N,) + input_shape."""
    onnx = require_onnx()
    if not isinstance(opset, int) or opset < OPSET:
        raise ValueError(f"opset must be an int >= {OPSET}, got {opset!r}")
    input_shape = tuple(int(size) for size in input_shape)
    dtype = next((np.dtype(p.value.dtype) for p in model.parameters()), np.dtype(np.float32))
    element_type = onnx.helper.np_dtype_to_tensor_dtype(dtype)
    graph = GraphBuilder(onnx, dtype)
    was_training = model.training
    model.eval()
    try:
        probe = np.zeros((1,) + input_shape, dtype)
        output, probe = export_layer(model, graph, graph.fresh("input"), probe)
    finally:
        model.train(was_training)
    inputs = [onnx.helper.make_tensor_value_info("input", element_type, ["N", *input_shape])]
    outputs = [onnx.helper.make_tensor_value_info(output, element_type, ["N", *probe.shape[1:]])]
    proto = onnx.helper.make_model(
        onnx.helper.make_graph(graph.nodes, "nbconv", inputs, outputs, graph.initializers),
        opset_imports=[onnx.helper.make_opsetid("", opset)], producer_name="nbconv")
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_layer(layer, graph, name, probe):
    """Append the nodes of `layer` reading tensor `name`; return (output tensor name, output of the layer on
    `probe`, an example input of batch 1 that gives the shapes)."""
    for kind in type(layer).__mro__:
        if kind in EXPORTERS:
            return EXPORTERS[kind](layer, graph, name, probe)
    raise ValueError(f"layer {layer.name or type(layer).__name__} ({type(layer).__name__}) has no ONNX form")


def _sequential(model, graph, name, probe):
    for layer in model.layers:
        name, probe = export_layer(layer, graph, name, probe)
    return name, probe


def _conv_pads(geometry):
    """ONNX pads [top, left, bottom, right] of a ConvGeometry ('same' adds its extra row/column at the end)."""
    (ph, pw), extra_h, extra_w = geometry.padding, geometry.extra_h, geometry.extra_w
    return [ph, pw, ph + extra_h, pw + extra_w]


def _conv2d(layer, graph, name, probe):
    weight = layer.weight.value
    geometry = F.conv_geometry(probe.shape, weight.shape, **layer.hyper)
    inputs = [name, graph.weight(f"{layer.name}.weight", layer.weight)]
    if layer.bias is not None:
        inputs.append(graph.weight(f"{layer.name}.bias", layer.bias))
    output = graph.node("Conv", inputs, layer.name, kernel_shape=list(weight.shape[2:]),
                        strides=list(geometry.stride), pads=_conv_pads(geometry), dilations=list(geometry.dilation),
                        group=geometry.groups)
    return output, layer.forward(probe)


def _conv1d(layer, graph, name, probe):
    weight = layer.weight.value
    hyper = {key: F._as_2d_hyper(key, value, 1 if key != "padding" else 0, 1 if key != "padding" else 0)
             for key, value in layer.hyper.items() if key != "groups"}
    shape = (probe.shape[0], probe.shape[1], 1, probe.shape[2])
    geometry = F.conv_geometry(shape, tuple(weight.shape[:2]) + (1, weight.shape[2]), groups=layer.hyper["groups"],
                               **hyper)
    inputs = [name, graph.weight(f"{layer.name}.weight", layer.weight)]
    if layer.bias is not None:
        inputs.append(graph.weight(f"{layer.name}.bias", layer.bias))
    pads = _conv_pads(geometry)
    output = graph.node("Conv", inputs, layer.name, kernel_shape=[weight.shape[2]], strides=[geometry.stride[1]],
                        pads=[pads[1], pads[3]], dilations=[geometry.dilation[1]], group=geometry.groups)
    return output, layer.forward(probe)


def _local(layer, graph, name, probe):
    """Locally connected: unroll every window with a one-hot convolution (N, C*kh*kw, OH, OW), then one matrix
    product per output position: (P, N, C*kh*kw) @ (P, C*kh*kw, D), back to (N, D, OH, OW), plus the bias."""
    OH, OW, D, C, KH, KW = layer.weight.shape
    taps, positions = C * KH * KW, OH * OW
    one_hot = np.eye(taps, dtype=graph.dtype).reshape(taps, C, KH, KW)
    stride = checks.pair("stride", layer.hyper["stride"], 1)
    padding = checks.pair("padding", layer.hyper["padding"], 0)
    windows = graph.node("Conv", [name, graph.constant(f"{layer.name}.unroll", one_hot)], f"{layer.name}.windows",
                         kernel_shape=[KH, KW], strides=list(stride), pads=list(padding) * 2)
    flat = graph.node("Reshape", [windows, graph.constant(f"{layer.name}.shape1", np.array([-1, taps, positions]))],
                      f"{layer.name}.flat")
    by_position = graph.node("Transpose", [flat], f"{layer.name}.by_position", perm=[2, 0, 1])
    weight = np.asarray(backend.to_host(layer.weight.value), graph.dtype).reshape(positions, D, taps)
    product = graph.node("MatMul", [by_position, graph.constant(f"{layer.name}.weight",
                                                                 weight.transpose(0, 2, 1).copy())],
                         f"{layer.name}.product")
    back = graph.node("Transpose", [product], f"{layer.name}.back", perm=[1, 2, 0])
    output = graph.node("Reshape", [back, graph.constant(f"{layer.name}.shape2", np.array([-1, D, OH, OW]))],
                        f"{layer.name}.maps")
    if layer.bias is not None:
        output = graph.node("Add", [output, graph.weight(f"{layer.name}.bias", layer.bias)], layer.name)
    return output, layer.forward(probe)


def _linear(layer, graph, name, probe):
    inputs = [name, graph.weight(f"{layer.name}.weight", layer.weight)]
    if layer.bias is not None:
        inputs.append(graph.weight(f"{layer.name}.bias", layer.bias))
    return graph.node("Gemm", inputs, layer.name, transB=1), layer.forward(probe)


def _pool_attributes(layer, probe):
    h = layer.hyper
    geometry = F.pool_geometry(probe.shape, h["kernel_size"], h["stride"], h["padding"], h["ceil_mode"])
    return dict(kernel_shape=list(geometry.kernel), strides=list(geometry.stride), pads=list(geometry.padding) * 2,
                ceil_mode=int(bool(h["ceil_mode"])))


def _max_pool(layer, graph, name, probe):
    return graph.node("MaxPool", [name], layer.name, **_pool_attributes(layer, probe)), layer.forward(probe)


def _avg_pool(layer, graph, name, probe):
    attributes = _pool_attributes(layer, probe)
    attributes["count_include_pad"] = int(bool(layer.hyper["count_include_pad"]))
    return graph.node("AveragePool", [name], layer.name, **attributes), layer.forward(probe)


def _simple(op_type, **attributes):
    def export(layer, graph, name, probe):
        values = {key: value(layer) if callable(value) else value for key, value in attributes.items()}
        return graph.node(op_type, [name], layer.name, **values), layer.forward(probe)
    return export


def _dropout(layer, graph, name, probe):
    ratio = graph.constant(f"{layer.name}.ratio", np.array(layer.probability, graph.dtype))
    return graph.node("Dropout", [name, ratio], layer.name), layer.forward(probe)


EXPORTERS = {
    nn.Sequential: _sequential,
    nn.Conv2d: _conv2d,
    nn.Conv1d: _conv1d,
    nn.LocallyConnected2d: _local,
    nn.Linear: _linear,
    nn.MaxPool2d: _max_pool,
    nn.AvgPool2d: _avg_pool,
    nn.GlobalAvgPool2d: _simple("GlobalAveragePool"),
    nn.ReLU: _simple("Relu"),
    nn.Sigmoid: _simple("Sigmoid"),
    nn.Tanh: _simple("Tanh"),
    nn.LeakyReLU: _simple("LeakyRelu", alpha=lambda layer: float(layer.negative_slope)),
    nn.Flatten: _simple("Flatten", axis=1),
    nn.Dropout: _dropout,
}
