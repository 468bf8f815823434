"""The CPU fully connected kernels, in one chunk and split by rows over parallel chunks."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv.kernels.cpu import linear


@pytest.mark.parametrize("batch", [1, 7, linear.ROWS_BATCH + 5])  # the small-batch rows kernel, then the BLAS
@pytest.mark.parametrize("parallel_flops", [0, linear.PARALLEL_FLOPS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_float64_reference(batch, parallel_flops, dtype, with_bias, monkeypatch, rng):
    monkeypatch.setattr(linear, "PARALLEL_FLOPS", parallel_flops)
    x = rng.standard_normal((batch, 5)).astype(dtype)
    w = rng.standard_normal((3, 5)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype) if with_bias else None
    grad_y = rng.standard_normal((batch, 3)).astype(dtype)
    x64, w64, g64 = (a.astype(np.float64) for a in (x, w, grad_y))
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    expected = x64 @ w64.T + (b.astype(np.float64) if with_bias else 0)
    np.testing.assert_allclose(F.linear(x, w, b), expected, rtol=tolerance, atol=tolerance)
    grad_x, grad_w, grad_b = F.linear_backward(grad_y, x, w)
    np.testing.assert_allclose(grad_x, g64 @ w64, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(grad_w, g64.T @ x64, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(grad_b, g64.sum(axis=0), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("batch", [1, 3, linear.ROWS_BATCH])
@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("relu", [0, 1])
def test_linear_rows_kernel_matches_float64_reference(batch, parts, relu, rng):
    """The small-batch forward on odd sizes, cut into parts, with the fused ReLU; NaN and inf propagate."""
    x = rng.standard_normal((batch, 203)).astype(np.float32)
    w = rng.standard_normal((37, 203)).astype(np.float32)
    b = rng.standard_normal(37).astype(np.float32)
    x[0, 5], w[3, 7] = np.nan, np.inf
    out = np.full((batch, 37), 7.0, np.float32)
    linear.linear_forward_rows(x, w, b, out, parts, relu)
    with np.errstate(invalid="ignore"):
        expected = x.astype(np.float64) @ w.astype(np.float64).T + b
    if relu:
        expected = np.where(expected > 0, expected, np.where(np.isnan(expected), expected, 0))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
    assert np.isnan(out[0]).all() and np.isinf(expected[1:, 3]).sum() == np.isinf(out[1:, 3]).sum()
    no_bias = np.empty((batch, 37), np.float32)
    linear.linear_forward_rows(x[:, :0], w[:, :0], np.empty(0, np.float32), no_bias, parts, relu)
    assert (no_bias == 0).all()
