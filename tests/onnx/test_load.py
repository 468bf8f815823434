"""ONNX -> nbconv on graphs nbconv did not write: one small graph per supported operator built with
onnx.helper, and networks exported by PyTorch; each compared with onnxruntime. Bad files: one clear error."""
import os

import numpy as np
import pytest

from nbconv import onnx as nbonnx

from .conftest import onnx, relative_error, run_onnxruntime

helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto
RNG = np.random.default_rng(7)


def _graph(nodes, input_shape, initializers=(), opset=17, output="y"):
    """A ModelProto of `nodes` reading 'x' (N, *input_shape) and writing `output`."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *input_shape])]
    weights = [numpy_helper.from_array(np.asarray(value), name) for name, value in initializers]
    unknown = helper.make_model(helper.make_graph(nodes, "test", inputs, [helper.make_empty_tensor_value_info(output)],
                                                  weights), opset_imports=[helper.make_opsetid("", opset)])
    inferred = {info.name: info for info in onnx.shape_inference.infer_shapes(unknown).graph.value_info}
    rank = len(inferred[output].type.tensor_type.shape.dim) if output in inferred else 1 + len(input_shape)
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, [f"d{axis}" for axis in range(rank)])]
    model = helper.make_model(helper.make_graph(nodes, "test", inputs, outputs, weights),
                              opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def _weights(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _check_against_onnxruntime(model, input_shape, softmax=False):
    x = RNG.standard_normal((2,) + tuple(input_shape)).astype(np.float32)
    expected = run_onnxruntime(model, x)
    got = nbonnx.to_model(model).forward(x)
    if softmax:
        got = np.exp(got - got.max(axis=1, keepdims=True))
        got /= got.sum(axis=1, keepdims=True)
    assert got.shape == expected.shape
    assert relative_error(got, expected) <= 1e-4


CONV_CASES = [
    dict(),
    dict(strides=[2, 1], pads=[1, 2, 1, 2]),
    dict(dilations=[2, 2], pads=[2, 2, 2, 2]),
    dict(group=2),
    dict(auto_pad="SAME_UPPER"),
    dict(auto_pad="SAME_UPPER", strides=[2, 3]),
    dict(auto_pad="SAME_LOWER"),
    dict(auto_pad="VALID"),
]


@pytest.mark.parametrize("attributes", CONV_CASES, ids=[str(case) for case in CONV_CASES])
@pytest.mark.parametrize("bias", [True, False])
def test_conv(attributes, bias):
    groups = attributes.get("group", 1)
    inputs = ["x", "w"] + (["b"] if bias else [])
    initializers = [("w", _weights(6, 4 // groups, 3, 3))] + ([("b", _weights(6))] if bias else [])
    node = helper.make_node("Conv", inputs, ["y"], kernel_shape=[3, 3], **attributes)
    _check_against_onnxruntime(_graph([node], (4, 11, 10), initializers), (4, 11, 10))


def test_identity_is_skipped():
    nodes = [helper.make_node("Identity", ["x"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    model = _graph(nodes, (3, 4, 4))
    assert nbonnx.to_model(model).spec() == "relu"
    _check_against_onnxruntime(model, (3, 4, 4))


def test_padding_only_one_side_can_take_is_a_clear_error():
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2], name="tf_style")
    with pytest.raises(ValueError, match="tf_style .Conv.: asymmetric padding"):
        nbonnx.to_model(_graph([node], (4, 11, 10), [("w", _weights(6, 4, 3, 3))]))


def test_conv_same_padding_with_an_even_kernel():
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], auto_pad="SAME_UPPER")
    _check_against_onnxruntime(_graph([node], (3, 8, 9), [("w", _weights(5, 3, 4, 4)), ("b", _weights(5))]),
                               (3, 8, 9))


def test_conv_1d():
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2], pads=[1, 1], dilations=[2])
    _check_against_onnxruntime(_graph([node], (3, 17), [("w", _weights(5, 3, 3))]), (3, 17))


@pytest.mark.parametrize("trans_b, alpha, beta", [(1, 1.0, 1.0), (0, 1.0, 1.0), (1, 0.5, 2.0)])
def test_gemm(trans_b, alpha, beta):
    weight = _weights(7, 12) if trans_b else _weights(12, 7)
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=trans_b, alpha=alpha, beta=beta)
    _check_against_onnxruntime(_graph([node], (12,), [("w", weight), ("b", _weights(7))]), (12,))


def test_matmul_then_add_is_one_fully_connected_layer():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    model = _graph(nodes, (12,), [("w", _weights(12, 5)), ("b", _weights(5))])
    assert nbonnx.to_model(model).spec() == "fc5"
    _check_against_onnxruntime(model, (12,))


@pytest.mark.parametrize("op_type, attributes", [
    ("Relu", {}), ("Sigmoid", {}), ("Tanh", {}), ("LeakyRelu", {"alpha": 0.2}), ("LeakyRelu", {}),
    ("GlobalAveragePool", {}), ("Flatten", {}), ("Flatten", {"axis": 1}),
])
def test_parameterless_operator(op_type, attributes):
    _check_against_onnxruntime(_graph([helper.make_node(op_type, ["x"], ["y"], **attributes)], (3, 5, 6)), (3, 5, 6))


@pytest.mark.parametrize("op_type, attributes", [
    ("MaxPool", dict(kernel_shape=[2, 2], strides=[2, 2])),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)),
    ("MaxPool", dict(kernel_shape=[3, 2])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
])
def test_pooling(op_type, attributes):
    _check_against_onnxruntime(_graph([helper.make_node(op_type, ["x"], ["y"], **attributes)], (3, 11, 10)),
                               (3, 11, 10))


def test_flatten_shaped_reshape_dropout_and_softmax():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["flat"]),
             helper.make_node("Dropout", ["flat", "ratio"], ["dropped"]),
             helper.make_node("Gemm", ["dropped", "w", "b"], ["scores"], transB=1),
             helper.make_node("Softmax", ["scores"], ["y"], axis=1)]
    model = _graph(nodes, (2, 3, 4), [("shape", np.array([-1, 24])), ("ratio", np.array(0.25, np.float32)),
                                      ("w", _weights(5, 24)), ("b", _weights(5))])
    assert nbonnx.to_model(model).spec() == "flatten,dropout0.25,fc5"
    _check_against_onnxruntime(model, (2, 3, 4), softmax=True)


def test_constant_nodes_feed_weights():
    weight = helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(_weights(4, 3, 1, 1)))
    model = _graph([weight, helper.make_node("Conv", ["x", "w"], ["y"])], (3, 5, 5))
    _check_against_onnxruntime(model, (3, 5, 5))


# ---------------------------------------------------------------------- networks exported by PyTorch

def _torch_export(net, input_shape, path):
    torch = pytest.importorskip("torch")
    net.eval()
    with torch.no_grad():
        torch.onnx.export(net, (torch.zeros((1,) + input_shape),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "N"}})
    return onnx.load(str(path))


def test_network_exported_by_pytorch(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, stride=2), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
                        nn.Conv2d(8, 12, 3, padding="same", bias=False, groups=4), nn.LeakyReLU(0.1),
                        nn.AvgPool2d(3, 2, 1, count_include_pad=False), nn.Conv2d(12, 6, 1, dilation=1), nn.Tanh(),
                        nn.Flatten(), nn.Dropout(0.2), nn.Linear(6 * 4 * 4, 10), nn.Sigmoid(), nn.Linear(10, 4))
    model = _torch_export(net, (3, 29, 31), tmp_path / "net.onnx")
    x = torch.randn(3, 3, 29, 31)
    with torch.no_grad():
        expected = net(x).numpy()
    assert relative_error(nbonnx.load(tmp_path / "net.onnx").forward(x.numpy()), expected) <= 1e-4
    _check_against_onnxruntime(model, (3, 29, 31))


# ---------------------------------------------------------------------- what cannot be imported

def test_every_unsupported_node_is_listed_in_one_error():
    nodes = [helper.make_node("Conv", ["x", "w"], ["h1"], name="first_conv"),
             helper.make_node("Erf", ["h1"], ["h2"], name="odd_one"),
             helper.make_node("Conv", ["h2", "w2"], ["h3"], name="3d_style", pads=[1, 0, 0, 0]),
             helper.make_node("HardSwish", ["h3"], ["y"], name="another")]
    model = _graph(nodes, (3, 6, 6), [("w", _weights(4, 3, 3, 3)), ("w2", _weights(4, 4, 1, 1))])
    with pytest.raises(nbonnx.UnsupportedModel) as error:
        nbonnx.to_model(model)
    message = str(error.value)
    assert "odd_one (Erf)" in message and "operator not supported" in message
    assert "another (HardSwish)" in message and "3d_style (Conv)" in message and "asymmetric" in message
    assert "first_conv" not in message


def test_dynamic_spatial_shapes_are_a_clear_error():
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])]
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ValueError, match="fixed C, H, W"):
        nbonnx.to_model(model)


def test_computed_weights_are_a_clear_error():
    nodes = [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Conv", ["h", "h"], ["y"], name="self_conv")]
    with pytest.raises(ValueError, match="self_conv .Conv.: its weight must be a constant"):
        nbonnx.to_model(_graph(nodes, (1, 1, 1)))


@pytest.mark.parametrize("content", [b"", b"not an onnx file at all \x00\xff" * 10, None])
def test_damaged_files_are_a_clear_error(content, tmp_path):
    path = tmp_path / "bad.onnx"
    if content is None:  # a real model cut in half
        model = _graph([helper.make_node("Conv", ["x", "w"], ["y"])], (3, 5, 5), [("w", _weights(4, 3, 3, 3))])
        content = model.SerializeToString()[:150]
    path.write_bytes(content)
    with pytest.raises(ValueError) as error:
        nbonnx.load(path)
    assert "bad.onnx" in str(error.value)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nbonnx.load("/nonexistent/model.onnx")


def test_a_path_that_is_not_a_regular_file_is_named_as_such(tmp_path):
    """`nbconv import /dev/zero` (or a folder) said the path does not exist."""
    for path in (tmp_path, "/dev/null"):
        with pytest.raises(ValueError, match="not a regular file"):
            nbonnx.load(path)


def _torch_styles():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Basic(nn.Module):  # ResNet's basic block, with a projection when the shape changes
        def __init__(self, c, d, stride):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(c, d, 3, stride, 1, bias=False), nn.BatchNorm2d(d)
            self.conv2, self.bn2 = nn.Conv2d(d, d, 3, 1, 1, bias=False), nn.BatchNorm2d(d)
            self.downsample = None if stride == 1 and c == d else nn.Sequential(
                nn.Conv2d(c, d, 1, stride, bias=False), nn.BatchNorm2d(d))

        def forward(self, x):
            y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

    class Inception(nn.Module):  # GoogLeNet's module
        def __init__(self, c):
            super().__init__()
            self.b1 = nn.Conv2d(c, 4, 1)
            self.b2 = nn.Sequential(nn.Conv2d(c, 3, 1), nn.ReLU(), nn.Conv2d(3, 6, 3, padding=1))
            self.b3 = nn.Sequential(nn.Conv2d(c, 2, 1), nn.ReLU(), nn.Conv2d(2, 3, 5, padding=2))
            self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), nn.Conv2d(c, 3, 1))

        def forward(self, x):
            return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)

    resnet = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), Basic(8, 8, 1),
                           Basic(8, 16, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
    googlenet = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), Inception(8),  # (PyTorch writes LRN as 12 ops)
                              nn.MaxPool2d(3, 2, ceil_mode=True), Inception(16), nn.AdaptiveAvgPool2d((1, 1)),
                              nn.Flatten(), nn.Dropout(0.4), nn.Linear(16, 5))
    vgg = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                        nn.AdaptiveAvgPool2d((3, 3)), nn.Flatten(), nn.Linear(72, 16), nn.ReLU(), nn.Dropout(),
                        nn.Linear(16, 5))
    for net in (resnet, googlenet, vgg):  # batch norm with statistics worth exporting
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return {"resnet": resnet, "googlenet": googlenet, "vgg": vgg}


@pytest.mark.parametrize("style", ["resnet", "googlenet", "vgg"])
def test_pytorch_exports_of_the_lecture_styles(style, tmp_path):
    torch = pytest.importorskip("torch")
    net = _torch_styles()[style]
    model = _torch_export(net, (3, 24, 24), tmp_path / f"{style}.onnx")
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        expected = net.eval()(x).numpy()
    imported = nbonnx.load(tmp_path / f"{style}.onnx")
    assert relative_error(imported.forward(x.numpy()), expected) <= 1e-4
    _check_against_onnxruntime(model, (3, 24, 24))
    if style == "resnet":
        assert imported.spec().count("res[") == 2


@pytest.mark.parametrize("op_type, inputs, initializers, attributes", [
    ("BatchNormalization", ["x", "s", "b", "m", "v"], None, dict(epsilon=1e-3)),
    ("LRN", ["x"], [], dict(size=3, alpha=1e-3, beta=0.6, bias=1.5)),
    ("GlobalMaxPool", ["x"], [], {}),
    ("Clip", ["x", "low", "high"], [("low", np.array(0, np.float32)), ("high", np.array(6, np.float32))], {}),
])
def test_normalization_and_clip(op_type, inputs, initializers, attributes):
    if initializers is None:
        initializers = [("s", _weights(4)), ("b", _weights(4)), ("m", _weights(4)),
                        ("v", RNG.uniform(0.5, 2, 4).astype(np.float32))]
    model = _graph([helper.make_node(op_type, inputs, ["y"], **attributes)], (4, 5, 6), initializers)
    _check_against_onnxruntime(model, (4, 5, 6))


def test_residual_and_concatenation_built_with_onnx_helper():
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Add", ["r", "x"], ["sum"]),  # identity shortcut, listed second
             helper.make_node("Conv", ["sum", "w2"], ["left"]),
             helper.make_node("Concat", ["left", "sum"], ["y"], axis=1, name="keeps_its_input")]
    model = _graph(nodes, (3, 5, 5), [("w1", _weights(3, 3, 3, 3)), ("w2", _weights(2, 3, 1, 1))])
    with pytest.raises(ValueError, match="passes its input through unchanged"):
        nbonnx.to_model(model)
    nodes[-1] = helper.make_node("Conv", ["sum", "w3"], ["right"])
    nodes.append(helper.make_node("Concat", ["left", "right"], ["y"], axis=1))
    model = _graph(nodes, (3, 5, 5), [("w1", _weights(3, 3, 3, 3)), ("w2", _weights(2, 3, 1, 1)),
                                      ("w3", _weights(4, 3, 1, 1))])
    assert nbonnx.to_model(model).spec().startswith("res[")
    _check_against_onnxruntime(model, (3, 5, 5))


def test_a_sum_of_three_branches_is_a_clear_error():
    nodes = [helper.make_node("Conv", ["x", f"w{k}"], [f"b{k}"]) for k in range(3)]
    nodes.append(helper.make_node("Sum", ["b0", "b1", "b2"], ["y"], name="three_way"))
    with pytest.raises(ValueError, match="three_way.: a residual sum adds exactly two tensors"):
        nbonnx.to_model(_graph(nodes, (3, 5, 5), [(f"w{k}", _weights(2, 3, 1, 1)) for k in range(3)]))


def _external(tensor, location):
    """`tensor` with its bytes moved out of the model, to the file `location` names."""
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return tensor


@pytest.mark.parametrize("where", ["initializer", "constant"])
def test_tensors_stored_as_external_data_are_refused_not_read_from_the_working_directory(where, tmp_path,
                                                                                         monkeypatch):
    weight = _weights(2, 1, 3, 3)
    (tmp_path / "weights.bin").write_bytes(weight.tobytes())  # a file the importer must not read
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    tensor = _external(numpy_helper.from_array(np.zeros_like(weight), "w"), "weights.bin")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])]
    if where == "constant":
        nodes.insert(0, helper.make_node("Constant", [], ["w"], value=tensor))
    graph = helper.make_graph(nodes, "g", [x], [y], [tensor] if where == "initializer" else [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "models" / "external.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ValueError, match=r"external data are not read \(w\)"):
        nbonnx.to_model(model)
    with pytest.raises(ValueError, match=r"tensor w names external data 'weights.bin', which is not a file in the "
                                         r"model's folder"):
        nbonnx.load(path)


def _conv_with_external_weight(folder, location, weight, offset=None, length=None):
    """A one-convolution model in folder/model.onnx whose weight's bytes are at `location` (not written here)."""
    tensor = _external(numpy_helper.from_array(np.zeros_like(weight), "w"), location)
    for key, value in (("offset", offset), ("length", length)):
        if value is not None:
            entry = tensor.external_data.add()
            entry.key, entry.value = key, str(value)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])], "g", [x], [y],
                              [tensor])
    path = folder / "model.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


