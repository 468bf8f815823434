"""Layers that call their kernels directly for the shapes of their last call (nbconv.nn.last_call): the same
bits as the validated path, the same errors for bad input, and outputs that later calls never overwrite."""
import copy
import pickle
import re
import threading

import numpy as np
import pytest

import nbconv.functional as F
from nbconv import models, nn
from nbconv.nn import layers as layers_module
from nbconv.train import TrainConfig, make_optimizer


def _conv(rng, dtype):
    layer = nn.Conv2d(3, 5, 3, stride=2, padding=1, rng=rng, dtype=dtype)
    layer.bias.value[:] = rng.standard_normal(5)
    return layer


def _validated(layer, x, grad_y):
    """(output, grad_input, {name: grad}) from nbconv.functional alone, as a layer without memory computes them."""
    if isinstance(layer, nn.Conv2d):
        h = layer.hyper
        y = F.conv2d(x, layer.weight.value, None if layer.bias is None else layer.bias.value, **h)
        grad_x, grad_w, grad_b = F.conv2d_backward(grad_y, x, layer.weight.value, h["stride"], h["padding"],
                                                   h["dilation"], h["groups"])
        return y, grad_x, {"weight": grad_w, "bias": grad_b}
    if isinstance(layer, nn.Linear):
        y = F.linear(x, layer.weight.value, layer.bias.value)
        grad_x, grad_w, grad_b = F.linear_backward(grad_y, x, layer.weight.value)
        return y, grad_x, {"weight": grad_w, "bias": grad_b}
    if isinstance(layer, nn.MaxPool2d):
        return F.max_pool2d(x, **layer.hyper), F.max_pool2d_backward(grad_y, x, **layer.hyper), {}
    if isinstance(layer, nn.AvgPool2d):
        return F.avg_pool2d(x, **layer.hyper), F.avg_pool2d_backward(grad_y, x, **layer.hyper), {}
    forward = getattr(F, layer.function)
    return forward(x), getattr(F, layer.function + "_backward")(grad_y, x), {}


CASES = {
    "conv2d": (_conv, (4, 3, 9, 7)),
    "conv2d-nobias": (lambda rng, dtype: nn.Conv2d(4, 6, (3, 2), dilation=(1, 2), groups=2, bias=False, rng=rng,
                                                   dtype=dtype), (3, 4, 8, 9)),
    "linear": (lambda rng, dtype: nn.Linear(7, 5, rng=rng, dtype=dtype), (3, 7)),
    "maxpool": (lambda rng, dtype: nn.MaxPool2d(3, 2, 1, ceil_mode=True), (2, 3, 7, 6)),
    "avgpool": (lambda rng, dtype: nn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 7, 6)),
    "relu": (lambda rng, dtype: nn.ReLU(), (2, 3, 5, 5)),
    "tanh": (lambda rng, dtype: nn.Tanh(), (3, 4)),
    "sigmoid": (lambda rng, dtype: nn.Sigmoid(), (2, 3, 4)),
}


def _grads(layer):
    return {name: parameter.grad for name, parameter in layer.named_parameters().items()}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_repeated_calls_give_the_validated_paths_bits_and_keep_earlier_outputs(name, dtype, rng):
    make, shape = CASES[name]
    layer = make(rng, dtype)
    kept = []
    for _ in range(4):  # the first call is validated, the others direct
        x = rng.standard_normal(shape).astype(dtype)
        y = layer.forward(x)
        grad_y = rng.standard_normal(y.shape).astype(dtype)
        grad_x = layer.backward(grad_y)
        expected_y, expected_grad_x, expected_grads = _validated(layer, x, grad_y)
        assert y.dtype == expected_y.dtype and np.array_equal(y, expected_y)
        assert np.array_equal(grad_x, expected_grad_x)
        for key, grad in _grads(layer).items():
            assert np.array_equal(grad, expected_grads[key]), key
        kept.append((y, y.copy(), grad_x, grad_x.copy(), {k: g.copy() for k, g in _grads(layer).items()},
                     _grads(layer)))
    assert layer._last_forward is not None and layer._last_backward is not None
    for y, y_then, grad_x, grad_x_then, grads_then, grads in kept:  # nothing later wrote into them
        assert np.array_equal(y, y_then) and np.array_equal(grad_x, grad_x_then)
        for key in grads:
            assert np.array_equal(grads[key], grads_then[key])


