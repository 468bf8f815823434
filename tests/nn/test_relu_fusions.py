"""A fully connected layer that runs the ReLU after it inside its own kernel calls on the CPU (nn.Linear): the
same bits as the two layers one after the other, remembered direct calls after the first, and copies that
leave those behind."""
import copy
import pickle

import numpy as np
import pytest

import nbconv.functional as F
from nbconv import models, nn
from nbconv.train import TrainConfig, make_optimizer


def _train(spec, steps, batch=5, shape=(1, 28, 28), mode_switch=False):
    model = models.build(spec, input_shape=shape, seed=0)
    optimizer = make_optimizer(TrainConfig(model="lenet5"), model.parameters())
    data = np.random.default_rng(3)
    outputs = []
    for step in range(steps):
        x = data.standard_normal((batch,) + shape).astype(np.float32)
        loss, grad = F.softmax_cross_entropy(model.forward(x), data.integers(0, 10, batch))
        model.backward(grad, need_input_grad=step % 2 == 1)
        optimizer.step()
        if mode_switch:
            outputs.append(model.eval().forward(x))
            model.train()
    return model, outputs


SPECS = ["lenet5", "conv4k3p1,relu,maxpool3s2p1,conv5k3,relu,maxpool2ceil,flatten,fc9,relu,fc10"]


@pytest.mark.parametrize("spec", SPECS)
def test_fused_training_gives_the_bits_of_the_layers_one_by_one(spec, monkeypatch):
    fused, fused_outputs = _train(spec, 4, mode_switch=True)
    assert fused._fused  # the fused calls ran
    monkeypatch.setattr(nn.Linear, "fuses_with", lambda self, following, input: False)
    alone, alone_outputs = _train(spec, 4, mode_switch=True)
    assert alone._fused == set()
    for key, value in alone.state_dict().items():
        assert np.array_equal(fused.state_dict()[key], value), key
    for got, expected in zip(fused_outputs, alone_outputs):
        np.testing.assert_array_equal(got, expected)


def test_lenet5_fuses_both_hidden_fully_connected_layers():
    model, _ = _train("lenet5", 1)
    names = sorted(model.layers[model._last_order[position]].name for position in model._fused)
    assert names == ["fc1", "fc2"]


def test_remembered_fused_calls_skip_the_functional_api(monkeypatch):
    model, _ = _train("lenet5", 2)
    x = np.random.default_rng(5).standard_normal((5, 1, 28, 28)).astype(np.float32)
    expected = model.forward(x)

    def refuse(*args, **kwargs):
        raise AssertionError("the validated path ran for a remembered call")
    for function in ("linear", "linear_relu", "linear_backward", "linear_relu_backward", "max_pool2d",
                     "max_pool2d_backward", "relu", "relu_backward", "conv2d", "conv2d_backward"):
        monkeypatch.setattr(F, function, refuse)
    np.testing.assert_array_equal(model.forward(x), expected)
    model.backward(np.ones_like(expected), need_input_grad=True)
    with pytest.raises(AssertionError, match="validated path"):  # another batch size is validated again
        model.forward(np.concatenate([x, x]))


def test_non_contiguous_input_takes_the_layers_one_by_one(rng):
    fc, relu = nn.Linear(4, 3, rng=rng), nn.ReLU()
    assert not fc.fuses_with(relu, rng.standard_normal((4, 8))[:, ::2])
    assert fc.fuses_with(relu, rng.standard_normal((4, 4)))
    assert not fc.fuses_with(nn.ReLU6(), rng.standard_normal((4, 4)))
    assert not nn.MaxPool2d(2).fuses_with(relu, rng.standard_normal((1, 1, 4, 4)))


def test_copies_and_pickles_leave_the_remembered_fused_calls_behind():
    model, _ = _train("lenet5", 1)
    x = np.random.default_rng(5).standard_normal((5, 1, 28, 28)).astype(np.float32)
    expected = model.forward(x)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        for name in ("fc1", "fc2"):
            assert twin[name]._last_fused_forward is None and twin[name]._last_fused_backward is None
        np.testing.assert_array_equal(twin.forward(x), expected)


def test_the_first_fused_call_checks_its_input_as_the_layer_does(rng):
    fc = nn.Linear(4, 3, rng=rng)
    with pytest.raises(ValueError):
        fc.forward_fused(rng.standard_normal((2, 5)).astype(np.float32))
    assert fc._last_fused_forward is None
    y = fc.forward_fused(rng.standard_normal((2, 4)).astype(np.float32))
    with pytest.raises(ValueError):  # a gradient of the wrong shape, after a remembered forward
        fc.backward_fused(np.ones((2, 4), np.float32))
    fc.backward_fused(np.ones_like(y))
    with pytest.raises(ValueError):
        fc.backward_fused(np.ones((3, 3), np.float32))


def test_a_layer_called_plain_and_fused_in_turn_remembers_each_call_apart():
    """forward and forward_fused keep their own remembered calls: the same arrays through both, in turn,
    give linear's values and their ReLU each time (the remembered calls from the second round on)."""
    layer = nn.Linear(7, 5, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((3, 7)).astype(np.float32)
    plain = F.linear(x, layer.weight.value, layer.bias.value)
    assert (plain < 0).any()
    for _ in range(3):
        np.testing.assert_array_equal(layer.forward(x), plain)
        np.testing.assert_array_equal(layer.forward_fused(x), np.maximum(plain, 0))
        np.testing.assert_array_equal(layer.output, np.maximum(plain, 0))
    assert layer._last_forward is not None and layer._last_fused_forward is not None
