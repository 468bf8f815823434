"""`nbconv export` and `nbconv import` round trip through checkpoints."""
import numpy as np
import pytest
from click.testing import CliRunner

from nbconv import checkpoint, models
from nbconv_cli.main import app

pytest.importorskip("onnx", reason="the onnx extra is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")


def test_export_then_import_gives_the_same_model(tmp_path):
    model = models.build("conv4k3p1,relu,maxpool2,fc10", (1, 12, 12), seed=2)
    saved = str(tmp_path / "model.npz")
    checkpoint.save(saved, model, (1, 12, 12))
    exported, imported = str(tmp_path / "model.onnx"), str(tmp_path / "back.npz")
    runner = CliRunner()
    result = runner.invoke(app, ["export", saved, exported])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["import", exported, "--out", imported])
    assert result.exit_code == 0, result.output
    back = checkpoint.load(imported)
    x = np.random.default_rng(0).standard_normal((2, 1, 12, 12)).astype(np.float32)
    assert back.input_shape == (1, 12, 12)
    np.testing.assert_array_equal(back.model.eval().forward(x), model.eval().forward(x))


def test_import_of_a_damaged_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    result = CliRunner().invoke(app, ["import", str(bad), "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 1 and "Error:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.npz").exists()


def test_import_of_a_network_without_parameters_writes_no_checkpoint_load_would_refuse(tmp_path):
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 5, 5])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1, 5, 5])])
    path = tmp_path / "relu.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    result = CliRunner().invoke(app, ["import", str(path), "--out", str(tmp_path / "relu.npz")])
    assert result.exit_code == 1 and "has no parameters" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "relu.npz").exists()


def test_predict_on_an_exported_file_normalises_and_names_classes_as_on_its_checkpoint(tmp_path):
    """The file keeps the checkpoint's mean, std and class names: without them predict used 0.5/0.5 and class
    numbers, other scores than the checkpoint's for the same network."""
    pytest.importorskip("PIL.Image", reason="Pillow (the viz extra) is not installed")
    from nbconv import images
    model = models.build("conv4k3,relu,gap,flatten,fc3", (3, 16, 16), seed=0)
    config = {"mean": [0.9, 0.1, 0.3], "std": [0.05, 0.5, 0.2], "class_names": ["cat", "dog", "bird"]}
    saved, exported, imported = (str(tmp_path / name) for name in ("m.npz", "m.onnx", "back.npz"))
    checkpoint.save(saved, model, (3, 16, 16), config=config)
    images.write_image(np.random.default_rng(3).uniform(size=(3, 20, 18)), tmp_path / "a.png")
    runner = CliRunner()
    assert runner.invoke(app, ["export", saved, exported]).exit_code == 0
    assert runner.invoke(app, ["import", exported, "--out", imported]).exit_code == 0
    outputs = [runner.invoke(app, ["predict", path, str(tmp_path / "a.png"), "--top", "3"]) for path in
               (saved, exported, imported)]
    assert all(result.exit_code == 0 for result in outputs), [result.output for result in outputs]
    assert outputs[0].output == outputs[1].output == outputs[2].output and "cat" in outputs[0].output
    assert checkpoint.load(imported).config["class_names"] == config["class_names"]


@pytest.mark.parametrize("key, value, words", [("nbconv.std", "[0.5, 0.0, 0.5]", "config 'std' must be"),
                                               ("nbconv.class_names", "not json", "'nbconv.class_names' is not JSON")])
def test_damaged_preprocessing_metadata_is_a_clear_error(key, value, words, tmp_path):
    import onnx
    from nbconv import onnx as nbonnx
    proto = nbonnx.to_onnx(models.build("fc3", (4,), seed=0), (4,))
    onnx.helper.set_model_props(proto, {key: value})
    onnx.save(proto, str(tmp_path / "m.onnx"))
    result = CliRunner().invoke(app, ["import", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "m.npz")])
    assert result.exit_code == 1 and words in result.output and "Traceback" not in result.output
