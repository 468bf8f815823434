"""Seeded mutation fuzzing of checkpoint.load: mutants of a LeNet-5 checkpoint written by checkpoint.save (bytes
damaged anywhere, or one .npy member made hostile and the archive zipped again validly) either load with finite
weights of the right shapes or raise CheckpointError naming the file."""
import numpy as np
import pytest

from nbconv import checkpoint, models, optim
from tests import fuzzing

MUTANTS = 60


@pytest.fixture(scope="module")
def lenet_checkpoint(tmp_path_factory):
    """The bytes of a LeNet-5 checkpoint with SGD momentum state, a config and one epoch of history."""
    model = models.build("lenet", (1, 28, 28), seed=1)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for parameter in model.parameters():
        parameter.grad = np.full(parameter.shape, 0.01, np.float32)
    optimizer.step()
    path = tmp_path_factory.mktemp("seed") / "lenet.npz"
    checkpoint.save(str(path), model, (1, 28, 28), optimizer=optimizer,
                    config={"model": "lenet", "epochs": 2, "batch_size": 32, "lr": 0.1},
                    history=[{"epoch": 1, "lr": 0.1, "loss": 2.0, "accuracy": 0.5}])
    return path.read_bytes()


def sane_checkpoint(loaded):
    """None when every parameter and optimizer array is finite and of its parameter's size, else what is wrong."""
    state = loaded.model.state_dict()
    bad = [key for key, value in state.items() if not np.isfinite(value).all()]
    for key, value in (loaded.optimizer_state or {}).items():
        if isinstance(value, np.ndarray) and not np.isfinite(value).all():
            bad.append(f"optim/{key}")
    return f"non-finite {bad}" if bad else None


def test_mutated_checkpoints_load_sanely_or_are_one_checkpoint_error(lenet_checkpoint, tmp_path):
    rng = np.random.default_rng(20261127)
    defects, outcomes = [], {"ok": 0, "own": 0, "defect": 0}
    for index in range(MUTANTS):
        label, data = (fuzzing.zip_mutant(rng, lenet_checkpoint) if index % 4 else
                       fuzzing.mutate_bytes(rng, lenet_checkpoint))
        path = tmp_path / f"mutant{index}.npz"
        path.write_bytes(data)
        kind, detail = fuzzing.outcome(checkpoint.load, str(path), (checkpoint.CheckpointError,), sane_checkpoint)
        outcomes[kind] += 1
        if kind == "defect":
            defects.append(f"#{index} {label}: {detail}")
    assert not defects, "\n".join(defects)
    assert outcomes["own"] >= MUTANTS // 2  # the mutants reach the checks, not only the zip layer

