"""The CPU's ReLU fusions: relu(max_pool2d(x)) (nbconv.kernels.cpu.pool) and relu(linear(x))
(nbconv.kernels.cpu.fused, nbconv.kernels.cpu.linear) against a float64 reference, finite differences and
the unfused kernels (the same bits), cut into parts as kernel threads cut them, from several Python threads
at once, and never writing outside their outputs."""
import threading

import numpy as np
import pytest

import nbconv.functional as F
from nbconv.kernels.cpu import fused, pool
from nbconv.kernels.cpu import linear_backward_bias, linear_backward_input, linear_backward_weight, linear_forward
from nbconv.kernels.cpu import relu_backward, relu_forward
from tests import reference

# (input shape, kernel, stride, padding, ceil_mode): 2x2/2 takes the dense backward (odd sizes leave a row and a
# column no window covers), the others the scatter (overlapping windows, padding, windows past the edge)
POOLS = [
    ((2, 3, 8, 8), 2, 2, 0, False),
    ((3, 5, 9, 11), 2, 2, 0, False),
    ((1, 2, 7, 29), 2, 2, 0, False),
    ((2, 4, 10, 9), 3, 2, 1, False),
    ((1, 2, 7, 7), 2, 1, 0, False),
    ((2, 3, 7, 6), 3, 2, 1, True),
    ((1, 3, 5, 5), 2, 2, 0, True),
    ((2, 2, 9, 7), (3, 2), (2, 3), (1, 0), False),
]


def _pool_call(x, kernel, stride, padding, ceil_mode):
    geometry = F.pool_geometry(x.shape, kernel, stride, padding, ceil_mode)
    return geometry.output_shape, geometry.kernel_args


def _fused_pool(x, grad_y, kernel, stride, padding, ceil_mode):
    shape, args = _pool_call(x, kernel, stride, padding, ceil_mode)
    y, where = np.empty(shape, x.dtype), np.empty(shape, np.int64)
    pool.max_pool2d_relu_forward(x, y, where, *args)
    grad_x = np.full(x.shape, 7, x.dtype)  # whatever was there before is overwritten
    pool.max_pool2d_relu_backward(grad_y, where, y, grad_x, *args)
    return y, where, grad_x


def _unfused_pool(x, grad_y, kernel, stride, padding, ceil_mode):
    shape, args = _pool_call(x, kernel, stride, padding, ceil_mode)
    pooled, where = np.empty(shape, x.dtype), np.empty(shape, np.int64)
    pool.max_pool2d_forward(x, pooled, where, *args)
    y = np.empty_like(pooled)
    relu_forward(pooled.reshape(-1), y.reshape(-1))
    masked = np.empty_like(grad_y)
    relu_backward(grad_y.reshape(-1), pooled.reshape(-1), masked.reshape(-1))
    grad_x = np.empty_like(x)
    pool.max_pool2d_backward(masked, where, grad_x, *args)
    return y, where, grad_x


def _reference_pool(x, grad_y, kernel, stride, padding, ceil_mode):
    """float64 relu(max pooling) and its input gradient, one window at a time (the first maximum wins)."""
    (shape, args) = _pool_call(x, kernel, stride, padding, ceil_mode)
    kh, kw, sh, sw, ph, pw = args
    x = x.astype(np.float64)
    N, C, H, W = x.shape
    y = np.maximum(reference.pool2d(x, (kh, kw), (sh, sw), (ph, pw), shape, "max"), 0)
    grad_x = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for oh in range(shape[2]):
                for ow in range(shape[3]):
                    h0, w0 = max(oh * sh - ph, 0), max(ow * sw - pw, 0)
                    window = x[n, c, h0:min(oh * sh - ph + kh, H), w0:min(ow * sw - pw + kw, W)]
                    i, j = np.unravel_index(np.argmax(window), window.shape)
                    if window[i, j] > 0:
                        grad_x[n, c, h0 + i, w0 + j] += grad_y[n, c, oh, ow]
    return y, grad_x


