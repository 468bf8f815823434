"""Layer and Sequential: load_state_dict takes copies of the caller's arrays (as PyTorch copies into its tensors);
backward before any forward pass is a clear error."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv import models, optim


def _model():
    return models.build("conv4k3,relu,flatten,fc3", input_shape=(1, 6, 6), num_classes=3)


def test_read_only_arrays_loaded_train_without_touching_the_callers_arrays(rng):
    state = {}
    for key, value in _model().state_dict().items():
        value = np.array(value)
        value.flags.writeable = False  # as np.load(..., mmap_mode="r") gives them
        state[key] = value
    given = {key: value.copy() for key, value in state.items()}
    model, expected = _model(), _model()
    model.load_state_dict(state)
    expected.load_state_dict(given)
    for key, parameter in model.named_parameters().items():
        assert not np.may_share_memory(parameter.value, state[key])
    x, labels = rng.random((4, 1, 6, 6), dtype=np.float32), np.array([0, 1, 2, 0])
    for trained in (model, expected):
        parameters = list(trained.parameters())
        optimizer = optim.SGD(parameters, lr=0.1, momentum=0.9)
        trained.backward(F.softmax_cross_entropy(trained.forward(x), labels)[1])
        parameters[0].grad = None  # a parameter without a gradient: one update a parameter, in place
        optimizer.step()
    for key in state:
        np.testing.assert_array_equal(state[key], given[key])
        np.testing.assert_array_equal(model.state_dict()[key], expected.state_dict()[key])
    assert not np.array_equal(model.state_dict()["fc1.weight"], given["fc1.weight"])


def test_backward_before_any_forward_pass_is_an_error_saying_so():
    model = _model()
    with pytest.raises(ValueError, match="backward needs a forward pass first: call forward"):
        model.backward(np.ones((2, 3), np.float32))


@pytest.mark.parametrize("device", ["gpu", "CUDA", "cpu0", None])
def test_moving_a_model_to_an_unknown_device_is_refused(device):
    """model.to('gpu') (or 'CUDA') left the model on the CPU without a word; now a ValueError naming it."""
    from nbconv import backend
    model = models.build("conv2k3,relu,fc2", (1, 4, 4))
    with pytest.raises(ValueError, match=f"device must be 'cpu' or 'cuda'.*got {device!r}"):
        model.to(device)
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        backend.transfer(np.zeros(2), device)
    assert type(model.to("cpu").parameters()[0].value) is np.ndarray
