"""The CPU max pooling's values-only kernel for 3x3 windows at stride 2, padding 1 (ResNet's pooling in
inference): against a float64 reference, odd and even sizes, ceil_mode's extra window, NaN and infinities,
strided views, thread counts and calls from several threads at once."""
import threading

import numba
import numpy as np
import pytest

import nbconv.functional as F
from nbconv.kernels.cpu import pool


def _reference(x, ceil_mode=False):
    """float64 max over each 3x3 window at stride 2 of x padded by one -inf on each side; a window holding a
    NaN gives NaN (np.max propagates it)."""
    N, C, H, W = x.shape
    out_h = (H - 1 + (1 if ceil_mode else 0)) // 2 + 1
    out_w = (W - 1 + (1 if ceil_mode else 0)) // 2 + 1
    if ceil_mode:  # the last window must start inside the input (or its left padding)
        out_h -= (2 * (out_h - 1) - 1 >= H)
        out_w -= (2 * (out_w - 1) - 1 >= W)
    padded = np.full((N, C, H + 4, W + 4), -np.inf)
    padded[:, :, 1:H + 1, 1:W + 1] = x
    out = np.empty((N, C, out_h, out_w))
    for oh in range(out_h):
        for ow in range(out_w):
            out[:, :, oh, ow] = padded[:, :, 2 * oh:2 * oh + 3, 2 * ow:2 * ow + 3].max(axis=(2, 3))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 3, 112, 112), (2, 3, 9, 13), (3, 2, 8, 7), (1, 4, 1, 1), (1, 1, 2, 3),
                                   (2, 5, 17, 16), (1, 2, 3, 1)])
def test_3x3_values_match_the_float64_reference(dtype, shape, rng):
    x = rng.standard_normal(shape).astype(dtype)
    expected = _reference(x.astype(np.float64))
    out = np.full(expected.shape, 7.0, dtype)
    pool.max_pool2d_forward_3x3(x, out)
    np.testing.assert_array_equal(out, expected.astype(dtype))


@pytest.mark.parametrize("shape", [(2, 3, 9, 13), (1, 2, 8, 10), (1, 1, 6, 7)])
def test_3x3_through_max_pool2d_with_ceil_mode_takes_the_3x3_kernel(monkeypatch, shape, rng):
    """F.max_pool2d without positions runs max_pool2d_forward_3x3, ceil_mode's extra windows included;
    with positions (training) the general kernel as before."""
    calls = []
    kernel = pool.max_pool2d_forward_3x3
    monkeypatch.setattr(pool, "max_pool2d_forward_3x3", lambda *args: calls.append(1) or kernel(*args))
    x = rng.standard_normal(shape).astype(np.float32)
    for ceil_mode in (False, True):
        y = F.max_pool2d(x, 3, 2, 1, ceil_mode=ceil_mode)
        np.testing.assert_array_equal(y, _reference(x.astype(np.float64), ceil_mode).astype(np.float32))
        y_again, _ = F.max_pool2d(x, 3, 2, 1, ceil_mode=ceil_mode, return_indices=True)
        np.testing.assert_array_equal(y_again, y)
    assert len(calls) == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_3x3_nan_and_infinities_reach_their_windows(dtype, rng):
    shape = (2, 3, 11, 14)
    x = rng.standard_normal(shape).astype(dtype)
    x[rng.random(shape) < 0.03] = np.nan
    x[rng.random(shape) < 0.03] = np.inf
    x[rng.random(shape) < 0.05] = -np.inf
    x[1, 2, 10, 13] = np.nan  # the last window of the last plane
    x[0, 0, 0, 0] = np.nan  # the first, at the padding's corner
    x[1, 1] = -np.inf  # a plane of -inf: -inf everywhere, not NaN
    x[1, 1, 5, 0] = np.nan  # ... but one NaN at the left edge: two windows, at rows 2 and 3
    expected = _reference(x.astype(np.float64))
    out = np.empty(expected.shape, dtype)
    pool.max_pool2d_forward_3x3(x, out)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(out, expected.astype(dtype))  # NaNs in the same places count as equal
    assert np.isnan(out[1, 2, 5, 6]) and np.isnan(out[0, 0, 0, 0])
    assert np.isnan(out[1, 1, 2:4, 0]).all() and (out[1, 1, 4:, :] == -np.inf).all()


def test_3x3_on_strided_views_writes_only_its_output(rng):
    wide = rng.standard_normal((2, 3, 13, 40)).astype(np.float32)
    x = wide[:, :, 1:12, 3:30]  # rows 27 wide inside rows 40 wide: not contiguous
    expected = _reference(x.astype(np.float64)).astype(np.float32)
    frame = np.full((2, 3, 8, 20), 5.0, np.float32)
    out = frame[:, :, 1:7, 2:16]  # a strided output
    pool.max_pool2d_forward_3x3(x, out)
    np.testing.assert_array_equal(out, expected)
    assert (frame[:, :, 0] == 5).all() and (frame[:, :, 7] == 5).all()
    assert (frame[:, :, :, :2] == 5).all() and (frame[:, :, :, 16:] == 5).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_3x3_any_thread_count_and_concurrent_calls(threads, rng):
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        inputs = [rng.standard_normal((2, 5, 15, 18)).astype(np.float32) for _ in range(4)]
        outputs = [np.empty((2, 5, 8, 9), np.float32) for _ in inputs]
        workers = [threading.Thread(target=pool.max_pool2d_forward_3x3, args=(x, out))
                   for x, out in zip(inputs, outputs)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        for x, out in zip(inputs, outputs):
            np.testing.assert_array_equal(out, _reference(x.astype(np.float64)).astype(np.float32))
    finally:
        numba.set_num_threads(previous)
