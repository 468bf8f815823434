"""Every layer's backward by finite differences (float64), and a whole network's, input gradient included."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv import models, nn
from tests import reference


def _check_layer(layer, x, rng, tolerance=1e-6):
    """The layer's input and parameter gradients equal central differences of sum(forward(x) * grad_y)."""
    y = layer.forward(x)
    grad_y = rng.standard_normal(y.shape)
    grad_x = layer.backward(grad_y)
    forward = lambda: layer.forward(x)  # noqa: E731
    np.testing.assert_allclose(grad_x, reference.numerical_gradient(forward, x, grad_y), rtol=tolerance, atol=1e-7)
    for name, parameter in layer.named_parameters().items():
        layer.forward(x)
        layer.backward(grad_y)
        analytic = parameter.grad.copy()
        numeric = reference.numerical_gradient(forward, parameter.value, grad_y)
        np.testing.assert_allclose(analytic, numeric, rtol=tolerance, atol=1e-7, err_msg=name)


LAYERS = {
    "conv2d": (lambda rng: nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2, rng=rng,
                                     dtype=np.float64), (2, 4, 7, 8)),
    "conv1d": (lambda rng: nn.Conv1d(3, 4, 3, stride=2, padding=1, rng=rng, dtype=np.float64), (2, 3, 11)),
    "local": (lambda rng: nn.LocallyConnected2d(2, 3, 3, (6, 5), stride=(2, 1), padding=1, rng=rng,
                                                dtype=np.float64), (2, 2, 6, 5)),
    "linear": (lambda rng: nn.Linear(7, 5, rng=rng, dtype=np.float64), (3, 7)),
    "avgpool": (lambda rng: nn.AvgPool2d(3, 2, 1, ceil_mode=True), (2, 2, 7, 6)),
    "gap": (lambda rng: nn.GlobalAvgPool2d(), (2, 3, 4, 5)),
    "tanh": (lambda rng: nn.Tanh(), (2, 3, 4)),
    "sigmoid": (lambda rng: nn.Sigmoid(), (2, 3, 4)),
    "leaky_relu": (lambda rng: nn.LeakyReLU(0.1), (2, 3, 4)),
    "flatten": (lambda rng: nn.Flatten(), (2, 3, 4, 5)),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_backward_matches_finite_differences(name, rng):
    make, shape = LAYERS[name]
    x = rng.standard_normal(shape)
    x[np.abs(x) < 1e-3] = 0.5
    _check_layer(make(rng), x, rng)


def test_relu_and_max_pool_layers_backward(rng):
    x = rng.permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6) * 0.01 - 0.495  # distinct, away from 0 and ties
    _check_layer(nn.ReLU(), x, rng)
    _check_layer(nn.MaxPool2d(2), x, rng)
    _check_layer(nn.MaxPool2d(3, 2, 1), x, rng)


def test_locally_connected_forward_matches_reference(rng):
    layer = nn.LocallyConnected2d(3, 4, (3, 2), (7, 6), stride=2, padding=1, rng=rng, dtype=np.float64)
    layer.bias.value[:] = rng.standard_normal(layer.bias.shape)
    x = rng.standard_normal((2, 3, 7, 6))
    np.testing.assert_allclose(layer.forward(x), reference.local_conv2d(x, layer.weight.value, layer.bias.value,
                                                                        (2, 2), (1, 1)), atol=1e-12)
    assert layer.weight.shape == (4, 4, 4, 3, 3, 2)  # one filter bank per output position


def test_dropout_masks_in_training_and_is_identity_in_eval(rng):
    layer = nn.Dropout(0.4, rng=np.random.default_rng(3))
    x = rng.standard_normal((50, 40))
    y = layer.forward(x)
    kept = y != 0
    assert 0.5 < kept.mean() < 0.7
    np.testing.assert_allclose(y[kept], x[kept] / 0.6)
    grad_y = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(grad_y), grad_y * kept / 0.6)
    layer.eval()
    assert layer.forward(x) is x


def test_whole_network_backward_reaches_the_input(rng):
    model = models.build("conv3k3p1,tanh,maxpool2,conv4k3,sigmoid,local2k2,relu,fc6,lrelu,dropout0,fc3",
                         input_shape=(2, 8, 8), seed=1, dtype=np.float64)
    x = rng.standard_normal((2, 2, 8, 8))
    labels = np.array([0, 2])

    def loss():
        return F.softmax_cross_entropy(model.forward(x), labels)[0]

    _, grad_logits = F.softmax_cross_entropy(model.forward(x), labels)
    grad_x = model.backward(grad_logits)
    grads = {key: p.grad.copy() for key, p in model.named_parameters().items()}
    np.testing.assert_allclose(grad_x, reference.numerical_gradient(loss, x, 1.0), rtol=1e-5, atol=1e-8)
    for key, parameter in model.named_parameters().items():
        np.testing.assert_allclose(grads[key], reference.numerical_gradient(loss, parameter.value, 1.0), rtol=1e-5,
                                   atol=1e-8, err_msg=key)


def test_softmax_cross_entropy_value_gradient_and_labels(rng):
    logits = rng.standard_normal((5, 4)) * 3
    labels = np.array([0, 3, 1, 1, 2])
    loss, grad = F.softmax_cross_entropy(logits, labels)
    assert loss == pytest.approx(reference.softmax_cross_entropy(logits, labels), rel=1e-12)
    numeric = reference.numerical_gradient(lambda: reference.softmax_cross_entropy(logits, labels), logits, 1.0)
    np.testing.assert_allclose(grad, numeric, atol=1e-8)
    assert np.isfinite(F.softmax_cross_entropy(np.array([[1000.0, -1000.0]]), np.array([1]))[0])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        F.softmax_cross_entropy(logits, np.array([0, 4, 1, 1, 2]))
    with pytest.raises(TypeError, match="labels must be an integer array"):
        F.softmax_cross_entropy(logits, labels.astype(np.float64))


