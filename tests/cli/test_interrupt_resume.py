"""Ctrl-C during `nbconv train`: the checkpoint holds one consistent state (the step inside the epoch and the
data order), and `--resume` ends bit for bit where an uninterrupted run ends; non-finite weights stop
training and keep the last good checkpoint; Ctrl-C before training prints one line; SIGTERM stops like Ctrl-C."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from nbconv import checkpoint, optim
from nbconv_cli.main import app
from tests.data.test_datasets import make_tiny_mnist

SPEC = "conv4k5s2,relu,maxpool2,fc10"
STEPS_PER_EPOCH = 4  # 128 images in batches of 32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_mnist(str(tmp_path_factory.mktemp("data") / "mnist"), n_train=128, n_test=40)


@pytest.fixture(autouse=True)
def foreground_ctrl_c():
    """Ctrl-C handled as in a foreground terminal, also where the test runner was started in the background
    (a background job starts with SIGINT ignored, and nbconv rightly leaves an ignored SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _args(tiny, out, optimizer="sgd"):
    return ["train", SPEC, "--batch-size", "32", "--data-dir", tiny, "--seed", "5", "--epochs", "3",
            "--optimizer", optimizer, "--out", str(out), "--device", "cpu"]


def _after_step(monkeypatch, step_number, action):
    """Run action() right after the optimizer's step_number-th update (1-based, counted over the run)."""
    real_step = optim.Optimizer.step

    def step(self):
        real_step(self)
        if self.step_count == step_number:
            action()
    monkeypatch.setattr(optim.Optimizer, "step", step)
    return real_step


def _same_state(a, b):
    first, second = checkpoint.load(str(a)), checkpoint.load(str(b))
    for key, value in first.model.state_dict().items():
        assert np.array_equal(value, second.model.state_dict()[key]), key
    assert first.optimizer_state.keys() == second.optimizer_state.keys()
    for key, value in first.optimizer_state.items():
        assert np.array_equal(value, second.optimizer_state[key]), key
    for one, other in zip(first.history, second.history, strict=True):
        assert {k: one[k] for k in ("loss", "accuracy", "test_accuracy", "lr")} == \
               {k: other[k] for k in ("loss", "accuracy", "test_accuracy", "lr")}


@pytest.mark.parametrize("optimizer,interrupt_after", [("sgd", 3), ("adam", 6), ("sgd", STEPS_PER_EPOCH)])
def test_ctrl_c_mid_run_then_resume_gives_the_uninterrupted_weights(tiny, tmp_path, monkeypatch, optimizer,
                                                                    interrupt_after):
    runner = CliRunner()
    result = runner.invoke(app, _args(tiny, tmp_path / "full.npz", optimizer))
    assert result.exit_code == 0, result.output

    real_step = _after_step(monkeypatch, interrupt_after, lambda: os.kill(os.getpid(), signal.SIGINT))
    result = runner.invoke(app, _args(tiny, tmp_path / "cut.npz", optimizer))
    assert result.exit_code == 130, result.output
    assert "interrupted: checkpoint saved" in result.output and "Traceback" not in result.output
    cut = checkpoint.load(str(tmp_path / "cut.npz"))
    assert cut.optimizer_state["step_count"] == interrupt_after  # stopped right after the step Ctrl-C came in
    complete, inside = divmod(interrupt_after, STEPS_PER_EPOCH)
    assert len(cut.history) == complete
    assert (cut.position is None) if inside == 0 else (cut.position["step"] == inside)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back

    monkeypatch.setattr(optim.Optimizer, "step", real_step)
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "cut.npz"), "--data-dir", tiny])
    assert result.exit_code == 0, result.output
    resumed = checkpoint.load(str(tmp_path / "cut.npz"))
    assert resumed.position is None and resumed.optimizer_state["step_count"] == 3 * STEPS_PER_EPOCH
    _same_state(tmp_path / "full.npz", tmp_path / "cut.npz")


