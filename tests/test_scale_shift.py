"""scale_shift (per-channel scale and shift + residual sum + ReLU in one pass) and batch_norm_scale_shift
against float64 references on random odd shapes, in place and into a new array; bad input."""
import numpy as np
import pytest

from nbconv import functional as F

from . import reference


def _reference(x, scale, shift, residual, activation):
    """float64, element by element in the order of the definition."""
    x = x.astype(np.float64)
    channels = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    value = x * (1.0 if scale is None else scale.astype(np.float64).reshape(channels))
    value = value + (0.0 if shift is None else shift.astype(np.float64).reshape(channels))
    if residual is not None:
        value = value + residual
    if activation == "relu":
        value = np.where(value <= 0, 0.0, value)
    elif activation == "relu6":
        value = np.where(value <= 0, 0.0, np.where(value >= 6, 6.0, value))
    return value


def _case(rng, dtype, shape):
    C = shape[1]
    return (rng.standard_normal(shape).astype(dtype) * 4, rng.standard_normal(C).astype(dtype),
            rng.standard_normal(C).astype(dtype), rng.standard_normal(shape).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 7, 5, 3), (3, 5, 1, 9), (2, 3), (5, 1, 11)])
@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
def test_scale_shift_matches_float64_reference(dtype, shape, activation):
    rng = np.random.default_rng(sum(shape))
    x, scale, shift, residual = _case(rng, dtype, shape)
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for use_scale, use_shift, use_residual in [(1, 1, 1), (1, 1, 0), (0, 1, 1), (1, 0, 0), (0, 0, 0)]:
        arguments = (scale if use_scale else None, shift if use_shift else None, residual if use_residual else None)
        expected = _reference(x, *arguments, activation)
        got = F.scale_shift(x, *arguments, activation=activation)
        assert got.shape == x.shape and got.dtype == dtype
        np.testing.assert_allclose(got, expected, **tolerance)


def test_scale_shift_in_place_on_input_and_on_residual(rng):
    x, scale, shift, residual = _case(rng, np.float32, (2, 6, 7, 5))
    expected = F.scale_shift(x, scale, shift, residual, "relu")
    into_input = x.copy()
    assert F.scale_shift(into_input, scale, shift, residual, "relu", out=into_input) is into_input
    into_residual = residual.copy()
    F.scale_shift(x, scale, shift, into_residual, "relu", out=into_residual)
    np.testing.assert_array_equal(into_input, expected)
    np.testing.assert_array_equal(into_residual, expected)


def test_eval_batch_norm_add_and_relu_in_one_pass_match_the_separate_layers(rng):
    x = rng.standard_normal((2, 9, 5, 3)).astype(np.float32)
    mean, weight, bias = (rng.standard_normal(9).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 2.0, 9).astype(np.float32)
    residual = rng.standard_normal(x.shape).astype(np.float32)
    scale, shift = F.batch_norm_scale_shift(mean, var, weight, bias, eps=1e-3)
    assert scale.dtype == shift.dtype == np.float32 and scale.shape == shift.shape == (9,)
    separate = F.relu(F.add(F.batch_norm(x, mean, var, weight, bias, eps=1e-3), residual))
    np.testing.assert_allclose(F.scale_shift(x, scale, shift, residual, "relu"), separate, rtol=1e-5, atol=1e-5)
    expected = reference.batch_norm(x.astype(np.float64), mean.astype(np.float64), var.astype(np.float64),
                                    weight.astype(np.float64), bias.astype(np.float64), False, 0.0, 1e-3)[0]
    without_affine = F.batch_norm_scale_shift(mean.astype(np.float64), var.astype(np.float64))
    np.testing.assert_allclose(F.scale_shift(x, scale, shift), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(without_affine[0], 1 / np.sqrt(var.astype(np.float64) + 1e-5), rtol=1e-12)
    np.testing.assert_allclose(without_affine[1], -mean * without_affine[0], rtol=1e-12)


def test_scale_shift_lets_nan_through_the_relu():
    x = np.array([[np.nan, -1.0, np.inf, -np.inf]], np.float32).reshape(1, 1, 4)
    got = F.scale_shift(x, activation="relu")
    np.testing.assert_array_equal(got, np.array([np.nan, 0, np.inf, 0], np.float32).reshape(1, 1, 4))


@pytest.mark.parametrize("call,error,words", [
    (lambda x, c: F.scale_shift(x, c, activation="gelu"), ValueError, "activation"),
    (lambda x, c: F.scale_shift(x, np.ones(4, np.float32)), ValueError, "scale"),
    (lambda x, c: F.scale_shift(x, None, np.ones((3, 1), np.float32)), ValueError, "shift"),
    (lambda x, c: F.scale_shift(x, residual=x[:1]), ValueError, "residual"),
    (lambda x, c: F.scale_shift(x, c.astype(np.float64)), TypeError, "dtype"),
    (lambda x, c: F.scale_shift(x[0, 0, 0]), ValueError, "input"),
    (lambda x, c: F.scale_shift(x, out=np.empty((2, 3, 5), np.float32)), ValueError, "out"),
    (lambda x, c: F.scale_shift(x, out=np.empty((2, 3, 5, 8), np.float32)[..., :7]), ValueError, "out"),
    (lambda x, c: F.scale_shift(x, out=x.reshape(-1)[1:].copy()), ValueError, "out"),
    (lambda x, c: F.scale_shift(x.reshape(-1)[:30].reshape(1, 3, 10), out=x.reshape(-1)[5:35].reshape(1, 3, 10)),
     ValueError, "overlap"),
    (lambda x, c: F.scale_shift(None), TypeError, "input"),
    (lambda x, c: F.batch_norm_scale_shift(c, c[:2]), ValueError, "running_var"),
    (lambda x, c: F.batch_norm_scale_shift(c, c, eps=0.0), ValueError, "eps"),
    (lambda x, c: F.batch_norm_scale_shift(c.reshape(1, 3), c.reshape(1, 3)), ValueError, "running_mean"),
])
def test_scale_shift_bad_input_names_the_argument(call, error, words):
    x = np.zeros((2, 3, 5, 7), np.float32)
    with pytest.raises(error, match=words):
        call(x, np.ones(3, np.float32))