def test_softmax_cross_entropy_of_an_empty_batch_is_nan_without_a_warning_as_in_pytorch():
    """PyTorch's cross_entropy (reduction='mean') of no samples is 0/0 = NaN, its gradient empty."""
    import warnings
    for dtype in (np.float32, np.float64):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loss, grad = F.softmax_cross_entropy(np.zeros((0, 4), dtype), np.zeros(0, np.int64))
        assert np.isnan(loss) and isinstance(loss, float)
        assert grad.shape == (0, 4) and grad.dtype == dtype


def test_relu_before_max_pool_runs_after_it_with_identical_results(rng):
    """Sequential runs a ReLU followed by max pooling as pooling then ReLU: same output and gradients, also
    for windows with no positive value, ties, and a window half outside the input."""
    spec = "conv3k3p1,relu,maxpool3s2p1,conv4k2,relu,maxpool2,relu,fc5"
    model = models.build(spec, input_shape=(2, 9, 9), seed=2, dtype=np.float64)
    assert model.execution_order(len(model.layers)) == [0, 2, 1, 3, 5, 4, 6, 7, 8]
    x = rng.standard_normal((3, 2, 9, 9))
    x[0, :, :4, :4] = -1.0  # windows whose maximum is not positive
    x[1, :, 2:6, 2:6] = 0.25  # ties
    grad_logits = rng.standard_normal((3, 5))
    results = []
    for reorder in (True, False):
        model.reorder = reorder
        output = model.forward(x)
        grad_x = model.backward(grad_logits)
        results.append((output, grad_x, {key: p.grad.copy() for key, p in model.named_parameters().items()}))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    for key in results[0][2]:
        np.testing.assert_array_equal(results[0][2][key], results[1][2][key], err_msg=key)
    model.reorder = True
    partial = model.forward(x, until="relu1")  # stopping between the two keeps the ReLU's own output
    np.testing.assert_array_equal(partial, np.maximum(model.forward(x, until="conv1"), 0))
    model.forward(x)
    with pytest.raises(ValueError, match="until='relu1'"):
        model.backward(np.ones_like(partial), start="relu1")
    model.forward(x, until="relu1")
    assert model.backward(np.ones_like(partial), start="relu1").shape == x.shape


def test_the_execution_order_follows_a_changed_layer_list_or_reorder_setting():
    """execution_order is worked out once per count; replacing a layer, changing the list or `reorder` is seen."""
    model = models.build("conv3k3p1,relu,maxpool2,fc5", input_shape=(1, 8, 8), seed=0)
    assert model.execution_order(4) == [0, 2, 1, 3] and model.execution_order(2) == [0, 1]
    order = model.execution_order(4)
    order.append(9)  # the caller's copy
    assert model.execution_order(4) == [0, 2, 1, 3]
    model.reorder = False
    assert model.execution_order(4) == [0, 1, 2, 3]
    model.reorder = True
    relu = model.layers[1]
    model.layers[1] = nn.Tanh()
    model.layers[1].name = "tanh1"
    assert model.execution_order(4) == [0, 1, 2, 3]  # tanh does not commute with the maximum
    model.layers[1] = relu
    assert model.execution_order(4) == [0, 2, 1, 3]
    model.layers.insert(0, nn.ReLU())
    model.layers[0].name = "relu0"
    assert model.execution_order(5) == [0, 1, 3, 2, 4]


def test_locally_connected_first_layer_trains_in_a_sequential_model(rng):
    """A training step skips the first layer's input gradient (need_input_grad=False): LocallyConnected2d
    must accept that, still set its parameter gradients, and the loss must go down."""
    from nbconv import optim
    model = models.build("local4k3,relu,fc10", input_shape=(1, 8, 8), seed=0)
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 10, 16)
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        loss, grad_logits = F.softmax_cross_entropy(model.forward(x), labels)
        assert model.backward(grad_logits, need_input_grad=False) is None
        assert all(parameter.grad is not None for parameter in model.parameters())
        optimizer.step()
        losses.append(loss)
    assert losses[-1] < losses[0]
    grad_input, grad_weight, _ = F.local_conv2d_backward(
        np.ones((2, 3, 4, 4)), np.ones((2, 2, 6, 6)), np.ones((4, 4, 3, 2, 3, 3)), need_input_grad=False)
    assert grad_input is None and grad_weight.shape == (4, 4, 3, 2, 3, 3)


@pytest.mark.parametrize("make, error, words", [
    (lambda: nn.Conv2d(4, 4, 3, groups=0), ValueError, "groups must be >= 1"),
    (lambda: nn.Conv1d(4, 4, 3, groups=0), ValueError, "groups must be >= 1"),
    (lambda: nn.Conv1d(4, 4, 3, groups=2.0), TypeError, "groups must be an int"),
    (lambda: nn.Conv1d(4.0, 4, 3), TypeError, "in_channels must be an int"),
    (lambda: nn.Conv1d(4, 0, 3), ValueError, "out_channels must be >= 1"),
])
def test_bad_constructor_arguments_are_errors_naming_them(make, error, words):
    with pytest.raises(error, match=words):
        make()
