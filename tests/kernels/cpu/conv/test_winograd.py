"""conv/winograd.py: 3x3 stride-1 convolution by Winograd's F(2x2, 3x3), forward and input gradient."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv.kernels.cpu.conv import blocks, plan as planning
from nbconv.kernels.cpu.conv.plan import plan
from tests import reference
from tests.kernels.cpu.conv.algorithm_check import check

# (N, C, H, W, D, kernel, stride, padding, dilation, groups): 3x3, stride 1, odd output sizes
CASES = [
    (2, 16, 7, 9, 17, 3, 1, 1, 1, 1),
    (1, 16, 6, 5, 16, 3, 1, 0, 1, 1),
    (2, 16, 5, 6, 16, 3, 1, 2, 1, 1),
    (3, 4, 9, 7, 6, 3, 1, (1, 2), 1, 1),          # few channels: not chosen, but computed right
]


@pytest.mark.parametrize("cache_bytes", [1, blocks.CACHE_BYTES])  # one row of tiles a block, or the default
@pytest.mark.parametrize("case", CASES)
def test_winograd_matches_reference(case, cache_bytes, monkeypatch, rng):
    monkeypatch.setattr(blocks, "CACHE_BYTES", cache_bytes)
    check("winograd", case, rng, passes=("forward", "backward_input"), tolerance=1e-11,
          finite_differences=case is CASES[3])  # a small case: differences are slow


def test_padding_3_has_a_winograd_forward_but_no_input_gradient(rng):
    case = (1, 16, 5, 5, 16, 3, 1, 3, 1, 1)
    check("winograd", case, rng, passes=("forward",), tolerance=1e-11)
    with pytest.raises(ValueError, match="does not apply"):
        plan("backward_input", (1, 16, 5, 5), (16, 16, 3, 3), 1, 1, 3, 3, algorithm="winograd")
    with pytest.raises(ValueError, match="does not apply"):
        plan("backward_weight", (1, 16, 5, 5), (16, 16, 3, 3), 1, 1, 1, 1, algorithm="winograd")


def test_winograd_float32_error_stays_small(monkeypatch, rng):
    monkeypatch.setattr(planning, "WINOGRAD_CHANNELS", 16)  # so that this small layer takes Winograd
    monkeypatch.setattr(planning, "WINOGRAD_WORK", 0)
    x = rng.standard_normal((2, 32, 15, 14)).astype(np.float32)
    w = rng.standard_normal((24, 32, 3, 3)).astype(np.float32)
    assert [plan(pass_, x.shape, w.shape, 1, 1, 1, 1).algorithm for pass_ in ("forward", "backward_input")] == \
        ["winograd", "winograd"]
    expected = reference.conv2d(x, w, None, (1, 1), ((1, 1), (1, 1)))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(F.conv2d(x, w, padding=1), expected, rtol=0, atol=2e-6 * scale)
    grad_y = rng.standard_normal(expected.shape).astype(np.float32)
    grad_x = F.conv2d_backward(grad_y, x, w, padding=1)[0]
    grad_x64 = F.conv2d_backward(grad_y.astype(np.float64), x.astype(np.float64), w.astype(np.float64), padding=1)[0]
    np.testing.assert_allclose(grad_x, grad_x64, rtol=0, atol=2e-6 * np.abs(grad_x64).max())