def test_external_data_beside_the_model_is_read_from_the_models_folder(tmp_path, monkeypatch):
    weight = _weights(2, 1, 3, 3)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "weights.bin").write_bytes(b"\0" * 8 + weight.tobytes())
    (tmp_path / "weights.bin").write_bytes(np.zeros_like(weight).tobytes())  # the working directory's: not read
    monkeypatch.chdir(tmp_path)
    path = _conv_with_external_weight(tmp_path / "models", "weights.bin", weight, offset=8, length=weight.nbytes)
    model = nbonnx.load(path)
    assert np.array_equal(model.state_dict()[next(iter(model.state_dict()))], weight)


@pytest.mark.parametrize("case", ["parent", "absolute", "link", "folder", "past_end"])
def test_external_data_outside_the_models_folder_or_past_its_file_is_refused(case, tmp_path):
    weight = _weights(2, 1, 3, 3)
    (tmp_path / "models").mkdir()
    (tmp_path / "outside.bin").write_bytes(weight.tobytes())
    (tmp_path / "models" / "inside.bin").write_bytes(weight.tobytes())
    (tmp_path / "models" / "sub").mkdir()
    location, length = {"parent": ("../outside.bin", None), "absolute": (str(tmp_path / "outside.bin"), None),
                        "link": ("link.bin", None), "folder": ("sub", None),
                        "past_end": ("inside.bin", weight.nbytes + 4)}[case]
    if case == "link":
        os.symlink(tmp_path / "outside.bin", tmp_path / "models" / "link.bin")
    path = _conv_with_external_weight(tmp_path / "models", location, weight, length=length)
    with pytest.raises(ValueError, match="not a file in the model's folder" if case != "past_end" else
                       "past the end of inside.bin"):
        nbonnx.load(path)


