"""nbconv -> ONNX: every model runs in onnxruntime with nbconv's outputs, and re-imports to them."""
import numpy as np
import pytest

from nbconv import models
from nbconv import onnx as nbonnx

from .conftest import onnx, relative_error, run_onnxruntime

SPECS = [
    ("lenet5", (1, 28, 28)),
    ("lenet1", (1, 28, 28)),
    ("pattern:n=2,m=2,k=1", (1, 28, 28)),
    ("[[conv16k3p1,relu]*2,maxpool2]*2,[fc64,relu]*1,fc10", (1, 28, 28)),
    ("conv8k5,relu,local8k3,relu,maxpool2,fc10", (1, 28, 28)),
    ("conv6k3psame,lrelu0.2,avgpool3s2p1ceilnopad,conv4k2d2g2,sigmoid,gap,flatten,dropout0.3,fc5", (3, 17, 15)),
    ("conv4k4psame,tanh,maxpool3s2p1ceil,conv6k2x3s2x1p1x0nobias,relu,flatten,fc3", (2, 13, 12)),
    ("conv1d6k3s2p1,tanh,conv1d4k5psame,relu,flatten,fc4", (2, 19)),
]


@pytest.mark.parametrize("spec, shape", SPECS)
def test_exported_graph_gives_nbconv_outputs_and_reimports(spec, shape, tmp_path):
    model = models.build(spec, shape, seed=1).eval()
    path = tmp_path / "model.onnx"
    nbonnx.save(model, path, shape)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    x = np.random.default_rng(0).standard_normal((3,) + shape).astype(np.float32)
    expected = model.forward(x)
    assert relative_error(run_onnxruntime(proto, x), expected) <= 1e-4
    again = nbonnx.load(path)
    assert again.input_shape == shape
    assert relative_error(again.forward(x), expected) <= 1e-6
    assert not again.training


def test_export_leaves_the_training_mode_as_it_was():
    model = models.build("conv4k3,relu,dropout0.5,fc3", (1, 8, 8), seed=0)
    nbonnx.to_onnx(model, (1, 8, 8))
    assert model.training and all(layer.training for layer in model.layers)


def test_bad_opset_is_a_clear_error():
    model = models.build("fc3", (4,), seed=0)
    with pytest.raises(ValueError, match="opset"):
        nbonnx.to_onnx(model, (4,), opset=9)
