"""The CPU max pooling's 2x2 fast path against its general kernel: values, positions, ties and NaNs."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv.kernels.cpu import pool


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
# odd sizes: the last row/column is dropped; 3 outputs a row (scalar), 4 and 6 (4-wide vector blocks, the last
# overlapping), 14 and 15 (8-wide blocks)
@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 2, 7, 9), (1, 2, 6, 13), (2, 3, 9, 29), (1, 1, 4, 31)])
def test_2x2_fast_path_matches_the_general_kernel(dtype, shape, rng):
    x = rng.integers(-2, 3, shape).astype(dtype)  # few distinct values: many ties
    x[rng.random(shape) < 0.05] = np.nan
    x[rng.random(shape) < 0.05] = -np.inf
    out_shape = shape[:2] + (shape[2] // 2, shape[3] // 2)
    fast, fast_where = np.empty(out_shape, dtype), np.empty(out_shape, np.int64)
    general, general_where = np.empty(out_shape, dtype), np.empty(out_shape, np.int64)
    pool.max_pool2d_forward_2x2(x, fast, fast_where)
    pool.max_pool2d_forward_windows(x, general, general_where, 2, 2, 2, 2, 0, 0)
    np.testing.assert_array_equal(fast, general)  # NaNs in the same places count as equal
    np.testing.assert_array_equal(fast_where, general_where)
    values_only = np.empty(out_shape, dtype)
    pool.max_pool2d_forward_2x2(x, values_only, np.empty((0, 0, 0, 0), np.int64))
    np.testing.assert_array_equal(values_only, fast)


def test_ceil_mode_windows_past_the_edge_take_the_general_kernel(rng):
    x = rng.standard_normal((1, 1, 5, 5))
    y, indices = F.max_pool2d(x, 2, ceil_mode=True, return_indices=True)
    assert y.shape == (1, 1, 3, 3)
    assert y[0, 0, 2, 2] == x[0, 0, 4, 4] and indices[0, 0, 2, 2] == 24


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_2x2_fast_path_on_strided_views_matches_the_general_kernel(dtype, rng):
    wide = rng.standard_normal((2, 3, 10, 40)).astype(dtype)
    x = wide[:, :, :, 3:31]  # rows 28 wide inside rows 40 wide: not contiguous
    out_shape = (2, 3, 5, 14)
    fast, fast_where = np.empty(out_shape, dtype), np.empty(out_shape, np.int64)
    general, general_where = np.empty(out_shape, dtype), np.empty(out_shape, np.int64)
    pool.max_pool2d_forward_2x2(x, fast, fast_where)
    pool.max_pool2d_forward_windows(x, general, general_where, 2, 2, 2, 2, 0, 0)
    np.testing.assert_array_equal(fast, general)
    np.testing.assert_array_equal(fast_where, general_where)


def test_2x2_nan_free_calls_run_only_the_vector_blocks_and_a_nan_redoes_the_call(monkeypatch, rng):
    """max_pool2d_forward_2x2 runs its one-output-at-a-time kernel only for what the blocks do not take:
    a NaN anywhere (the whole call redone: the general kernel's values and positions) or rows under 4 wide."""
    scalar_calls = []
    scalar = pool.max_pool2d_forward_2x2_span

    def recording(*args):
        scalar_calls.append(args[2].shape)
        return scalar(*args)
    monkeypatch.setattr(pool, "max_pool2d_forward_2x2_span", recording)
    x = rng.standard_normal((3, 4, 12, 10)).astype(np.float32)
    out, where = np.empty((3, 4, 6, 5), np.float32), np.empty((3, 4, 6, 5), np.int64)
    pool.max_pool2d_forward_2x2(x, out, where)
    assert scalar_calls == []
    x[2, 3, 11, 9] = np.nan  # in the last plane's last window: the last part of a parallel call
    x[0, 0, 0, 0] = np.nan
    pool.max_pool2d_forward_2x2(x, out, where)
    assert scalar_calls  # redone
    general, general_where = np.empty_like(out), np.empty_like(where)
    pool.max_pool2d_forward_windows(x, general, general_where, 2, 2, 2, 2, 0, 0)
    np.testing.assert_array_equal(out, general)
    np.testing.assert_array_equal(where, general_where)
    assert np.isnan(out[2, 3, 5, 4]) and where[2, 3, 5, 4] == 11 * 10 + 9
    scalar_calls.clear()
    pool.max_pool2d_forward_2x2(x[:, :, :6, :6], np.empty((3, 4, 3, 3), np.float32),
                                np.empty((3, 4, 3, 3), np.int64))  # 3 outputs a row
    assert scalar_calls == [(3, 4, 6, 6)]


def _routed(grad_output, indices, input_shape):
    """The float64 reference of max_pool2d_backward: each gradient added at its plane's flat position, positions
    outside the plane skipped."""
    N, C, H, W = input_shape
    grad_input = np.zeros((N, C, H * W))
    for n in range(N):
        for c in range(C):
            for g, position in zip(grad_output[n, c].ravel(), indices[n, c].ravel()):
                if 0 <= position < H * W:
                    grad_input[n, c, position] += g
    return grad_input.reshape(input_shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_backward_routes_each_gradient_to_its_position(dtype, rng):
    """Repeated positions add up, positions outside the plane are skipped, every plane is cleared first; a
    strided grad_input and strided inputs give the same values as contiguous ones."""
    shape, out_shape = (3, 5, 7, 9), (3, 5, 4, 5)
    grad_y = rng.standard_normal(out_shape).astype(dtype)
    indices = rng.integers(-3, 7 * 9 + 3, out_shape)  # some outside [0, 63)
    indices[0, 0] = 5  # one position taking every gradient of a plane
    expected = _routed(grad_y.astype(np.float64), indices, shape)
    grad_x = np.full(shape, np.nan, dtype)
    pool.max_pool2d_backward(grad_y, indices, grad_x, 2, 2, 2, 2, 1, 1)
    np.testing.assert_allclose(grad_x, expected, rtol=1e-6, atol=1e-6)
    wide = np.full((3, 5, 7, 20), 7.0, dtype)
    strided = wide[:, :, :, 4:13]  # grad_input rows 9 wide inside rows 20 wide
    grad_y_wide = np.zeros((3, 5, 4, 11), dtype)
    grad_y_wide[:, :, :, ::2][:, :, :, :5] = grad_y
    indices_wide = np.zeros((3, 5, 4, 11), np.int64)
    indices_wide[:, :, :, ::2][:, :, :, :5] = indices
    pool.max_pool2d_backward(grad_y_wide[:, :, :, ::2][:, :, :, :5], indices_wide[:, :, :, ::2][:, :, :, :5], strided,
                             2, 2, 2, 2, 1, 1)
    np.testing.assert_array_equal(strided, grad_x)
    assert (wide[:, :, :, :4] == 7).all() and (wide[:, :, :, 13:] == 7).all()  # nothing written beside the view


def test_max_pool_backward_with_fewer_gradients_than_planes_clears_and_routes_nothing(rng):
    grad_x = np.full((2, 3, 4, 4), np.nan, np.float32)
    pool.max_pool2d_backward(np.ones((1, 3, 2, 2), np.float32), np.zeros((1, 3, 2, 2), np.int64), grad_x,
                             2, 2, 2, 2, 0, 0)
    assert (grad_x == 0).all()
