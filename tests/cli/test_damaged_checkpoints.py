"""`train --resume`, `eval` and `visualize` on every file of the damaged-checkpoint corpus: one clear line,
a non-zero exit status, no traceback, and never numpy's hint to allow pickle."""
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from nbconv import checkpoint, models
from nbconv_cli.main import app
from tests import damaged_checkpoints
from tests.data.test_datasets import make_tiny_mnist

COMMANDS = {"train": lambda path, data: ["train", "--resume", path, "--data-dir", data, "--epochs", "4"],
            "eval": lambda path, data: ["eval", path, "--data-dir", data],
            "visualize": lambda path, data: ["visualize", path, "filters", "--out", path + ".png"]}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("damaged")
    paths = {}
    for name, (data, expected) in damaged_checkpoints.corpus().items():
        paths[name] = (str(directory / f"{name}.npz"), expected)
        (directory / f"{name}.npz").write_bytes(data)
    return paths


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_mnist(str(tmp_path_factory.mktemp("data") / "mnist"), n_train=64, n_test=20)


def _one_clear_line(result, expected):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], result.output
    assert "Traceback" not in result.output and "allow_pickle" not in result.output


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_rejects_each_damaged_checkpoint_in_one_line(files, tiny, command):
    runner = CliRunner()
    for name, (path, expected) in files.items():
        result = runner.invoke(app, COMMANDS[command](path, tiny))
        _one_clear_line(result, expected)


def _saved(tmp_path, spec, input_shape):
    path = str(tmp_path / "model.npz")
    checkpoint.save(path, models.build(spec, input_shape), input_shape, config={"model": spec})
    return path


@pytest.mark.parametrize("command", ["train", "eval"])
def test_a_valid_checkpoint_that_does_not_fit_the_data_is_one_clear_line(tmp_path, tiny, command):
    path = _saved(tmp_path, "conv2k3,relu,fc10", (1, 12, 12))
    _one_clear_line(CliRunner().invoke(app, COMMANDS[command](path, tiny)), "the model takes 1x12x12")
    path = _saved(tmp_path, "conv2k3,relu,fc5", (1, 28, 28))
    _one_clear_line(CliRunner().invoke(app, COMMANDS[command](path, tiny)), "has 10 classes")


def test_visualize_a_model_without_convolutions_is_one_clear_line(tmp_path):
    path = _saved(tmp_path, "fc16,relu,fc10", (1, 28, 28))
    _one_clear_line(CliRunner().invoke(app, COMMANDS["visualize"](path, None)), "no convolution layer")


@pytest.mark.parametrize("name", ["optimizer-state-too-short", "random-bytes", "empty"])
def test_crafted_checkpoints_never_crash_the_process(files, tiny, name):
    """In a subprocess, so that memory corruption would fail this test rather than kill the test run."""
    path, expected = files[name]
    done = subprocess.run([sys.executable, "-m", "nbconv", *COMMANDS["train"](path, tiny)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().startswith("Error: ") and expected in done.stderr and "\n" not in done.stderr.strip()
    assert "Traceback" not in done.stderr and "allow_pickle" not in done.stderr


def test_optimizer_state_of_the_wrong_size_is_refused_before_any_kernel():
    from nbconv import optim
    parameter = models.build("fc10", (1, 4, 4)).parameters()[0]
    sgd = optim.SGD([parameter], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"'0.velocity' must have shape \(160,\)"):
        sgd.load_state_dict({"type": "SGD", "lr": 0.1, "step_count": 1, "0.velocity": np.zeros(3, np.float32)})
