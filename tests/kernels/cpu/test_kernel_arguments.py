"""Public CPU kernels that address memory directly (the convolutions, the fully connected products through the
BLAS, max pooling's vector stores, positions scattered back by adaptive max pooling) called with arrays no one
else checked: strided inputs give the definition's result; an output that cannot be written in place, or shapes,
dtypes, positions and hyper-parameters that do not fit, are a ValueError naming the argument, with nothing
written outside the outputs."""
import numpy as np
import pytest

from nbconv.kernels.cpu import (adaptive_max_pool2d_backward, conv2d_backward_bias, conv2d_backward_input,
                                conv2d_backward_weight, conv2d_backward_weight_bias, conv2d_forward,
                                linear_backward_bias, linear_backward_input, linear_backward_weight,
                                linear_backward_weight_bias, linear_forward, linear_relu_backward_weight_bias,
                                max_pool2d_forward)
from tests import reference

HYPER = (1, 1, 0, 0, 1, 1, 1)


def _strided(array):
    """The same values as a view with a stride of 2 along the last axis."""
    wide = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), array.dtype)
    wide[..., ::2] = array
    return wide[..., ::2]


@pytest.mark.parametrize("kernel", [1, 3])  # 1x1: the algorithms that read the input as a matrix in place
def test_strided_inputs_give_the_definitions_result(kernel, rng):
    x = rng.standard_normal((2, 16, 8, 12))
    w = rng.standard_normal((8, 16, kernel, kernel))
    b = rng.standard_normal(8)
    expected = reference.conv2d(x, w, b, (1, 1), ((0, 0), (0, 0)))
    grad_y = rng.standard_normal(expected.shape)
    out = np.empty(expected.shape)
    conv2d_forward(_strided(x), _strided(w), _strided(b), out, *HYPER)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)
    grad_x = np.empty(x.shape)
    conv2d_backward_input(_strided(grad_y), _strided(w), grad_x, *HYPER)
    np.testing.assert_allclose(grad_x, reference.conv2d_backward_input(grad_y, w, x.shape, (1, 1), ((0, 0),) * 2),
                               rtol=1e-10, atol=1e-10)
    grad_w = np.empty(w.shape)
    conv2d_backward_weight(_strided(grad_y), _strided(x), grad_w, *HYPER)
    np.testing.assert_allclose(grad_w, reference.conv2d_backward_weight(grad_y, x, w.shape, (1, 1), ((0, 0),) * 2),
                               rtol=1e-10, atol=1e-9)


def _written_cases():
    wrong_shape = np.full((2, 8, 8, 11), 7.0)
    strided = _strided(np.full((2, 8, 8, 12), 7.0))
    read_only = np.full((2, 8, 8, 12), 7.0)
    read_only.flags.writeable = False
    float32 = np.full((2, 8, 8, 12), 7.0, np.float32)
    return [("of shape", wrong_shape), ("not C-contiguous", strided), ("read-only", read_only),
            ("float64 array", float32)]


@pytest.mark.parametrize("what,output", _written_cases(), ids=[case[0] for case in _written_cases()])
def test_an_output_that_cannot_be_written_in_place_is_refused_untouched(what, output, rng):
    x, w, b = rng.standard_normal((2, 16, 8, 12)), rng.standard_normal((8, 16, 1, 1)), rng.standard_normal(8)
    before = output.copy()
    with pytest.raises(ValueError, match=f"output must be .*{what}"):
        conv2d_forward(x, w, b, output, *HYPER)
    np.testing.assert_array_equal(output, before)
    grad_x = np.full((2, 16, 8, 12), 7.0)[..., ::2]
    with pytest.raises(ValueError, match="grad_input must be .*not C-contiguous"):
        conv2d_backward_input(rng.standard_normal((2, 8, 8, 6)), w, grad_x, *HYPER)
    with pytest.raises(ValueError, match="grad_weight must be .*float64"):
        conv2d_backward_weight(rng.standard_normal((2, 8, 8, 12)), x, np.zeros((8, 16, 1, 1), np.float32), *HYPER)
    grad_bias = np.full(5, 7.0)
    with pytest.raises(ValueError, match=r"grad_bias must be .*shape \(8,\)"):
        conv2d_backward_bias(rng.standard_normal((2, 8, 8, 12)), grad_bias)
    assert (grad_bias == 7.0).all()


