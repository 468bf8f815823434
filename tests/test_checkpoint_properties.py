"""Property tests of the checkpoint reader: whatever JSON a checkpoint's config, history and optimizer scalars
hold, `load` either returns a checkpoint the training loop can use or raises CheckpointError."""
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbconv import checkpoint
from nbconv.train import TrainConfig, make_optimizer
from tests import damaged_checkpoints

FIELDS = list(TrainConfig.__dataclass_fields__)
json_values = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.just(10 ** 400) | st.floats() |
                           st.text(max_size=8) | st.sampled_from(["sgd", "adam", "SGD", "Adam", "mnist", "cosine"]) |
                           st.floats(0.001, 1.0) | st.integers(0, 10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                      max_size=3),
                           max_leaves=6)
# changes to a valid checkpoint's JSON entries: often none, so that usable checkpoints come up too
configs = st.just({}) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), json_values, max_size=4)
histories = st.just([]) | st.lists(st.dictionaries(st.sampled_from(["epoch", "loss", "lr", "note"]), json_values,
                                                   max_size=4), max_size=2)
scalars = st.just({}) | st.dictionaries(st.sampled_from(["type", "lr", "step_count", "other"]), json_values,
                                        max_size=3)

BASE = damaged_checkpoints.valid_arrays("sgd")


def _load(tmp_path_factory, **changes):
    """BASE with the given JSON entries updated by the given keys."""
    arrays = dict(BASE)
    for key, value in changes.items():
        entry = json.loads(str(BASE[key]))
        entry = entry + value if isinstance(entry, list) else {**entry, **value}
        arrays[key] = np.array(json.dumps(entry))
    path = tmp_path_factory.mktemp("p") / "c.npz"
    path.write_bytes(damaged_checkpoints.npz_bytes(arrays))
    try:
        return checkpoint.load(str(path))
    except checkpoint.CheckpointError as error:
        assert "\n" not in str(error) and str(path) in str(error)
        return None


def test_any_json_loads_as_a_usable_checkpoint_or_is_refused(tmp_path_factory):
    loaded = []

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(config=configs, history=histories, optim_scalars=scalars)
    def check(config, history, optim_scalars):
        state = _load(tmp_path_factory, config=config, history=history, optim_scalars=optim_scalars)
        if state is None:
            return
        loaded.append(state)
        train_config = TrainConfig(**state.config)  # what train --resume, eval and visualize do next
        optimizer = make_optimizer(train_config, state.model.parameters())
        optimizer.load_state_dict(state.optimizer_state)
        assert all(isinstance(entry["epoch"], int) for entry in state.history)
        assert np.isfinite(train_config.lr) and train_config.lr > 0

    check()
    assert len(loaded) >= 5  # the property was seen to hold on usable checkpoints too
