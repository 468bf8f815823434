"""Image preprocessing, top-k classification and `nbconv predict`."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from nbconv import checkpoint, classify, images, models
from nbconv_cli.main import app

PIL = pytest.importorskip("PIL.Image", reason="Pillow (the viz extra) is not installed")


def test_resize_matches_pillow_bilinear_on_a_smooth_image():
    y, x = np.mgrid[0:40, 0:60]
    image = (np.sin(x / 9.0) + np.cos(y / 7.0) + 2) * 60
    ours = images.resize(image[None], 25, 33)[0]
    theirs = np.asarray(PIL.fromarray(image.astype(np.float32), mode="F").resize((33, 25), PIL.BILINEAR,
                                                                              reducing_gap=None))
    assert np.abs(ours - theirs).max() < 2.0  # Pillow widens its filter when shrinking: close, not equal


def test_resize_keeps_constants_and_identity():
    image = np.random.default_rng(0).uniform(size=(3, 7, 9))
    np.testing.assert_allclose(images.resize(image, 7, 9), image)
    np.testing.assert_allclose(images.resize(np.full((1, 5, 5), 3.0), 11, 2), 3.0)


def test_fit_resizes_the_shorter_side_then_crops_the_centre():
    image = np.zeros((3, 100, 200))
    image[:, :, 90:110] = 255  # a bright vertical band in the middle
    out = images.fit(image, 50, 50)
    assert out.shape == (3, 50, 50)
    assert out[:, :, 25].min() > 200 and out[:, :, 0].max() < 1


def test_preprocessing_rules():
    assert classify.Preprocessing.for_model((3, 224, 224)).mean == images.IMAGENET_MEAN
    assert classify.Preprocessing.for_model((1, 28, 28), 0.1307, 0.3081).std == 0.3081
    assert classify.Preprocessing.for_model((3, 32, 32)).resize_ratio == 1.0


def test_write_then_read_an_image(tmp_path):
    pixels = np.random.default_rng(1).uniform(size=(3, 6, 5))
    images.write_image(pixels, tmp_path / "a.png")
    back = images.read_image(tmp_path / "a.png", 3)
    assert back.shape == (3, 6, 5) and np.abs(back / 255.0 - pixels).max() <= 0.5 / 255 + 1e-9
    assert images.read_image(tmp_path / "a.png", 1).shape == (1, 6, 5)
    with pytest.raises(ValueError, match="unknown image extension"):
        images.write_image(pixels, tmp_path / "a.unknown")


def test_bad_image_files_are_clear_errors(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="bad.png: not an image"):
        images.read_image(tmp_path / "bad.png", 3)
    with pytest.raises(ValueError, match="1 or 3 input channels"):
        images.read_image(tmp_path / "bad.png", 2)


@pytest.mark.parametrize("mode, dtype", [("I;16", np.uint16), ("I", np.int32)])
def test_sixteen_bit_greyscale_is_scaled_to_eight_bits_not_clipped(mode, dtype, tmp_path):
    values = np.array([[0, 257, 1000], [32768, 65280, 65535]], dtype)
    path = tmp_path / ("deep.png" if mode == "I;16" else "deep.tif")
    PIL.fromarray(values.astype(np.uint16)).convert(mode).save(path)
    expected = np.array([[0, 1, 4], [128, 254, 255]], np.uint8)
    assert PIL.open(path).mode == mode
    np.testing.assert_array_equal(images.read_image(path, 1)[0], expected)
    np.testing.assert_array_equal(images.read_image(path, 3), np.stack([expected] * 3))


def test_floating_point_and_out_of_range_32_bit_images_are_clear_errors(tmp_path):
    PIL.fromarray(np.full((4, 4), 0.5, np.float32)).save(tmp_path / "float.tif")
    for check in (images.check_image, lambda path: images.read_image(path, 3)):
        with pytest.raises(ValueError, match="float.tif: its pixels are floating-point numbers"):
            check(tmp_path / "float.tif")
    PIL.fromarray(np.array([[0, 70000]], np.int32)).save(tmp_path / "wide.tif")
    with pytest.raises(ValueError, match=r"wide.tif: its 32-bit pixels range over \[0, 70000\]"):
        images.read_image(tmp_path / "wide.tif", 1)


def test_a_decompression_bomb_is_refused_without_pillows_warning(tmp_path, monkeypatch, recwarn):
    monkeypatch.setattr(PIL, "MAX_IMAGE_PIXELS", 100)  # Pillow warns past this many pixels, refuses past twice it
    monkeypatch.setattr(images, "MAX_PIXELS", 50)
    for side in (12, 15):  # 144 pixels: Pillow's warning; 225: its error
        PIL.new("L", (side, side)).save(tmp_path / f"big{side}.png")
        with pytest.raises(ValueError, match=f"big{side}.png: "):
            images.read_image(tmp_path / f"big{side}.png", 1)
    assert not [warning for warning in recwarn if issubclass(warning.category, PIL.DecompressionBombWarning)]


def test_top_classes_are_sorted_probabilities():
    model = models.build("conv4k3,relu,gap,flatten,fc7", (3, 12, 12), seed=0)
    x = np.random.default_rng(0).standard_normal((4, 3, 12, 12))
    classes, probabilities = classify.top_classes(model, x, top=3)
    assert classes.shape == probabilities.shape == (4, 3)
    assert np.all(np.diff(probabilities, axis=1) <= 0) and np.all(probabilities > 0)
    everything = classify.top_classes(model, x, top=100)[1]
    np.testing.assert_allclose(everything.sum(axis=1), 1.0, rtol=1e-6)


def test_predict_command(tmp_path):
    model = models.build("conv4k3,relu,gap,flatten,fc3", (3, 16, 16), seed=0)
    saved = tmp_path / "m.npz"
    checkpoint.save(str(saved), model, (3, 16, 16), config={"class_names": ["cat", "dog", "bird"]})
    for k in range(2):
        images.write_image(np.random.default_rng(k).uniform(size=(3, 30, 20)), tmp_path / f"{k}.png")
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(saved), str(tmp_path / "0.png"), str(tmp_path / "1.png"),
                                 "--top", "2", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert len(lines) == 2 and all(len(line["predictions"]) == 2 for line in lines)
    assert {p["label"] for line in lines for p in line["predictions"]} <= {"cat", "dog", "bird"}
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    result = runner.invoke(app, ["predict", str(saved), str(tmp_path / "0.png"), "--labels", str(labels)])
    assert result.exit_code == 0 and result.output.count("%") == 3 and "a " in result.output
    labels.write_text("a\nb\n")
    result = runner.invoke(app, ["predict", str(saved), str(tmp_path / "0.png"), "--labels", str(labels)])
    assert result.exit_code == 1 and "2 labels for a model with 3 classes" in result.output
    (tmp_path / "text.png").write_text("hello")
    result = runner.invoke(app, ["predict", str(saved), str(tmp_path / "text.png")])
    assert result.exit_code == 1 and "not an image" in result.output and "Traceback" not in result.output


def test_fit_computes_only_the_crop_of_a_long_thin_image():
    import tracemalloc
    rng = np.random.default_rng(2)
    image = rng.uniform(0, 255, (3, 40, 90))
    for height, width, ratio in ((32, 32, 1.0), (50, 20, 256 / 224), (7, 9, 1.3)):
        scale = ratio * max(height / 40, width / 90)
        new_height, new_width = max(height, round(40 * scale)), max(width, round(90 * scale))
        top, left = (new_height - height) // 2, (new_width - width) // 2
        whole = images.resize(image, new_height, new_width)[:, top:top + height, left:left + width]
        np.testing.assert_allclose(images.fit(image, height, width, ratio), whole, rtol=1e-12, atol=1e-9)
    banner = rng.uniform(0, 255, (3, 4, 20_000))  # a whole resize to 256 rows would be 256 x 1,280,000
    tracemalloc.start()
    out = images.fit(banner, 224, 224, 256 / 224)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out.shape == (3, 224, 224) and peak < 64 << 20, peak


def _small_model_and_pictures(folder, count):
    """A saved 3-class colour model and `count` random 30x20 pictures in `folder`: (model path, picture paths)."""
    saved = folder / "m.npz"
    checkpoint.save(str(saved), models.build("conv4k3,relu,gap,flatten,fc3", (3, 16, 16), seed=0), (3, 16, 16))
    paths = [str(folder / f"{k}.png") for k in range(count)]
    for k, path in enumerate(paths):
        images.write_image(np.random.default_rng(k).uniform(size=(3, 30, 20)), path)
    return saved, paths


def test_predict_classifies_many_files_a_batch_at_a_time(tmp_path, monkeypatch):
    from nbconv_cli import predict
    saved, paths = _small_model_and_pictures(tmp_path, 7)
    whole = CliRunner().invoke(app, ["predict", str(saved), *paths, "--json"])
    assert whole.exit_code == 0 and len(whole.output.splitlines()) == len(paths), whole.output
    batches = []
    top_classes = classify.top_classes
    monkeypatch.setattr(predict, "PREDICT_BATCH", 3)
    monkeypatch.setattr(classify, "top_classes", lambda model, inputs, *rest: batches.append(len(inputs)) or
                        top_classes(model, inputs, *rest))
    batched = CliRunner().invoke(app, ["predict", str(saved), *paths, "--json"])
    assert batched.exit_code == 0 and batches == [3, 3, 1], batched.output
    assert [json.loads(line)["image"] for line in batched.output.splitlines()] == paths
    for mine, theirs in zip(batched.output.splitlines(), whole.output.splitlines()):
        for a, b in zip(json.loads(mine)["predictions"], json.loads(theirs)["predictions"]):
            assert a["class"] == b["class"] and abs(a["probability"] - b["probability"]) < 1e-6


def test_predict_checks_every_file_before_printing_any_result(tmp_path):
    saved, paths = _small_model_and_pictures(tmp_path, 4)
    (tmp_path / "notes.png").write_text("not an image")
    result = CliRunner().invoke(app, ["predict", str(saved), *paths, str(tmp_path / "notes.png"), "--json"])
    assert result.exit_code == 1 and "notes.png: not an image nbconv can read" in result.output, result.output
    assert '"image"' not in result.output and "Traceback" not in result.output