def test_a_model_saved_with_its_weights_in_a_file_beside_it_imports(tmp_path):
    """The layout PyTorch's exporter writes by default (dynamo, external_data=True): MODEL.onnx and its
    tensors in MODEL.onnx.data beside it; made here with onnx's own writer from a PyTorch export."""
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 5)).eval()
    x = torch.randn(1, 3, 8, 8)
    whole = tmp_path / "whole.onnx"
    torch.onnx.export(net, (x,), str(whole), dynamo=False)
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / "net.onnx"
    onnx.save_model(onnx.load(str(whole)), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="net.onnx.data", size_threshold=0)
    assert (tmp_path / "models" / "net.onnx.data").stat().st_size > 0
    model = nbonnx.load(path)
    with torch.no_grad():
        expected = net(x).numpy()
    assert np.allclose(model.forward(x.numpy()), expected, rtol=1e-4, atol=1e-5)


def test_clip_bounds_of_one_element_are_read_and_of_several_a_clear_error():
    nodes = [helper.make_node("Clip", ["x", "low", "high"], ["y"], name="clip_pair")]
    one = [("low", np.array([0], np.float32)), ("high", np.array([[6]], np.float32))]
    assert nbonnx.to_model(_graph(nodes, (2, 4, 4), one)).spec() == "relu6"
    several = [("low", np.array([0, 0], np.float32)), ("high", np.array(6, np.float32))]
    with pytest.raises(ValueError) as error:
        nbonnx.to_model(_graph(nodes, (2, 4, 4), several))
    assert "clip_pair" in str(error.value) and "minimum must be one number" in str(error.value)


