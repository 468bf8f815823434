"""Batch normalization fused with a ReLU and an optional residual sum (F.batch_norm_relu and its backward):
against a float64 reference, by finite differences, bit for bit against the separate calls, on the CUDA
backend under the simulator, and bad input."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv import backend
from tests import reference

SHAPES = [(5, 3), (3, 4, 7), (2, 3, 5, 7), (3, 2, 9, 11)]


def _channel_arrays(rng, C, dtype=np.float64):
    return (rng.standard_normal(C).astype(dtype), (rng.random(C) + 0.5).astype(dtype),
            rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(shape, training, with_residual, dtype, rng):
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    residual = rng.standard_normal(shape).astype(dtype) if with_residual else None
    running_mean, running_var, weight, bias = _channel_arrays(rng, shape[1], dtype)
    normalised, expected_mean, expected_var = reference.batch_norm(x, running_mean.astype(np.float64),
                                                                   running_var.astype(np.float64), weight, bias,
                                                                   training, 0.3, 1e-3)
    expected = np.maximum(normalised + (0 if residual is None else residual), 0)
    output = F.batch_norm_relu(x, running_mean, running_var, weight, bias, training=training, momentum=0.3,
                               eps=1e-3, residual=residual)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    assert output.shape == x.shape and output.dtype == dtype
    np.testing.assert_allclose(output, expected, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(running_mean, expected_mean, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(running_var, expected_var, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("affine", [(True, True), (False, False), (True, False)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 5), (2, 3, 3, 5)])
def test_backward_matches_finite_differences(shape, training, affine, rng):
    x = rng.standard_normal(shape) * 2 - 1
    running_mean, running_var, weight, bias = _channel_arrays(rng, shape[1])
    weight = weight if affine[0] else None
    bias = bias if affine[1] else None
    frozen = (running_mean.copy(), running_var.copy())
    forward = lambda: F.batch_norm_relu(x, *((None, None) if training else frozen), weight, bias,  # noqa: E731
                                        training=training, eps=1e-2)
    output = forward()
    assert (output == 0).any() and (output > 0).any()  # both sides of the ReLU are exercised
    grad_y = rng.standard_normal(shape)
    grad_x, grad_weight, grad_bias = F.batch_norm_relu_backward(grad_y, output, x, running_mean, running_var, weight,
                                                                bias, training=training, eps=1e-2)
    np.testing.assert_allclose(grad_x, reference.numerical_gradient(forward, x, grad_y), rtol=1e-5, atol=1e-7)
    for name, parameter, grad in (("weight", weight, grad_weight), ("bias", bias, grad_bias)):
        if parameter is None:
            assert grad is None
        else:
            np.testing.assert_allclose(grad, reference.numerical_gradient(forward, parameter, grad_y), rtol=1e-5,
                                       atol=1e-7, err_msg=name)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(16, 8, 9, 7), (4, 5, 33)])
def test_bit_for_bit_the_separate_calls(shape, training, rng):
    """The forward equals batch_norm, add and relu one after the other bit for bit; the backward equals relu's and
    batch_norm's backward up to the order of its float64 sums (they vectorise differently)."""
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    residual = rng.standard_normal(shape).astype(np.float32)
    grad_y = rng.standard_normal(shape).astype(np.float32)
    arrays = _channel_arrays(rng, shape[1], np.float32)
    separate_stats, fused_stats = [a.copy() for a in arrays[:2]], [a.copy() for a in arrays[:2]]
    weight, bias = arrays[2], arrays[3]
    normalised, stats = F.batch_norm(x, *separate_stats, weight, bias, training=training, return_stats=True)
    separate = F.relu(normalised)
    fused, fused_stats_used = F.batch_norm_relu(x, *fused_stats, weight, bias, training=training, return_stats=True)
    np.testing.assert_array_equal(fused, separate)
    for a, b in zip(fused_stats + list(fused_stats_used), separate_stats + list(stats)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        F.batch_norm_relu(x, *[a.copy() for a in arrays[:2]], weight, bias, training=training, residual=residual),
        F.relu(F.add(F.batch_norm(x, *[a.copy() for a in arrays[:2]], weight, bias, training=training), residual)))
    expected = F.batch_norm_backward(F.relu_backward(grad_y, normalised), x, *separate_stats, weight, bias,
                                     training=training, stats=stats)
    got = F.batch_norm_relu_backward(grad_y, fused, x, *fused_stats, weight, bias, training=training,
                                     stats=fused_stats_used)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    only_params = F.batch_norm_relu_backward(grad_y, fused, x, *fused_stats, weight, bias, training=training,
                                             need_input_grad=False)
    assert only_params[0] is None
    np.testing.assert_allclose(only_params[1], got[1], rtol=1e-6, atol=1e-6)


