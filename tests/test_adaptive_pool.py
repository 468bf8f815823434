"""Adaptive average and max pooling: PyTorch's windows against a float64 reference, finite differences,
CUDA, bad input."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv import backend
from tests import reference

CASES = [((2, 3, 7, 10), (3, 4)), ((1, 2, 5, 5), (5, 5)), ((2, 1, 3, 2), (7, 5)), ((1, 2, 9, 6), (1, 1)),
         ((2, 2, 6, 7), (4, 3))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,output_size", CASES)
def test_adaptive_pools_match_reference(shape, output_size, dtype, rng):
    x = rng.permutation(int(np.prod(shape))).reshape(shape).astype(dtype)  # distinct values: one maximum each
    for mode in ("avg", "max"):
        expected, expected_indices = reference.adaptive_pool2d(x, output_size, mode)
        if mode == "avg":
            output = F.adaptive_avg_pool2d(x, output_size)
        else:
            output, indices = F.adaptive_max_pool2d(x, output_size, return_indices=True)
            np.testing.assert_array_equal(indices, expected_indices)
            np.testing.assert_array_equal(F.adaptive_max_pool2d(x, output_size), output)
        assert output.dtype == dtype and output.shape == shape[:2] + output_size
        np.testing.assert_allclose(output, expected, rtol=1e-6)


@pytest.mark.parametrize("shape,output_size", CASES)
def test_adaptive_pool_backwards_match_finite_differences(shape, output_size, rng):
    x = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1
    grad_y = rng.standard_normal(shape[:2] + output_size)
    numeric = reference.numerical_gradient(lambda: F.adaptive_avg_pool2d(x, output_size), x, grad_y)
    np.testing.assert_allclose(F.adaptive_avg_pool2d_backward(grad_y, x, output_size), numeric, rtol=1e-6, atol=1e-7)
    numeric = reference.numerical_gradient(lambda: F.adaptive_max_pool2d(x, output_size), x, grad_y)
    np.testing.assert_allclose(F.adaptive_max_pool2d_backward(grad_y, x, output_size), numeric, rtol=1e-6, atol=1e-7)
    _, indices = F.adaptive_max_pool2d(x, output_size, return_indices=True)
    np.testing.assert_allclose(F.adaptive_max_pool2d_backward(grad_y, x, output_size, indices=indices), numeric,
                               rtol=1e-6, atol=1e-7)


def test_unbatched_input_none_sizes_and_nan(rng):
    x = rng.standard_normal((3, 5, 4))
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, (2, None)), F.adaptive_avg_pool2d(x[None], (2, 4))[0])
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, 1)[:, 0, 0], x.mean(axis=(1, 2)))
    y = x.copy()
    y[0, 1, 1] = np.nan
    output, indices = F.adaptive_max_pool2d(y, 1, return_indices=True)
    assert np.isnan(output[0, 0, 0]) and indices[0, 0, 0] == 1 * 4 + 1  # NaN propagates, as in max_pool2d


@pytest.mark.parametrize("shape,output_size", [((2, 3, 7, 10), (3, 4)), ((1, 2, 3, 2), (7, 5))])
def test_adaptive_pools_on_cuda_match_cpu(shape, output_size, rng):
    x = rng.permutation(int(np.prod(shape))).reshape(shape).astype(np.float32)
    grad_y = rng.standard_normal(shape[:2] + output_size).astype(np.float32)
    device_x, device_grad = backend.to_device(x), backend.to_device(grad_y)
    for forward, backward in ((F.adaptive_avg_pool2d, F.adaptive_avg_pool2d_backward),
                              (F.adaptive_max_pool2d, F.adaptive_max_pool2d_backward)):
        output = forward(device_x, output_size)
        assert backend.is_device_array(output)
        np.testing.assert_allclose(backend.to_host(output), forward(x, output_size), rtol=1e-6)
        np.testing.assert_allclose(backend.to_host(backward(device_grad, device_x, output_size)),
                                   backward(grad_y, x, output_size), rtol=1e-5, atol=1e-6)
    _, indices = F.adaptive_max_pool2d(device_x, output_size, return_indices=True)
    np.testing.assert_array_equal(backend.to_host(indices), F.adaptive_max_pool2d(x, output_size, True)[1])
    np.testing.assert_allclose(backend.to_host(F.adaptive_max_pool2d_backward(device_grad, device_x, output_size,
                                                                              indices=indices)),
                               F.adaptive_max_pool2d_backward(grad_y, x, output_size), rtol=1e-6)


X = np.zeros((2, 3, 4, 4), np.float32)


@pytest.mark.parametrize("call,error,words", [
    (lambda: F.adaptive_avg_pool2d(X, 0), ValueError, ["output_size", ">= 1"]),
    (lambda: F.adaptive_avg_pool2d(X, (2, -1)), ValueError, ["output_size"]),
    (lambda: F.adaptive_max_pool2d(X, (2, 2, 2)), ValueError, ["output_size", "tuple of 2"]),
    (lambda: F.adaptive_max_pool2d(X, 2.0), TypeError, ["output_size", "int"]),
    (lambda: F.adaptive_avg_pool2d(np.zeros((4, 4), np.float32), 2), ValueError, ["input", "(N, C, H, W)"]),
    (lambda: F.adaptive_avg_pool2d(np.zeros((1, 2, 0, 3), np.float32), 2), ValueError, ["input", "non-empty"]),
    (lambda: F.adaptive_avg_pool2d_backward(np.zeros((2, 3, 3, 3), np.float32), X, 2), ValueError,
     ["grad_output", "(2, 3, 2, 2)"]),
    (lambda: F.adaptive_max_pool2d_backward(np.zeros((2, 3, 2, 2), np.float32), X, 2,
                                            indices=np.full((2, 3, 2, 2), 16, np.int64)), ValueError,
     ["indices", "H*W = 16"]),
    (lambda: F.adaptive_max_pool2d_backward(np.zeros((2, 3, 2, 2), np.float32), X, 2,
                                            indices=np.zeros((2, 3, 2, 2), np.int32)), TypeError, ["indices", "int64"]),
    (lambda: F.adaptive_max_pool2d_backward(np.zeros((2, 3, 2, 2), np.float32), X, 2,
                                            indices=np.zeros((2, 3, 3, 2), np.int64)), ValueError,
     ["indices", "(2, 3, 2, 2)"]),
])
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error) as raised:
        call()
    for word in words:
        assert word in str(raised.value), f"{word!r} not in {raised.value}"
