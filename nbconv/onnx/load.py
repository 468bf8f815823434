"""ONNX graph -> nbconv model. The graph is parsed (protobuf only: nothing in the file is executed),
checked, translated into a model spec string plus the weights of each layer, built with
nbconv.models.build and filled, so the result is an ordinary model that checkpoints, trains and exports
like any other. Everything the translation cannot map is reported at once, node by node.

Choices: batch normalization stays a layer (running statistics kept, so the model can be fine-tuned);
a trailing Softmax is dropped (nbconv models return scores; `nbconv predict` applies the softmax);
Dropout and Identity nodes are kept as Dropout layers / skipped.
"""
import json
import os

import numpy as np

from .. import models
from .export import PREPROCESSING_KEYS, adaptive_avg_matrix, require_onnx

_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}


class UnsupportedModel(ValueError):
    """An ONNX graph nbconv cannot represent; the message lists every offending node."""


class Leaf:
    """One nbconv layer: its spec token and its weights in the order the layer's parameters are named."""

    def __init__(self, token, weights=None, end=None):
        self.token, self.weights = token, dict(weights or {})
        self.end = end  # the tensor after the layer, when it spans several nodes (else the node's output)


def load(path):
    """The nbconv model stored in the ONNX file at `path`, in eval mode, with `input_shape` ((C, H, W) or
    (C, W), from the graph's input) and `preprocessing` (see to_model) set on it."""
    onnx = require_onnx()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    if not os.path.isfile(path):  # a folder, a device, a pipe: nothing onnx could read to an end
        raise ValueError(f"{path} is not a regular file, so not an ONNX model")
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and friends
        raise ValueError(f"{path} is not an ONNX model ({type(error).__name__}: {error})") from None
    _read_external_data(onnx, proto, path)
    return to_model(proto, source=path)


def _read_external_data(onnx, proto, path):
    """Reads into `proto` the tensors stored as external data (PyTorch's exporter writes its weights to
    MODEL.onnx.data beside the model by default), from files in the model's own folder only: a location that is
    absolute, leaves the folder (.., a link) or is not a regular file, or a range past its file's end, is
    refused with the tensor's name before anything is read."""
    tensors = _external_tensors(onnx, proto.graph)
    if not tensors:
        return
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for tensor in tensors:
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location, name = entries.get("location", ""), tensor.name or "(unnamed)"
        target = os.path.realpath(os.path.join(folder, location))
        if not location or os.path.isabs(location) or os.path.commonpath([folder, target]) != folder \
                or not os.path.isfile(target):
            raise UnsupportedModel(f"{path}: tensor {name} names external data {location!r}, which is not a file "
                                   f"in the model's folder {folder}")
        try:
            offset, length = int(entries.get("offset", 0)), int(entries.get("length", -1))
        except ValueError:
            raise UnsupportedModel(f"{path}: tensor {name}'s external data has a malformed offset or length") \
                from None
        size = os.path.getsize(target)
        if offset < 0 or offset > size or length > size - offset:
            raise UnsupportedModel(f"{path}: tensor {name}'s external data (offset {offset}, length {length}) lies "
                                   f"past the end of {location} ({size} bytes)")
    try:
        onnx.load_external_data_for_model(proto, folder)
    except Exception as error:
        raise ValueError(f"{path}: its external data could not be read ({type(error).__name__}: {error})") from None


def to_model(proto, source="model"):
    """The nbconv model of an onnx ModelProto, with `input_shape` and `preprocessing` set on it: {key: value}
    of the mean, std and class names nbconv's export stored in the file's metadata (empty for other files)."""
    onnx = require_onnx()
    _refuse_external_data(onnx, proto, source)
    _refuse_unknown_operator_sets(onnx, proto, source)
    try:
        onnx.checker.check_model(proto)
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    except Exception as error:
        raise ValueError(f"{source} is not a valid ONNX model: {error}") from None
    graph = _Graph(onnx, proto.graph, source)
    try:
        tree = graph.translate()
        spec = _spec(tree)
    except RecursionError:  # the walk follows nested branches recursively
        raise UnsupportedModel(f"{source}: its branches (residual sums, concatenations) nest deeper than nbconv "
                               "follows") from None
    try:
        model = models.build(spec, graph.input_shape)
    except (ValueError, TypeError, OverflowError, MemoryError, RecursionError) as error:
        raise ValueError(f"{source}: its nodes do not fit together as a model ({str(error)[:300]})") from None
    _fill(model, tree, source)
    state = model.state_dict()
    bad = [key for key, value in state.items() if value.dtype.kind == "f" and not np.isfinite(value).all()]
    if bad:  # a damaged file: its scores would be NaN (nbconv's checkpoints never hold such weights either)
        raise ValueError(f"{source}: the weights of {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} hold NaN "
                         "or infinity")
    model.input_shape = graph.input_shape
    model.preprocessing = _preprocessing(proto, source)
    model.eval()
    return model


