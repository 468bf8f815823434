"""ONNX files with one field damaged after parsing (onnx.checker passes them): each is one ValueError naming the
file, or a model that computes what onnxruntime computes; never garbage weights or a numpy traceback."""
import re

import numpy as np
import pytest

from nbconv import onnx as nbonnx
from tests import fuzzing

from .conftest import onnx, relative_error, run_onnxruntime

helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto
INPUT_SHAPE = (2, 5, 5)


def small_model():
    """Conv (with bias), Relu, Flatten, Gemm: a ModelProto for inputs (N, 2, 5, 5)."""
    rng = np.random.default_rng(3)
    shapes = {"w": (4, 2, 3, 3), "b": (4,), "fw": (3, 36), "fb": (3,)}
    weights = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *INPUT_SHAPE])]
    graph = helper.make_graph(nodes, "small", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(value, name) for name, value in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _initializer(model, name):
    return next(tensor for tensor in model.graph.initializer if tensor.name == name)


def _load(model, tmp_path):
    path = tmp_path / "damaged.onnx"
    path.write_bytes(model.SerializeToString())
    return nbonnx.load(str(path)), str(path)


def test_the_undamaged_model_matches_onnxruntime(tmp_path):
    model = small_model()
    loaded, _ = _load(model, tmp_path)
    x = np.random.default_rng(0).standard_normal((2, *INPUT_SHAPE)).astype(np.float32)
    assert relative_error(loaded.forward(x), run_onnxruntime(model, x)) <= 1e-5


@pytest.mark.parametrize("damage", ["short_raw_data", "long_raw_data", "unknown_data_type", "dims_past_data"])
def test_a_tensor_whose_data_does_not_fill_its_dims_is_one_error_naming_file_and_tensor(damage, tmp_path):
    """numpy's 'cannot reshape array of size 35 into shape (4,2,3,3)' or onnx's KeyError came out as they were,
    without the file's name."""
    model = small_model()
    weight = _initializer(model, "w")
    if damage == "short_raw_data":
        weight.raw_data = weight.raw_data[:-4]
    elif damage == "long_raw_data":
        weight.raw_data = weight.raw_data + b"\0\0"
    elif damage == "unknown_data_type":
        weight.data_type = 99
    else:
        weight.dims[0] = 2 ** 40
    with pytest.raises(ValueError) as caught:
        _load(model, tmp_path)
    assert "damaged.onnx" in str(caught.value) and re.search(r"tensor (name: )?w\b", str(caught.value))



@pytest.mark.parametrize("damage", ["int32_weight", "uint32_bias"])
def test_integer_weights_are_refused_not_read_as_other_numbers(damage, tmp_path):
    """An int32 or uint32 weight of float32's size loaded its bits as other numbers: a model computing garbage
    (onnxruntime refuses such a graph)."""
    model = small_model()
    name, node = ("w", "conv (Conv): its weight") if damage == "int32_weight" else ("fb", "fc (Gemm): its bias")
    _initializer(model, name).data_type = TensorProto.INT32 if damage == "int32_weight" else TensorProto.UINT32
    with pytest.raises(ValueError, match=re.escape(f"{node} {name!r} must be a floating-point tensor")) as caught:
        _load(model, tmp_path)
    assert "damaged.onnx" in str(caught.value)


@pytest.mark.parametrize("damage, expected", [
    ("int32_bias_after_matmul", "the bias of layer fc1 .* the file gives a int32"),
    ("input_channels", "the weight of layer conv1 .* must be 108 floating-point numbers"),
    ("negative_group", "its nodes do not fit together as a model"),
    ("huge_input", "its nodes do not fit together as a model.*at most 8 GiB"),
    ("gemm_bias_dims", r"fc \(Gemm\): its bias 'fb' of shape \[3, 1\] is not one value per output feature"),
])
def test_weights_that_do_not_fit_their_layer_are_one_error_naming_the_file(damage, expected, tmp_path):
    """Weights of another layer's size, a layer the model builder refuses or a bias numpy cannot broadcast raised
    numpy's or the builder's ValueError without the file's name; an int32 bias after a MatMul (read straight
    from the constants) loaded its bits as other numbers."""
    model = small_model()
    if damage == "input_channels":
        model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 3
    elif damage == "int32_bias_after_matmul":  # MatMul + Add of a constant: one fully connected layer
        model.graph.node[-1].CopyFrom(helper.make_node("MatMul", ["f", "fw"], ["p"], name="fc"))
        model.graph.node.append(helper.make_node("Add", ["p", "fb"], ["y"]))
        fw = _initializer(model, "fw")
        fw.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(fw).T.copy(), "fw"))
        _initializer(model, "fb").data_type = TensorProto.INT32
    elif damage == "negative_group":
        model.graph.node[0].attribute.append(helper.make_attribute("group", -5))
    elif damage == "huge_input":
        model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 2 ** 31
    else:
        _initializer(model, "fb").dims.append(1)
    with pytest.raises(ValueError, match=expected) as caught:
        _load(model, tmp_path)
    assert "damaged.onnx" in str(caught.value)