def test_weights_holding_nan_or_infinity_are_a_clear_error():
    weight = _weights(2, 3, 3, 3)
    weight[1, 2, 0, 0] = np.inf
    model = _graph([helper.make_node("Conv", ["x", "w"], ["y"])], (3, 5, 5), [("w", weight)])
    with pytest.raises(ValueError, match=r"the weights of conv1\.weight hold NaN or infinity"):
        nbonnx.to_model(model)


def _unsupported_message(model):
    with pytest.raises(nbonnx.UnsupportedModel) as error:
        nbonnx.to_model(model)
    return str(error.value)


@pytest.mark.parametrize("op_type", ["Gemm", "MatMul"])
@pytest.mark.parametrize("shape", [(1, 7), (1, 1), (), (1,)])
def test_a_bias_of_one_row_or_one_value_is_a_fully_connected_layers(op_type, shape):
    bias = _weights(*shape) if shape else np.float32(0.5)
    if op_type == "Gemm":
        nodes, weight = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], _weights(7, 12)
    else:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
        weight = _weights(12, 7)
    model = _graph(nodes, (12,), [("w", weight), ("b", bias)])
    assert nbonnx.to_model(model).spec() == "fc7"
    _check_against_onnxruntime(model, (12,))


@pytest.mark.parametrize("op_type, shape", [("Gemm", (3,)), ("Gemm", (7, 1)), ("Gemm", (2, 7)), ("MatMul", (2, 7)),
                                            ("MatMul", (1, 1, 7))])