def test_sigterm_stops_like_ctrl_c_and_resume_gives_the_uninterrupted_weights(tiny, tmp_path, monkeypatch):
    """Batch schedulers (Slurm, PBS) and `kill` end a job with SIGTERM: training saves the same consistent
    state as for Ctrl-C and exits with the status a SIGTERM gives (143)."""
    runner = CliRunner()
    assert runner.invoke(app, _args(tiny, tmp_path / "full.npz")).exit_code == 0
    real_step = _after_step(monkeypatch, 6, lambda: os.kill(os.getpid(), signal.SIGTERM))
    result = runner.invoke(app, _args(tiny, tmp_path / "cut.npz"))
    assert result.exit_code == 143, result.output
    assert "interrupted: checkpoint saved" in result.output and "Traceback" not in result.output
    cut = checkpoint.load(str(tmp_path / "cut.npz"))
    assert cut.optimizer_state["step_count"] == 6 and cut.position["step"] == 6 - STEPS_PER_EPOCH
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back
    monkeypatch.setattr(optim.Optimizer, "step", real_step)
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "cut.npz"), "--data-dir", tiny])
    assert result.exit_code == 0, result.output
    _same_state(tmp_path / "full.npz", tmp_path / "cut.npz")


def test_dropout_masks_continue_where_they_stopped(tiny, tmp_path, monkeypatch):
    spec = "conv4k5s2,relu,dropout0.3,maxpool2,fc16,relu,dropout,fc10"
    runner = CliRunner()
    args = ["train", spec, "--batch-size", "32", "--data-dir", tiny, "--epochs", "2", "--device", "cpu"]
    assert runner.invoke(app, [*args, "--out", str(tmp_path / "full.npz")]).exit_code == 0
    real_step = _after_step(monkeypatch, 5, lambda: os.kill(os.getpid(), signal.SIGINT))
    assert runner.invoke(app, [*args, "--out", str(tmp_path / "cut.npz")]).exit_code == 130
    monkeypatch.setattr(optim.Optimizer, "step", real_step)
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "cut.npz"), "--data-dir", tiny])
    assert result.exit_code == 0, result.output
    _same_state(tmp_path / "full.npz", tmp_path / "cut.npz")


def test_a_second_ctrl_c_stops_at_once_and_saves_nothing_mid_step(tiny, tmp_path, monkeypatch):
    def interrupt():
        raise KeyboardInterrupt  # what a second Ctrl-C does, wherever it lands
    _after_step(monkeypatch, STEPS_PER_EPOCH + 2, interrupt)
    result = CliRunner().invoke(app, _args(tiny, tmp_path / "run.npz"))
    assert result.exit_code == 130 and "interrupted mid-step: nothing saved" in result.output
    assert "keeps the last good checkpoint (1 complete epochs)" in result.output
    state = checkpoint.load(str(tmp_path / "run.npz"))
    assert len(state.history) == 1 and state.position is None and state.optimizer_state["step_count"] == 4


def test_a_second_ctrl_c_while_the_interruption_saves_keeps_the_last_checkpoint(tiny, tmp_path, monkeypatch):
    """Ctrl-C ends the step, then a second one lands while that checkpoint is written: the message said
    'interrupted before training started; nothing saved'; now it says the last good checkpoint is kept."""
    import nbconv_cli.train as train_command
    real_save = checkpoint.save

    def save(path, model, input_shape, optimizer, config, history, position=None):
        if position is not None:  # the interruption's save, inside an epoch
            raise KeyboardInterrupt
        return real_save(path, model, input_shape, optimizer, config, history, position)
    monkeypatch.setattr(train_command.checkpoint, "save", save)
    _after_step(monkeypatch, STEPS_PER_EPOCH + 2, lambda: os.kill(os.getpid(), signal.SIGINT))
    result = CliRunner().invoke(app, _args(tiny, tmp_path / "run.npz"))
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert "before training started" not in result.output
    assert "interrupted again while saving: nothing saved" in result.output
    assert "keeps the last good checkpoint (1 complete epochs)" in result.output
    state = checkpoint.load(str(tmp_path / "run.npz"))
    assert len(state.history) == 1 and state.position is None


