"""Residual and Concat containers: forward against numpy, gradients against finite differences (float64),
nesting, need_input_grad=False, shape checks, and state dicts with hierarchical names."""
import numpy as np
import pytest

from nbconv import nn


def _conv(c, d, k=3, padding=1, stride=1, seed=0, name=None, bias=True):
    layer = nn.Conv2d(c, d, k, stride=stride, padding=padding, bias=bias, rng=np.random.default_rng(seed),
                      dtype=np.float64)
    layer.name = name
    return layer


def _named(layer, name):
    layer.name = name
    return layer


def _numeric_gradient(function, array, eps=1e-6):
    grad = np.zeros_like(array)
    flat, grad_flat = array.reshape(-1), grad.reshape(-1)
    for index in range(flat.size):
        saved = flat[index]
        flat[index] = saved + eps
        plus = function()
        flat[index] = saved - eps
        minus = function()
        flat[index] = saved
        grad_flat[index] = (plus - minus) / (2 * eps)
    return grad


def _check_gradients(model, x, rng, parameter_keys):
    weights = rng.standard_normal(model.forward(x).shape)
    loss = lambda: float((model.forward(x) * weights).sum())  # noqa: E731
    model.forward(x)
    grad_x = model.backward(weights)
    np.testing.assert_allclose(grad_x, _numeric_gradient(loss, x), rtol=1e-5, atol=1e-7)
    parameters = model.named_parameters()
    for key in parameter_keys:
        model.forward(x)
        model.backward(weights)
        analytic = parameters[key].grad.copy()
        np.testing.assert_allclose(analytic, _numeric_gradient(loss, parameters[key].value), rtol=1e-5, atol=1e-7)


def _block(channels=3, seed=0, shortcut=False):
    out = 4 if shortcut else channels
    body = [_conv(channels, out, seed=seed, name="conv1"), _named(nn.ReLU(), "relu"),
            _conv(out, out, seed=seed + 1, name="conv2")]
    projection = [_conv(channels, out, k=1, padding=0, seed=seed + 2, name="0")] if shortcut else None
    return nn.Residual(body, projection, activation=nn.ReLU(), shortcut_name="downsample")


def test_residual_with_identity_shortcut_adds_its_input(rng):
    block = nn.Residual([_conv(3, 3, name="conv1"), _named(nn.Tanh(), "tanh")])
    x = rng.standard_normal((2, 3, 5, 7))
    body = np.tanh(block.body["conv1"].forward(x))
    np.testing.assert_allclose(block.forward(x), body + x)
    grad = rng.standard_normal((2, 3, 5, 7))
    block.forward(x)
    grad_x = block.backward(grad)
    conv_grad = block.body["conv1"].backward(grad * (1 - body ** 2))
    np.testing.assert_allclose(grad_x, conv_grad + grad)  # the identity path receives grad_output unchanged


@pytest.mark.parametrize("shortcut", [False, True])
def test_residual_gradients_match_finite_differences(shortcut, rng):
    channels = 4 if not shortcut else 3
    block = _block(channels, shortcut=shortcut)
    x = rng.standard_normal((2, channels, 5, 4))
    keys = ["conv1.weight", "conv2.bias"] + (["downsample.0.weight"] if shortcut else [])
    _check_gradients(block, x, rng, keys)


def test_concat_joins_branches_along_channels(rng):
    cat = nn.Concat([[_conv(3, 2, k=1, padding=0, name="conv")],
                     [_conv(3, 3, name="conv1"), _named(nn.ReLU(), "relu"), _conv(3, 1, k=3, padding=1, name="conv2")],
                     [_named(nn.MaxPool2d(3, 1, 1), "pool")]])
    x = rng.standard_normal((2, 3, 5, 6))
    expected = np.concatenate([branch.forward(x) for branch in cat.branches], axis=1)
    np.testing.assert_allclose(cat.forward(x), expected)
    assert cat.forward(x).shape == (2, 6, 5, 6) and cat.output_shape((3, 5, 6)) == (6, 5, 6)
    _check_gradients(cat, x, rng, ["branch1.conv.weight", "branch2.conv2.weight", "branch2.conv1.bias"])


