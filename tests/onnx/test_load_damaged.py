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
    weights = {"w": rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32),
               "fw": rng.standard_normal((3, 36)).astype(np.float32), "fb": rng.standard_normal(3).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *INPUT_SHAPE])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
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
    with pytest.raises(ValueError, match=re.escape(f"{node} {name!r} must be floating point")) as caught:
        _load(model, tmp_path)
    assert "damaged.onnx" in str(caught.value)
