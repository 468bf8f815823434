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