def test_nested_graph_gradients_and_names(rng):
    inner = nn.Concat([[_conv(4, 2, k=1, padding=0, name="conv")], _block(4, seed=5, shortcut=True)])
    model = nn.Sequential([_named(_block(4, seed=1), "0"), _named(inner, "1"), _named(nn.GlobalAvgPool2d(), "gap"),
                           _named(nn.Flatten(), "flatten"), _named(nn.Linear(6, 3, rng=rng, dtype=np.float64), "fc")])
    x = rng.standard_normal((2, 4, 4, 5))
    assert model.forward(x).shape == (2, 3)
    assert "1.branch2.downsample.0.weight" in model.state_dict()
    assert "0.conv2.weight" in model.state_dict() and "1.branch1.conv.bias" in model.state_dict()
    _check_gradients(model, x, rng, ["0.conv1.weight", "1.branch2.downsample.0.weight", "1.branch1.conv.weight"])
    assert model["1.branch2.conv1"] is inner.branches[1].body["conv1"]


def test_need_input_grad_false_gives_the_same_parameter_gradients(rng):
    model = nn.Sequential([_named(nn.Concat([[_conv(3, 2, name="conv")], _block(3, shortcut=True)]), "cat"),
                           _named(_block(6, seed=3), "res")])
    x = rng.standard_normal((2, 3, 5, 5))
    grad = rng.standard_normal(model.forward(x).shape)
    model.backward(grad)
    expected = {key: parameter.grad.copy() for key, parameter in model.named_parameters().items()}
    model.forward(x)
    assert model.backward(grad, need_input_grad=False) is None
    for key, parameter in model.named_parameters().items():
        np.testing.assert_array_equal(parameter.grad, expected[key], err_msg=key)


def test_residual_shapes_must_match_at_build():
    block = nn.Residual([_conv(3, 4, name="conv1")])
    with pytest.raises(ValueError, match=r"body gives \(4, 5, 5\).*shortcut gives \(3, 5, 5\)"):
        nn.Sequential([_named(block, "res1")]).output_shape((3, 5, 5))
    cat = nn.Concat([[_conv(3, 2, name="conv")], [_conv(3, 2, padding=0, name="conv")]])
    with pytest.raises(ValueError, match=r"branch1 gives \(2, 5, 5\) and branch2 gives \(2, 3, 3\)"):
        _named(cat, "cat1").output_shape((3, 5, 5))


