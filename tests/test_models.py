"""The spec language, the LeNets and the pattern builder; training lowers the loss and is reproducible."""
import numpy as np
import pytest

from nbconv import models
from nbconv.data import Splits
from nbconv.train import TrainConfig, fit, make_optimizer


def test_spec_repetition_expands_nested_groups():
    assert models.expand("[[conv8k3,relu]*2,maxpool2]*2,fc10") == \
        ["conv8k3", "relu", "conv8k3", "relu", "maxpool2"] * 2 + ["fc10"]


@pytest.mark.parametrize("spec,message", [
    ("conv8k3,bogus", "unknown layer token 'bogus'"),
    ("[conv8k3,relu", "unclosed"),
    ("conv8k3]*2", "unmatched"),
    ("[conv8k3]", "followed by"),
    ("conv8k40", "does not fit"),
])
def test_bad_specs_are_explained(spec, message):
    with pytest.raises(ValueError, match=message):
        models.build(spec)


@pytest.mark.parametrize("spec", ["lenet", "resnet20"])
@pytest.mark.parametrize("options,error,message", [
    ({"dtype": np.float16}, TypeError, "dtype must be float32 or float64"),
    ({"dtype": np.int32}, TypeError, "dtype must be float32 or float64"),
    ({"dtype": "bogus"}, TypeError, "dtype must be float32 or float64"),
    ({"init": "bogus"}, ValueError, "init must be one of he, glorot"),
    ({"seed": 1.5}, TypeError, "seed must be an int"),
    ({"seed": -1}, ValueError, "seed must be >= 0"),
    ({"max_bytes": float("nan")}, ValueError, "max_bytes must be a finite number > 0"),
])
def test_build_options_are_checked_naming_them(spec, options, error, message):
    """dtype=float16 or int32 built a model whose first forward failed; a named architecture ignored a bad init;
    seed=1.5 failed inside numpy without naming seed; max_bytes=nan turned the memory bound off."""
    with pytest.raises(error, match=message):
        models.build(spec, input_shape=(3, 32, 32) if spec == "resnet20" else (1, 28, 28), **options)


def test_lenets_have_the_published_shapes():
    lenet5 = models.build("lenet")
    assert lenet5.spec() == models.MODELS["lenet5"]
    assert sum(p.value.size for p in lenet5.parameters()) == 61706  # LeNet-5 with 28x28 input padded to 32x32
    assert lenet5.forward(np.zeros((3, 1, 28, 28), np.float32)).shape == (3, 10)
    lenet1 = models.build("lenet1")
    assert [p.shape for p in lenet1.parameters()][:2] == [(4, 1, 5, 5), (4,)]
    assert lenet1.forward(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)


def test_pattern_builder_follows_the_lecture():
    spec = models.pattern(n=2, m=2, k=1, width=8, fc=32)
    assert spec == "[conv8k3p1,relu]*2,maxpool2,[conv16k3p1,relu]*2,maxpool2,[fc32,relu]*1,fc10"
    model = models.build("pattern:n=2,m=2,k=1,width=8,fc=32")
    assert model.spec() == models.build(spec).spec()
    kinds = [name.rstrip("0123456789") for name in model.layer_names()]
    assert kinds == ["conv", "relu", "conv", "relu", "pool"] * 2 + ["flatten", "fc", "relu", "fc"]


def test_spec_round_trips_through_layers():
    spec = "conv4k3x2s2p1d1x2g2nobias,lrelu0.2,avgpool3s2p1ceilnopad,local3k2,gap,flatten,dropout0.3,fc5"
    model = models.build(spec, input_shape=(2, 13, 12))
    assert models.build(model.spec(), input_shape=(2, 13, 12)).spec() == model.spec()


@pytest.mark.parametrize("spec, input_shape", [
    ("lrelu0.1234567,lrn5a0.00012345678b0.7512345k1.2345678,bneps0.0000123456789momentum0.00001,dropout0.00001",
     (3, 4, 4)),
    ("bn1dmomentum0.33333333333333331,lrelu1e16,dropout0.1234567", (6,)),
    ("lrelu-0.5,lrn3a-0.001k-1.5,conv2k1", (3, 4, 4)),  # signs PyTorch takes, which the spec did not read
])
def test_a_models_spec_rebuilds_the_very_same_hyper_parameters(spec, input_shape, tmp_path):
    """A checkpoint stores model.spec(): six significant digits changed the values, and a momentum or dropout
    below 1e-4 printed as 1e-05, which the spec language did not read back (a checkpoint nothing could load)."""
    from nbconv import checkpoint

    def hyper_parameters(model):
        return [(type(layer).__name__, {key: value for key, value in vars(layer).items() if isinstance(value, float)})
                for layer in model.layers]
    model = models.build(spec, input_shape=input_shape)
    checkpoint.save(str(tmp_path / "m.npz"), model, input_shape)
    loaded = checkpoint.load(str(tmp_path / "m.npz")).model
    assert loaded.spec() == model.spec()
    assert hyper_parameters(loaded) == hyper_parameters(model)
    assert any(values for _, values in hyper_parameters(model))


