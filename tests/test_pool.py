"""Pooling on the CPU: against the float64 reference and by finite differences."""
import numpy as np
import pytest

import nbconv.functional as F
from tests import reference

# (N, C, H, W, kernel, stride, padding, ceil_mode)
CASES = [
    (1, 1, 4, 4, 2, None, 0, False),
    (2, 3, 7, 9, 3, 2, 1, False),
    (2, 3, 7, 9, 3, 2, 1, True),
    (1, 2, 8, 5, (2, 3), (1, 2), (1, 0), True),
    (3, 2, 10, 11, (4, 2), 3, (2, 1), False),
    (1, 1, 6, 6, 3, 3, 1, True),
]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_max_pool2d_forward_and_backward(case, dtype, rng):
    N, C, H, W, kernel, stride, padding, ceil_mode = case
    x = rng.permutation(N * C * H * W).reshape(N, C, H, W).astype(dtype)  # distinct values: a unique argmax
    y, indices = F.max_pool2d(x, kernel, stride, padding, ceil_mode, return_indices=True)
    stride_pair = _pair(kernel) if stride is None else _pair(stride)
    expected = reference.pool2d(x, _pair(kernel), stride_pair, _pair(padding), y.shape, "max")
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(F.max_pool2d(x, kernel, stride, padding, ceil_mode), y)  # the values-only path
    assert indices.dtype == np.int64
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    grad_x = F.max_pool2d_backward(grad_y, x, kernel, stride, padding, ceil_mode)
    np.testing.assert_array_equal(grad_x, F.max_pool2d_backward(grad_y, x, kernel, stride, padding, ceil_mode,
                                                                indices=indices))
    if dtype == np.float64:
        x = x * 0.01  # values 0.01 apart: finite differences with epsilon 1e-6 keep every argmax
        forward = lambda: F.max_pool2d(x, kernel, stride, padding, ceil_mode)  # noqa: E731
        np.testing.assert_allclose(grad_x, reference.numerical_gradient(forward, x, grad_y), atol=1e-6)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", CASES)
def test_avg_pool2d_forward_and_backward(case, count_include_pad, rng):
    N, C, H, W, kernel, stride, padding, ceil_mode = case
    x = rng.standard_normal((N, C, H, W))
    y = F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad)
    stride_pair = _pair(kernel) if stride is None else _pair(stride)
    expected = reference.pool2d(x, _pair(kernel), stride_pair, _pair(padding), y.shape, "avg", count_include_pad)
    np.testing.assert_allclose(y, expected, atol=1e-12)
    grad_y = rng.standard_normal(y.shape)
    grad_x = F.avg_pool2d_backward(grad_y, x, kernel, stride, padding, ceil_mode, count_include_pad)
    forward = lambda: F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad)  # noqa: E731
    np.testing.assert_allclose(grad_x, reference.numerical_gradient(forward, x, grad_y), atol=1e-7)


def test_pool_output_sizes_follow_pytorch():
    x = np.zeros((1, 1, 7, 7), np.float32)
    assert F.max_pool2d(x, 2).shape == (1, 1, 3, 3)
    assert F.max_pool2d(x, 2, ceil_mode=True).shape == (1, 1, 4, 4)
    assert F.avg_pool2d(x, 3, 2, 1).shape == (1, 1, 4, 4)
    # ceil_mode must not create a window that starts in the right padding
    # (H=5, k=2, s=2, p=1: a 4th window would start at row 5, in the padding)
    assert F.max_pool2d(np.zeros((1, 1, 5, 5)), 2, 2, 1, ceil_mode=True).shape == (1, 1, 3, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool2d_propagates_nan_and_picks_the_first(dtype):
    x = np.arange(16, dtype=dtype).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan  # window (0, 0): NaN after a number, then larger numbers
    x[0, 0, 0, 2] = np.nan  # window (0, 1): NaN first, then another NaN
    x[0, 0, 1, 3] = np.nan
    x[0, 0, 2:, 0:2] = 7    # window (1, 0): a four-way tie
    y, indices = F.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(np.isnan(y[0, 0]), [[True, True], [False, False]])
    np.testing.assert_array_equal(indices[0, 0], [[1, 2], [8, 15]])
    np.testing.assert_array_equal(F.max_pool2d(x, 2), y)
    assert y[0, 0, 1, 0] == 7 and y[0, 0, 1, 1] == 15


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_avg_pool2d(dtype, rng):
    x = rng.standard_normal((3, 4, 5, 7)).astype(dtype)
    y = F.global_avg_pool2d(x)
    assert y.shape == (3, 4, 1, 1) and y.dtype == dtype
    np.testing.assert_allclose(y[:, :, 0, 0], x.astype(np.float64).mean(axis=(2, 3)), rtol=1e-5)
    grad_y = rng.standard_normal(y.shape)
    x64 = x.astype(np.float64)
    grad_x = F.global_avg_pool2d_backward(grad_y, x64)
    np.testing.assert_allclose(grad_x, reference.numerical_gradient(lambda: F.global_avg_pool2d(x64), x64, grad_y),
                               atol=1e-8)