def test_state_dict_round_trips_and_checks_every_key(rng):
    model = nn.Sequential([_named(_block(3, shortcut=True), "block")])
    state = model.state_dict()
    assert sorted(state) == ["block.conv1.bias", "block.conv1.weight", "block.conv2.bias", "block.conv2.weight",
                             "block.downsample.0.bias", "block.downsample.0.weight"]
    other = nn.Sequential([_named(_block(3, seed=9, shortcut=True), "block")])
    other.load_state_dict({key: value.astype(np.float32) for key, value in state.items()})  # dtype converted
    for key, value in other.state_dict().items():
        assert value.dtype == np.float64
        np.testing.assert_allclose(value, state[key], rtol=1e-6)
    with pytest.raises(ValueError, match=r"missing keys \['block.conv1.bias'\]"):
        other.load_state_dict({key: value for key, value in state.items() if key != "block.conv1.bias"})
    with pytest.raises(ValueError, match=r"unexpected keys \['block.extra'\]"):
        other.load_state_dict({**state, "block.extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"block.conv2.weight.*shape \(4, 4, 3, 3\), got \(4, 4, 1, 1\)"):
        other.load_state_dict({**state, "block.conv2.weight": np.zeros((4, 4, 1, 1))})
    with pytest.raises(TypeError, match="block.conv1.bias"):
        other.load_state_dict({**state, "block.conv1.bias": np.array(["a"] * 4)})
    partial = {"block.conv1.weight": np.zeros((4, 3, 3, 3)), "unknown": np.zeros(2)}
    result = other.load_state_dict(partial, strict=False)
    assert result.unexpected_keys == ["unknown"] and "block.conv2.weight" in result.missing_keys
    assert not other.state_dict()["block.conv1.weight"].any()


def test_spec_of_containers():
    block = _block(3, shortcut=True)
    assert block.spec() == "res[conv4k3p1,relu,conv4k3p1|conv4k1],relu"
    cat = nn.Concat([[_conv(3, 2, k=1, padding=0, name="conv1")], [_conv(3, 3, name="conv1")]])
    assert cat.spec() == "cat[conv2k1|conv3k3p1]"


def test_graph_on_cuda_matches_cpu(rng):
    """Residual sums, concatenation and batch norm on device arrays (Numba's simulator without a GPU): the
    same outputs, gradients, running statistics and state dict as on the CPU; load_state_dict keeps devices."""
    from nbconv import backend, models
    spec = "conv4k3p1,bn,relu,res[conv4k3p1,bn|conv4k1],relu,cat[conv2k1|res[conv4k1]],gap,fc3"
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    grad = rng.standard_normal((2, 3)).astype(np.float32)
    results = []
    for device in ("cpu", "cuda"):
        model = models.build(spec, input_shape=(3, 5, 5), seed=2).to(device)
        output = backend.to_host(model.forward(backend.transfer(x, device)))
        grad_x = model.backward(backend.transfer(grad, device))
        if device == "cuda":
            assert backend.is_device_array(grad_x) and backend.is_device_array(model["bn1"].running_mean)
        results.append((output, backend.to_host(grad_x), model.state_dict(),
                        {key: backend.to_host(p.grad) for key, p in model.named_parameters().items()}))
        model.load_state_dict(model.state_dict())
        assert all(backend.backend_of(p.value) == device for p in model.parameters())
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-4, atol=1e-5)
    for key in results[0][2]:
        np.testing.assert_allclose(results[1][2][key], results[0][2][key], rtol=1e-4, atol=1e-5, err_msg=key)
    for key in results[0][3]:
        np.testing.assert_allclose(results[1][3][key], results[0][3][key], rtol=1e-3, atol=1e-5, err_msg=key)


def _bn(channels, name):
    return _named(nn.BatchNorm2d(channels, momentum=0.0, dtype=np.float64), name)


def _body_with_fusion_and_reordering():
    """conv, bn+relu (fused), relu-then-pool (reordered), conv, and a closing batch norm."""
    return [_conv(3, 4, name="conv1"), _bn(4, "bn1"), _named(nn.ReLU(), "relu1"), _conv(4, 4, name="conv2"),
            _named(nn.ReLU(), "relu2"), _named(nn.MaxPool2d(2, stride=1), "pool"), _conv(4, 4, name="conv3"),
            _bn(4, "bn2")]


def test_forward_all_but_last_leaves_a_full_backward(rng):
    """Running every layer but the last, then the last by hand, gives what forward gives, and the backward
    over all the layers that follows gives what it gives after forward (fusions and reordering included)."""
    x = rng.standard_normal((2, 3, 6, 5))
    whole = nn.Sequential(_body_with_fusion_and_reordering())
    grad = rng.standard_normal(whole.forward(x).shape)
    expected_output = whole.forward(x)
    expected_grad_x = whole.backward(grad)
    expected = {key: parameter.grad.copy() for key, parameter in whole.named_parameters().items()}
    assert whole._fused
    split = nn.Sequential(_body_with_fusion_and_reordering())
    hidden = split.forward_all_but_last(x)
    np.testing.assert_array_equal(hidden, nn.Sequential(_body_with_fusion_and_reordering()[:-1]).forward(x))
    np.testing.assert_array_equal(split.layers[-1].forward(hidden), expected_output)
    np.testing.assert_array_equal(split.backward(grad), expected_grad_x)
    for key, parameter in split.named_parameters().items():
        np.testing.assert_array_equal(parameter.grad, expected[key], err_msg=key)
    single = nn.Sequential([_bn(3, "bn")])  # nothing before the last layer: the input comes back
    assert single.forward_all_but_last(x) is x


def test_forward_all_but_last_needs_a_last_layer_that_runs_last(rng):
    model = nn.Sequential([_conv(3, 3, name="conv"), _named(nn.ReLU(), "relu"), _named(nn.MaxPool2d(2), "pool")])
    with pytest.raises(ValueError, match="forward_all_but_last needs a last layer that runs last"):
        model.forward_all_but_last(rng.standard_normal((1, 3, 4, 4)))


def test_residual_closing_batch_norm_after_fusions_gradients_match_finite_differences(rng):
    """The block's closing batch norm runs the sum and the ReLU, after a body that fuses and reorders."""
    block = _named(nn.Residual(_body_with_fusion_and_reordering(), [_conv(3, 4, k=2, padding=0, name="0")],
                               activation=nn.ReLU()), "res")
    model = nn.Sequential([block])
    model.train()
    _check_gradients(model, rng.standard_normal((2, 3, 5, 4)), rng,
                     ["res.conv1.weight", "res.bn1.weight", "res.bn2.bias", "res.shortcut.0.weight"])
    assert block._fused_sum and block.body._fused
