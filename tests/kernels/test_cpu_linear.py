"""The CPU fully connected kernels, in one chunk and split by rows over parallel chunks."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv.kernels.cpu import linear


@pytest.mark.parametrize("parallel_flops", [0, linear.PARALLEL_FLOPS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_matches_float64_reference(parallel_flops, dtype, with_bias, monkeypatch, rng):
    monkeypatch.setattr(linear, "PARALLEL_FLOPS", parallel_flops)
    x = rng.standard_normal((7, 5)).astype(dtype)
    w = rng.standard_normal((3, 5)).astype(dtype)
    b = rng.standard_normal(3).astype(dtype) if with_bias else None
    grad_y = rng.standard_normal((7, 3)).astype(dtype)
    x64, w64, g64 = (a.astype(np.float64) for a in (x, w, grad_y))
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    expected = x64 @ w64.T + (b.astype(np.float64) if with_bias else 0)
    np.testing.assert_allclose(F.linear(x, w, b), expected, rtol=tolerance, atol=tolerance)
    grad_x, grad_w, grad_b = F.linear_backward(grad_y, x, w)
    np.testing.assert_allclose(grad_x, g64 @ w64, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(grad_w, g64.T @ x64, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(grad_b, g64.sum(axis=0), rtol=tolerance, atol=tolerance)
