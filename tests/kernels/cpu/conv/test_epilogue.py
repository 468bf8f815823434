"""conv2d_forward_prepared: the convolution with its weight-only work kept, and an epilogue (scale, shift,
residual, ReLU) inside the gemm, pointwise, pointwise_tiles and Winograd kernels or after the others, against conv2d then
scale_shift; non-finite inputs and weights still follow the definition."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv.kernels.cpu.conv.plan import plan

CASES = {  # input shape, weight shape, (stride, padding): the algorithm the plan picks
    "pointwise": ((1, 24, 7, 5), (130, 24, 1, 1), (1, 0)),
    "pointwise_tiles": ((2, 24, 8, 6), (13, 24, 1, 1), (1, 0)),
    "gemm": ((2, 2, 9, 7), (17, 2, 3, 3), (2, 1)),
    "winograd": ((1, 32, 5, 23), (33, 32, 3, 3), (1, 1)),
    "shift": ((2, 16, 6, 40), (16, 16, 3, 3), (1, 1)),
}


def _epilogue_case(rng, name, activation):
    x_shape, w_shape, (stride, padding) = CASES[name]
    assert plan("forward", x_shape, w_shape, stride, stride, padding, padding).algorithm == name
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    expected_conv = F.conv2d(x, w, None, stride, padding)
    scale, shift = rng.standard_normal(w_shape[0]).astype(np.float32), rng.standard_normal(w_shape[0]).astype(np.float32)
    residual = rng.standard_normal(expected_conv.shape).astype(np.float32)
    return x, w, stride, padding, scale, shift, residual, expected_conv


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
def test_epilogue_matches_convolution_then_scale_shift(name, activation, rng):
    x, w, stride, padding, scale, shift, residual, conv = _epilogue_case(rng, name, activation)
    prepared = {}
    for epilogue in [(scale, shift, residual, activation), (scale, None, None, activation), (None, None, None, None)]:
        expected = F.scale_shift(conv, *epilogue)
        for _ in range(2):  # the first call fills `prepared`, the second reuses it
            got = F._conv2d(x, w, None, stride, padding, 1, 1, prepared=prepared, epilogue=epilogue)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert prepared["finite"] is True
    assert ("winograd filters" in prepared) == (name == "winograd")


@pytest.mark.parametrize("name", ["winograd", "pointwise"])
def test_epilogue_with_non_finite_input_or_weight_follows_the_definition(name, rng):
    x, w, stride, padding, scale, shift, residual, _ = _epilogue_case(rng, name, "relu")
    x[0, 1, 2, 3] = -np.inf
    expected = F.scale_shift(F.conv2d(x, w, None, stride, padding), scale, shift, residual, "relu")
    got = F._conv2d(x, w, None, stride, padding, 1, 1, prepared={}, epilogue=(scale, shift, residual, "relu"))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    x[0, 1, 2, 3] = 0
    w[1, 1, 0, 0] = np.inf
    expected = F.scale_shift(F.conv2d(x, w, None, stride, padding), scale, shift, residual, "relu")
    got = F._conv2d(x, w, None, stride, padding, 1, 1, prepared={}, epilogue=(scale, shift, residual, "relu"))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_epilogue_arrays_are_checked_against_the_output(rng):
    x, w, stride, padding, scale, shift, residual, _ = _epilogue_case(rng, "pointwise", None)
    with pytest.raises(ValueError, match="residual"):
        F._conv2d(x, w, None, stride, padding, 1, 1, prepared={}, epilogue=(scale, shift, residual[:, :3], None))
    with pytest.raises(ValueError, match="scale"):
        F._conv2d(x, w, None, stride, padding, 1, 1, prepared={}, epilogue=(scale[:5], shift, None, None))
    with pytest.raises(ValueError, match="activation"):
        F._conv2d(x, w, None, stride, padding, 1, 1, prepared={}, epilogue=(None, None, None, "gelu"))