def test_a_bias_that_is_not_one_value_per_feature_is_a_clear_error(op_type, shape):
    """Biases onnx's checks let through (a wrong count, one per sample, a third axis) that no layer has."""
    if op_type == "Gemm":
        nodes, weight = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="fc")], _weights(7, 12)
    else:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"), helper.make_node("Add", ["h", "b"], ["y"])]
        weight = _weights(12, 7)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 12])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["d"] * max(2, len(shape)))]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, [
        numpy_helper.from_array(weight, "w"), numpy_helper.from_array(_weights(*shape), "b")]),
        opset_imports=[helper.make_opsetid("", 17)])
    message = _unsupported_message(model)
    assert f"fc ({op_type})" in message and f"its bias 'b' of shape {list(shape)}" in message


def test_a_conv_whose_kernel_shape_disagrees_with_its_weight_is_a_clear_error():
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="odd_kernel", kernel_shape=[2, 2])
    message = _unsupported_message(_graph([node], (3, 6, 6), [("w", _weights(4, 3, 3, 3))]))
    assert "odd_kernel (Conv): kernel_shape=[2, 2] disagrees with its weight's shape [4, 3, 3, 3]" in message


def test_integer_weights_are_a_clear_error():
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="int_conv")
    model = _graph([node], (3, 6, 6), [("w", np.ones((4, 3, 3, 3), np.int32))])
    assert "int_conv (Conv): its weight 'w' must be a floating-point tensor, got int32" in _unsupported_message(model)


def test_an_initializer_whose_dims_disagree_with_its_data_is_a_clear_error():
    model = _graph([helper.make_node("Conv", ["x", "w"], ["y"])], (3, 6, 6), [("w", _weights(4, 3, 3, 3))])
    model.graph.initializer[0].dims[:] = [4, 3, 3, 2]  # fewer values than the data holds
    assert "initializer 'w' (tensor w) of dims [4, 3, 3, 2] cannot be read" in _unsupported_message(model)


def test_adding_a_tensor_to_itself_is_a_clear_error():
    nodes = [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Add", ["h", "h"], ["y"], name="twice")]
    assert "Add node 'twice' adds a tensor to itself" in _unsupported_message(_graph(nodes, (3, 4, 4)))


def test_an_even_local_response_norm_window_is_refused_not_read_as_nbconvs():
    """ONNX sums channels [c - (size - 1) // 2, c + size // 2]; nbconv and PyTorch [c - size // 2, c + (size - 1) // 2]:
    for an even size an import would compute another function."""
    node = helper.make_node("LRN", ["x"], ["y"], name="even", size=4)
    assert "even (LRN): size=4: ONNX centres an even window" in _unsupported_message(_graph([node], (6, 3, 3)))