def test_shapes_dtypes_and_hyper_parameters_that_do_not_fit_are_named(rng):
    x = rng.standard_normal((2, 16, 8, 8))
    out = np.zeros((2, 4, 6, 6))
    cases = [
        (lambda: conv2d_forward(x, rng.standard_normal((4, 12, 3, 3)), np.zeros(4), out, *HYPER),
         r"weight \(4, 12, 3, 3\) does not fit input"),
        (lambda: conv2d_forward(x, rng.standard_normal((4, 16, 3, 3)), np.zeros(2), out, *HYPER),
         r"bias must have shape \(4,\)"),
        (lambda: conv2d_forward(x, rng.standard_normal((4, 16, 3, 3)).astype(np.float32), np.zeros(4), out, *HYPER),
         "weight must be float64"),
        (lambda: conv2d_forward(x, rng.standard_normal((4, 16, 3, 3)), np.zeros(4), out, 0, 1, 0, 0, 1, 1, 1),
         "stride_h must be an integer of at least 1"),
        (lambda: conv2d_forward(x, rng.standard_normal((4, 16, 3, 3)), np.zeros(4), out, 1, 1, -1, 0, 1, 1, 1),
         "padding_h must be an integer of at least 0"),
        (lambda: conv2d_forward(x, rng.standard_normal((4, 16, 9, 9)), np.zeros(4), out, *HYPER),
         "kernel .* does not fit input"),
        (lambda: conv2d_forward(x.astype(np.int64), rng.standard_normal((4, 16, 3, 3)).astype(np.int64),
                                np.zeros(4, np.int64), out.astype(np.int64), *HYPER), "float32 or float64"),
        (lambda: conv2d_backward_input(np.zeros((2, 4, 5, 5)), rng.standard_normal((4, 16, 3, 3)), np.zeros(x.shape),
                                       *HYPER), r"grad_output must have shape \(2, 4, 6, 6\)"),
        (lambda: conv2d_backward_weight(np.zeros((2, 4, 5, 5)), x, np.zeros((4, 16, 3, 3)), *HYPER),
         r"grad_output must have shape \(2, 4, 6, 6\)"),
        (lambda: conv2d_backward_bias(np.zeros((2, 4, 6)), np.zeros(4)), r"grad_output must be 4-D with layout \(N, D, OH, OW\)"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert (out == 0).all()


@pytest.mark.parametrize("rows", [3, 12])  # up to 8 rows the forward reads the weight itself, past them the BLAS
def test_fully_connected_products_read_strided_inputs_as_their_values(rows, rng):
    x, w, b = rng.standard_normal((rows, 10)), rng.standard_normal((4, 10)), rng.standard_normal(4)
    grad_y = rng.standard_normal((rows, 4))
    out = np.empty((rows, 4))
    linear_forward(_strided(x), _strided(w), _strided(b), out)
    np.testing.assert_allclose(out, x @ w.T + b, rtol=1e-12)
    grad_x, grad_w, grad_b = np.empty(x.shape), np.empty(w.shape), np.empty(4)
    linear_backward_input(_strided(grad_y), _strided(w), grad_x)
    linear_backward_weight(_strided(grad_y), _strided(x), grad_w)
    linear_backward_bias(_strided(grad_y), grad_b)
    np.testing.assert_allclose(grad_x, grad_y @ w, rtol=1e-12)
    np.testing.assert_allclose(grad_w, grad_y.T @ x, rtol=1e-12)
    np.testing.assert_allclose(grad_b, grad_y.sum(0), rtol=1e-12)


def test_fully_connected_outputs_and_dtypes_that_do_not_fit_are_refused_untouched(rng):
    x, w = rng.standard_normal((3, 5)).astype(np.float32), rng.standard_normal((4, 5)).astype(np.float32)
    grad_y = rng.standard_normal((3, 4)).astype(np.float32)
    memory = np.full((4, 10), -7.0, np.float32)
    with pytest.raises(ValueError, match="grad_weight must be .*not C-contiguous"):
        linear_backward_weight(grad_y, x, memory[:, ::2])
    with pytest.raises(ValueError, match="output must be .*float32"):
        linear_forward(x, w, np.zeros(4, np.float32), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="weight must be float32"):
        linear_backward_input(grad_y, w.astype(np.float64), np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        linear_forward(x, w, np.zeros(3, np.float32), np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"grad_bias must be .*shape \(4,\)"):
        linear_backward_bias(grad_y, memory[0, :3])
    with pytest.raises(ValueError, match=r"grad_bias must be .*shape \(4,\)"):  # before grad_weight is written
        linear_backward_weight_bias(grad_y, x, memory[:, :5].copy(), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"grad_bias must be .*shape \(4,\)"):
        linear_relu_backward_weight_bias(grad_y, grad_y, x, np.zeros((4, 5), np.float32), np.zeros(2, np.float32))
    read_only = np.zeros((4, 5), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="grad_weight must be .*read-only"):
        linear_backward_weight(grad_y, x, read_only)
    assert (memory == -7.0).all() and (read_only == 0).all()


def test_a_bad_bias_gradient_is_refused_before_the_weight_gradient_is_written(rng):
    x, grad_y = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((2, 4, 4, 4))
    grad_w = np.full((4, 3, 3, 3), 7.0)
    with pytest.raises(ValueError, match=r"grad_bias must be .*shape \(4,\)"):
        conv2d_backward_weight_bias(grad_y, x, grad_w, np.zeros(5), *HYPER)
    assert (grad_w == 7.0).all()


def test_max_pooling_refuses_outputs_and_positions_its_vector_stores_would_overrun(rng):
    x = rng.standard_normal((1, 1, 8, 8))
    memory = np.full(48, -7.0, np.float32)
    with pytest.raises(ValueError, match="output must be .*float64"):  # float32 output for a float64 input
        max_pool2d_forward(x, memory[16:32].reshape(1, 1, 4, 4), np.zeros((1, 1, 4, 4), np.int64), 2, 2, 2, 2, 0, 0)
    positions = np.full(24, -7, np.int32)
    with pytest.raises(ValueError, match="indices must be .*int64"):
        max_pool2d_forward(x, np.zeros((1, 1, 4, 4)), positions[4:20].reshape(1, 1, 4, 4), 2, 2, 2, 2, 0, 0)
    with pytest.raises(ValueError, match=r"indices must be .*shape \(1, 1, 4, 4\)"):
        max_pool2d_forward(x, np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 3), np.int64), 2, 2, 2, 2, 0, 0)
    with pytest.raises(ValueError, match=r"output must be .*shape \(1, 1, 4, 4\)"):
        max_pool2d_forward(x, np.zeros((2, 1, 4, 4)), np.zeros((0, 0, 0, 0), np.int64), 2, 2, 2, 2, 0, 0)
    assert (memory == -7.0).all() and (positions == -7).all()
    out, indices = np.empty((1, 1, 4, 4)), np.empty((1, 1, 4, 4), np.int64)
    max_pool2d_forward(_strided(x), out, indices, 2, 2, 2, 2, 0, 0)
    np.testing.assert_array_equal(out, x.reshape(1, 1, 4, 2, 4, 2).max(axis=(3, 5)))


def test_adaptive_max_pooling_backward_refuses_positions_of_another_shape_and_skips_foreign_ones():
    with pytest.raises(ValueError, match=r"indices must be int64 of grad_output's shape \(2, 3, 3, 3\)"):
        adaptive_max_pool2d_backward(np.ones((2, 3, 3, 3)), np.zeros((1, 3, 3, 3), np.int64), np.empty((2, 3, 7, 7)))
    memory = np.full(16 + 4096, -7.0)
    grad_input = memory[:16].reshape(1, 1, 4, 4)
    adaptive_max_pool2d_backward(np.ones((1, 1, 2, 2)), np.array([[[[0, 1], [2, 1000]]]], np.int64), grad_input)
    assert (memory[16:] == -7.0).all()  # position 1000 lies outside the 4x4 plane: skipped
    np.testing.assert_array_equal(grad_input.ravel(), [1, 1, 1] + [0] * 13)
