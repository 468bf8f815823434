"""SIGKILL `nbconv train` at random (seeded) moments: the checkpoint on disk always loads, `--resume` completes,
the temporary files a killed save leaves are cleaned by the next one, and the final weights are those of an
uninterrupted run."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nbconv import checkpoint
from tests.data.test_datasets import make_tiny_mnist

EPOCHS = 8


def _train(tiny, out, *extra):
    return [sys.executable, "-m", "nbconv", "train", "conv4k5s2,relu,maxpool2,fc10", "--batch-size", "16",
            "--data-dir", tiny, "--out", out, "--epochs", str(EPOCHS), "--seed", "2", "--device", "cpu", *extra]


def _wait_for(path, process, seconds=240):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)


@pytest.mark.parametrize("seed", [0])
def test_killed_training_leaves_a_loadable_checkpoint_and_resumes(tmp_path, seed):
    tiny = make_tiny_mnist(str(tmp_path / "mnist"), n_train=256, n_test=32)
    full = str(tmp_path / "full.npz")
    subprocess.run(_train(tiny, full), check=True, capture_output=True, timeout=300)

    rng = np.random.default_rng(seed)
    out = str(tmp_path / "killed.npz")
    process = subprocess.Popen(_train(tiny, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(out, process)
    time.sleep(rng.uniform(0.0, 0.6))  # somewhere in the epochs that follow, a save included
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    state = checkpoint.load(out)  # intact: the old file or the new one, never a part
    assert 1 <= len(state.history) <= EPOCHS

    for _ in range(2):  # kill the resumed runs too, then let the last one finish
        if len(checkpoint.load(out).history) == EPOCHS:
            break
        process = subprocess.Popen([sys.executable, "-m", "nbconv", "train", "--resume", out, "--data-dir", tiny],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(1.0, 3.0))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        checkpoint.load(out)
    if len(checkpoint.load(out).history) < EPOCHS:
        done = subprocess.run([sys.executable, "-m", "nbconv", "train", "--resume", out, "--data-dir", tiny],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tmp-")]

    resumed, uninterrupted = checkpoint.load(out), checkpoint.load(full)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in uninterrupted.history]
    for key, value in uninterrupted.model.state_dict().items():
        assert np.array_equal(resumed.model.state_dict()[key], value), key
