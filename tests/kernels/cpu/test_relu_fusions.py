"""The CPU's ReLU fused into the fully connected layer, relu(linear(x)) (nbconv.kernels.cpu.fused,
nbconv.kernels.cpu.linear), against a float64 reference, finite differences and the unfused kernels (the same
bits), from several Python threads at once; the ReLU's special values bit for bit."""
import threading

import numpy as np
import pytest

from nbconv.kernels.cpu import fused
from nbconv.kernels.cpu import linear_backward_bias, linear_backward_input, linear_backward_weight, linear_forward
from nbconv.kernels.cpu import relu_backward, relu_forward
from tests import reference

def _fused_linear(x, weight, bias, grad_y, need_input_grad=True):
    y = np.empty((x.shape[0], weight.shape[0]), x.dtype)
    fused.linear_relu_forward(x, weight, bias, y)
    grad_x = np.full(x.shape, 7, x.dtype) if need_input_grad else None
    grad_w, grad_b = np.full(weight.shape, 7, x.dtype), np.full(bias.shape, 7, x.dtype)
    fused.linear_relu_backward(grad_y, y, x, weight, grad_x, grad_w, grad_b)
    return y, grad_x, grad_w, grad_b


def _unfused_linear(x, weight, bias, grad_y):
    pre = np.empty((x.shape[0], weight.shape[0]), x.dtype)
    linear_forward(x, weight, bias, pre)
    y = np.empty_like(pre)
    relu_forward(pre.reshape(-1), y.reshape(-1))
    masked = np.empty_like(grad_y)
    relu_backward(grad_y.reshape(-1), pre.reshape(-1), masked.reshape(-1))
    grad_x, grad_w, grad_b = np.empty_like(x), np.empty_like(weight), np.empty_like(bias)
    linear_backward_input(masked, weight, grad_x)
    linear_backward_weight(masked, x, grad_w)
    linear_backward_bias(masked, grad_b)
    return y, grad_x, grad_w, grad_b


@pytest.mark.parametrize("sizes", [(3, 7, 5), (32, 400, 120), (17, 84, 10), (1, 3, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_relu_matches_a_float64_reference_and_the_unfused_kernels(sizes, dtype, rng):
    N, I, O = sizes
    x, weight = rng.standard_normal((N, I)).astype(dtype), rng.standard_normal((O, I)).astype(dtype)
    bias, grad_y = rng.standard_normal(O).astype(dtype), rng.standard_normal((N, O)).astype(dtype)
    got = _fused_linear(x, weight, bias, grad_y)
    for part, expected in zip(got, _unfused_linear(x, weight, bias, grad_y)):
        np.testing.assert_array_equal(part, expected)
    x64, w64 = x.astype(np.float64), weight.astype(np.float64)
    pre = x64 @ w64.T + bias
    masked = np.where(pre > 0, grad_y, 0.0)
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    for part, expected in zip(got, (np.maximum(pre, 0), masked @ w64, masked.T @ x64, masked.sum(axis=0))):
        np.testing.assert_allclose(part, expected, rtol=tolerance, atol=tolerance * np.sqrt(I))


def test_linear_relu_gradients_match_finite_differences(rng):
    x, weight = rng.standard_normal((4, 6)), rng.standard_normal((5, 6))
    bias, grad_y = rng.standard_normal(5), rng.standard_normal((4, 5))
    _, grad_x, grad_w, grad_b = _fused_linear(x, weight, bias, grad_y)

    def forward():
        return _fused_linear(x, weight, bias, grad_y)[0]
    for array, analytic in ((x, grad_x), (weight, grad_w), (bias, grad_b)):
        np.testing.assert_allclose(analytic, reference.numerical_gradient(forward, array, grad_y), rtol=1e-6,
                                   atol=1e-7)


def test_linear_relu_without_input_gradient_or_bias(rng):
    x, weight = rng.standard_normal((6, 9)).astype(np.float32), rng.standard_normal((4, 9)).astype(np.float32)
    bias, grad_y = np.zeros(4, np.float32), rng.standard_normal((6, 4)).astype(np.float32)
    y, _, grad_w, grad_b = _unfused_linear(x, weight, bias, grad_y)
    no_bias_grad_w = np.empty_like(weight)
    fused.linear_relu_backward(grad_y, y, x, weight, None, no_bias_grad_w, np.empty((0,), np.float32))
    np.testing.assert_array_equal(no_bias_grad_w, grad_w)
    # the exported pair gives the same bits as the one-mask path
    grad_x2, grad_w2, grad_b2 = np.empty_like(x), np.empty_like(weight), np.empty_like(bias)
    fused.linear_relu_backward_input(grad_y, y, weight, grad_x2)
    fused.linear_relu_backward_weight_bias(grad_y, y, x, grad_w2, grad_b2)
    _, grad_x, _, _ = _unfused_linear(x, weight, bias, grad_y)
    for got, expected in ((grad_x2, grad_x), (grad_w2, grad_w), (grad_b2, grad_b)):
        np.testing.assert_array_equal(got, expected)


def test_linear_relu_from_several_python_threads(rng):
    cases = [(rng.standard_normal((n, 40)).astype(np.float32), rng.standard_normal((30, 40)).astype(np.float32),
              rng.standard_normal(30).astype(np.float32), rng.standard_normal((n, 30)).astype(np.float32))
             for n in (3, 8, 16, 33)]
    expected = [_unfused_linear(*case) for case in cases]
    failures = []

    def run(k):
        for _ in range(20):
            for got, want in zip(_fused_linear(*cases[k]), expected[k]):
                if not np.array_equal(got, want):
                    failures.append(k)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(cases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_keeps_nan_and_gives_plus_zero_for_minus_zero(dtype):
    special = np.array([np.nan, -0.0, 0.0, -np.inf, np.inf, -1.5, 2.5, np.finfo(dtype).tiny, -np.finfo(dtype).tiny],
                       dtype)
    x = np.tile(special, 7)  # past the vector loop's width, with a remainder
    y = np.full_like(x, 9)
    relu_forward(x, y)
    expected = np.where(np.isnan(x), x, np.where(x > 0, x, 0)).astype(dtype)
    assert np.array_equal(y.view(np.uint8), expected.view(np.uint8))  # bit for bit: +0, never -0
    relu_forward(x, x)  # in place
    assert np.array_equal(x.view(np.uint8), expected.view(np.uint8))
