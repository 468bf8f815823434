"""Residual sums and concatenation: against numpy, by finite differences, bad input."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv import backend
from tests import reference


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_and_add_in_place(dtype, rng):
    x = rng.standard_normal((3, 5, 7, 2)).astype(dtype)
    y = rng.standard_normal((3, 5, 7, 2)).astype(dtype)
    expected = x.astype(np.float64) + y
    total = F.add(x, y)
    assert total.dtype == dtype and total.shape == x.shape and total is not x
    np.testing.assert_allclose(total, expected, rtol=1e-6)
    kept = x.copy()
    assert F.add_(x, y) is x
    np.testing.assert_allclose(x, expected, rtol=1e-6)
    np.testing.assert_array_equal(F.add(kept, np.zeros_like(kept)), kept)


@pytest.mark.parametrize("dim,shapes", [
    (1, [(2, 3, 5, 4), (2, 1, 5, 4), (2, 6, 5, 4)]),          # channels of images
    (1, [(3, 2), (3, 5)]),                                     # features
    (-1, [(2, 3, 1), (2, 3, 4)]),                              # the last axis
    (0, [(1, 3, 3), (2, 3, 3)]),                               # the batch axis: contiguous pieces
    (1, [(1, 3, 2, 3), (1, 0, 2, 3), (1, 4, 2, 3)]),          # a single image, one empty piece
])
def test_cat_matches_numpy_and_splits_its_gradient(dim, shapes, rng):
    inputs = [rng.standard_normal(shape) for shape in shapes]
    output = F.cat(inputs, dim=dim)
    np.testing.assert_array_equal(output, np.concatenate(inputs, axis=dim))
    grad_y = rng.standard_normal(output.shape)
    sizes = [shape[dim] for shape in shapes]
    grads = F.cat_backward(grad_y, sizes, dim=dim)
    for k, (x, grad) in enumerate(zip(inputs, grads)):
        assert grad.shape == x.shape
        numeric = reference.numerical_gradient(lambda: F.cat(inputs, dim=dim), x, grad_y)
        np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9, err_msg=f"input {k}")


def test_cat_of_one_array_and_of_tuples(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(F.cat((x,)), x)
    np.testing.assert_array_equal(F.cat((x, x), dim=2), np.concatenate([x, x], axis=2))


def test_cat_copies_non_contiguous_inputs(rng):
    x = rng.standard_normal((2, 4, 3, 3))
    view = x[:, ::2]
    np.testing.assert_array_equal(F.cat([view, x]), np.concatenate([view, x], axis=1))


@pytest.mark.parametrize("call,error,words", [
    (lambda: F.add(np.zeros((2, 3)), np.zeros((3, 2))), ValueError, ["other", "(2, 3)"]),
    (lambda: F.add(np.zeros(3), np.zeros(3, np.float32)), TypeError, ["dtype"]),
    (lambda: F.add_(np.zeros((4, 4))[:, ::2], np.zeros((4, 2))), ValueError, ["input", "contiguous"]),
    (lambda: F.cat([]), TypeError, ["inputs", "non-empty"]),
    (lambda: F.cat(np.zeros((2, 2))), TypeError, ["inputs", "list or tuple"]),
    (lambda: F.cat([np.zeros((2, 3, 4)), np.zeros((2, 3, 5))]), ValueError, ["inputs[1]", "(2, 3, 5)", "dim=1"]),
    (lambda: F.cat([np.zeros((2, 3)), np.zeros((2, 3, 1))]), ValueError, ["inputs[1]", "equal shapes"]),
    (lambda: F.cat([np.zeros((2, 3)), [1.0]]), TypeError, ["inputs[1]", "numpy array"]),
    (lambda: F.cat([np.zeros((2, 3))], dim=2), ValueError, ["dim", "[-2, 2)"]),
    (lambda: F.cat([np.zeros((2, 3))], dim=-3), ValueError, ["dim", ">= -2"]),
    (lambda: F.cat([np.zeros((2, 3))], dim=1.0), TypeError, ["dim", "int"]),
    (lambda: F.cat_backward(np.zeros((2, 5)), [2, 2]), ValueError, ["sizes", "(5)", "sum 4"]),
    (lambda: F.cat_backward(np.zeros((2, 5)), [6, -1]), ValueError, ["sizes[1]", ">= 0"]),
    (lambda: F.cat_backward(np.zeros((2, 5)), 5), TypeError, ["sizes", "list or tuple"]),
])
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error) as raised:
        call()
    for word in words:
        assert word in str(raised.value), f"{word!r} not in {raised.value}"


def test_add_and_cat_on_cuda_match_cpu(rng):
    """CUDA kernels (under the simulator without a GPU) give the CPU's results, on device arrays."""
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    y = rng.standard_normal((2, 2, 4, 5)).astype(np.float32)
    dx, dy = backend.to_device(x), backend.to_device(y)
    total = F.add(dx, backend.to_device(x))
    assert backend.is_device_array(total)
    np.testing.assert_array_equal(backend.to_host(total), x + x)
    in_place = backend.to_device(x)
    F.add_(in_place, dx)
    np.testing.assert_array_equal(backend.to_host(in_place), x + x)
    joined = F.cat([dx, dy])
    assert backend.is_device_array(joined)
    np.testing.assert_array_equal(backend.to_host(joined), np.concatenate([x, y], axis=1))
    grad_y = rng.standard_normal(joined.shape).astype(np.float32)
    for device_grad, grad in zip(F.cat_backward(backend.to_device(grad_y), [3, 2]), F.cat_backward(grad_y, [3, 2])):
        assert backend.is_device_array(device_grad)
        np.testing.assert_array_equal(backend.to_host(device_grad), grad)
    single = F.cat_backward(backend.to_device(grad_y[:1].copy()), [1, 4])
    np.testing.assert_array_equal(backend.to_host(single[1]), grad_y[:1, 1:])
