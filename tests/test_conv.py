"""conv2d / conv1d on the CPU: against the float64 reference and by finite differences."""
import numpy as np
import pytest

import nbconv.functional as F
from tests import reference

# (N, C, H, W, D, KH, KW, stride, padding, dilation, groups)
CASES = [
    (1, 1, 5, 5, 1, 3, 3, 1, 0, 1, 1),
    (2, 3, 7, 9, 4, 3, 2, 2, 1, 1, 1),
    (3, 4, 11, 8, 6, 3, 3, (2, 1), (1, 2), (2, 1), 2),
    (1, 6, 9, 10, 6, 3, 3, 1, 1, 1, 6),          # depthwise 3x3 (conv/depthwise.py)
    (3, 5, 7, 4, 5, 3, 3, 1, (0, 2), 1, 5),      # depthwise 3x3, padding differing per axis
    (2, 3, 3, 6, 3, 3, 3, 1, 2, 1, 3),           # depthwise 3x3, padding 2
    (2, 2, 6, 7, 4, 3, 3, 1, 1, 1, 2),           # two filters a channel (input gradient: direct.py)
    (2, 2, 6, 13, 5, 1, 4, (1, 3), (0, 2), (1, 2), 1),
    (1, 3, 8, 8, 3, 5, 5, 3, 2, 1, 3),
    (2, 4, 10, 7, 4, 2, 3, 2, 0, (2, 2), 4),
]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def _random_case(case, dtype, rng):
    N, C, H, W, D, KH, KW, stride, padding, dilation, groups = case
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((D, C // groups, KH, KW)).astype(dtype)
    b = rng.standard_normal(D).astype(dtype)
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_conv2d_forward_matches_reference(case, dtype, rng):
    x, w, b, hyper = _random_case(case, dtype, rng)
    y = F.conv2d(x, w, b, **hyper)
    p = _pair(hyper["padding"])
    expected = reference.conv2d(x, w, b, _pair(hyper["stride"]), ((p[0], p[0]), (p[1], p[1])),
                                _pair(hyper["dilation"]), hyper["groups"])
    assert y.dtype == dtype and y.shape == expected.shape
    tolerance = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, expected, rtol=tolerance, atol=tolerance * 10)


@pytest.mark.parametrize("case", CASES)
def test_conv2d_backward_matches_finite_differences(case, rng):
    x, w, b, hyper = _random_case(case, np.float64, rng)
    y = F.conv2d(x, w, b, **hyper)
    grad_y = rng.standard_normal(y.shape)
    grad_x, grad_w, grad_b = F.conv2d_backward(grad_y, x, w, **hyper)
    forward = lambda: F.conv2d(x, w, b, **hyper)  # noqa: E731
    np.testing.assert_allclose(grad_x, reference.numerical_gradient(forward, x, grad_y), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad_w, reference.numerical_gradient(forward, w, grad_y), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad_b, reference.numerical_gradient(forward, b, grad_y), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kernel,dilation", [((3, 3), 1), ((2, 4), 1), ((3, 2), 2)])
def test_conv2d_same_padding_keeps_size_like_pytorch(kernel, dilation, rng):
    x = rng.standard_normal((2, 3, 7, 6))
    w = rng.standard_normal((4, 3) + kernel)
    y = F.conv2d(x, w, padding="same", dilation=dilation)
    assert y.shape == (2, 4, 7, 6)
    totals = [dilation * (k - 1) for k in kernel]
    pads = tuple((t // 2, t - t // 2) for t in totals)  # PyTorch puts the odd pixel at the end
    np.testing.assert_allclose(y, reference.conv2d(x, w, None, (1, 1), pads, (dilation, dilation)), atol=1e-12)
    grad_y = rng.standard_normal(y.shape)
    grad_x, grad_w, _ = F.conv2d_backward(grad_y, x, w, padding="same", dilation=dilation)
    forward = lambda: F.conv2d(x, w, padding="same", dilation=dilation)  # noqa: E731
    np.testing.assert_allclose(grad_x, reference.numerical_gradient(forward, x, grad_y), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad_w, reference.numerical_gradient(forward, w, grad_y), rtol=1e-6, atol=1e-7)


def test_conv2d_valid_padding_and_unbatched_input(rng):
    x = rng.standard_normal((3, 8, 8))
    w = rng.standard_normal((2, 3, 3, 3))
    y = F.conv2d(x, w, padding="valid")
    np.testing.assert_allclose(y, reference.conv2d(x[None], w)[0], atol=1e-12)
    grad_x, grad_w, grad_b = F.conv2d_backward(np.ones_like(y), x, w)
    assert grad_x.shape == x.shape and grad_w.shape == w.shape and grad_b.shape == (2,)


def test_conv2d_non_contiguous_input_is_copied(rng):
    x = rng.standard_normal((2, 3, 9, 9))[:, :, ::2, ::2]
    w = rng.standard_normal((4, 3, 3, 3)).transpose(0, 1, 3, 2)
    np.testing.assert_allclose(F.conv2d(x, w, padding=1), reference.conv2d(x, w, None, (1, 1), ((1, 1), (1, 1))),
                               atol=1e-12)


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 2), (3, 2, 2, 1)])
def test_conv1d_forward_and_backward(stride, padding, dilation, groups, rng):
    x = rng.standard_normal((2, 4, 17))
    w = rng.standard_normal((6, 4 // groups, 3))
    b = rng.standard_normal(6)
    hyper = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = F.conv1d(x, w, b, **hyper)
    expected = reference.conv2d(x[:, :, None, :], w[:, :, None, :], b, (1, stride), ((0, 0), (padding, padding)),
                                (1, dilation), groups)[:, :, 0, :]
    np.testing.assert_allclose(y, expected, atol=1e-12)
    grad_y = rng.standard_normal(y.shape)
    grad_x, grad_w, grad_b = F.conv1d_backward(grad_y, x, w, **hyper)
    forward = lambda: F.conv1d(x, w, b, **hyper)  # noqa: E731
    assert grad_x.shape == x.shape and grad_w.shape == w.shape
    np.testing.assert_allclose(grad_x, reference.numerical_gradient(forward, x, grad_y), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad_w, reference.numerical_gradient(forward, w, grad_y), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad_b, grad_y.sum(axis=(0, 2)), atol=1e-12)


def test_conv1d_same_padding_unbatched(rng):
    x = rng.standard_normal((3, 10))
    w = rng.standard_normal((2, 3, 4))
    assert F.conv1d(x, w, padding="same").shape == (2, 10)


def test_depthwise_3x3_cases_take_their_own_kernels():
    from nbconv.kernels.cpu.conv.plan import plan
    chosen = [plan("forward", case[:4], (case[4], case[1] // case[10], 3, 3), 1, 1, *_pair(case[8]), 1, 1,
                   case[10]).algorithm
              for case in CASES if case[10] > 1 and case[5:7] == (3, 3) and case[7] == 1 and case[9] == 1]
    assert chosen == ["depthwise3x3", "depthwise3x3", "depthwise3x3", "depthwise3x3"]


def test_backward_without_the_weight_gradient_gives_the_same_input_gradient(rng):
    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 2, 3, 3))
    grad_y = rng.standard_normal(F.conv2d(x, w, stride=2, padding=1, groups=2).shape)
    full = F.conv2d_backward(grad_y, x, w, stride=2, padding=1, groups=2)
    only_input = F.conv2d_backward(grad_y, x, w, stride=2, padding=1, groups=2, need_weight_grad=False)
    np.testing.assert_array_equal(only_input[0], full[0])
    assert only_input[1] is None and only_input[2] is None


def test_backward_without_the_bias_gradient_gives_the_same_weight_and_input_gradients(rng):
    x = rng.standard_normal((3, 5, 9, 8)).astype(np.float32)
    w = rng.standard_normal((7, 5, 3, 3)).astype(np.float32)
    for hyper in ({"padding": 1}, {"stride": 2, "padding": 1}):
        grad_y = rng.standard_normal(F.conv2d(x, w, **hyper).shape).astype(np.float32)
        full = F.conv2d_backward(grad_y, x, w, **hyper)
        without_bias = F.conv2d_backward(grad_y, x, w, need_bias_grad=False, **hyper)
        np.testing.assert_array_equal(without_bias[0], full[0])
        np.testing.assert_array_equal(without_bias[1], full[1])
        assert without_bias[2] is None and full[2] is not None


def test_a_convolution_layer_without_bias_skips_the_bias_gradient(rng, monkeypatch):
    from nbconv import backend
    from nbconv.nn import Conv2d
    kernels, calls = backend.kernels("cpu"), []
    fused = kernels.conv2d_backward_weight_bias
    monkeypatch.setattr(kernels, "conv2d_backward_weight_bias", lambda *args: calls.append(args) or fused(*args))
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    layer = Conv2d(3, 4, 3, padding=1, bias=False, rng=rng)
    layer.backward(np.ones_like(layer.forward(x)))
    assert calls == [] and layer.weight.grad is not None
    with_bias = Conv2d(3, 4, 3, padding=1, rng=rng)
    with_bias.backward(np.ones_like(with_bias.forward(x)))
    assert len(calls) == 1  # the layer with a bias asks for it
