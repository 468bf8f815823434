"""nbconv -> ONNX: every model runs in onnxruntime with nbconv's outputs, and re-imports to them."""
import os

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
    ("res[conv8k3p1nobias,bn,relu,conv8k3p1nobias,bn],relu,res[conv8k3s2p1,bneps0.001,relu6|conv8k1s2,bn],"
     "cat[conv4k1|conv2k1,relu,conv4k3p1|maxpool3s1p1,conv2k1|res[conv8k1]],lrn3a0.001b0.5k2,adaptiveavgpool2,"
     "flatten,bn1d,fc5", (8, 8, 8)),
    ("conv4k3,adaptiveavgpool5x3,adaptivemaxpool1,flatten,fc3", (2, 9, 8)),
    ("conv4k3,adaptiveavgpool3,adaptivemaxpool3,flatten,fc3", (2, 9, 9)),
]

# the lecture's architectures at the smallest inputs their topologies admit (the parameter counts do not
# depend on it: the classifier sits behind adaptive pooling). vgg11 and vgg16_bn repeat the layers of
# vgg11_bn and vgg16 with 130M+ parameters each: NBCONV_TEST_ALL_ARCHITECTURES=1 adds them.
ARCHITECTURES = [("alexnet", (3, 63, 63)), ("vgg11_bn", (3, 32, 32)), ("vgg16", (3, 32, 32)),
                 ("googlenet", (3, 32, 32)), ("resnet18", (3, 32, 32)), ("resnet34", (3, 32, 32)),
                 ("resnet50", (3, 32, 32)), ("resnet20", (3, 32, 32)), ("resnet56", (3, 32, 32))]
if os.environ.get("NBCONV_TEST_ALL_ARCHITECTURES"):
    ARCHITECTURES += [("vgg11", (3, 32, 32)), ("vgg16_bn", (3, 32, 32))]


def _randomize_statistics(model, rng):
    """Batch-norm running statistics away from 0 and 1, so that the export of each one is checked."""
    for name, buffer in model.named_buffers().items():
        if name.endswith("running_mean"):
            buffer[...] = rng.standard_normal(buffer.shape) * 0.1
        elif name.endswith("running_var"):
            buffer[...] = rng.uniform(0.5, 2.0, buffer.shape)


@pytest.mark.parametrize("spec, shape", SPECS)
def test_exported_graph_gives_nbconv_outputs_and_reimports(spec, shape, tmp_path):
    model = models.build(spec, shape, seed=1).eval()
    _randomize_statistics(model, np.random.default_rng(1))
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


@pytest.mark.parametrize("name, shape", ARCHITECTURES, ids=[name for name, _ in ARCHITECTURES])
def test_architecture_exports_and_reimports(name, shape, tmp_path):
    model = models.build(name, shape, seed=3, num_classes=10).eval()
    _randomize_statistics(model, np.random.default_rng(1))
    proto = nbonnx.to_onnx(model, shape)
    x = np.random.default_rng(0).standard_normal((2,) + shape).astype(np.float32)
    expected = model.forward(x)
    assert relative_error(run_onnxruntime(proto, x), expected) <= 1e-4
    again = nbonnx.to_model(proto)
    assert relative_error(again.forward(x), expected) <= 1e-5


def test_export_leaves_the_training_mode_as_it_was():
    model = models.build("conv4k3,relu,dropout0.5,fc3", (1, 8, 8), seed=0)
    nbonnx.to_onnx(model, (1, 8, 8))
    assert model.training and all(layer.training for layer in model.layers)


def test_uneven_adaptive_max_pooling_has_no_onnx_form():
    model = models.build("adaptivemaxpool3", (2, 7, 7), seed=0)
    with pytest.raises(ValueError, match="pool1 .adaptivemaxpool3.: adaptive max pooling of a 7x7 plane"):
        nbonnx.to_onnx(model, (2, 7, 7))


def test_an_even_local_response_norm_window_has_no_onnx_form():
    model = models.build("lrn4", (6, 3, 3), seed=0)
    with pytest.raises(ValueError, match="lrn1 .lrn4.: ONNX's LRN centres an even window one channel higher"):
        nbonnx.to_onnx(model, (6, 3, 3))


def test_bad_opset_is_a_clear_error():
    model = models.build("fc3", (4,), seed=0)
    with pytest.raises(ValueError, match="opset"):
        nbonnx.to_onnx(model, (4,), opset=9)


def test_an_opset_newer_than_onnx_knows_is_a_clear_error_and_writes_nothing(tmp_path):
    model = models.build("fc3", (4,), seed=0)
    newest = onnx.defs.onnx_opset_version()
    with pytest.raises(ValueError, match=rf"opset must be an int in \[17, {newest}\].*got {newest + 1}"):
        nbonnx.save(model, tmp_path / "m.onnx", (4,), opset=newest + 1)  # onnxruntime refuses such a file
    assert not (tmp_path / "m.onnx").exists()
    assert nbonnx.to_onnx(model, (4,), opset=np.int64(newest)).opset_import[0].version == newest


@pytest.mark.parametrize("shape, error, words", [
    ((3, 8.5, 8), TypeError, "input_shape must be an int"), ((3, 0, 8), ValueError, "input_shape must be >= 1"),
    ((3, 8), ValueError, "does not fit"), ("3x8x8", ValueError, "input_shape must be"),
    ((1, 3, 8, 8), ValueError, "without the batch axis"),
])
def test_bad_input_shapes_are_errors_naming_them(shape, error, words, tmp_path):
    model = models.build("conv4k3,relu,gap,fc3", input_shape=(3, 8, 8), num_classes=3)
    with pytest.raises(error, match=words):
        nbonnx.save(model, tmp_path / "m.onnx", shape)
    assert not (tmp_path / "m.onnx").exists()
