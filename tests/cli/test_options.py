"""Command-line options are checked before any work: one clear line and exit status 2, no traceback."""
import pytest
from click.testing import CliRunner

from nbconv import checkpoint, models
from nbconv_cli.main import app


def _usage_error(args, *expected):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    for text in expected:
        assert text in result.output, result.output
    return result


@pytest.mark.parametrize("option", ["--lr", "--momentum", "--weight-decay"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
def test_train_rejects_non_finite_and_negative_rates(option, value, tmp_path):
    _usage_error(["train", "lenet", option, value, "--out", str(tmp_path / "x.npz")], option)


def test_a_negative_seed_is_a_bad_seed_not_a_bad_model(tmp_path):
    result = _usage_error(["train", "lenet", "--seed", "-1", "--out", str(tmp_path / "x.npz")], "--seed")
    assert "for 'MODEL'" not in result.output and "Invalid value for '--seed'" in result.output


def test_an_unwritable_out_fails_before_training(tmp_path):
    (tmp_path / "file").write_text("")
    result = _usage_error(["train", "fc10", "--out", str(tmp_path / "file" / "run.npz"), "--data-dir",
                           str(tmp_path)], "--out", "cannot write")
    assert "epoch" not in result.output
    _usage_error(["train", "fc10", "--out", str(tmp_path), "--data-dir", str(tmp_path)], "--out")


@pytest.mark.parametrize("option,value", [("--batch-size", "2000000"), ("--epochs", "2000000")])
def test_train_refuses_settings_no_checkpoint_may_hold_before_training(option, value, tmp_path):
    """--batch-size 2000000 (or --epochs 2000000) trained a whole epoch, then ended in a CheckpointError
    traceback and wrote nothing: the checkpoint bounds them; now a usage error before any work."""
    _usage_error(["train", "conv2k3,relu,fc2", "--dataset", "synthetic:1x4x4:2:20:10", option, value,
                  "--out", str(tmp_path / "x.npz")], option, "is not in the range")
    assert not (tmp_path / "x.npz").exists()


def test_train_refuses_a_config_no_checkpoint_may_hold_before_training(tmp_path):
    """A spec too long for a checkpoint's config (65,536 characters) trained an epoch, then failed to save."""
    spec = "lrelu0." + "0" * 66000 + "1,fc2"
    result = CliRunner().invoke(app, ["train", spec, "--dataset", "synthetic:1x4x4:2:20:10", "--epochs", "1",
                                      "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "config 'model' must be a string of 1 to 65536 characters" in result.output
    assert "nothing trained" in result.output and "epoch 1/1" not in result.output
    assert not (tmp_path / "x.npz").exists()


def test_train_refuses_a_model_without_parameters_before_training(tmp_path):
    """'gap,flatten' on 2-channel images of 2 classes trained an epoch of nothing, then ended in an IndexError
    traceback (the test pass looked for the first parameter's dtype); fit() did the same."""
    from nbconv import data, optim
    from nbconv.train import TrainConfig, fit
    result = _usage_error(["train", "gap,flatten", "--dataset", "synthetic:2x4x4:2:20:10", "--epochs", "1",
                           "--out", str(tmp_path / "x.npz")], "MODEL", "has no parameters")
    assert "epoch 1/1" not in result.output and not (tmp_path / "x.npz").exists()
    model = models.build("gap,flatten", (2, 4, 4))
    splits = data.load("synthetic:2x4x4:2:20:10")
    with pytest.raises(ValueError, match="has no parameters, so there is nothing to train"):
        fit(model, optim.SGD([], lr=0.1), splits, TrainConfig(dataset="synthetic:2x4x4:2:20:10", epochs=1))


@pytest.fixture
def small_checkpoint(tmp_path):
    path = str(tmp_path / "small.npz")
    checkpoint.save(path, models.build("conv2k3,relu,fc10", (1, 8, 8)), (1, 8, 8))
    return path


@pytest.mark.parametrize("args,expected", [
    (["--scale", "100000"], "--scale"), (["--lr", "nan"], "--lr"), (["--l2-decay", "inf"], "--l2-decay"),
    (["--l2-decay", "1"], "--l2-decay"),
    (["--seed", "-3"], "--seed"), (["--channels", "0-100000000"], "--channels"),
    (["--channels", "1-0"], "runs backwards")])
def test_visualize_bounds_its_options(small_checkpoint, tmp_path, args, expected):
    _usage_error(["visualize", small_checkpoint, "filters", "--out", str(tmp_path / "x.png"), *args], expected)


def test_visualize_checks_its_out_file_first(small_checkpoint, tmp_path):
    (tmp_path / "file").write_text("")
    _usage_error(["visualize", small_checkpoint, "filters", "--out", str(tmp_path / "file" / "x.png")], "--out",
                 "cannot write")


@pytest.mark.parametrize("shape,expected", [
    ("n=2,c=3,h=9,w=9,d=4,k=99", "k must lie in"), ("n=1,c=1,h=100000,w=8,d=1,k=3", "h must lie in"),
    ("n=0,c=3,h=9,w=9,d=4,k=3", "n must lie in"), ("n=2,c=3,h=9,w=9,d=4,k=12", "does not fit"),
    ("n=2,c=3,h=9,w=9,d=4,k=3,g=2", "groups"), ("n=2,c=3,h=x,w=9,d=4,k=3", "h must be an integer"),
    ("n=4096,c=4096,h=512,w=512,d=64,k=3", "GiB")])
def test_bench_rejects_shapes_it_cannot_run(shape, expected):
    _usage_error(["bench", "--shape", shape], "--shape", expected)


def test_bench_lenet5_preset_runs_only_lenet5(monkeypatch):
    from nbconv import bench
    monkeypatch.setattr(bench, "lenet5_cases", lambda *a, **k: [{"case": "lenet5-train-step", "kernel": "step",
                                                                 "median_ms": 1.0, "min_ms": 1.0, "max_ms": 1.0}])
    monkeypatch.setattr(bench, "sgemm_rate", lambda: 100.0)
    ran = []
    monkeypatch.setattr(bench, "conv_case", lambda *a, **k: ran.append(a))
    result = CliRunner().invoke(app, ["bench", "--preset", "lenet5", "--json"])
    assert result.exit_code == 0, result.output
    assert ran == [] and '"lenet5-train-step"' in result.output


def test_bench_help_speaks_of_its_own_layer_set():
    result = CliRunner().invoke(app, ["bench", "--help"])
    assert "built-in layer set" in result.output and "issue" not in result.output


def test_an_out_file_that_is_an_input_is_refused_and_the_input_kept(small_checkpoint, tmp_path):
    """visualize CHECKPOINT ... --out CHECKPOINT replaced the trained checkpoint by a PNG (dream's --image alike,
    also as one of several frames' numbered files; export's OUT.onnx and import's --out alike); now a usage
    error, the input left as it was."""
    import os
    from PIL import Image
    photo = str(tmp_path / "photo.png")
    Image.new("L", (8, 8)).save(photo)
    frame = str(tmp_path / "photo-001.png")
    Image.new("L", (8, 8)).save(frame)
    before = {path: open(path, "rb").read() for path in (small_checkpoint, photo, frame)}
    folder = os.path.dirname(small_checkpoint)
    (tmp_path / "sub").mkdir()
    os.symlink(folder, tmp_path / "sub" / "up")  # the same folder by another way
    for args, what in [
            (["visualize", small_checkpoint, "filters", "--out", small_checkpoint], "--out"),
            (["visualize", small_checkpoint, "filters", "--out",
              str(tmp_path / "sub" / "up" / os.path.basename(small_checkpoint))], "--out"),
            (["visualize", small_checkpoint, "dream", "--image", photo, "--layer", "conv1", "--out", photo], "--out"),
            # three frames are written as photo-000.png ... photo-002.png: the second is the --image
            (["visualize", small_checkpoint, "dream", "--image", frame, "--layer", "conv1", "--frames", "3", "--out",
              photo], "--out"),
            (["export", small_checkpoint, small_checkpoint], "OUT.onnx"),
            (["import", photo, "--out", photo], "--out")]:
        _usage_error(args, what, "this command reads, and writing it would replace it")
    assert before == {path: open(path, "rb").read() for path in before}
    link = tmp_path / "link.png"
    os.symlink(small_checkpoint, link)  # writing the link's name replaces the link, not the checkpoint
    result = CliRunner().invoke(app, ["visualize", small_checkpoint, "filters", "--out", str(link)])
    assert result.exit_code == 0, result.output
    assert not link.is_symlink() and open(small_checkpoint, "rb").read() == before[small_checkpoint]


@pytest.mark.parametrize("spec,input_shape", [("fc10", (5,)), ("conv1d3k3,relu,fc10", (2, 9))])
@pytest.mark.parametrize("what", ["filters", "maximize", "class", "dream"])
def test_visualize_names_a_model_that_does_not_take_images(tmp_path, spec, input_shape, what):
    """A checkpoint of a (features,) model ended in an IndexError traceback, one of (C, W) inputs in 'axis 3 is out
    of bounds for array of dimension 3'; now one line saying the model takes no images."""
    from PIL import Image
    path = str(tmp_path / "m.npz")
    checkpoint.save(path, models.build(spec, input_shape), input_shape)
    photo = str(tmp_path / "photo.png")
    Image.new("RGB", (8, 8)).save(photo)
    extra = ["--image", photo, "--layer", "fc1"] if what == "dream" else ["--steps", "2"] if what != "filters" else []
    result = CliRunner().invoke(app, ["visualize", path, what, *extra, "--out", str(tmp_path / "v.png")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"the model takes inputs of shape {input_shape}, not images" in result.output
