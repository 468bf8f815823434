"""Gradient ascent on the input, the pictures, and `nbconv visualize`."""
import struct
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from nbconv import checkpoint, models, visualize
from nbconv_cli.main import app

SPEC = "conv4k3,relu,maxpool2,conv6k3,relu,fc10"


@pytest.fixture
def small_checkpoint(tmp_path):
    model = models.build(SPEC, input_shape=(1, 12, 12), seed=2)
    history = [{"epoch": e, "loss": 1.0 / e, "accuracy": 0.5 + 0.1 * e, "test_accuracy": 0.45 + 0.1 * e}
               for e in (1, 2, 3)]
    path = str(tmp_path / "small.npz")
    checkpoint.save(path, model, (1, 12, 12), config={"model": SPEC}, history=history)
    return path


def _png_size(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("layer,channels", [("conv2", [0, 3, 5]), ("relu1", [1]), ("fc1", [2, 7])])
def test_objective_rises_over_the_first_steps(layer, channels):
    model = models.build(SPEC, input_shape=(1, 12, 12), seed=2)
    result = visualize.maximize(model, layer, channels, input_shape=(1, 12, 12), steps=8, lr=0.05, jitter=0)
    assert result.images.shape == (len(channels), 1, 12, 12)
    assert result.images.min() >= 0 and result.images.max() <= 1
    assert np.all(result.objectives[-1] > result.objectives[0])
    assert np.all(np.diff(result.objectives[:4], axis=0) > 0)


def test_class_images_raise_their_class_score():
    model = models.build(SPEC, input_shape=(1, 12, 12), seed=2)
    result = visualize.class_images(model, input_shape=(1, 12, 12), steps=6, jitter=1, seed=1)
    assert result.images.shape == (10, 1, 12, 12)
    assert np.all(result.objectives[-1] > result.objectives[0])


def test_bad_layer_or_channel_lists_the_valid_ones():
    model = models.build(SPEC, input_shape=(1, 12, 12))
    with pytest.raises(ValueError, match="valid layers: conv1, relu1, pool1, conv2, relu2, fc1"):
        visualize.maximize(model, "conv9", [0], input_shape=(1, 12, 12))
    with pytest.raises(ValueError, match=r"layer 'conv2' has 6 channels, valid 0..5"):
        visualize.maximize(model, "conv2", [6], input_shape=(1, 12, 12))


@pytest.mark.parametrize("spec,input_shape", [("conv1d3k3,relu,fc4", (2, 9)), ("fc8,relu,fc4", (5,))])
def test_a_model_that_takes_no_images_is_refused_naming_input_shape(spec, input_shape):
    """maximize and class_images on a (C, W) model failed in numpy ('axis 3 is out of bounds for array of dimension
    3'), on a (features,) model in per_channel; now a ValueError naming input_shape."""
    model = models.build(spec, input_shape=input_shape)
    with pytest.raises(ValueError, match=r"input_shape must be an image's \(C, H, W\)"):
        visualize.maximize(model, "relu1", [0], input_shape=input_shape, steps=2)
    with pytest.raises(ValueError, match=r"input_shape must be an image's \(C, H, W\)"):
        visualize.class_images(model, input_shape=input_shape, steps=2)


@pytest.mark.parametrize("args,size", [
    (["filters", "--scale", "2"], (2 + 2 * (3 * 8 + 2), 2 + 2 * (3 * 8 + 2 + 12))),
    (["history"], (720, 320)),
    (["maximize", "--layer", "conv2", "--channels", "0-3", "--steps", "5", "--scale", "3"],
     (2 + 2 * (12 * 3 + 2), 2 + 2 * (12 * 3 + 2 + 12))),
    (["class", "--channels", "1,4", "--steps", "3", "--scale", "1"], (2 + 2 * 14, 2 + 1 * (14 + 12))),
])
def test_cli_writes_pngs_of_the_stated_size(small_checkpoint, tmp_path, args, size):
    out = str(tmp_path / "picture.png")
    result = CliRunner().invoke(app, ["visualize", small_checkpoint, *args, "--out", out])
    assert result.exit_code == 0, result.output
    assert f"{size[0]}x{size[1]}" in result.output
    assert _png_size(out) == size


@pytest.mark.parametrize("what", ["filters", "history"])
def test_cli_writes_the_format_the_extension_names_and_refuses_others_before_working(small_checkpoint, tmp_path,
                                                                                     what):
    """--out x.jpg was a PNG named .jpg, x.txt too; a dream to d.txt failed only after dreaming."""
    PIL = pytest.importorskip("PIL.Image")
    for name, expected in (("x.jpg", "JPEG"), ("x.png", "PNG"), ("x", "PNG")):
        result = CliRunner().invoke(app, ["visualize", small_checkpoint, what, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert PIL.open(tmp_path / name).format == expected
    result = CliRunner().invoke(app, ["visualize", small_checkpoint, what, "--out", str(tmp_path / "x.txt")])
    assert result.exit_code == 2 and "unknown image extension '.txt'" in result.output
    assert not (tmp_path / "x.txt").exists()


def test_cli_explains_bad_layers_and_channels(small_checkpoint, tmp_path):
    out = str(tmp_path / "x.png")
    result = CliRunner().invoke(app, ["visualize", small_checkpoint, "maximize", "--layer", "nope", "--out", out])
    assert result.exit_code == 1 and "valid layers: conv1" in result.output
    result = CliRunner().invoke(app, ["visualize", small_checkpoint, "filters", "--channels", "9", "--out", out])
    assert result.exit_code == 1 and "valid 0..3" in result.output


def test_without_pillow_the_cli_names_the_extra(small_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    result = CliRunner().invoke(app, ["visualize", small_checkpoint, "history", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "nbconv[viz]" in result.output


def test_colour_models_ascend_with_per_channel_normalisation_and_draw_in_colour():
    pytest.importorskip("PIL")
    model = models.build("conv4k3,relu,maxpool2,fc3", input_shape=(3, 10, 10), seed=1)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    result = visualize.class_images(model, input_shape=(3, 10, 10), mean=mean, std=std, steps=5, jitter=1)
    assert result.images.shape == (3, 3, 10, 10) and np.all(result.objectives[-1] > result.objectives[0])
    with pytest.raises(ValueError, match="3 values"):
        visualize.maximize(model, "conv1", [0], input_shape=(3, 10, 10), mean=(0.5, 0.5), std=std)
    tiles = np.zeros((2, 3, 4, 4))
    tiles[0, 0] = 1.0  # all red
    tiles[1, 2, :2] = 1.0  # blue on top, black below
    image = visualize.grid_image(tiles, columns=2, scale=1, padding=0)
    assert image.mode == "RGB" and image.size == (8, 4)
    assert image.getpixel((0, 0)) == (255, 0, 0) and image.getpixel((4, 0)) == (0, 0, 255)
    assert image.getpixel((4, 3)) == (0, 0, 0)
    assert visualize.grid_image(tiles[:, :1], scale=1, padding=0).mode == "L"


@pytest.mark.parametrize("options, error, words", [
    (dict(std=0.0), ValueError, "std must hold finite numbers > 0"),
    (dict(std=[1.0, -1.0, 1.0]), ValueError, "std must hold finite numbers > 0"),
    (dict(mean=float("nan")), ValueError, "mean must hold finite numbers"),
    (dict(mean="grey"), TypeError, "mean must be a number"),
    (dict(steps=-1), ValueError, "steps must be >= 0"),
    (dict(steps=2.5), TypeError, "steps must be an int"),
    (dict(lr=float("nan")), ValueError, "lr must be a finite number"),
    (dict(jitter=-1), ValueError, "jitter must be >= 0"),
    (dict(l2_decay=1.0), ValueError, "l2_decay must be a finite number in [0, 1)"),
])
def test_ascent_settings_that_cannot_work_are_errors_naming_them(options, error, words):
    model = models.build("conv4k3,relu,gap,fc3", input_shape=(3, 8, 8), num_classes=3)
    with pytest.raises(error, match=words.replace("[", r"\[").replace(")", r"\)")):
        visualize.maximize(model, "conv1", [0], input_shape=(3, 8, 8), **{"steps": 2, **options})