@pytest.mark.parametrize("spec, name", [("lrelu1e309", "negative_slope"), ("lrn5b1e400", "beta")])
def test_an_infinite_hyper_parameter_is_refused_naming_it(spec, name):
    with pytest.raises(ValueError, match=f"{name} must be a finite number, got inf"):
        models.build(spec, input_shape=(3, 4, 4))


def _synthetic_splits(rng, n=256):
    """Two classes told apart by which half of the image is bright."""
    labels = rng.integers(0, 2, n)
    images = rng.integers(0, 60, (n, 12, 12)).astype(np.uint8)
    for k, label in enumerate(labels):
        images[k, :, (0 if label == 0 else 6):(6 if label == 0 else 12)] += 150
    return Splits(images, labels, images[:64], labels[:64], "synthetic")


def _train(splits, seed=0, epochs=2, progress=None):
    config = TrainConfig(model="conv4k3,relu,maxpool2,fc2", epochs=epochs, batch_size=32, lr=0.05, seed=seed)
    model = models.build(config.model, input_shape=(1, 12, 12), seed=seed)
    optimizer = make_optimizer(config, model.parameters())
    return fit(model, optimizer, splits, config, echo=lambda *a, **k: None, progress=progress)


def test_training_reports_its_progress_through_the_callback(rng):
    reports = []
    _train(_synthetic_splits(rng, n=96), epochs=2, progress=lambda *report: reports.append(report))
    assert [report[:3] for report in reports] == [(epoch, step, 3) for epoch in range(2) for step in range(4)]
    assert reports[0][3] == "" and reports[-1][3].startswith("loss ") and reports[-1][3].endswith(" img/s")


@pytest.mark.parametrize("field,value", [("batch_size", 0), ("batch_size", -5), ("batch_size", 2.5), ("epochs", -1),
                                         ("augment", -1), ("augment", 2.5), ("std", 0.0), ("flip", "yes")])
def test_fit_checks_its_config_naming_the_field(rng, field, value):
    """fit with batch_size=-5 ended in a ZeroDivisionError, batch_size=0 in 'range() arg 3 must not be zero',
    augment=-1 in numpy's 'high <= 0', augment=2.5 in an error about offsets, flip='yes' trained: none named the
    field; now a ValueError naming it, before any step."""
    config = TrainConfig(model="conv4k3,relu,maxpool2,fc2", epochs=1, batch_size=32, lr=0.05)
    setattr(config, field, value)
    model = models.build(config.model, input_shape=(1, 12, 12))
    with pytest.raises(ValueError, match=f"config '{field}' must be"):
        fit(model, make_optimizer(TrainConfig(), model.parameters()), _synthetic_splits(rng, n=40), config,
            echo=lambda *a, **k: None)


def test_training_lowers_the_loss_and_repeats_exactly(rng):
    splits = _synthetic_splits(rng)
    history = _train(splits)
    assert history[-1]["loss"] < history[0]["loss"] < 0.7
    assert history[-1]["test_accuracy"] > 0.9
    again = _train(splits)
    assert [h["loss"] for h in again] == [h["loss"] for h in history]


def test_shift_augment_moves_each_image_by_at_most_the_shift(rng):
    from nbconv.train import shift_augment
    images = rng.integers(1, 256, (20, 6, 5)).astype(np.uint8)  # no zeros, so the fill is visible
    np.testing.assert_array_equal(shift_augment(images, 0, rng), images)
    moved = shift_augment(images, 1, rng)
    assert moved.shape == images.shape and moved.dtype == images.dtype
    for original, shifted in zip(images, moved):
        matches = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                   if np.array_equal(np.roll(np.pad(original, 1), (dy, dx), (0, 1))[1:-1, 1:-1], shifted)]
        assert matches, "each image is its original shifted by at most one pixel, zero-filled"
    assert not np.array_equal(moved, images)


