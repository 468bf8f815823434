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


def conv_case():
    x = RNG.random((2, 3, 9, 9), dtype=np.float32)
    w = RNG.random((4, 3, 3, 3), dtype=np.float32)
    g = RNG.random((2, 4, 7, 7), dtype=np.float32)
    return g, x, w


def linear_case():
    return RNG.random((3, 5), dtype=np.float32), RNG.random((3, 7), dtype=np.float32), \
        RNG.random((5, 7), dtype=np.float32)


BACKWARDS = {"conv2d": (F.conv2d_backward, conv_case), "linear": (F.linear_backward, linear_case)}


def _assert_same_gradients(got, expected):
    for mine, theirs in zip(got, expected, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-6)


def unusable_buffers(weight_shape):
    """Arrays of the gradient's shape and dtype that the kernels cannot write in place."""
    fortran = np.zeros(weight_shape[::-1], np.float32).T
    return {"Fortran order": fortran, "read-only": read_only(np.zeros(weight_shape, np.float32))}


@pytest.mark.parametrize("name", sorted(BACKWARDS))
@pytest.mark.parametrize("kind", ["Fortran order", "read-only"])
def test_an_unwritable_grad_weight_out_gives_a_new_array(name, kind):
    backward, case = BACKWARDS[name]
    grad_output, x, w = case()
    expected = backward(grad_output, x, w)
    buffer = unusable_buffers(w.shape)[kind]
    before = buffer.copy()
    got = backward(grad_output, x, w, grad_weight_out=buffer)
    assert got[1] is not buffer
    np.testing.assert_array_equal(buffer, before)
    _assert_same_gradients(got, expected)


@pytest.mark.parametrize("name", sorted(BACKWARDS))
def test_a_grad_weight_out_that_is_the_weight_leaves_the_gradients_right(name):
    backward, case = BACKWARDS[name]
    grad_output, x, w = case()
    expected = backward(grad_output, x, w)
    weight = w.copy()
    got = backward(grad_output, x, weight, grad_weight_out=weight)
    np.testing.assert_array_equal(weight, w)
    _assert_same_gradients(got, expected)


@pytest.mark.parametrize("name", sorted(BACKWARDS))
def test_overlapping_grad_weight_and_grad_bias_outs_leave_the_gradients_right(name):
    backward, case = BACKWARDS[name]
    grad_output, x, w = case()
    expected = backward(grad_output, x, w)
    flat = np.zeros(w.size + 1, np.float32)
    got = backward(grad_output, x, w, grad_weight_out=flat[:w.size].reshape(w.shape),
                   grad_bias_out=flat[w.size - w.shape[0] + 1:])
    _assert_same_gradients(got, expected)


@pytest.mark.parametrize("name", sorted(BACKWARDS))
def test_a_usable_grad_weight_out_is_written(name):
    backward, case = BACKWARDS[name]
    grad_output, x, w = case()
    buffer = np.zeros(w.shape, np.float32)
    got = backward(grad_output, x, w, grad_weight_out=buffer)
    assert got[1] is buffer
    np.testing.assert_allclose(buffer, backward(grad_output, x, w)[1], rtol=1e-6, atol=1e-6)


def test_host_arrays_of_other_libraries_are_written_in_place():
    import array
    values = array.array("f", [1.0, 2.0, 3.0])  # a buffer-protocol exporter
    assert F.add_(values, np.ones(3, np.float32)) is values
    assert list(values) == [2.0, 3.0, 4.0]
    with pytest.raises(TypeError, match="input must have dtype float32 or float64"):
        F.add_(bytes(12), np.ones(3, np.float32))
