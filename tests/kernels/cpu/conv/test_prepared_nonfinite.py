"""A prepared forward pass (dispatch.conv2d_forward_prepared) by one of the EXACT_PRODUCTS algorithms runs no
non-finite check: NaN and inf in the input, under zero weights, at the padding's edge and in the residual must
still give exactly the definition's result (tests/reference.py, float64) finished by the epilogue, for every
activation, one image and several."""
import numpy as np
import pytest

from nbconv.kernels.cpu.conv import dispatch, packed_windows
from nbconv.kernels.cpu.conv.plan import prepared_plan
from tests import reference

ON_49 = "packed_windows" if packed_windows.PANEL >= 32 else "packed"  # 1x1 layers on 49 positions (AVX-512 or not)
# (N, C, H, W, D, kernel, stride, padding, groups, the algorithm the prepared plan gives)
CASES = [
    (2, 20, 8, 8, 24, 1, 1, 0, 1, "packed"),
    (2, 20, 7, 7, 40, 1, 1, 0, 1, ON_49),
    (1, 19, 5, 9, 13, 1, 2, 0, 1, "packed"),
    (1, 16, 11, 11, 17, 1, 1, 0, 1, "pointwise"),
    (1, 8, 21, 19, 12, 1, 2, 0, 1, "gemm"),
    (2, 8, 9, 11, 6, 3, 2, 1, 2, "gemm"),
    (2, 23, 9, 11, 67, 3, 2, 1, 1, "packed_windows"),
    (1, 3, 23, 21, 18, 7, 2, 3, 1, "packed_windows"),
]
SPECIALS = (np.nan, np.inf, -np.inf)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference multiplies inf by 0


def _epilogue(values, scale, shift, residual, activation):
    out = values * scale[:, None, None] + shift[:, None, None] + residual.reshape(values.shape)
    if activation:
        out = np.where(out <= 0, 0.0, out)  # NaN stays NaN, -inf turns 0
    if activation == 2:
        out = np.where(out >= 6, 6.0, out)
    return out


def _assert_same(got, expected):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(expected))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-10,
                               atol=1e-10 * max(1.0, np.abs(expected[finite]).max()))


@pytest.mark.parametrize("activation", [0, 1, 2])
@pytest.mark.parametrize("case", CASES)
def test_non_finite_inputs_follow_the_definition_without_a_check(case, activation, rng):
    N, C, H, W, D, kernel, stride, padding, groups, algorithm = case
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((D, C // groups, kernel, kernel)) / np.sqrt(C * kernel * kernel)
    b = rng.standard_normal(D)
    w[:, 1] = 0  # an inf or NaN in input channel 1 (of each group) meets only zero weights: NaN by the definition
    x[0, 1, H // 2, W // 2] = np.inf
    x[N - 1, 0, 0, 0] = -np.inf  # at the padding's corner
    x[N - 1, C - 1, H - 1, W - 1] = np.nan
    x[0, C // 2, 1, W - 2] = np.inf
    x[0, C // 2, H - 2, 1] = -np.inf  # +inf and -inf in one window: NaN
    assert prepared_plan(x.shape, w.shape, stride, stride, padding, padding, 1, 1, groups,
                         dtype=x.dtype).algorithm == algorithm
    assert algorithm in dispatch.EXACT_PRODUCTS
    OH, OW = (H + 2 * padding - kernel) // stride + 1, (W + 2 * padding - kernel) // stride + 1
    scale, shift = rng.standard_normal(D), rng.standard_normal(D)
    residual = rng.standard_normal((N, D, OH * OW))
    residual[N - 1, D - 1, 0] = SPECIALS[activation]
    definition = reference.conv2d(x, w, b, (stride, stride), ((padding, padding),) * 2, (1, 1), groups)
    assert not np.isfinite(definition).all() and np.isfinite(definition).any()
    prepared = {}
    for _ in range(2):  # the second call with what the first kept
        out = np.full((N, D, OH, OW), 7.0)
        dispatch.conv2d_forward_prepared(x, w, b, out, prepared, stride, stride, padding, padding, 1, 1, groups,
                                         (scale, shift, residual, activation))
        _assert_same(out, _epilogue(definition, scale, shift, residual, activation))
    out = np.full((N, D, OH, OW), 7.0)
    dispatch.conv2d_forward_prepared(x, w, b, out, prepared, stride, stride, padding, padding, 1, 1, groups)
    _assert_same(out, definition)


@pytest.mark.parametrize("size, algorithm", [(8, "packed"), (7, ON_49)])
@pytest.mark.parametrize("special", SPECIALS)
def test_a_non_finite_weight_still_takes_the_definition(special, size, algorithm, rng):
    x = rng.standard_normal((1, 20, size, size))
    w = rng.standard_normal((24, 20, 1, 1))
    w[3, 5] = special
    assert prepared_plan(x.shape, w.shape, dtype=x.dtype).algorithm == algorithm
    out = np.empty((1, 24, size, size))
    dispatch.conv2d_forward_prepared(x, w, np.zeros(0), out, {}, 1, 1, 0, 0, 1, 1, 1)
    _assert_same(out, reference.conv2d(x, w, np.zeros(24), (1, 1), ((0, 0),) * 2))
