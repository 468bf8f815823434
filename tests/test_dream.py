"""Deep Dream: the layer prefix, the ascent raising the layer's activation, octaves, zoomed frames."""
import numpy as np
import pytest

from nbconv import dream, models


def _model():
    return models.build("conv6k3p1,relu,maxpool2,res[conv6k3p1,relu,conv6k3p1],relu,cat[conv3k1|conv2k1],"
                        "gap,flatten,fc4", (3, 16, 16), seed=1)


def test_prefix_runs_the_model_up_to_a_layer():
    model = _model().eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(dream.prefix(model, "relu1").forward(x), model.forward(x, until="relu1"))
    np.testing.assert_array_equal(dream.prefix(model, "cat1").forward(x), model.forward(x, until="cat1"))


def test_prefix_reaches_into_nested_sequences():
    model = models.build("vgg11", (3, 32, 32), seed=0, num_classes=3).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    features = model["features"]
    expected = x
    for layer in features.layers[:4]:
        expected = layer.forward(expected)
    np.testing.assert_allclose(dream.prefix(model, "features.3").forward(x), expected, rtol=1e-6)


def test_prefix_errors_name_the_path():
    model = _model()
    with pytest.raises(ValueError, match="no layer 'nope'"):
        dream.prefix(model, "nope")
    with pytest.raises(ValueError, match="res1 is not a sequence of layers"):
        dream.prefix(model, "res1.conv1")


def test_dreaming_raises_the_layers_activation():
    model = _model()
    rng = np.random.default_rng(3)
    pixels = rng.uniform(0.3, 0.7, (3, 24, 20))
    truncated = dream.prefix(model, "res1")

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