@pytest.mark.parametrize("damage", ["future_opset", "custom_domain"])
def test_operators_of_another_set_are_refused_not_read_as_standard_ones(damage, tmp_path):
    """A graph stamped with operator set 99, or whose Relu belongs to a custom domain, loaded as if its nodes were
    today's standard operators (onnxruntime refuses both)."""
    model = small_model()
    if damage == "future_opset":
        model.opset_import[0].version = 99
        expected = "operator set 99"
    else:
        model.graph.node[1].domain = "custom.ops"
        model.opset_import.append(helper.make_opsetid("custom.ops", 1))
        expected = "domain 'custom.ops'"
    with pytest.raises(nbonnx.UnsupportedModel, match=expected) as caught:
        _load(model, tmp_path)
    assert "damaged.onnx" in str(caught.value)


FUZZ_SPEC = "conv4k3p1,bn,relu,maxpool2,conv6k3s2p1,relu,flatten,fc10"
FUZZ_INPUT = (1, 8, 8)


@pytest.fixture(scope="module")
def exported():
    """The bytes of a small model with batch normalization exported by nbconv."""
    from nbconv import models
    return nbonnx.to_onnx(models.build(FUZZ_SPEC, FUZZ_INPUT, seed=1), FUZZ_INPUT).SerializeToString()


def _sane_against_onnxruntime(path):
    """sane(model) for fuzzing.outcome: finite weights, and the scores onnxruntime computes from the same file
    (where it loads the file and leaves the batch size free)."""
    def sane(model):
        bad = [key for key, value in model.state_dict().items() if not np.isfinite(value).all()]
        if bad:
            return f"non-finite weights {bad}"
        x = np.random.default_rng(0).standard_normal((2,) + tuple(model.input_shape)).astype(np.float32)
        got = model.forward(x)
        try:
            proto = onnx.load(path)
            batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
            if batch.HasField("dim_value"):
                return None  # nbconv takes any batch size, onnxruntime only the one declared
            expected = run_onnxruntime(proto, x)
        except Exception as error:  # noqa: BLE001 - onnxruntime refusing what nbconv loaded
            return f"onnxruntime refuses what nbconv loaded: {type(error).__name__}: {str(error)[:200]}"
        if got.shape != expected.shape or relative_error(got, expected) > 1e-4:
            return f"scores differ from onnxruntime's ({got.shape} vs {expected.shape})"
        return None
    return sane


def test_mutated_exports_load_as_onnxruntime_reads_them_or_are_one_error(exported, tmp_path):
    rng = np.random.default_rng(20261127)
    defects, outcomes = [], {"ok": 0, "own": 0, "defect": 0}
    for index in range(80):
        label, data = (fuzzing.onnx_field_mutant(rng, exported) if index % 4 else fuzzing.mutate_bytes(rng, exported))
        path = str(tmp_path / f"mutant{index}.onnx")
        with open(path, "wb") as handle:
            handle.write(data)
        kind, detail = fuzzing.outcome(nbonnx.load, path, (ValueError,), _sane_against_onnxruntime(path))
        outcomes[kind] += 1
        if kind == "defect":
            defects.append(f"#{index} {label}: {detail}")
    assert not defects, "\n".join(defects)
    assert outcomes["own"] >= 40 and outcomes["ok"] >= 1, outcomes


def test_residual_sums_nested_past_the_recursion_limit_are_one_error(tmp_path):
    """Residual sums nested 1,500 deep (y = x + relu(x + relu(...))) ended in Python's RecursionError."""
    depth, nodes, tensor = 1500, [], "x"
    for level in range(depth):
        nodes.append(helper.make_node("Relu", [tensor], [f"body{level}"]))
        tensor = f"body{level}"
    for level in reversed(range(depth)):
        shortcut = "x" if level == 0 else f"body{level - 1}"
        nodes.append(helper.make_node("Add", [tensor, shortcut], [f"sum{level}" if level else "y"]))
        tensor = f"sum{level}"
    value_info = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 2, 4, 4]) for name in ("x", "y")]
    model = helper.make_model(helper.make_graph(nodes, "nested", value_info[:1], value_info[1:]),
                              opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(nbonnx.UnsupportedModel, match="nest deeper than nbconv follows") as caught:
        _load(model, tmp_path)
    assert "damaged.onnx" in str(caught.value)
