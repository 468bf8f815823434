"""kernels/cpu/finite.py: all_finite, one pass over two arrays of any shapes."""
import numpy as np
import pytest

from nbconv.kernels.cpu import finite


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_check_finds_any_non_finite_value(dtype, rng):
    """A single inf, -inf or NaN anywhere in either array (first, last and inner values, lengths off the vector
    width) is found; finite arrays pass; arrays of different shapes and an empty second array."""
    first = rng.standard_normal((3, 5, 7, 11)).astype(dtype)
    second = rng.standard_normal((2, 13, 9)).astype(dtype)
    assert finite.all_finite(first, second)
    assert finite.all_finite(first, second[:0])
    assert finite.all_finite(first[:0], second[:0])
    for array in (first, second):
        flat = array.reshape(-1)
        for where in sorted({0, 1, 7, 8, 15, 16, flat.size - 1, int(rng.integers(flat.size))}):
            for bad in (np.inf, -np.inf, np.nan):
                kept = flat[where]
                flat[where] = bad
                assert not finite.all_finite(first, second), (where, bad)
                flat[where] = kept
    assert finite.all_finite(first, second)
    big = np.full(7, np.finfo(dtype).max, dtype)  # finite values whose sum would overflow
    assert finite.all_finite(big, big)
