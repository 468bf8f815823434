"""kernels/cpu/vectors.py: each vector operation against numpy, float32 and float64, 8 and 4 lanes, writing
nothing outside the lanes it is given."""
import numpy as np
import pytest
from numba import njit

from nbconv.kernels.cpu import vectors


@njit
def _maximum_and_positions(a, b, out, positions, base, width):
    """maximum, select_equal, splat, ramp, add, store and any_nan over the lanes of a and b."""
    larger = vectors.maximum(a, b)
    vectors.store(out, 1, larger)
    offset = vectors.select_equal(a, larger, vectors.splat(0, larger), vectors.splat(width, larger))
    vectors.store(positions, 1, vectors.add(vectors.ramp(base, 2, larger), offset))
    return vectors.any_nan(a, b)


@njit
def _pairs_max_8(values, start, out, positions, base, width):
    a, b = vectors.load_pairs(values, start, 8)
    return _maximum_and_positions(a, b, out, positions, base, width)


@njit
def _pairs_max_4(values, start, out, positions, base, width):
    a, b = vectors.load_pairs(values, start, 4)
    return _maximum_and_positions(a, b, out, positions, base, width)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lanes", [8, 4])
def test_pairs_maximum_and_positions(dtype, lanes, rng):
    for trial in range(6):
        values = rng.integers(-2, 3, 40).astype(dtype)  # few distinct values: ties
        if trial % 2:
            values[rng.integers(0, 40)] = np.nan
        start, base, width = int(rng.integers(0, 40 - 2 * lanes)), int(rng.integers(-50, 50)), 7
        out = np.full(lanes + 2, 9.0, dtype)
        positions = np.full(lanes + 2, -9, np.int64)
        nan = (_pairs_max_8 if lanes == 8 else _pairs_max_4)(values, start, out, positions, base, width)
        even, odd = values[start:start + 2 * lanes:2], values[start + 1:start + 2 * lanes:2]
        expected = np.where(odd > even, odd, even)  # Numba's max(): y when y > x
        np.testing.assert_array_equal(out[1:-1], expected)
        expected_positions = base + 2 * np.arange(lanes) + np.where(even == expected, 0, width)
        np.testing.assert_array_equal(positions[1:-1], expected_positions)
        assert out[0] == out[-1] == 9.0 and positions[0] == positions[-1] == -9
        assert nan == int(np.isnan(even).any() or np.isnan(odd).any())


@njit
def _sum_from(target, target_start, source, source_start, skip):
    vectors.store(target, target_start, vectors.add(vectors.load(target, target_start),
                                                    vectors.from_lane(vectors.load(source, source_start), skip)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_and_from_lane(dtype, rng):
    for skip in range(9):
        target = rng.standard_normal(20).astype(dtype)
        source = rng.standard_normal(20).astype(dtype)
        expected = target.copy()
        expected[3 + skip:11] += source[5 + skip:13]
        _sum_from(target, 3, source, 5, skip)
        np.testing.assert_array_equal(target, expected)