def _refuse_unknown_operator_sets(onnx, proto, source):
    """A graph stamped with an ONNX operator set newer than the installed onnx knows, or whose nodes belong to
    another domain (a custom 'Relu'), is refused: nbconv would read its nodes as today's standard operators,
    and onnx.checker passes both."""
    known = onnx.defs.onnx_opset_version()
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version > known:
            raise UnsupportedModel(f"{source}: it uses ONNX operator set {entry.version}; the installed onnx knows "
                                   f"sets up to {known}")
    foreign = [node for node in proto.graph.node if node.domain not in ("", "ai.onnx")]
    if foreign:
        raise UnsupportedModel(f"{source}: node {foreign[0].name or '(unnamed)'} ({foreign[0].op_type}) belongs to "
                               f"the operator domain {foreign[0].domain!r}; nbconv reads standard ONNX operators only")


def _preprocessing(proto, source):
    """{key: value} of the "nbconv.<key>" metadata nbconv's export writes (PREPROCESSING_KEYS), checked as a
    checkpoint's config is (the file is untrusted)."""
    from ..checkpoint_checks import check_config
    found = {}
    for entry in proto.metadata_props:
        key = entry.key[len("nbconv."):] if entry.key.startswith("nbconv.") else None
        if key in PREPROCESSING_KEYS:
            try:
                found[key] = json.loads(entry.value)
            except ValueError:
                raise ValueError(f"{source}: its metadata {entry.key!r} is not JSON: {entry.value!r:.80}") from None
    return check_config(found, f"{source}: its metadata")


def _refuse_external_data(onnx, proto, source):
    """A ModelProto (to_model) whose tensors' bytes live in other files is refused: those files would be read
    from wherever the location they name resolves (the working directory), not from beside a model file. load
    reads them from the model's folder first."""
    external = [tensor.name or "(unnamed)" for tensor in _external_tensors(onnx, proto.graph)]
    if external:
        raise UnsupportedModel(f"{source}: tensors stored as external data are not read ({', '.join(external)}); "
                               "load the model from its file (nbconv.onnx.load(path) reads them from its folder), "
                               "or save it with every tensor inside the file "
                               "(onnx.save_model(model, path, save_as_external_data=False))")


def _external_tensors(onnx, graph):
    """The tensors of a GraphProto (subgraphs included) whose bytes are stored in another file."""
    return [tensor for tensor in _tensors(graph)
            if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data)]


