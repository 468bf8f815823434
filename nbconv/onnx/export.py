"""nbconv model -> ONNX graph. Each layer becomes the ONNX nodes that compute the same function in
inference mode (dropout is the identity, batch norm uses its running statistics); weights become
initializers. The batch axis is left symbolic ("N"), the other axes are the model's input shape."""
import json
import numbers
import os

import numpy as np

from .. import backend, checks, nn
from .. import functional as F
from ..files import atomic_write_bytes

OPSET = 17
# What an image must go through before the model (a checkpoint's config keys), kept in the file's
# metadata_props as JSON under "nbconv.<key>": `nbconv predict` on the .onnx file and `nbconv import` read them.
PREPROCESSING_KEYS = ("mean", "std", "class_names")


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


def save(model, path, input_shape, opset=OPSET, preprocessing=None):
    """Write `model` for inputs of shape (N,) + input_shape to `path` (atomically), checked by onnx.checker;
    preprocessing: as to_onnx takes it."""
    proto = to_onnx(model, input_shape, opset, preprocessing)
    atomic_write_bytes(os.fspath(path), proto.SerializeToString())
    return path


def to_onnx(model, input_shape, opset=OPSET, preprocessing=None):
    """The ONNX ModelProto of `model` (any nbconv layer or Sequential) for inputs (N,) + input_shape.
    preprocessing: None or {key: value} for keys of PREPROCESSING_KEYS (a checkpoint's mean, std and class
    names), stored in the file's metadata (nbconv.onnx.load gives them back as model.preprocessing)."""
    onnx = require_onnx()
    preprocessing = {key: value for key, value in dict(preprocessing or {}).items() if value is not None}
    unknown = sorted(set(preprocessing) - set(PREPROCESSING_KEYS))
    if unknown:
        raise ValueError(f"preprocessing takes the keys {', '.join(PREPROCESSING_KEYS)}, got {', '.join(unknown)}")
    newest = onnx.defs.onnx_opset_version()  # a later one is a file onnxruntime refuses to load
    if isinstance(opset, bool) or not isinstance(opset, numbers.Integral) or not OPSET <= opset <= newest:
        raise ValueError(f"opset must be an int in [{OPSET}, {newest}] (the newest this onnx package knows), "
                         f"got {opset!r}")
    opset = int(opset)
    if not isinstance(input_shape, (tuple, list)) or not 1 <= len(input_shape) <= 3:
        raise ValueError(f"input_shape must be (C, H, W), (C, W) or (features,) without the batch axis, got "
                         f"{input_shape!r}")
    input_shape = tuple(checks.integer("input_shape", size, 1) for size in input_shape)
    model.output_shape(input_shape)  # a ValueError naming the layer that does not fit, before any export
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
    onnx.helper.set_model_props(proto, {f"nbconv.{key}": json.dumps(value) for key, value in preprocessing.items()})
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


def _residual(block, graph, name, probe):
    body, body_probe = _sequential(block.body, graph, name, probe)
    shortcut = name if block.shortcut is None else export_layer(block.shortcut, graph, name, probe)[0]
    output = graph.node("Add", [body, shortcut], f"{block.name or 'res'}.sum")
    if block.activation is not None:
        output, _ = export_layer(block.activation, graph, output, body_probe)
    return output, block.forward(probe)


def _concat(block, graph, name, probe):
    branches = [export_layer(branch, graph, name, probe)[0] for branch in block.branches]
    return graph.node("Concat", branches, block.name or "cat", axis=1), block.forward(probe)


def _batch_norm(layer, graph, name, probe):
    channels = layer.num_features
    ones, zeros = np.ones(channels, graph.dtype), np.zeros(channels, graph.dtype)
    scale = graph.weight(f"{layer.name}.weight", layer.weight) if layer.affine else graph.constant(
        f"{layer.name}.weight", ones)
    shift = graph.weight(f"{layer.name}.bias", layer.bias) if layer.affine else graph.constant(
        f"{layer.name}.bias", zeros)
    mean = graph.constant(f"{layer.name}.running_mean", np.asarray(backend.to_host(layer.running_mean), graph.dtype))
    variance = graph.constant(f"{layer.name}.running_var", np.asarray(backend.to_host(layer.running_var), graph.dtype))
    momentum = 0.1 if layer.momentum is None else layer.momentum  # ONNX's momentum weighs the running value
    output = graph.node("BatchNormalization", [name, scale, shift, mean, variance], layer.name,
                        epsilon=float(layer.eps), momentum=float(1.0 - momentum))
    return output, layer.forward(probe)


