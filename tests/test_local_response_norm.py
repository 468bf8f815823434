"""Local response normalization: against a float64 reference, by finite differences, on CUDA, bad input."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv import backend
from tests import reference


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,size", [((2, 7, 5, 3), 5), ((3, 4, 9), 2), ((1, 3, 2, 2), 1), ((2, 3, 4, 1), 8),
                                        ((2, 5, 2, 2, 3), 3)])
def test_local_response_norm_matches_reference(shape, size, dtype, rng):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    hyper = dict(alpha=0.3, beta=0.6, k=1.5)
    output = F.local_response_norm(x, size, **hyper)
    assert output.shape == x.shape and output.dtype == dtype
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(output, reference.local_response_norm(x, size, **hyper), rtol=tolerance, atol=tolerance)


def test_local_response_norm_defaults(rng):
    x = rng.standard_normal((2, 6, 3, 3)) * 30
    np.testing.assert_allclose(F.local_response_norm(x, 5), reference.local_response_norm(x, 5, 1e-4, 0.75, 1.0),
                               rtol=1e-12)


@pytest.mark.parametrize("shape,size,hyper", [((2, 7, 3, 2), 5, dict(alpha=0.5, beta=0.75, k=2.0)),
                                              ((3, 4, 5), 2, dict(alpha=1.0, beta=0.3, k=1.0)),
                                              ((1, 3, 2, 3), 4, dict(alpha=2.0, beta=1.5, k=0.5)),
                                              ((2, 2, 3), 1, dict(alpha=0.2, beta=0.75, k=1.0))])
def test_local_response_norm_backward_matches_finite_differences(shape, size, hyper, rng):
    x = rng.standard_normal(shape)
    grad_y = rng.standard_normal(shape)
    grad_x = F.local_response_norm_backward(grad_y, x, size, **hyper)
    numeric = reference.numerical_gradient(lambda: F.local_response_norm(x, size, **hyper), x, grad_y)
    np.testing.assert_allclose(grad_x, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape,size", [((2, 7, 3, 5), 5), ((2, 3, 4), 2)])
def test_local_response_norm_on_cuda_matches_cpu(shape, size, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    grad_y = rng.standard_normal(shape).astype(np.float32)
    hyper = dict(alpha=0.5, beta=0.75, k=2.0)
    output = F.local_response_norm(backend.to_device(x), size, **hyper)
    assert backend.is_device_array(output)
    np.testing.assert_allclose(backend.to_host(output), F.local_response_norm(x, size, **hyper), rtol=1e-5, atol=1e-6)
    grad_x = F.local_response_norm_backward(backend.to_device(grad_y), backend.to_device(x), size, **hyper)
    np.testing.assert_allclose(backend.to_host(grad_x), F.local_response_norm_backward(grad_y, x, size, **hyper),
                               rtol=1e-5, atol=1e-6)


X = np.zeros((2, 3, 4, 4), np.float32)


@pytest.mark.parametrize("call,error,words", [
    (lambda: F.local_response_norm(np.zeros((2, 3), np.float32), 2), ValueError, ["input", "3-D or more"]),
    (lambda: F.local_response_norm(X, 0), ValueError, ["size", ">= 1"]),
    (lambda: F.local_response_norm(X, 2.5), TypeError, ["size", "int"]),
    (lambda: F.local_response_norm(X, 2, alpha="a"), TypeError, ["alpha"]),
    (lambda: F.local_response_norm(X, 2, beta=None), TypeError, ["beta"]),
    (lambda: F.local_response_norm(X, 2, k=[1]), TypeError, ["k"]),
    (lambda: F.local_response_norm_backward(np.zeros((2, 3, 4), np.float32), X, 2), ValueError,
     ["grad_output", "(2, 3, 4, 4)"]),
])
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error) as raised:
        call()
    for word in words:
        assert word in str(raised.value), f"{word!r} not in {raised.value}"