def _tensors(graph):
    """Every TensorProto of a GraphProto: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


class _Graph:
    """The nodes of one ONNX graph, walked from its input to its output."""

    def __init__(self, onnx, graph, source):
        self.onnx, self.source = onnx, source
        self.constants = {init.name: self._array(init, f"initializer {init.name!r}") for init in graph.initializer}
        self.shapes = {}
        for info in list(graph.value_info) + list(graph.input) + list(graph.output):
            dims = info.type.tensor_type.shape.dim
            self.shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        self.nodes = []
        for node in graph.node:
            if node.op_type == "Constant":
                self.constants[node.output[0]] = self._constant_value(node)
            else:
                self.nodes.append(node)
        inputs = [info.name for info in graph.input if info.name not in self.constants]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise UnsupportedModel(f"{source}: nbconv models have one input and one output, this graph has "
                                   f"{len(inputs)} inputs ({', '.join(inputs)}) and {len(graph.output)} outputs")
        self.input, self.output = inputs[0], graph.output[0].name
        shape = self.shapes.get(self.input, ())
        if len(shape) not in (2, 3, 4) or any(size is None or size < 1 for size in shape[1:]):
            raise UnsupportedModel(f"{source}: the input {self.input!r} must have shape (N, C, H, W), (N, C, W) or "
                                   f"(N, features) with fixed C, H, W; got {_show(shape)}")
        self.input_shape = tuple(shape[1:])
        self.consumers = {}
        for node in self.nodes:
            for name in node.input:
                if name and name not in self.constants:
                    self.consumers.setdefault(name, []).append(node)
        self.problems = []

    def _constant_value(self, node):
        attribute = next((a for a in node.attribute if a.name == "value"), None)
        if attribute is None:
            raise UnsupportedModel(f"{self.source}: Constant node {node.name!r} has no tensor value")
        return self._array(attribute.t, f"Constant node {node.name!r}'s value")

    def _array(self, tensor, what):
        """A TensorProto as a numpy array, else an UnsupportedModel naming it (data that does not fill its
        declared dims, an unknown data type)."""
        try:
            return self.onnx.numpy_helper.to_array(tensor)
        except Exception as error:  # noqa: BLE001 - KeyError for a type, ValueError for a size, ...
            raise UnsupportedModel(f"{self.source}: {what} (tensor {tensor.name or '(unnamed)'}) of dims "
                                   f"{list(tensor.dims)} cannot be read (data type {tensor.data_type}, "
                                   f"{type(error).__name__}: {str(error)[:200]})") from None

    # ------------------------------------------------------------------ structure

    def translate(self):
        """The model as a tree of lists (sequence), ('res', body, shortcut), ('cat', branches) and Leaf."""
        items, end, stopped_at = self._chain(self.input, top=True)
        if not self.problems and end != self.output:
            self.problems.append(f"the graph's output {self.output!r} is not reached from its input "
                                 f"(the walk ended at {end!r})")
        if self.problems:
            raise UnsupportedModel(f"{self.source}: nbconv cannot represent {len(self.problems)} node(s):\n  "
                                   + "\n  ".join(self.problems))
        if items and isinstance(items[-1], Leaf) and items[-1].token == "softmax":
            items.pop()
        if not items:
            raise UnsupportedModel(f"{self.source}: the graph computes nothing nbconv would call a layer")
        if any(isinstance(item, Leaf) and item.token == "softmax" for item in items):
            raise UnsupportedModel(f"{self.source}: Softmax is supported only as the last node")
        return items

    def _chain(self, tensor, top=False):
        """Layers from `tensor` on, until the graph's output, a merge node (Add/Concat joining branches) or
        a problem: (items, last tensor, merge node or None)."""
        items = []
        while tensor != self.output:
            consumers = self.consumers.get(tensor, [])
            if not consumers:
                break
            if len(consumers) > 1:
                tensor = self._fork(tensor, consumers, items)
                if tensor is None:
                    return items, None, None
                continue
            node = consumers[0]
            if self._is_merge(node):
                return items, tensor, node
            leaf = self._leaf(node) or Leaf(None)  # a problem was recorded: go on, to report every one
            if leaf.token:
                items.append(leaf)
            tensor = leaf.end or node.output[0]
        return items, tensor, None

    def _is_merge(self, node):
        return node.op_type in ("Add", "Sum", "Concat") and len(self._variable_inputs(node)) > 1

    def _fork(self, tensor, consumers, items):
        """Branches leaving `tensor` that meet again: each Add (a residual block) or Concat (branches) that
        all its inputs reach from `tensor` becomes one container, innermost first, until one remains; its
        container is appended to `items` and its output returned (None after recording a problem)."""
        branches = []  # (items, the tensor it ends at, the merge node it reaches)
        for node in consumers:
            if self._is_merge(node):
                branches.append(([], tensor, node))
            else:
                leaf = self._leaf(node) or Leaf(None)
                rest, end, meets = self._chain(leaf.end or node.output[0])
                branches.append((([leaf] if leaf.token else []) + rest, end, meets))
        while True:
            if any(meets is None for _, _, meets in branches):
                self.problems.append(f"branches leaving {tensor!r} do not meet again at one Add or Concat "
                                     f"(nbconv models nest residual sums and concatenations)")
                return None
            merges = {id(meets): meets for _, _, meets in branches}
            complete = [merge for merge in merges.values()
                        if sum(meets is merge for _, _, meets in branches) == len(self._variable_inputs(merge))]
            if not complete:
                merge = next(iter(merges.values()))
                self.problems.append(f"{merge.op_type} node {merge.name!r} joins {len(self._variable_inputs(merge))} "
                                     f"tensors, not all of which come from {tensor!r}")
                return None
            merge = complete[0]
            joined = sorted((list(merge.input).index(end), part) for part, end, meets in branches if meets is merge)
            container = self._container(merge, [part for _, part in joined])
            if container is None:
                return None
            if len(merges) == 1:
                items.append(container)
                return merge.output[0]
            rest, end, meets = self._chain(merge.output[0])
            branches = [branch for branch in branches if branch[2] is not merge] + [([container] + rest, end, meets)]

    def _variable_inputs(self, node):
        return [name for name in node.input if name and name not in self.constants]

    def _container(self, merge, parts):
        """('cat', branches) or ('res', body, shortcut) for a merge node joining `parts`, or None (a problem)."""
        if merge.op_type == "Concat":
            if self._axis(merge) != 1:
                self.problems.append(f"Concat node {merge.name!r}: only concatenation along channels (axis 1)")
                return None
            return ("cat", parts)
        if len(parts) != 2:
            self.problems.append(f"{merge.op_type} node {merge.name!r}: a residual sum adds exactly two tensors")
            return None
        first, second = parts
        body, shortcut = (first, second) if len(first) >= len(second) else (second, first)
        if not body:
            self.problems.append(f"{merge.op_type} node {merge.name!r} adds a tensor to itself (nbconv has no "
                                 "layer that doubles its input)")
            return None
        return ("res", body, shortcut)

    def _axis(self, node):
        axis = self._attributes(node).get("axis", 1)
        rank = len(self.shapes.get(node.output[0], ())) or 4
        return axis + rank if axis < 0 else axis

    # ------------------------------------------------------------------ nodes

    def _attributes(self, node):
        return {attribute.name: self.onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}

    def _problem(self, node, reason):
        self.problems.append(f"{node.name or '(unnamed)'} ({node.op_type}): {reason}")

    def _leaf(self, node):
        """The Leaf of a node (token None for nodes that compute nothing), or None after recording a problem."""
        translate = getattr(self, f"_op_{node.op_type}", None)
        if translate is None:
            self._problem(node, "operator not supported")
            return None
        attributes = self._attributes(node)
        try:
            return translate(node, attributes)
        except _Unsupported as reason:
            self._problem(node, str(reason))
            return None
        except ValueError as error:  # numpy refusing a constant's shape: a Gemm bias (3, 1) for 3 outputs, ...
            self._problem(node, f"its constant inputs do not fit each other ({str(error)[:200]})")
            return None

    def _weight(self, node, index, what, floating=True):
        """The constant input `index` of `node` as an array (a floating-point one unless floating=False), or
        None when the node has no such input."""
        if len(node.input) <= index or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.constants:
            raise _Unsupported(f"its {what} must be a constant (an initializer), got the computed tensor {name!r}")
        value = np.asarray(self.constants[name])
        if floating and value.dtype.kind != "f":
            raise _Unsupported(f"its {what} {name!r} must be a floating-point tensor, got {value.dtype}")
        return value

    def _scalar(self, node, index, what):
        """A constant input that holds one number (a 0-D tensor, or one element of any rank), or None."""
        value = self._weight(node, index, what, floating=False)
        if value is None:
            return None
        if value.size != 1 or value.dtype.kind not in "fiub":
            raise _Unsupported(f"its {what} must be one number, got a {value.dtype} tensor of shape {value.shape}")
        return float(value.reshape(()))

    @staticmethod
    def _only(attributes, allowed, node_type):
        unknown = sorted(set(attributes) - set(allowed))
        if unknown:
            raise _Unsupported(f"attribute(s) {', '.join(unknown)} not supported on {node_type}")

    def _input_shape(self, node):
        shape = self.shapes.get(node.input[0])
        if shape is None or any(size is None for size in shape[1:]):
            raise _Unsupported(f"the shape of its input {node.input[0]!r} is not known")
        return shape

    def _pads(self, node, attributes, kernel, stride, dilation):
        """Symmetric padding per spatial axis, or 'same' (stride 1, extra padding at the end), for an ONNX
        pads / auto_pad pair."""
        spatial = len(kernel)
        auto_pad = attributes.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            shape = self._input_shape(node)[2:]
            totals = []
            for size, k, s, d in zip(shape, kernel, stride, dilation):
                out = -(-size // s)
                totals.append(max(0, (out - 1) * s + d * (k - 1) + 1 - size))
            begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in totals]
            pads = begin + [t - b for t, b in zip(totals, begin)]
        elif auto_pad in ("NOTSET", "VALID"):
            pads = list(attributes.get("pads", [0] * 2 * spatial)) if auto_pad == "NOTSET" else [0] * 2 * spatial
        else:
            raise _Unsupported(f"auto_pad={auto_pad!r}")
        begin, end = pads[:spatial], pads[spatial:]
        if begin == end:
            return begin
        if all(e - b in (0, 1) for b, e in zip(begin, end)) and all(s == 1 for s in stride):
            same = [d * (k - 1) // 2 for k, d in zip(kernel, dilation)]
            extra = [d * (k - 1) - 2 * p for k, d, p in zip(kernel, dilation, same)]
            if same == begin and [b + x for b, x in zip(begin, extra)] == end:
                return "same"
        raise _Unsupported(f"asymmetric padding {pads} (nbconv pads both sides alike, or 'same' at stride 1)")

    def _op_Conv(self, node, attributes):
        self._only(attributes, ("kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"), "Conv")
        weight = self._weight(node, 1, "weight")
        bias = self._weight(node, 2, "bias")
        spatial = weight.ndim - 2
        if spatial not in (1, 2):
            raise _Unsupported(f"{spatial}-D convolution (nbconv has 1-D and 2-D)")
        kernel = list(weight.shape[2:])
        if "kernel_shape" in attributes and list(attributes["kernel_shape"]) != kernel:
            raise _Unsupported(f"kernel_shape={list(attributes['kernel_shape'])} disagrees with its weight's "
                               f"shape {list(weight.shape)}")
        stride = list(attributes.get("strides", [1] * spatial))
        dilation = list(attributes.get("dilations", [1] * spatial))
        padding = self._pads(node, attributes, kernel, stride, dilation)
        groups = int(attributes.get("group", 1))
        if spatial == 2 and bias is None and groups == 1 and all(d == 1 for d in dilation):
            local = self._locally_connected(node, weight, stride, padding)
            if local is not None:
                return local
        weights = {"weight": weight, **({"bias": bias} if bias is not None else {})}
        if spatial == 1:
            token = (f"conv1d{weight.shape[0]}k{kernel[0]}s{stride[0]}"
                     f"p{padding if padding == 'same' else padding[0]}d{dilation[0]}g{groups}")
            weights.setdefault("bias", np.zeros(weight.shape[0], weight.dtype))  # conv1d layers have one
            return Leaf(token, weights)
        pad = "same" if padding == "same" else _size(padding)
        token = (f"conv{weight.shape[0]}k{_size(kernel)}s{_size(stride)}p{pad}d{_size(dilation)}g{groups}"
                 + ("" if bias is not None else "nobias"))
        return Leaf(token, weights)

    def _op_Gemm(self, node, attributes):
        self._only(attributes, ("alpha", "beta", "transA", "transB"), "Gemm")
        if attributes.get("transA", 0):
            raise _Unsupported("transA=1")
        weight = self._weight(node, 1, "weight")
        weight = weight if attributes.get("transB", 0) else weight.T
        weight = weight * attributes.get("alpha", 1.0)
        bias = self._weight(node, 2, "bias")
        if bias is None:
            bias = np.zeros(weight.shape[0], weight.dtype)
        name = node.input[2] if len(node.input) > 2 else ""
        bias = _feature_bias(bias * attributes.get("beta", 1.0), weight.shape[0], name)
        return Leaf(f"fc{weight.shape[0]}", {"weight": weight, "bias": bias})

    def _adaptive_average(self, reshape, product):
        """The Leaf of an adaptive average pooling written as nbconv exports an uneven one (Reshape to planes,
        MatMul with the pooling matrix, Reshape to maps), or None."""
        after = self._single_consumer(product.output[0], "Reshape")
        shape_in, shape_out = self._input_shape(reshape), self.shapes.get(after.output[0]) if after else None
        matrix = self.constants.get(product.input[1])
        if after is None or len(shape_in) != 4 or shape_out is None or len(shape_out) != 4 or matrix is None:
            return None
        (height, width), (out_height, out_width) = shape_in[2:], shape_out[2:]
        expected = adaptive_avg_matrix(height, width, out_height, out_width, np.float64)
        if matrix.shape != expected.shape or not np.allclose(matrix, expected, rtol=1e-6, atol=0):
            return None
        return Leaf(f"adaptiveavgpool{_size((out_height, out_width))}", end=after.output[0])

    def _op_MatMul(self, node, attributes):
        weight = self._weight(node, 1, "second input")
        if weight.ndim != 2 or len(self._input_shape(node)) != 2:
            raise _Unsupported("only (N, I) @ (I, O) products (fully connected layers)")
        bias, end = np.zeros(weight.shape[1], weight.dtype), None
        add = self._single_consumer(node.output[0], "Add")
        if add is not None and not self._is_merge(add):  # MatMul + Add of a constant: one fully connected layer
            constant = next(name for name in add.input if name in self.constants)
            try:
                bias = _feature_bias(np.asarray(self.constants[constant]), weight.shape[1], constant)
            except _Unsupported as reason:
                raise _Unsupported(f"the Add {add.name!r} after it: {reason}") from None
            end = add.output[0]
        return Leaf(f"fc{weight.shape[1]}", {"weight": weight.T, "bias": bias}, end)

    def _single_consumer(self, tensor, op_type):
        consumers = self.consumers.get(tensor, [])
        if len(consumers) == 1 and consumers[0].op_type == op_type and tensor != self.output:
            return consumers[0]
        return None

    def _locally_connected(self, conv, weight, stride, padding):
        """The Leaf of a locally connected layer written as nbconv exports it (a one-hot unrolling Conv, Reshape,
        Transpose, per-position MatMul, Transpose, Reshape, Add of the bias), or None when `conv` is not one."""
        taps = int(np.prod(weight.shape[1:]))
        if weight.shape[0] != taps or not np.array_equal(weight.reshape(taps, taps), np.eye(taps)) or padding == "same":
            return None
        chain, tensor = [], conv.output[0]
        for op_type in ("Reshape", "Transpose", "MatMul", "Transpose", "Reshape", "Add"):
            node = self._single_consumer(tensor, op_type)
            if node is None:
                return None
            chain.append(node)
            tensor = node.output[0]
        reshape, to_positions, product, back, _, add = chain
        perms = [self._attributes(node).get("perm") for node in (to_positions, back)]
        matrices = product.input[1] in self.constants and self.constants[product.input[1]]
        bias = [self.constants.get(name) for name in add.input if name in self.constants]
        out_shape = self.shapes.get(tensor)
        if perms != [[2, 0, 1], [1, 2, 0]] or matrices is False or matrices.ndim != 3 or len(bias) != 1 \
                or out_shape is None or len(out_shape) != 4:
            return None
        _, D, OH, OW = out_shape
        C, KH, KW = weight.shape[1:]
        local_weight = matrices.transpose(0, 2, 1).reshape(OH, OW, D, C, KH, KW)
        token = f"local{D}k{_size((KH, KW))}s{_size(stride)}p{_size(padding)}"
        return Leaf(token, {"weight": local_weight, "bias": np.broadcast_to(bias[0], (D, OH, OW))}, tensor)

    def _pool(self, node, attributes, name, allowed):
        self._only(attributes, allowed, node.op_type)
        if len(node.output) > 1 and node.output[1]:
            raise _Unsupported("the indices output")
        kernel = list(attributes["kernel_shape"])
        if len(kernel) != 2:
            raise _Unsupported(f"{len(kernel)}-D pooling (nbconv pools 2-D maps)")
        if any(d != 1 for d in attributes.get("dilations", [1, 1])):
            raise _Unsupported("dilated pooling")
        if attributes.get("storage_order", 0):
            raise _Unsupported("storage_order=1")
        stride = list(attributes.get("strides", [1, 1]))
        padding = self._pads(node, attributes, kernel, stride, [1, 1])
        if padding == "same":
            raise _Unsupported("'same' padding with an extra row or column on pooling")
        return (f"{name}{_size(kernel)}s{_size(stride)}p{_size(padding)}"
                + ("ceil" if attributes.get("ceil_mode", 0) else ""))

    def _op_MaxPool(self, node, attributes):
        return Leaf(self._pool(node, attributes, "maxpool", ("kernel_shape", "strides", "pads", "ceil_mode",
                                                            "auto_pad", "dilations", "storage_order")))

    def _op_AveragePool(self, node, attributes):
        token = self._pool(node, attributes, "avgpool", ("kernel_shape", "strides", "pads", "ceil_mode", "auto_pad",
                                                         "count_include_pad", "dilations"))
        return Leaf(token + ("" if attributes.get("count_include_pad", 0) else "nopad"))

    def _op_GlobalAveragePool(self, node, attributes):
        return Leaf("gap")

    def _op_LeakyRelu(self, node, attributes):
        return Leaf(f"lrelu{float(attributes.get('alpha', 0.01))!r}")

    def _op_Flatten(self, node, attributes):
        axis = attributes.get("axis", 1)
        if axis != 1:
            raise _Unsupported(f"axis={axis} (nbconv flattens everything but the batch axis)")
        return Leaf("flatten")

    def _op_Reshape(self, node, attributes):
        shape_in, shape_out = self._input_shape(node), self.shapes.get(node.output[0])
        product = self._single_consumer(node.output[0], "MatMul")
        if product is not None:
            pooling = self._adaptive_average(node, product)
            if pooling is not None:
                return pooling
        if shape_out is None or len(shape_out) != 2 or (
                shape_out[1] is not None and shape_out[1] != int(np.prod(shape_in[1:]))):
            raise _Unsupported(f"a reshape from {_show(shape_in)} to {_show(shape_out)} (only flattening to "
                               "(N, features) is supported)")
        return Leaf("flatten" if len(shape_in) > 2 else None)

    def _op_Dropout(self, node, attributes):
        ratio = attributes.get("ratio", None)
        if ratio is None:
            ratio = self._scalar(node, 1, "ratio")
            ratio = 0.5 if ratio is None else ratio
        if len(node.output) > 1 and node.output[1]:
            raise _Unsupported("the mask output")
        return Leaf(f"dropout{float(ratio)!r}")

    def _op_Clip(self, node, attributes):
        if attributes:  # opset < 11 kept the bounds as attributes
            low, high = attributes.get("min", -np.inf), attributes.get("max", np.inf)
        else:
            bounds = [self._scalar(node, index, what) for index, what in ((1, "minimum"), (2, "maximum"))]
            low, high = (float(-np.inf if bounds[0] is None else bounds[0]),
                         float(np.inf if bounds[1] is None else bounds[1]))
        if low == 0 and high == 6:
            return Leaf("relu6")
        if low == 0 and high == np.inf:
            return Leaf("relu")
        raise _Unsupported(f"Clip to [{low}, {high}] (nbconv has Clip(0, 6) as ReLU6 and Clip(0, inf) as ReLU)")

    def _op_Identity(self, node, attributes):
        return Leaf(None)

    def _op_GlobalMaxPool(self, node, attributes):
        return Leaf("adaptivemaxpool1")

    def _op_BatchNormalization(self, node, attributes):
        self._only(attributes, ("epsilon", "momentum", "training_mode"), "BatchNormalization")
        if attributes.get("training_mode", 0):
            raise _Unsupported("training_mode=1 (nbconv imports inference graphs)")
        if len(node.output) > 1 and any(node.output[1:]):
            raise _Unsupported("the running statistics outputs")
        scale, shift, mean, variance = (self._weight(node, index, what) for index, what in
                                        ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")))
        rank = len(self._input_shape(node))
        token = "bn" if rank == 4 else "bn1d" if rank in (2, 3) else None
        if token is None:
            raise _Unsupported(f"batch normalization of a rank-{rank} tensor")
        eps = float(attributes.get("epsilon", 1e-5))
        momentum = round(1.0 - float(attributes.get("momentum", 0.9)), 6)
        token += ("" if np.float32(eps) == np.float32(1e-5) else f"eps{eps!r}") + (
            "" if momentum == 0.1 else f"momentum{momentum:f}".rstrip("0"))
        return Leaf(token, {"weight": scale, "bias": shift, "running_mean": mean, "running_var": variance})

    def _op_LRN(self, node, attributes):
        size = int(attributes["size"])
        if size % 2 == 0:  # its window, [c - (size - 1) // 2, c + size // 2], is one channel up from nbconv's
            raise _Unsupported(f"size={size}: ONNX centres an even window one channel higher than nbconv (and "
                               "PyTorch) do (onnxruntime refuses even sizes)")
        alpha, beta, bias = (float(attributes.get(key, default)) for key, default in
                             (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
        return Leaf(f"lrn{size}a{alpha!r}b{beta!r}k{bias!r}")

    def _op_Softmax(self, node, attributes):
        axis = attributes.get("axis", -1)
        if axis not in (-1, 1):
            raise _Unsupported(f"axis={axis}")
        return Leaf("softmax")


for _op, _token in _ACTIVATIONS.items():
    setattr(_Graph, f"_op_{_op}", lambda self, node, attributes, token=_token: Leaf(token))


class _Unsupported(Exception):
    pass


def _feature_bias(bias, features, name):
    """A fully connected layer's bias (features,) from a constant added to its (N, features) product: of shape
    (), (1,), (features,), (1, 1) or (1, features); other shapes (one per sample, or a wrong count) would make
    the sum something else than a layer's, and are an _Unsupported."""
    if bias.ndim > 2 or (bias.ndim == 2 and bias.shape[0] != 1) or (bias.ndim and bias.shape[-1] not in (1, features)):
        raise _Unsupported(f"its bias {name!r} of shape {list(bias.shape)} is not one value per output feature "
                           f"({features}), as (features,) or (1, features)")
    return np.broadcast_to(bias.reshape(-1), (features,))