def _local_response_norm(layer, graph, name, probe):
    if layer.size % 2 == 0:  # ONNX's window is [c - (size - 1) // 2, c + size // 2]: one channel up from nbconv's
        raise ValueError(f"layer {layer.name} ({layer.spec()}): ONNX's LRN centres an even window one channel "
                         f"higher than nbconv (and PyTorch) do, and onnxruntime refuses even sizes; an odd size "
                         f"exports")
    output = graph.node("LRN", [name], layer.name, size=layer.size, alpha=float(layer.alpha), beta=float(layer.beta),
                        bias=float(layer.k))
    return output, layer.forward(probe)


def adaptive_windows(size, out_size):
    """PyTorch's adaptive pooling windows along one axis: [(start, end), ...] for each output position."""
    return [(index * size // out_size, -(-(index + 1) * size // out_size)) for index in range(out_size)]


def adaptive_avg_matrix(height, width, out_height, out_width, dtype):
    """(H*W, OH*OW) matrix whose product with a flattened plane is its adaptive average pooling."""
    matrix = np.zeros((height * width, out_height * out_width), dtype)
    for i, (top, bottom) in enumerate(adaptive_windows(height, out_height)):
        for j, (left, right) in enumerate(adaptive_windows(width, out_width)):
            window = np.zeros((height, width), dtype)
            window[top:bottom, left:right] = 1.0 / ((bottom - top) * (right - left))
            matrix[:, i * out_width + j] = window.ravel()
    return matrix


def _adaptive_pool(op_type, global_op_type):
    """Adaptive pooling: the global op for a 1x1 output, an ordinary pooling where the plane divides evenly
    into the output (every window then has the same size and stride); otherwise, for averages, a product of
    each flattened plane with the pooling matrix. Uneven maximum pooling has no ONNX form."""
    def export(layer, graph, name, probe):
        (height, width) = probe.shape[2:]
        out_height, out_width = layer.output_plane((height, width))
        if (out_height, out_width) == (1, 1):
            return graph.node(global_op_type, [name], layer.name), layer.forward(probe)
        if height % out_height == 0 and width % out_width == 0:
            kernel = [height // out_height, width // out_width]
            return graph.node(op_type, [name], layer.name, kernel_shape=kernel, strides=kernel), layer.forward(probe)
        if op_type != "AveragePool":
            raise ValueError(f"layer {layer.name} ({layer.spec()}): adaptive max pooling of a {height}x{width} "
                             f"plane to {out_height}x{out_width} has windows of different sizes, which ONNX pooling "
                             f"cannot express; export for an input size whose plane divides evenly")
        channels = probe.shape[1]
        flat = graph.node("Reshape", [name, graph.constant(f"{layer.name}.planes",
                                                           np.array([-1, channels, height * width]))],
                          f"{layer.name}.planes")
        pooled = graph.node("MatMul", [flat, graph.constant(f"{layer.name}.windows", adaptive_avg_matrix(
            height, width, out_height, out_width, graph.dtype))], f"{layer.name}.pooled")
        output = graph.node("Reshape", [pooled, graph.constant(f"{layer.name}.shape",
                                                               np.array([-1, channels, out_height, out_width]))],
                            layer.name)
        return output, layer.forward(probe)
    return export


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


def _clip_relu6(layer, graph, name, probe):
    bounds = [graph.constant(f"{layer.name}.{end}", np.array(value, graph.dtype)) for end, value in (("min", 0), ("max", 6))]
    return graph.node("Clip", [name] + bounds, layer.name), layer.forward(probe)


def _dropout(layer, graph, name, probe):
    ratio = graph.constant(f"{layer.name}.ratio", np.array(layer.probability, graph.dtype))
    return graph.node("Dropout", [name, ratio], layer.name), layer.forward(probe)


EXPORTERS = {
    nn.Sequential: _sequential,
    nn.Residual: _residual,
    nn.Concat: _concat,
    nn.BatchNorm2d: _batch_norm,
    nn.BatchNorm1d: _batch_norm,
    nn.LocalResponseNorm: _local_response_norm,
    nn.AdaptiveAvgPool2d: _adaptive_pool("AveragePool", "GlobalAveragePool"),
    nn.AdaptiveMaxPool2d: _adaptive_pool("MaxPool", "GlobalMaxPool"),
    nn.Conv2d: _conv2d,
    nn.Conv1d: _conv1d,
    nn.LocallyConnected2d: _local,
    nn.Linear: _linear,
    nn.MaxPool2d: _max_pool,
    nn.AvgPool2d: _avg_pool,
    nn.GlobalAvgPool2d: _simple("GlobalAveragePool"),
    nn.ReLU: _simple("Relu"),
    nn.ReLU6: _clip_relu6,
    nn.Sigmoid: _simple("Sigmoid"),
    nn.Tanh: _simple("Tanh"),
    nn.LeakyReLU: _simple("LeakyRelu", alpha=lambda layer: float(layer.negative_slope)),
    nn.Flatten: _simple("Flatten", axis=1),
    nn.Dropout: _dropout,
}
