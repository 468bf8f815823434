"""Batch normalization: against a float64 reference, by finite differences (through the batch statistics
in training mode), the running statistics, N=1 edge cases and bad input."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import nbconv.functional as F
from nbconv import backend
from tests import reference

SHAPES = [(5, 3), (3, 4, 7), (2, 3, 5, 7), (1, 2, 3, 1)]


def _channel_arrays(rng, C, dtype=np.float64):
    return (rng.standard_normal(C).astype(dtype), (rng.random(C) + 0.5).astype(dtype),
            rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_matches_reference(shape, training, dtype, rng):
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    running_mean, running_var, weight, bias = _channel_arrays(rng, shape[1], dtype)
    expected, expected_mean, expected_var = reference.batch_norm(x, running_mean.astype(np.float64),
                                                                 running_var.astype(np.float64), weight, bias,
                                                                 training, 0.3, 1e-3)
    output = F.batch_norm(x, running_mean, running_var, weight, bias, training=training, momentum=0.3, eps=1e-3)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    assert output.shape == x.shape and output.dtype == dtype
    np.testing.assert_allclose(output, expected, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(running_mean, expected_mean, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(running_var, expected_var, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (2, 3, 3, 5), (1, 2, 2, 2)])
def test_batch_norm_backward_matches_finite_differences(shape, training, affine, rng):
    x = rng.standard_normal(shape) * 2 - 1
    running_mean, running_var, weight, bias = _channel_arrays(rng, shape[1])
    weight = weight if affine[0] else None
    bias = bias if affine[1] else None
    frozen = (running_mean.copy(), running_var.copy())  # the forward below must not move the running statistics
    forward = lambda: F.batch_norm(x, *((None, None) if training else frozen), weight, bias,  # noqa: E731
                                   training=training, eps=1e-2)
    grad_y = rng.standard_normal(shape)
    grad_x, grad_weight, grad_bias = F.batch_norm_backward(grad_y, x, running_mean, running_var, weight, bias,
                                                           training=training, eps=1e-2)
    np.testing.assert_allclose(grad_x, reference.numerical_gradient(forward, x, grad_y), rtol=1e-6, atol=1e-8)
    for name, parameter, grad in (("weight", weight, grad_weight), ("bias", bias, grad_bias)):
        if parameter is None:
            assert grad is None
        else:
            np.testing.assert_allclose(grad, reference.numerical_gradient(forward, parameter, grad_y), rtol=1e-6,
                                       atol=1e-8, err_msg=name)


def test_training_gradient_sums_to_zero_per_channel(rng):
    """Through the batch statistics the input gradient has no component along a per-channel shift."""
    x = rng.standard_normal((4, 3, 5, 5))
    grad_x = F.batch_norm_backward(rng.standard_normal(x.shape), x, None, None, training=True)[0]
    np.testing.assert_allclose(grad_x.sum(axis=(0, 2, 3)), 0, atol=1e-12)


def test_saved_stats_give_the_recomputed_gradients(rng):
    x = rng.standard_normal((3, 4, 6, 5)).astype(np.float32)
    running_mean, running_var, weight, bias = _channel_arrays(rng, 4, np.float32)
    before = running_mean.copy(), running_var.copy()
    output, stats = F.batch_norm(x, running_mean, running_var, weight, bias, training=True, return_stats=True)
    mean, invstd = stats
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(x.astype(np.float64).var(axis=(0, 2, 3)) + 1e-5), rtol=1e-5)
    grad_y = rng.standard_normal(x.shape).astype(np.float32)
    after = running_mean.copy(), running_var.copy()
    saved = F.batch_norm_backward(grad_y, x, running_mean, running_var, weight, bias, training=True, stats=stats)
    recomputed = F.batch_norm_backward(grad_y, x, running_mean, running_var, weight, bias, training=True)
    for a, b in zip(saved, recomputed):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert not np.allclose(after[0], before[0])  # the forward moved them, the backward did not
    np.testing.assert_array_equal(running_mean, after[0])
    np.testing.assert_array_equal(running_var, after[1])
    only_params = F.batch_norm_backward(grad_y, x, running_mean, running_var, weight, bias, training=True,
                                        stats=stats, need_input_grad=False)
    assert only_params[0] is None
    np.testing.assert_allclose(only_params[1], saved[1], rtol=1e-6)


def test_float32_statistics_survive_a_large_offset(rng):
    """Two passes over the values: a mean far from zero does not swamp a small variance."""
    x = (1000 + 0.01 * rng.standard_normal((8, 2, 16, 16))).astype(np.float32)
    output = F.batch_norm(x, None, None, training=True, eps=1e-9)
    expected = reference.batch_norm(x, 0, 1, None, None, True, 0.1, 1e-9)[0]
    np.testing.assert_allclose(output, expected, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(output.std(axis=(0, 2, 3)), 1, rtol=1e-3)


def test_one_value_per_channel(rng):
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        F.batch_norm(np.ones((1, 3)), np.zeros(3), np.ones(3), training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        F.batch_norm(np.ones((1, 3, 1, 1)), None, None, training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        F.batch_norm_backward(np.ones((1, 3)), np.ones((1, 3)), None, None, training=True)
    x = rng.standard_normal((1, 3))  # evaluation is fine with one sample, as is training over positions
    np.testing.assert_allclose(F.batch_norm(x, np.zeros(3), np.ones(3), eps=0.0 + 1e-5), x / np.sqrt(1 + 1e-5))
    assert F.batch_norm(rng.standard_normal((1, 3, 2)), None, None, training=True).shape == (1, 3, 2)


def test_concurrent_calls_from_threads(rng):
    inputs = [rng.standard_normal((4, 3, 5, 5)) * (k + 1) for k in range(8)]
    expected = [F.batch_norm(x, None, None, training=True) for x in inputs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: F.batch_norm(x, None, None, training=True), inputs))
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


X = np.zeros((2, 3, 4, 4), np.float32)
C3 = np.ones(3, np.float32)


@pytest.mark.parametrize("call,error,words", [
    (lambda: F.batch_norm(np.zeros(3, np.float32), None, None, training=True), ValueError, ["input", "(N, C)"]),
    (lambda: F.batch_norm(np.zeros((2, 3, 4, 4, 4), np.float32), None, None, training=True), ValueError, ["input"]),
    (lambda: F.batch_norm(np.zeros((2, 0, 4), np.float32), None, None, training=True), ValueError,
     ["input", "at least one channel"]),
    (lambda: F.batch_norm(X, np.zeros(4, np.float32), C3), ValueError, ["running_mean", "(3,)", "(4,)"]),
    (lambda: F.batch_norm(X, C3, np.ones((3, 1), np.float32)), ValueError, ["running_var", "(3,)"]),
    (lambda: F.batch_norm(X, C3, None), ValueError, ["running_mean and running_var", "together"]),
    (lambda: F.batch_norm(X, None, None), ValueError, ["running_mean and running_var", "training=False"]),
    (lambda: F.batch_norm(X, C3, C3, weight=np.ones(2, np.float32)), ValueError, ["weight", "(3,)"]),
    (lambda: F.batch_norm(X, C3, C3, bias=np.ones(4, np.float32)), ValueError, ["bias", "(3,)"]),
    (lambda: F.batch_norm(X, C3, C3, momentum=1.5), ValueError, ["momentum", "[0, 1]"]),
    (lambda: F.batch_norm(X, C3, C3, momentum="a"), TypeError, ["momentum"]),
    (lambda: F.batch_norm(X, C3, C3, eps=0), ValueError, ["eps", "> 0"]),
    (lambda: F.batch_norm(X, C3, C3, eps=-1e-5), ValueError, ["eps", "> 0"]),
    (lambda: F.batch_norm(X, C3.astype(np.float64), C3), TypeError, ["dtype", "running_mean is float64"]),
    (lambda: F.batch_norm(X, np.ones(6, np.float32)[::2], C3, training=True), ValueError,
     ["running_mean", "contiguous"]),
    (lambda: F.batch_norm_backward(np.zeros((2, 3, 4, 5), np.float32), X, C3, C3), ValueError,
     ["grad_output", "(2, 3, 4, 4)"]),
    (lambda: F.batch_norm_backward(X, X, C3, C3, stats=C3), TypeError, ["stats", "(mean, invstd)"]),
    (lambda: F.batch_norm_backward(X, X, C3, C3, stats=(C3, np.ones(2, np.float32))), ValueError,
     ["invstd", "(3,)"]),
    (lambda: F.batch_norm_backward(X, X, C3, C3, eps=0.0), ValueError, ["eps"]),
])
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error) as raised:
        call()
    for word in words:
        assert word in str(raised.value), f"{word!r} not in {raised.value}"


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 37), (2, 3, 5, 7)])  # 37 * 3 > 32 threads: strided loops
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_on_cuda_matches_cpu(shape, training, rng):
    x = rng.standard_normal(shape).astype(np.float32) + 1
    running_mean, running_var, weight, bias = _channel_arrays(rng, shape[1], np.float32)
    device = [backend.to_device(a) for a in (x, running_mean, running_var, weight, bias)]
    output, stats = F.batch_norm(x, running_mean, running_var, weight, bias, training=training, return_stats=True)
    device_output, device_stats = F.batch_norm(*device, training=training, return_stats=True)
    assert backend.is_device_array(device_output)
    np.testing.assert_allclose(backend.to_host(device_output), output, rtol=1e-5, atol=1e-5)
    for host, on_device in [(running_mean, device[1]), (running_var, device[2])] + list(zip(stats, device_stats)):
        np.testing.assert_allclose(backend.to_host(on_device), host, rtol=1e-5, atol=1e-6)
    grad_y = rng.standard_normal(shape).astype(np.float32)
    expected = F.batch_norm_backward(grad_y, x, running_mean, running_var, weight, bias, training=training)
    got = F.batch_norm_backward(backend.to_device(grad_y), *device, training=training)
    for e, g in zip(expected, got):
        assert backend.is_device_array(g)
        np.testing.assert_allclose(backend.to_host(g), e, rtol=1e-4, atol=1e-5)
    got = F.batch_norm_backward(backend.to_device(grad_y), device[0], None if training else device[1],
                                None if training else device[2], training=training, stats=device_stats)
    np.testing.assert_allclose(backend.to_host(got[0]), F.batch_norm_backward(
        grad_y, x, running_mean, running_var, training=training)[0], rtol=1e-4, atol=1e-5)
    assert got[1] is None and got[2] is None
