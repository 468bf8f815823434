"""kernels/cpu/finite.py: all_finite and its parallel form, which cuts both arrays into one slice a thread."""
import numpy as np
import pytest

from nbconv.kernels.cpu import finite
from nbconv.kernels.cpu.threads import parallel_parts


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_parallel_check_finds_any_non_finite_value(threads, monkeypatch, rng):
    """A single inf, -inf or NaN anywhere in either array (the slices' first and last values included) is
    found, with 1-3 threads; finite arrays pass; arrays of different shapes and an empty second array."""
    monkeypatch.setattr(finite, "PARALLEL_VALUES", 1)
    monkeypatch.setattr(finite.numba, "get_num_threads", lambda: threads)
    monkeypatch.setattr(finite, "parallel_parts", lambda span, _, *args: parallel_parts(span, threads, *args))
    for dtype in (np.float32, np.float64):
        first = rng.standard_normal((3, 5, 7, 11)).astype(dtype)
        second = rng.standard_normal((2, 13, 9)).astype(dtype)
        assert finite.all_finite_parallel(first, second)
        assert finite.all_finite_parallel(first, second[:0])
        for array in (first, second):
            flat = array.reshape(-1)
            bounds = {0, flat.size - 1} | {part * flat.size // threads for part in range(threads)} | \
                {(part * flat.size // threads) - 1 for part in range(1, threads)} | {int(rng.integers(flat.size))}
            for where in sorted(bounds):
                for bad in (np.inf, -np.inf, np.nan):
                    kept = flat[where]
                    flat[where] = bad
                    assert not finite.all_finite_parallel(first, second), (where, bad)
                    assert not finite.all_finite(first, second)
                    flat[where] = kept
        assert finite.all_finite_parallel(first, second)


@pytest.mark.parametrize("setting", [None, 1 << 17])
def test_small_arrays_are_checked_on_the_calling_thread(setting, monkeypatch):
    """Below the setting, or always when it is None (off)."""
    monkeypatch.setattr(finite, "PARALLEL_VALUES", setting)
    monkeypatch.setattr(finite, "parallel_parts", lambda *args: pytest.fail("small arrays need no threads"))
    monkeypatch.setattr(finite.numba, "get_num_threads", lambda: 2)
    x = np.ones((1 << 17) // 2 - 1, np.float32)
    assert finite.all_finite_parallel(x, x)
    x[-1] = np.nan
    assert not finite.all_finite_parallel(x, x)


def test_large_arrays_use_every_thread(monkeypatch):
    monkeypatch.setattr(finite, "PARALLEL_VALUES", 1 << 17)
    calls = []
    monkeypatch.setattr(finite.numba, "get_num_threads", lambda: 2)
    monkeypatch.setattr(finite, "parallel_parts", lambda span, parts, *args: (calls.append(parts),
                                                                            parallel_parts(span, parts, *args)))
    x = np.ones(finite.PARALLEL_VALUES, np.float32)
    assert finite.all_finite_parallel(x, x[:0]) and calls == [2]
    x[finite.PARALLEL_VALUES // 2] = -np.inf
    assert not finite.all_finite_parallel(x, x[:0])