@pytest.mark.parametrize("max_shift", [0, 1, 3])
def test_compiled_training_batch_equals_shift_augment_then_normalize(max_shift, rng):
    from nbconv.data.batch import shifted_batch
    from nbconv.train import normalize, shift_augment
    images = rng.integers(0, 256, (30, 7, 9)).astype(np.uint8)
    chosen = rng.permutation(30)[:11]
    draws, same_draws = np.random.default_rng(4), np.random.default_rng(4)
    expected = normalize(shift_augment(images[chosen], max_shift, draws), 0.13, 0.31)
    shifts = same_draws.integers(0, 2 * max_shift + 1, (len(chosen), 2))
    for dtype in (np.float32, np.float64):
        got = shifted_batch(images, chosen, shifts, max_shift, 0.13, 0.31, dtype)
        assert got.dtype == dtype and got.shape == (11, 1, 7, 9)
        np.testing.assert_array_equal(got, normalize(shift_augment(images[chosen], max_shift,
                                                                   np.random.default_rng(4)), 0.13, 0.31, dtype))
    np.testing.assert_array_equal(shifted_batch(images, chosen, shifts, max_shift, 0.13, 0.31), expected)
    with pytest.raises(IndexError, match="chosen"):
        shifted_batch(images, np.array([30]), np.zeros((1, 2)), 0, 0.13, 0.31)


