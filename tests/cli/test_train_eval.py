"""`nbconv train` and `nbconv eval` through click's CliRunner on a tiny IDX set the test writes."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from nbconv import checkpoint
from nbconv_cli.main import app
from tests.data.test_datasets import make_tiny_mnist


@pytest.fixture
def tiny(tmp_path):
    return str(make_tiny_mnist(str(tmp_path / "mnist"), n_train=128, n_test=40))


def test_train_then_eval_then_resume(tiny, tmp_path):
    runner = CliRunner()
    out = str(tmp_path / "run.npz")
    result = runner.invoke(app, ["train", "conv4k5s2,relu,maxpool2,fc10", "--epochs", "1", "--batch-size", "16",
                                 "--data-dir", tiny, "--out", out, "--device", "cpu", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "epoch 1/1" in result.output and "test acc" in result.output and "done in" in result.output
    state = checkpoint.load(out)
    assert len(state.history) == 1 and state.config["seed"] == 3 and state.optimizer_state["step_count"] == 8

    result = runner.invoke(app, ["eval", out, "--data-dir", tiny, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["n"] == 40 and 0 <= report["accuracy"] <= 1
    assert np.array(report["confusion_matrix"]).sum() == 40
    assert report["accuracy"] == pytest.approx(state.history[0]["test_accuracy"])

    text = runner.invoke(app, ["eval", out, "--data-dir", tiny])
    assert "confusion matrix" in text.output and "test accuracy" in text.output

    result = runner.invoke(app, ["train", "--resume", out, "--epochs", "2", "--data-dir", tiny])
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.output and "epoch 1/2" not in result.output
    resumed = checkpoint.load(out)
    assert [h["epoch"] for h in resumed.history] == [1, 2] and resumed.optimizer_state["step_count"] == 16


def test_same_seed_same_loss_curve(tiny, tmp_path):
    runner = CliRunner()
    losses = []
    for k in range(2):
        out = str(tmp_path / f"run{k}.npz")
        runner.invoke(app, ["train", "lenet5", "--epochs", "1", "--batch-size", "32", "--data-dir", tiny,
                            "--out", out])
        losses.append(checkpoint.load(out).history[0]["loss"])
    assert losses[0] == losses[1]


def test_nan_loss_stops_with_a_message(tiny, tmp_path):
    result = CliRunner().invoke(app, ["train", "fc64,relu,fc64,relu,fc10", "--lr", "1e35", "--epochs", "1", "--data-dir", tiny,
                                      "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 1 and "the loss became" in result.output and "lower --lr" in result.output


def test_bad_model_and_missing_cuda_are_explained(tiny, tmp_path, monkeypatch):
    result = CliRunner().invoke(app, ["train", "conv4k3,wat", "--data-dir", tiny])
    assert result.exit_code == 2 and "unknown layer token 'wat'" in result.output
    from nbconv import backend
    monkeypatch.setattr(backend, "cuda_status", lambda: (False, "no driver here"))
    result = CliRunner().invoke(app, ["train", "lenet", "--device", "cuda", "--data-dir", tiny])
    assert result.exit_code == 1 and "no driver here" in result.output and "--device cpu" in result.output


def test_eval_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    result = CliRunner().invoke(app, ["eval", str(path)])
    assert result.exit_code == 1 and "not an nbconv checkpoint" in result.output