@pytest.mark.parametrize("case", POOLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_relu_matches_a_float64_reference(case, dtype, rng):
    shape, *hyper = case
    x = (rng.standard_normal(shape) - 1.0).astype(dtype)  # windows of negative values too
    y_shape, _ = _pool_call(x, *hyper)
    grad_y = rng.standard_normal(y_shape).astype(dtype)
    y, _, grad_x = _fused_pool(x, grad_y, *hyper)
    expected_y, expected_grad_x = _reference_pool(x, grad_y, *hyper)
    np.testing.assert_array_equal(y, expected_y.astype(dtype))  # a maximum and a ReLU round nothing
    np.testing.assert_allclose(grad_x, expected_grad_x, rtol=1e-6, atol=1e-6)
    assert (y > 0).any() and (y == 0).any()  # both sides of the ReLU were exercised


@pytest.mark.parametrize("case", POOLS)
def test_max_pool_relu_gradient_matches_finite_differences(case, rng):
    shape, *hyper = case
    x = rng.permutation(np.arange(np.prod(shape)) - np.prod(shape) / 3).reshape(shape) * 0.01  # no ties
    y_shape, _ = _pool_call(x, *hyper)
    grad_y = rng.standard_normal(y_shape)

    def forward():
        return _fused_pool(x, grad_y, *hyper)[0]
    numerical = reference.numerical_gradient(forward, x, grad_y, epsilon=1e-4)  # no value within 1e-4 of 0
    np.testing.assert_allclose(_fused_pool(x, grad_y, *hyper)[2], numerical, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", POOLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_relu_gives_the_bits_of_the_unfused_kernels(case, dtype, rng):
    shape, *hyper = case
    x = rng.integers(-2, 3, shape).astype(dtype)  # ties, zeros
    x[rng.random(shape) < 0.05] = np.nan
    x[rng.random(shape) < 0.05] = -np.inf
    y_shape, _ = _pool_call(x, *hyper)
    grad_y = rng.standard_normal(y_shape).astype(dtype)
    for got, expected in zip(_fused_pool(x, grad_y, *hyper), _unfused_pool(x, grad_y, *hyper)):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("parts", [2, 3, 5])
@pytest.mark.parametrize("case", [POOLS[1], POOLS[3]])
def test_max_pool_relu_cut_into_parts_gives_the_same_bits(parts, case, rng, monkeypatch):
    shape, *hyper = case
    x = rng.standard_normal(shape).astype(np.float32)
    y_shape, _ = _pool_call(x, *hyper)
    grad_y = rng.standard_normal(y_shape).astype(np.float32)
    whole = _fused_pool(x, grad_y, *hyper)
    monkeypatch.setattr(pool, "thread_count", lambda work: parts)
    for got, expected in zip(_fused_pool(x, grad_y, *hyper), whole):
        np.testing.assert_array_equal(got, expected)


def test_max_pool_relu_from_several_python_threads(rng):
    cases = [(rng.standard_normal(shape).astype(np.float32), hyper) for shape, *hyper in POOLS[:4]]
    grads = [rng.standard_normal(_pool_call(x, *hyper)[0]).astype(np.float32) for x, hyper in cases]
    expected = [_unfused_pool(x, g, *hyper) for (x, hyper), g in zip(cases, grads)]
    failures = []

    def run(k):
        for _ in range(20):
            x, hyper = cases[k]
            for got, want in zip(_fused_pool(x, grads[k], *hyper), expected[k]):
                if not np.array_equal(got, want):
                    failures.append(k)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(cases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.parametrize("case", [POOLS[1], POOLS[3]])
def test_max_pool_relu_backward_writes_inside_its_output_only(case, rng):
    shape, *hyper = case
    x = rng.standard_normal(shape).astype(np.float32)
    y_shape, args = _pool_call(x, *hyper)
    y, where = np.empty(y_shape, np.float32), np.empty(y_shape, np.int64)
    pool.max_pool2d_relu_forward(x, y, where, *args)
    grad_y = rng.standard_normal(y_shape).astype(np.float32)
    where[0, 0, 0, 0] = -5  # positions no forward makes: outside the plane, or another window's
    where[-1, -1, -1, -1] = 10 ** 9
    where[0, -1, 0, 0] = x.shape[2] * x.shape[3] - 1
    guarded = np.full((shape[0] + 2,) + shape[1:], 3.0, np.float32)
    pool.max_pool2d_relu_backward(grad_y, where, y, guarded[1:-1], *args)
    assert (guarded[0] == 3).all() and (guarded[-1] == 3).all()
    # fewer images in the gradients than in grad_input: nothing is read past them, every plane is cleared
    guarded[:] = 3
    pool.max_pool2d_relu_backward(grad_y[:1], where[:1], y[:1], guarded[1:-1], *args)
    assert (guarded[0] == 3).all() and (guarded[-1] == 3).all() and (guarded[2:-1] == 0).all()


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