@pytest.mark.parametrize("name", sorted(CASES))
def test_remembered_calls_skip_the_functional_api(name, rng, monkeypatch):
    make, shape = CASES[name]
    layer = make(rng, np.float32)
    x = rng.standard_normal(shape).astype(np.float32)
    y = layer.forward(x)
    grad_y = np.ones_like(y)
    layer.backward(grad_y)

    def refuse(*args, **kwargs):
        raise AssertionError("the validated path ran for a remembered call")
    for function in ("conv2d", "conv2d_backward", "linear", "linear_backward", "max_pool2d", "max_pool2d_backward",
                     "avg_pool2d", "avg_pool2d_backward", "relu", "relu_backward", "tanh", "tanh_backward",
                     "sigmoid", "sigmoid_backward"):
        monkeypatch.setattr(F, function, refuse)
    assert np.array_equal(layer.forward(x), y)
    layer.backward(grad_y)
    with pytest.raises(AssertionError, match="validated path"):  # a new batch size is validated again
        layer.forward(np.concatenate([x, x]))


def test_bad_input_after_remembered_calls_raises_what_a_new_layer_raises(rng):
    layer, fresh = _conv(np.random.default_rng(0), np.float32), _conv(np.random.default_rng(0), np.float32)
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    for _ in range(2):
        layer.backward(np.ones_like(layer.forward(x)))
    bad_inputs = [
        rng.standard_normal((2, 4, 9, 7)).astype(np.float32),  # channels
        rng.standard_normal((2, 3, 9, 7)),  # float64 against float32 weights
        np.ones((2, 3, 9, 7), np.int32),  # dtype
        np.ones((2, 3, 0, 7), np.float32),  # an empty plane
        np.ones((1, 2, 3, 9, 7), np.float32),  # 5-D
        None,
    ]
    for bad in bad_inputs:
        with pytest.raises((TypeError, ValueError)) as expected:
            fresh.forward(bad)
        with pytest.raises(type(expected.value), match=re.escape(str(expected.value))):
            layer.forward(bad)
    layer.forward(x)
    with pytest.raises(ValueError, match="grad_output must have shape"):
        layer.backward(np.ones((2, 5, 4, 4), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        layer.backward(np.ones((2, 5, 5, 4), np.float64))


def test_a_new_parameter_array_hyper_parameter_or_gradient_buffer_is_noticed(rng):
    layer = _conv(rng, np.float64)
    x = rng.standard_normal((2, 3, 9, 7))
    layer.forward(x)
    layer.forward(x)
    layer.weight.value = rng.standard_normal(layer.weight.shape)  # a new array: new results
    np.testing.assert_array_equal(layer.forward(x), F.conv2d(x, layer.weight.value, layer.bias.value, 2, 1))
    layer.hyper["stride"] = 1
    y = layer.forward(x)
    assert y.shape == (2, 5, 9, 7)
    np.testing.assert_array_equal(y, F.conv2d(x, layer.weight.value, layer.bias.value, 1, 1))
    grad_y = rng.standard_normal(y.shape)
    for _ in range(2):
        buffer = np.full(layer.weight.shape, np.nan)
        layer.weight.grad_buffer = buffer
        layer.backward(grad_y)
        assert layer.weight.grad is buffer  # written in place, as the optimizer's flat buffer expects
        np.testing.assert_array_equal(buffer, F.conv2d_backward(grad_y, x, layer.weight.value, 1, 1)[1])
    layer.weight.grad_buffer = None
    layer.backward(grad_y)
    assert layer.weight.grad is not buffer


@pytest.mark.parametrize("name", ["conv", "linear", "linear_relu"])
def test_gradient_buffers_the_kernels_cannot_write_give_new_arrays_on_every_call(name, rng):
    if name == "conv":
        layer, x = _conv(rng, np.float32), rng.random((2, 3, 9, 7), dtype=np.float32)
    else:
        layer, x = nn.Linear(6, 4, rng=rng), rng.standard_normal((3, 6)).astype(np.float32)
    forward, backward = (layer.forward_fused, layer.backward_fused) if name == "linear_relu" else \
        (layer.forward, layer.backward)
    y = forward(x)
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    backward(grad_y)
    expected = layer.weight.grad.copy(), layer.bias.grad.copy()
    fortran = np.zeros(layer.weight.shape[::-1], np.float32).T
    read_only = np.zeros(layer.bias.shape, np.float32)
    read_only.flags.writeable = False
    layer.weight.grad_buffer, layer.bias.grad_buffer = fortran, read_only
    for _ in range(3):  # the validated call, then the remembered ones
        forward(x)
        backward(grad_y)
        assert layer.weight.grad is not fortran and layer.bias.grad is not read_only
        np.testing.assert_array_equal(layer.weight.grad, expected[0])
        np.testing.assert_array_equal(layer.bias.grad, expected[1])
    assert not fortran.any() and not read_only.any()


def test_non_contiguous_inputs_and_mode_changes(rng):
    pool = nn.MaxPool2d(2)
    x = rng.standard_normal((2, 3, 8, 12))[:, :, :, ::2]  # not contiguous: validated every time
    for _ in range(2):
        np.testing.assert_array_equal(pool.forward(x), F.max_pool2d(np.ascontiguousarray(x), 2))
    assert pool._last_forward is None
    x = np.ascontiguousarray(x)
    pool.forward(x)
    pool.eval()
    pool.forward(x)
    assert pool.indices is None
    grad_y = rng.standard_normal((2, 3, 4, 3))
    np.testing.assert_array_equal(pool.backward(grad_y), F.max_pool2d_backward(grad_y, x, 2))  # recomputed
    pool.train()
    pool.forward(x)
    np.testing.assert_array_equal(pool.backward(grad_y), F.max_pool2d_backward(grad_y, x, 2))


def test_lenet5_training_steps_are_bit_identical_to_the_validated_path(monkeypatch):
    def train(steps):
        model = models.build("lenet5", input_shape=(1, 28, 28), seed=0)
        optimizer = make_optimizer(TrainConfig(model="lenet5"), model.parameters())
        data = np.random.default_rng(3)
        for _ in range(steps):
            x = data.standard_normal((5, 1, 28, 28)).astype(np.float32)
            loss, grad = F.softmax_cross_entropy(model.forward(x), data.integers(0, 10, 5))
            model.backward(grad, need_input_grad=False)
            optimizer.step()
        return model.state_dict()

    remembered = train(4)
    monkeypatch.setattr(layers_module, "plan_for", lambda remembered, key: None)  # validated every call
    validated = train(4)
    for key in validated:
        assert np.array_equal(remembered[key], validated[key]), key


def test_models_training_on_several_threads_at_once_give_each_ones_bits_alone():
    """Remembered convolution plans and scratch views are shared by every thread: models training at once,
    at batch sizes that need different plans and grow the scratch while the others run, end with the weights
    each gets alone."""
    from nbconv.kernels.cpu.conv import plan as planning

    def train(batch, results):
        model = models.build("lenet5", input_shape=(1, 28, 28), seed=batch)
        optimizer = make_optimizer(TrainConfig(model="lenet5"), model.parameters())
        data = np.random.default_rng(batch)
        for _ in range(3):
            x = data.standard_normal((batch, 1, 28, 28)).astype(np.float32)
            loss, grad = F.softmax_cross_entropy(model.forward(x), data.integers(0, 10, batch))
            model.backward(grad, need_input_grad=False)
            optimizer.step()
        results[batch] = model.state_dict()

    batches = (1, 7, 32, 61)
    alone = {}
    for batch in batches:
        train(batch, alone)
    planning.forget_plans()
    together = {}
    threads = [threading.Thread(target=train, args=(batch, together)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for batch in batches:
        for key in alone[batch]:
            assert np.array_equal(together[batch][key], alone[batch][key]), (batch, key)


def test_threads_sharing_a_layer_get_their_own_outputs(rng):
    layer = _conv(rng, np.float32)
    inputs = [rng.standard_normal((2, 3, 9, 7)).astype(np.float32) for _ in range(8)]
    expected = [F.conv2d(x, layer.weight.value, layer.bias.value, 2, 1) for x in inputs]
    results = [None] * len(inputs)

    def run(index):
        for _ in range(20):
            results[index] = layer.forward(inputs[index])

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result, wanted in zip(results, expected):
        np.testing.assert_array_equal(result, wanted)


def test_copies_and_pickles_of_a_used_layer_leave_the_remembered_calls_behind(rng):
    layer = _conv(rng, np.float32)
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    y = layer.forward(x)
    layer.backward(np.ones_like(y))
    for twin in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert twin._last_forward is None and twin._last_backward is None
        for _ in range(2):
            assert np.array_equal(twin.forward(x), y)
        twin.weight.value[...] = 0  # its own weight array: the original's results stay
        assert np.array_equal(layer.forward(x), y)