def test_nan_passes_forward_and_stops_the_gradient(rng):
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    residual = np.zeros_like(x)
    residual[1, 0, 2] = np.nan
    output = F.batch_norm_relu(x, None, None, training=True, residual=residual)
    assert np.isnan(output[1, 0, 2]) and np.isfinite(np.delete(output.reshape(-1), 1 * 6 + 2)).all()
    grad = F.batch_norm_relu_backward(np.ones_like(x), output, x, None, None, training=False,
                                      stats=(np.zeros(2, np.float32), np.ones(2, np.float32)))[0]
    assert grad[1, 0, 2] == 0


X = np.zeros((2, 3, 4, 4), np.float32)
C3 = np.ones(3, np.float32)


@pytest.mark.parametrize("call,error,words", [
    (lambda: F.batch_norm_relu(X, None, None, training=True, residual=np.zeros((2, 3, 4, 5), np.float32)),
     ValueError, ["residual", "(2, 3, 4, 4)"]),
    (lambda: F.batch_norm_relu(X, None, None, training=True, residual=np.zeros(X.shape)), TypeError,
     ["residual", "float32"]),
    (lambda: F.batch_norm_relu(X, C3, None), ValueError, ["running_mean and running_var"]),
    (lambda: F.batch_norm_relu(X, C3, C3, weight=np.ones(2, np.float32)), ValueError, ["weight", "(3,)"]),
    (lambda: F.batch_norm_relu(np.zeros((1, 3), np.float32), None, None, training=True), ValueError,
     ["more than 1 value per channel"]),
    (lambda: F.batch_norm_relu_backward(X, X[:, :2], X, C3, C3), ValueError, ["output", "(2, 3, 4, 4)"]),
    (lambda: F.batch_norm_relu_backward(X[:1], X, X, C3, C3), ValueError, ["grad_output", "(2, 3, 4, 4)"]),
    (lambda: F.batch_norm_relu_backward(X, None, X, C3, C3), TypeError, ["output", "None"]),
])
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error) as raised:
        call()
    for word in words:
        assert word in str(raised.value), f"{word!r} not in {raised.value}"


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 37), (2, 3, 5, 7)])  # 37 * 3 > 32 threads: strided loops
@pytest.mark.parametrize("training", [True, False])
def test_on_cuda_matches_cpu(shape, training, rng):
    x = rng.standard_normal(shape).astype(np.float32) + 0.5
    residual = rng.standard_normal(shape).astype(np.float32)
    running_mean, running_var, weight, bias = _channel_arrays(rng, shape[1], np.float32)
    device = [backend.to_device(a) for a in (x, running_mean, running_var, weight, bias)]
    for extra in (None, residual):
        output, stats = F.batch_norm_relu(x, running_mean, running_var, weight, bias, training=training,
                                          residual=extra, return_stats=True)
        device_output, device_stats = F.batch_norm_relu(*device, training=training, return_stats=True,
                                                        residual=None if extra is None else backend.to_device(extra))
        assert backend.is_device_array(device_output)
        np.testing.assert_allclose(backend.to_host(device_output), output, rtol=1e-5, atol=1e-5)
        for host, on_device in [(running_mean, device[1]), (running_var, device[2])] + list(zip(stats, device_stats)):
            np.testing.assert_allclose(backend.to_host(on_device), host, rtol=1e-5, atol=1e-6)
    output, stats = F.batch_norm_relu(x, running_mean.copy(), running_var.copy(), weight, bias, training=training,
                                      return_stats=True)
    grad_y = rng.standard_normal(shape).astype(np.float32)
    expected = F.batch_norm_relu_backward(grad_y, output, x, running_mean, running_var, weight, bias,
                                          training=training, stats=stats)
    got = F.batch_norm_relu_backward(backend.to_device(grad_y), backend.to_device(output), *device,
                                     training=training, stats=tuple(backend.to_device(s) for s in stats))
    for e, g in zip(expected, got):
        assert backend.is_device_array(g)
        np.testing.assert_allclose(backend.to_host(g), e, rtol=1e-4, atol=1e-5)


def test_concurrent_calls_from_threads(rng):
    from concurrent.futures import ThreadPoolExecutor
    inputs = [(rng.standard_normal((4, 3, 5, 5)) * (k + 1), rng.standard_normal((4, 3, 5, 5))) for k in range(8)]

    def both(pair):
        x, residual = pair
        output, stats = F.batch_norm_relu(x, None, None, training=True, residual=residual, return_stats=True)
        return output, F.batch_norm_relu_backward(residual, output, x, None, None, training=True, stats=stats)[0]
    expected = [both(pair) for pair in inputs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(both, inputs))
    for e, g in zip(expected, got):
        for a, b in zip(e, g):
            np.testing.assert_array_equal(a, b)
