"""Deep Dream: the layer prefix, the ascent raising the layer's activation, octaves, zoomed frames."""
import numpy as np
import pytest

from nbconv import dream, models
from nbconv.nn import prefix_model


def _model():
    return models.build("conv6k3p1,relu,maxpool2,res[conv6k3p1,relu,conv6k3p1],relu,cat[conv3k1|conv2k1],"
                        "gap,flatten,fc4", (3, 16, 16), seed=1)


def test_prefix_runs_the_model_up_to_a_layer():
    model = _model().eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(prefix_model(model, "relu1").forward(x), model.forward(x, until="relu1"))
    np.testing.assert_array_equal(prefix_model(model, "cat1").forward(x), model.forward(x, until="cat1"))


def test_prefix_reaches_into_nested_sequences():
    model = models.build("vgg11", (3, 32, 32), seed=0, num_classes=3).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    features = model["features"]
    expected = x
    for layer in features.layers[:4]:
        expected = layer.forward(expected)
    np.testing.assert_allclose(prefix_model(model, "features.3").forward(x), expected, rtol=1e-6)


def test_prefix_errors_name_the_path():
    model = _model()
    with pytest.raises(ValueError, match="no layer 'nope'"):
        prefix_model(model, "nope")
    with pytest.raises(ValueError, match="res1 is not a sequence of layers"):
        prefix_model(model, "res1.conv1")


def test_dreaming_raises_the_layers_activation():
    model = _model()
    rng = np.random.default_rng(3)
    pixels = rng.uniform(0.3, 0.7, (3, 24, 20))
    truncated = prefix_model(model, "res1")

    def energy(image):
        return float((truncated.forward(((image - 0.5) / 0.25)[None].astype(np.float32)) ** 2).sum())

    calls = []
    dreamed = dream.dream_octaves(model, "res1", pixels, 0.5, 0.25, octaves=2, steps=5, lr=0.02, jitter=2,
                                  progress=lambda done, total: calls.append((done, total)))
    assert dreamed.shape == pixels.shape and dreamed.min() >= 0 and dreamed.max() <= 1
    assert energy(dreamed) > 1.2 * energy(pixels)
    assert calls[-1] == (10, 10)


def test_octaves_too_small_for_the_layer_are_left_out():
    model = models.build("conv4k3,relu,conv4k5", (1, 12, 12), seed=0)
    pixels = np.full((1, 12, 12), 0.5)
    calls = []
    dream.dream_octaves(model, "conv2", pixels, 0.5, 0.5, octaves=3, octave_scale=1.5, steps=2,
                        progress=lambda done, total: calls.append(total))
    assert calls[-1] == 4  # 12x12 and 8x8 fit a 3x3 and a 5x5 convolution; 5x5 does not
    with pytest.raises(ValueError, match="too small"):
        dream.dream_octaves(model, "conv2", np.full((1, 5, 5), 0.5), 0.5, 0.5, steps=1)


def test_frames_zoom_into_the_last_dream():
    model = _model()
    pixels = np.random.default_rng(4).uniform(size=(3, 16, 16))
    frames = dream.dream_frames(model, "relu1", pixels, 0.5, 0.25, frames=3, zoom_factor=1.2, octaves=1, steps=2)
    assert len(frames) == 3 and all(frame.shape == pixels.shape for frame in frames)
    assert not np.allclose(frames[0], frames[1])
    flat = np.full((1, 8, 8), 0.25)
    np.testing.assert_allclose(dream.zoom(flat, 1.5), 0.25)


def test_dream_command_writes_a_picture_and_frames(tmp_path):
    pytest.importorskip("PIL")
    from click.testing import CliRunner

    from nbconv import checkpoint, images
    from nbconv_cli.main import app
    model = models.build("conv6k3p1,relu,maxpool2,conv6k3p1,relu", (3, 16, 16), seed=0)
    saved = str(tmp_path / "m.npz")
    checkpoint.save(saved, model, (3, 16, 16))
    images.write_image(np.random.default_rng(0).uniform(size=(3, 20, 24)), tmp_path / "in.png")
    runner = CliRunner()
    base = ["visualize", saved, "dream", "--image", str(tmp_path / "in.png"), "--layer", "relu2", "--octaves", "2",
            "--steps", "2"]
    result = runner.invoke(app, base + ["--out", str(tmp_path / "out.png")])
    assert result.exit_code == 0, result.output
    assert images.read_image(tmp_path / "out.png", 3).shape == (3, 20, 24)
    result = runner.invoke(app, base + ["--frames", "3", "--out", str(tmp_path / "anim.gif")])
    assert result.exit_code == 0 and "3 frames" in result.output, result.output
    result = runner.invoke(app, base + ["--frames", "2", "--out", str(tmp_path / "f.png")])
    assert result.exit_code == 0 and (tmp_path / "f-001.png").exists(), result.output
    result = runner.invoke(app, ["visualize", saved, "dream", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "needs --image" in result.output
    result = runner.invoke(app, base[:-4] + ["--layer", "nope", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "no layer 'nope'" in result.output and "Traceback" not in result.output


def test_visualize_reaches_layers_inside_named_architectures(tmp_path):
    pytest.importorskip("PIL")
    from click.testing import CliRunner

    from nbconv import checkpoint
    from nbconv_cli.main import app
    model = models.build("vgg11", (3, 32, 32), seed=0, num_classes=4)
    saved = str(tmp_path / "vgg.npz")
    checkpoint.save(saved, model, (3, 32, 32))
    runner = CliRunner()
    result = runner.invoke(app, ["visualize", saved, "filters", "--out", str(tmp_path / "f.png")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["visualize", saved, "maximize", "--layer", "features.3", "--channels", "0-1",
                                 "--steps", "2", "--out", str(tmp_path / "m.png")])
    assert result.exit_code == 0 and "ascent steps" in result.output, result.output


def test_the_ascent_skips_parameter_gradients_and_restores_them():
    from nbconv.nn import input_gradients_only
    model = _model()
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with input_gradients_only(model):
        model.backward(np.ones_like(model.forward(x)))
        assert model["conv1"].weight.grad is None
    model.backward(np.ones_like(model.forward(x)))
    assert model["conv1"].weight.grad is not None and model["conv1"].param_grads


@pytest.mark.parametrize("options, words", [
    (dict(std=0.0), "std must hold finite numbers > 0"), (dict(steps=-2), "steps must be >= 0"),
    (dict(jitter=-1), "jitter must be >= 0"), (dict(octaves=0), "octaves must be >= 1"),
    (dict(octave_scale=0.5), "octave_scale must be a finite number >= 1"), (dict(lr=float("inf")), "lr must be"),
])
def test_dream_settings_that_cannot_work_are_errors_naming_them(options, words):
    settings = {"mean": 0.5, "std": 0.25, "octaves": 2, "steps": 2, **options}
    with pytest.raises(ValueError, match=words):
        dream.dream_octaves(_model(), "res1", np.full((3, 24, 20), 0.5), settings.pop("mean"), settings.pop("std"),
                            **settings)
