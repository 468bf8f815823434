"""Arrays the caller hands in to be written (add_'s input, batch_norm's running statistics, scale_shift's out,
the backward passes' grad_weight_out/grad_bias_out): a clear error or a new array, never a compiler error, a
write into read-only memory or a silent wrong answer."""
import numpy as np
import pytest

import nbconv.functional as F

RNG = np.random.default_rng(7)


def read_only(array):
    array = np.array(array)
    array.flags.writeable = False
    return array


def test_add_in_place_reads_an_overlapping_other_as_it_was():
    values = np.arange(9, dtype=np.float32)
    expected = values.copy()
    expected[1:] += expected[:-1].copy()
    F.add_(values[1:], values[:-1])
    np.testing.assert_array_equal(values, expected)


def test_add_in_place_of_an_array_with_itself_doubles_it():
    values = np.arange(5, dtype=np.float64)
    F.add_(values, values)
    np.testing.assert_array_equal(values, 2 * np.arange(5))


def test_add_in_place_refuses_a_read_only_input():
    with pytest.raises(ValueError, match="input must be a writable array"):
        F.add_(read_only(np.ones(4, np.float32)), np.ones(4, np.float32))


def test_batch_norm_training_refuses_read_only_running_statistics():
    x = RNG.random((4, 3, 5, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="running_mean must be a writable array"):
        F.batch_norm(x, read_only(np.zeros(3, np.float32)), np.ones(3, np.float32), training=True)
    with pytest.raises(ValueError, match="running_var must be a writable array"):
        F.batch_norm_relu(x, np.zeros(3, np.float32), read_only(np.ones(3, np.float32)), training=True)


def test_batch_norm_evaluation_reads_read_only_running_statistics():
    x = RNG.random((4, 3, 5, 5), dtype=np.float32)
    mean, var = RNG.random(3, dtype=np.float32), RNG.random(3, dtype=np.float32) + 0.5
    expected = F.batch_norm(x, mean.copy(), var.copy())
    np.testing.assert_array_equal(F.batch_norm(x, read_only(mean), read_only(var)), expected)
    np.testing.assert_array_equal(F.batch_norm_relu(x, read_only(mean), read_only(var)), np.maximum(expected, 0))


def test_scale_shift_refuses_a_read_only_out():
    x = RNG.random((2, 3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="out must be a writable array"):
        F.scale_shift(x, out=read_only(np.zeros_like(x)))