def _size(values):
    values = [int(v) for v in values]
    return str(values[0]) if len(set(values)) == 1 else "x".join(str(v) for v in values)


def _show(shape):
    return "unknown" if shape is None else "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"


# ---------------------------------------------------------------------- tree -> spec and weights

def _spec(items):
    return ",".join(_item_spec(item) for item in items)


def _item_spec(item):
    if isinstance(item, Leaf):
        return item.token
    if item[0] == "res":
        _, body, shortcut = item
        return f"res[{_spec(body)}" + (f"|{_spec(shortcut)}" if shortcut else "") + "]"
    if any(not branch for branch in item[1]):
        raise UnsupportedModel("a concatenation that passes its input through unchanged as one branch")
    return "cat[" + "|".join(_spec(branch) for branch in item[1]) + "]"


def _leaves(items):
    for item in items:
        if isinstance(item, Leaf):
            yield item
        else:
            for part in item[1:]:
                for branch in (part if item[0] == "cat" else [part]):
                    yield from _leaves(branch or [])


def _model_layers(layer):
    """The model's innermost layers, in spec order."""
    children = layer.children()
    if not children:
        yield layer
    for _, child in children:
        yield from _model_layers(child)


def _fill(model, items, source="model"):
    """Copy each leaf's weights into the layer built from its token (both lists are in spec order). A weight
    that is not floating point (an integer tensor's bits would become other numbers) or not of the layer's
    size is a ValueError naming `source` and the layer."""
    weighted = [leaf for leaf in _leaves(items) if leaf.weights]
    layers = [layer for layer in _model_layers(model) if layer.named_parameters() or layer.named_buffers()]
    if len(weighted) != len(layers):
        raise AssertionError(f"{len(weighted)} weighted nodes but {len(layers)} weighted layers were built")
    for leaf, layer in zip(weighted, layers):
        current = layer.state_dict()
        values = {key: np.asarray(value) for key, value in leaf.weights.items()}
        for key, value in values.items():
            if value.dtype.kind != "f" or value.size != current[key].size:
                raise ValueError(f"{source}: the {key} of layer {layer.name} ({leaf.token}) must be "
                                 f"{current[key].size} floating-point numbers, the file gives a {value.dtype} "
                                 f"tensor of shape {value.shape}")
        layer.load_state_dict({key: value.reshape(current[key].shape) for key, value in values.items()},
                              strict=False)
