"""kernels/cpu/register_blocks.py: the register-blocked tap sums and tap dot products against float64 sums,
on random offsets and sizes, writing nothing outside the block they are given."""
import numpy as np
import pytest
from numba import njit

from nbconv.kernels.cpu import register_blocks as blocks


def _sums_caller(intrinsic):
    @njit
    def call(output, output_start, output_stride, image, image_start, starts, weights, weight_start, taps):
        intrinsic(output, output_start, output_stride, image, image_start, starts, weights, weight_start, taps)
    return call


def _dots_caller(intrinsic):
    @njit
    def call(sums, first_tap, first_channel, channels_total, image, starts, grads, grad_stride, count):
        intrinsic(sums, first_tap, first_channel, channels_total, image, starts, grads, grad_stride, count)
    return call


SUMS = [(_sums_caller(blocks.tap_sums_2x32), 2), (_sums_caller(blocks.tap_sums_1x32), 1)]
DOTS = [(_dots_caller(blocks.tap_dots_4x3), 4, 3), (_dots_caller(blocks.tap_dots_4x1), 4, 1),
        (_dots_caller(blocks.tap_dots_1x3), 1, 3), (_dots_caller(blocks.tap_dots_1x1), 1, 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(4))
def test_tap_sums_match_float64_and_touch_only_their_block(dtype, seed):
    rng = np.random.default_rng(seed)
    for call, channels in SUMS:
        taps, stride = int(rng.integers(1, 30)), int(rng.integers(blocks.WIDTH, 90))
        image = rng.standard_normal(int(rng.integers(200, 400))).astype(dtype)
        starts = rng.integers(0, image.size - blocks.WIDTH - 40, taps).astype(np.int64)
        image_start = int(rng.integers(0, 40))
        weight_start = int(rng.integers(0, 7))
        weights = rng.standard_normal(weight_start + channels * taps + 5).astype(dtype)
        output_start = int(rng.integers(0, 9))
        output = np.full(output_start + channels * stride + 11, 7.0, dtype)
        before = output.copy()
        call(output, output_start, stride, image, image_start, starts, weights, weight_start, taps)
        touched = np.zeros(output.size, bool)
        for c in range(channels):
            row = output_start + c * stride
            expected = sum(np.float64(weights[weight_start + c * taps + t]) *
                           image[image_start + starts[t]:image_start + starts[t] + blocks.WIDTH].astype(np.float64)
                           for t in range(taps))
            tolerance = 2e-6 * taps if dtype == np.float32 else 1e-13 * taps
            np.testing.assert_allclose(output[row:row + blocks.WIDTH], expected, rtol=tolerance, atol=tolerance)
            touched[row:row + blocks.WIDTH] = True
        assert np.array_equal(output[~touched], before[~touched])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(4))
def test_tap_dots_add_float64_dots_into_their_sums_only(dtype, seed):
    rng = np.random.default_rng(seed + 10)
    for call, tap_count, channels in DOTS:
        taps_total, channels_total = tap_count + int(rng.integers(0, 6)), channels + int(rng.integers(0, 4))
        first_tap = int(rng.integers(0, taps_total - tap_count + 1))
        first_channel = int(rng.integers(0, channels_total - channels + 1))
        count = blocks.LANES * int(rng.integers(0, 20))
        stride = count + int(rng.integers(0, 9))
        image = rng.standard_normal(count + 300).astype(dtype)
        starts = rng.integers(0, 300, taps_total).astype(np.int64)
        grads = rng.standard_normal(channels_total * stride + 3).astype(dtype)
        sums = rng.standard_normal((taps_total, channels_total)).astype(dtype)
        before = sums.copy()
        call(sums.reshape(-1), first_tap, first_channel, channels_total, image, starts, grads, stride, count)
        expected = before.astype(np.float64)
        for i in range(tap_count):
            for c in range(channels):
                t, d = first_tap + i, first_channel + c
                expected[t, d] += image[starts[t]:starts[t] + count].astype(np.float64) @ \
                    grads[d * stride:d * stride + count].astype(np.float64)
        tolerance = 1e-5 * max(1, count) if dtype == np.float32 else 1e-13 * max(1, count)
        np.testing.assert_allclose(sums, expected, rtol=tolerance, atol=tolerance)
        untouched = np.ones(sums.shape, bool)
        untouched[first_tap:first_tap + tap_count, first_channel:first_channel + channels] = False
        assert np.array_equal(sums[untouched], before[untouched])