def test_resuming_an_interrupted_epoch_on_other_data_is_refused(tiny, tmp_path, monkeypatch):
    _after_step(monkeypatch, 2, lambda: os.kill(os.getpid(), signal.SIGINT))
    assert CliRunner().invoke(app, _args(tiny, tmp_path / "cut.npz")).exit_code == 130
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "cut.npz"), "--data-dir", tiny,
                                      "--limit", "100"])
    assert result.exit_code == 1 and "128 training images" in result.output and "Traceback" not in result.output


def test_diverging_training_stops_without_a_checkpoint(tiny, tmp_path):
    out = tmp_path / "nan.npz"
    result = CliRunner().invoke(app, ["train", "fc64,relu,fc10", "--lr", "1e6", "--epochs", "2", "--data-dir",
                                      tiny, "--out", str(out), "--batch-size", "16"])
    assert result.exit_code == 1 and "nan" in result.output.lower() and "lower --lr than 1e+06" in result.output
    assert "no checkpoint written" in result.output and not out.exists()


def test_a_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    from nbconv import models
    model = models.build("fc10", (1, 4, 4))
    model.parameters()[0].value[0, 0] = np.inf
    with pytest.raises(checkpoint.NonFiniteWeights, match="fc1.weight"):
        checkpoint.save(str(tmp_path / "bad.npz"), model, (1, 4, 4))
    assert os.listdir(tmp_path) == []


def test_non_finite_weights_keep_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    from nbconv import backend

    def poison():  # as a diverging update would, at the last step of the second epoch (a NaN weight seen by
        # a later forward pass gives a NaN loss, which stops training by its own check)
        # the training run's optimizer (on an empty JIT cache the warm-up builds a one-parameter one first)
        training = next(holder for holder in optim_holder if len(holder.parameters) > 1)
        backend.flat(training.parameters[0].value)[0] = np.nan
    optim_holder = []
    real_init = optim.Optimizer.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        optim_holder.append(self)
    monkeypatch.setattr(optim.Optimizer, "__init__", init)
    _after_step(monkeypatch, 2 * STEPS_PER_EPOCH, poison)
    out = tmp_path / "run.npz"
    result = CliRunner().invoke(app, _args(tiny, out))
    assert result.exit_code == 1 and "weights became NaN or infinite during epoch 2 (conv1.weight)" in result.output
    assert "keeps the last good checkpoint (1 complete epochs)" in result.output
    state = checkpoint.load(str(out))  # loads: every array in it is finite
    assert len(state.history) == 1


def test_ctrl_c_before_training_prints_one_line(tiny, tmp_path, monkeypatch):
    import nbconv_cli.train as train_command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_command, "load_data_in_background", interrupted)
    result = CliRunner().invoke(app, _args(tiny, tmp_path / "run.npz"))
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == ["interrupted before training started; nothing saved"]
    assert not (tmp_path / "run.npz").exists()


@pytest.mark.parametrize("start", ["runpy.run_module('nbconv', run_name='__main__', alter_sys=True)",
                                   "from importlib.metadata import entry_points\n"
                                   "entry_points(group='console_scripts')['nbconv'].load()()"],
                         ids=["python -m nbconv", "console script"])
def test_ctrl_c_while_the_command_loads_its_libraries_prints_one_line(start):
    """Ctrl-C arriving while Numba is imported (made certain by an import hook), for `python -m nbconv` and
    for the installed `nbconv` console script's entry point."""
    code = ("import builtins, runpy, sys\n"
            "real_import = builtins.__import__\n"
            "def interrupted(name, *args, **kwargs):\n"
            "    if name == 'numba':\n"
            "        raise KeyboardInterrupt\n"
            "    return real_import(name, *args, **kwargs)\n"
            "builtins.__import__ = interrupted\n"
            "sys.argv = ['nbconv', 'info']\n" + start + "\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130 and done.stderr.strip() == "interrupted while starting; nothing done", done.stderr
