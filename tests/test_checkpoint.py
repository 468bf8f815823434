"""Checkpoints as untrusted input: every damaged or crafted file of a corpus raises one CheckpointError naming
the entry at fault; valid ones round-trip exactly."""
import json

import numpy as np
import pytest

from nbconv import checkpoint
from tests import damaged_checkpoints


@pytest.fixture(scope="module")
def corpus():
    return damaged_checkpoints.corpus()


def test_a_valid_checkpoint_round_trips(tmp_path):
    for optimizer in ("sgd", "adam"):
        arrays = damaged_checkpoints.valid_arrays(optimizer)
        path = tmp_path / f"{optimizer}.npz"
        path.write_bytes(damaged_checkpoints.npz_bytes(arrays))
        state = checkpoint.load(str(path))
        assert state.model.spec() == str(arrays["spec"]) and state.position is None
        for key, value in state.model.state_dict().items():
            assert np.array_equal(value, arrays[f"param/{key}"])
        assert state.optimizer_state["step_count"] == 1
        assert state.config == json.loads(str(arrays["config"]))


def test_every_damaged_checkpoint_is_one_clear_error(corpus, tmp_path):
    assert len(corpus) >= 35
    for name, (data, expected) in corpus.items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(data)
        with pytest.raises(checkpoint.CheckpointError) as caught:
            checkpoint.load(str(path))
        message = str(caught.value)
        assert expected in message and str(path) in message, (name, message)
        assert "allow_pickle" not in message and "\n" not in message, (name, message)


def test_save_then_load_keeps_the_position_inside_an_epoch(tmp_path):
    from nbconv import models
    model = models.build("fc10", (1, 4, 4))
    position = {"epoch": 0, "step": 2, "train_images": 100, "loss_sum": 12.5, "correct": 7, "seen": 64,
                "seconds": 0.25}
    path = str(tmp_path / "p.npz")
    checkpoint.save(path, model, (1, 4, 4), config={"batch_size": 32}, position=position)
    assert checkpoint.load(path).position == position


def test_a_crafted_generator_state_is_refused(tmp_path):
    from nbconv import models
    model = models.build("fc8,dropout,fc10", (1, 4, 4))
    path = tmp_path / "d.npz"
    checkpoint.save(str(path), model, (1, 4, 4))
    assert checkpoint.load(str(path)).model["dropout1"].rng.bit_generator.state == \
        model["dropout1"].rng.bit_generator.state
    arrays = dict(np.load(str(path)))
    for state in ({"bit_generator": "MT19937"}, {"bit_generator": "PCG64", "state": {"state": -1, "inc": "x"}}, 7):
        arrays["rng_state"] = np.array(json.dumps({"dropout1": state}))
        path.write_bytes(damaged_checkpoints.npz_bytes(arrays))
        with pytest.raises(checkpoint.CheckpointError, match="'rng_state' of layer 'dropout1' is invalid"):
            checkpoint.load(str(path))


def test_a_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.load(str(tmp_path / "nowhere.npz"))


@pytest.mark.parametrize("spec,input_shape", [("fc8,relu,fc3", (5,)), ("conv1d4k3,relu,fc3", (2, 9))])
def test_models_of_feature_and_sequence_inputs_round_trip(tmp_path, spec, input_shape):
    """models.build takes (features,) inputs and save wrote them, but load refused its own file ('input_shape must
    be 2 or 3 positive integers'): the trained weights were only readable by hand."""
    from nbconv import models
    model = models.build(spec, input_shape)
    path = str(tmp_path / "c.npz")
    checkpoint.save(path, model, input_shape)
    state = checkpoint.load(path)
    assert state.input_shape == input_shape and state.model.spec() == model.spec()
    x = np.random.default_rng(0).standard_normal((2,) + input_shape).astype(np.float32)
    np.testing.assert_array_equal(state.model.eval().forward(x), model.eval().forward(x))


def test_save_refuses_what_load_would_refuse(tmp_path):
    from nbconv import models
    model = models.build("fc10", (1, 4, 4))
    for config in ({"colour": "blue"}, {"lr": float("inf")}, {"epochs": 0}):
        with pytest.raises(checkpoint.CheckpointError):
            checkpoint.save(str(tmp_path / "c.npz"), model, (1, 4, 4), config=config)
    assert not (tmp_path / "c.npz").exists()


def test_random_damage_never_raises_anything_but_a_checkpoint_error(tmp_path):
    """Seeded byte flips, truncations and insertions anywhere in a valid checkpoint (stored and deflated)."""
    import io
    arrays = damaged_checkpoints.valid_arrays("adam")
    stored = damaged_checkpoints.npz_bytes(arrays)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    rng = np.random.default_rng(7)
    path = tmp_path / "mutated.npz"
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(400):
        data = bytearray(stored if trial % 2 else buffer.getvalue())
        kind = trial % 3
        position = int(rng.integers(0, len(data)))
        if kind == 0:
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, len(data)))] ^= int(rng.integers(1, 256))
        elif kind == 1:
            del data[position:]
        else:
            data[position:position] = rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))
        try:
            checkpoint.load(str(path))
            outcomes["loaded"] += 1
        except checkpoint.CheckpointError as error:
            assert "allow_pickle" not in str(error) and "\n" not in str(error)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 300