@pytest.mark.parametrize("max_shift", [0, 4])
def test_compiled_colour_batch_equals_crop_flip_then_per_channel_normalize(max_shift, rng):
    """Per-channel mean/std, a shift of up to max_shift (a random crop of the image zero-padded by
    max_shift) and a horizontal flip, against numpy: pad, crop, mirror, normalise in float64."""
    from nbconv.data.batch import shifted_batch
    images = rng.integers(0, 256, (25, 3, 9, 7)).astype(np.uint8)
    chosen = rng.permutation(25)[:13]
    offsets = rng.integers(0, 2 * max_shift + 1, (13, 2))
    flips = rng.integers(0, 2, 13).astype(bool)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    got = shifted_batch(images, chosen, offsets, max_shift, mean, std, np.float64, flips)
    padded = np.pad(images, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    for k, index in enumerate(chosen):
        dy, dx = offsets[k]
        crop = padded[index, :, dy:dy + 9, dx:dx + 7].astype(np.float64)
        if flips[k]:
            crop = crop[:, :, ::-1]
        expected = (crop / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
        np.testing.assert_allclose(got[k], expected, rtol=1e-12, atol=1e-12)
    assert flips.any() and not flips.all()
    from nbconv.train import normalize
    np.testing.assert_array_equal(shifted_batch(images, chosen, np.full((13, 2), max_shift), max_shift, mean, std),
                                  normalize(images[chosen], mean, std))
    with pytest.raises(ValueError, match="one per channel"):
        shifted_batch(images, chosen, offsets, max_shift, (0.5, 0.5), std)
    with pytest.raises(ValueError, match="offsets must be in"):
        shifted_batch(images, chosen, offsets + 2 * max_shift + 1, max_shift, mean, std)


def test_training_on_synthetic_colour_images_raises_accuracy():
    from nbconv import data
    splits = data.load("synthetic:3x12x12:4:600:200")
    config = TrainConfig(model="conv8k3p1,relu,maxpool2,conv8k3p1,relu,maxpool2,fc4",
                         dataset="synthetic:3x12x12:4:600:200", epochs=2, batch_size=32, lr=0.05, flip=True, augment=1)
    assert config.mean == [0.5, 0.5, 0.5] and config.class_names == ["0", "1", "2", "3"]
    model = models.build(config.model, input_shape=(3, 12, 12))
    history = fit(model, make_optimizer(config, model.parameters()), splits, config, echo=lambda *a, **k: None,
                  progress=None)
    assert history[0]["test_accuracy"] > 0.5 and history[-1]["test_accuracy"] > 0.8


def test_shifts_wider_than_the_image_give_padding_only(rng):
    from nbconv.data.batch import shifted_batch
    images = rng.integers(0, 256, (4, 2, 3, 2)).astype(np.uint8)
    offsets = np.array([[0, 0], [16, 16], [0, 16], [8, 0]])
    got = shifted_batch(images, np.arange(4), offsets, 8, (0.5, 0.2), (0.25, 0.5), np.float64, [True, False, True, False])
    np.testing.assert_array_equal(got[:, 0], np.full((4, 3, 2), -2.0))
    np.testing.assert_array_equal(got[:, 1], np.full((4, 3, 2), -0.4))


def test_models_are_built_for_the_dataset_and_must_score_its_classes(monkeypatch):
    from nbconv.data import describe
    from nbconv.train import build_for_dataset, check_outputs
    model = build_for_dataset("conv4k3,relu,fc10", describe("cifar10"))
    assert model.forward(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 10)
    check_outputs(model, (3, 32, 32), 10, "cifar10")
    with pytest.raises(ValueError, match="cifar100 has 100 classes: end the model with fc100"):
        check_outputs(model, (3, 32, 32), 100, "cifar100")
    seen = {}

    def build_with_classes(spec, input_shape=(1, 28, 28), num_classes=10, seed=0):  # a named-architecture build
        seen.update(spec=spec, input_shape=input_shape, num_classes=num_classes)
        return "built"

    monkeypatch.setattr(models, "build", build_with_classes)
    assert build_for_dataset("resnet20", describe("cifar100")) == "built"
    assert seen == {"spec": "resnet20", "input_shape": (3, 32, 32), "num_classes": 100}


def test_batch_pipeline_on_random_shapes_shifts_and_flips():
    """Any image size (odd ones included), channel count, shift (wider than the image too) and flips: the
    compiled batch equals pad-crop-mirror-normalise in numpy."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    from nbconv.data.batch import shifted_batch

    @hypothesis.settings(max_examples=60, deadline=None)
    @hypothesis.given(st.integers(1, 5), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(0, 10),
                      st.integers(0, 2 ** 32 - 1))
    def check(count, channels, height, width, max_shift, seed):
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, (count + 2, channels, height, width)).astype(np.uint8)
        chosen = rng.integers(0, count + 2, count)
        offsets = rng.integers(0, 2 * max_shift + 1, (count, 2))
        flips = rng.integers(0, 2, count).astype(bool)
        mean, std = rng.uniform(0, 1, channels), rng.uniform(0.1, 1, channels)
        got = shifted_batch(images, chosen, offsets, max_shift, mean, std, np.float64, flips)
        padded = np.pad(images, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)))
        for k, index in enumerate(chosen):
            dy, dx = offsets[k]
            crop = padded[index, :, dy:dy + height, dx:dx + width].astype(np.float64)
            crop = crop[:, :, ::-1] if flips[k] else crop
            np.testing.assert_allclose(got[k], (crop / 255 - mean[:, None, None]) / std[:, None, None],
                                       rtol=1e-12, atol=1e-12)

    check()


def test_batch_indices_and_offsets_outside_their_ranges_are_refused_wherever_they_are(rng):
    """The range checks run inside the compiled pass, over every image of the batch, before any is read."""
    from nbconv.data.batch import channel_constants, shifted_batch
    images = rng.integers(0, 256, (6, 5, 5)).astype(np.uint8)
    offsets = np.ones((4, 2), np.int64)
    for chosen in ([0, 1, 6, 2], [0, 1, 2, -1], [-7, 0, 1, 2], [2, 3, 4, 2 ** 40]):
        with pytest.raises(IndexError, match="chosen must index the 6 images"):
            shifted_batch(images, np.array(chosen), offsets, 1, 0.13, 0.31)
    for row, column, value in ((3, 1, 3), (2, 0, -1), (0, 1, 99), (1, 0, 3)):
        bad = offsets.copy()
        bad[row, column] = value
        with pytest.raises(ValueError, match=r"offsets must be in \[0, 2\]"):
            shifted_batch(images, np.arange(4), bad, 1, 0.13, 0.31)
    assert shifted_batch(images, np.arange(4), offsets, 1, 0.13, 0.31).shape == (4, 1, 5, 5)
    assert shifted_batch(images, np.arange(0), np.zeros((0, 2)), 1, 0.13, 0.31).shape == (0, 1, 5, 5)
    for dtype in (np.float32, np.float64):  # plain numbers take a shorter key: the same constants
        for one, other in zip(channel_constants(0.13, 0.31, 1, dtype), channel_constants(np.array([0.13]), [0.31], 1,
                                                                                          dtype)):
            assert one.dtype == other.dtype == dtype
            np.testing.assert_array_equal(one, other)
