"""Colour datasets end to end through the CLI: train, eval, resume and visualize on synthetic images and
on CIFAR files the test writes; errors about the data before training starts."""
import json
import os
import struct

import numpy as np
import pytest
from click.testing import CliRunner

from nbconv import checkpoint
from nbconv.data import datasets
from nbconv_cli.main import app
from tests.data.test_cifar import CIFAR10_NAMES, make_tiny_cifar
from tests.data.test_datasets import _write_split, make_tiny_mnist

SYNTHETIC = "synthetic:3x16x16:4:256:64"
SPEC = "conv6k3p1,relu,maxpool2,conv8k3p1,relu,maxpool2,fc4"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.delenv(datasets.ENV_DATA_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(datasets.ENV_MIRRORS, "http://127.0.0.1:9/")  # nothing listens there: no internet


def _png_mode(path):
    data = open(path, "rb").read()
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    return colour  # 0 grey, 2 RGB


def test_synthetic_colour_train_eval_resume_visualize(tmp_path):
    runner = CliRunner()
    out = str(tmp_path / "colour.npz")
    result = runner.invoke(app, ["train", SPEC, "--dataset", SYNTHETIC, "--epochs", "1", "--batch-size", "32",
                                 "--nesterov", "--flip", "--augment", "2", "--decay-on", "weights", "--out", out,
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    state = checkpoint.load(out)
    assert state.input_shape == (3, 16, 16)
    assert state.config["mean"] == [0.5] * 3 and state.config["class_names"] == ["0", "1", "2", "3"]
    assert state.config["nesterov"] is True and state.config["flip"] is True and state.config["augment"] == 2
    assert state.config["decay_on"] == "weights"

    report = json.loads(runner.invoke(app, ["eval", out, "--json"]).output)
    assert report["n"] == 64 and report["classes"] == ["0", "1", "2", "3"]
    assert report["accuracy"] == pytest.approx(state.history[0]["test_accuracy"])

    result = runner.invoke(app, ["train", "--resume", out, "--epochs", "2"])
    assert result.exit_code == 0, result.output
    resumed = checkpoint.load(out)
    assert [h["epoch"] for h in resumed.history] == [1, 2] and resumed.history[1]["test_accuracy"] > 0.3

    pytest.importorskip("PIL")
    for what, extra, colour in (("filters", [], 2), ("class", ["--steps", "3"], 2),
                                ("maximize", ["--layer", "conv2", "--channels", "0-1", "--steps", "3"], 2)):
        png = str(tmp_path / f"{what}.png")
        result = runner.invoke(app, ["visualize", out, what, "--out", png, *extra])
        assert result.exit_code == 0, result.output
        assert _png_mode(png) == colour, what


def test_images_of_many_channels_train_and_their_checkpoint_loads(tmp_path):
    """A synthetic dataset of 17 to 64 channels (which nbconv makes) trained an epoch, then failed to save: the
    checkpoint's rule held a mean and std for at most 16 channels."""
    out = str(tmp_path / "wide.npz")
    result = CliRunner().invoke(app, ["train", "fc2", "--dataset", "synthetic:64x2x2:2:20:10", "--epochs", "1",
                                      "--out", out])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    state = checkpoint.load(out)
    assert len(state.config["mean"]) == 64 and len(state.config["std"]) == 64
    result = CliRunner().invoke(app, ["eval", out, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["n"] == 10


def test_cifar10_files_train_and_eval_with_class_names(tmp_path):
    make_tiny_cifar(str(tmp_path / "data" / "cifar-10-batches-bin"), per_file=16)
    runner = CliRunner()
    out = str(tmp_path / "cifar.npz")
    result = runner.invoke(app, ["train", "conv4k3s2,relu,maxpool2,fc10", "--dataset", "cifar10", "--epochs", "1",
                                 "--data-dir", str(tmp_path / "data"), "--batch-size", "16", "--out", out])
    assert result.exit_code == 0, result.output
    state = checkpoint.load(out)
    assert state.input_shape == (3, 32, 32) and state.config["class_names"] == CIFAR10_NAMES
    assert state.config["mean"] == [0.4914, 0.4822, 0.4465] and state.config["std"] == [0.2470, 0.2435, 0.2616]
    assert state.config["augment"] == 4 and state.config["flip"] is True
    result = runner.invoke(app, ["eval", out, "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert "classes: 0 airplane, 1 automobile, 2 bird" in result.output
    assert "test accuracy" in result.output and "/16)" in result.output


@pytest.mark.parametrize("case,message,code", [
    ("classes", "end the model with fc100", 1),
    ("missing-dir", "does not exist", 2),
    ("mnist-32x32", "test images are 32x32, mnist images are 28x28", 1),
    ("labels-200", "labels must be 0..9, found 200", 1),
    ("bad-name", "synthetic:CxHxW:CLASSES", 2),
    ("nesterov-adam", "Nesterov momentum needs --optimizer sgd", 2),
])
def test_data_problems_are_one_line_errors_before_training(tmp_path, case, message, code):
    data = str(tmp_path / "data")
    args = ["train", "conv4k5s2,relu,fc10", "--epochs", "1", "--data-dir", data, "--out", str(tmp_path / "x.npz")]
    if case == "classes":
        make_tiny_cifar(data, "cifar100", per_file=8)
        args += ["--dataset", "cifar100"]
    elif case == "missing-dir":
        args[args.index(data)] = str(tmp_path / "nowhere")
    elif case in ("mnist-32x32", "labels-200"):
        make_tiny_mnist(data)
        labels = np.zeros(8, np.uint8)
        labels[case == "labels-200"] = 200 if case == "labels-200" else 0
        _write_split(data, np.zeros((8, 32, 32) if case == "mnist-32x32" else (8, 28, 28), np.uint8), labels)
    elif case == "bad-name":
        os.makedirs(data)
        args += ["--dataset", "synthetic:3x8:2"]
    else:
        os.makedirs(data)
        args += ["--dataset", SYNTHETIC, "--optimizer", "adam", "--nesterov"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output and "epoch 1/1" not in result.output
    assert not (tmp_path / "nowhere").exists()


def test_resume_refuses_options_that_would_change_a_run_instead_of_ignoring_them(tmp_path):
    runner = CliRunner()
    out = str(tmp_path / "run.npz")
    result = runner.invoke(app, ["train", SPEC, "--dataset", SYNTHETIC, "--epochs", "1", "--batch-size", "32",
                                 "--out", out, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    before = open(out, "rb").read()
    for extra, words in ((["--lr", "0.5"], ["--lr 0.5", "lr 0.02"]),
                         (["--dataset", "synthetic:3x16x16:4:128:64", "--optimizer", "adam"],
                          ["--dataset 'synthetic:3x16x16:4:128:64'", "--optimizer 'adam'", "start a new run"]),
                         (["lenet5"], ["MODEL 'lenet5' is not the model", "leave MODEL out"])):
        result = runner.invoke(app, ["train", "--resume", out, "--epochs", "2", *extra])
        assert result.exit_code == 2 and all(word in result.output for word in words), result.output
        assert "Traceback" not in result.output
    assert open(out, "rb").read() == before
    result = runner.invoke(app, ["train", SPEC, "--resume", out, "--epochs", "2", "--batch-size", "32", "--lr",
                                 "0.02"])
    assert result.exit_code == 0, result.output  # the run's own model and settings, given again


def test_an_imported_network_is_fine_tuned_on_the_dataset_and_settings_given(tmp_path):
    from nbconv import models
    out = str(tmp_path / "imported.npz")
    model = models.build(SPEC, input_shape=(3, 16, 16), num_classes=4)
    checkpoint.save(out, model, (3, 16, 16), config={})  # as nbconv import writes them: no run yet
    result = CliRunner().invoke(app, ["train", "--resume", out, "--dataset", SYNTHETIC, "--epochs", "1",
                                      "--optimizer", "adam", "--batch-size", "32", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    state = checkpoint.load(out)
    assert state.config["dataset"] == SYNTHETIC and state.config["optimizer"] == "adam"
    assert state.config["lr"] == 0.001 and state.config["mean"] == [0.5] * 3 and len(state.history) == 1


def test_a_batch_norm_that_would_see_a_batch_of_one_is_refused_before_training(tmp_path):
    from nbconv import models
    from nbconv.data import load
    from nbconv.optim import SGD
    from nbconv.train import TrainConfig, fit
    spec = "conv4k3,relu,gap,fc4,bn1d"
    out = tmp_path / "bn.npz"
    result = CliRunner().invoke(app, ["train", spec, "--dataset", "synthetic:3x16x16:4:65:16", "--epochs", "1",
                                      "--batch-size", "32", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "layer bn1 normalises one value per channel" in result.output and "1 of the 65" in result.output
    assert "loss" not in result.output and not out.exists()
    splits = load("synthetic:3x16x16:4:65:16")
    model = models.build(spec, input_shape=(3, 16, 16))
    with pytest.raises(ValueError, match="the last batch of each epoch holds 1 of the 65"):
        fit(model, SGD(model.parameters(), lr=0.1), splits, TrainConfig(dataset="synthetic:3x16x16:4:65:16",
                                                                        batch_size=32, epochs=1), echo=lambda *a: None)
    result = CliRunner().invoke(app, ["train", "conv4k3,bn,relu,gap,fc4", "--dataset", "synthetic:3x16x16:4:65:16",
                                      "--epochs", "1", "--batch-size", "32", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output  # 14x14 values per channel: a batch of one is fine
