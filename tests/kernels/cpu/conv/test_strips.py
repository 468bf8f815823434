"""conv/strips.py: stride-1 convolution by im2col over output rows copied as 8-value blocks."""
import numpy as np
import pytest

from nbconv.kernels.cpu.conv import blocks, dispatch
from nbconv.kernels.cpu.conv.plan import plan
from tests.kernels.cpu.conv.algorithm_check import check
from tests.kernels.cpu.conv.test_wide import weight_gradients_under_thread_counts

# (N, C, H, W, D, kernel, stride, padding, dilation, groups), all stride 1; output widths below, at and
# above one 8-value block, unpadded (reads straight from the image, up to its last value) and padded
CASES = [
    (3, 6, 14, 14, 16, 5, 1, 0, 1, 1),            # LeNet-5's second layer, OW = 10
    (2, 3, 9, 7, 5, 3, 1, 1, 1, 1),                # OW = 7: one block, its last value past the row
    (2, 4, 9, 8, 6, (2, 3), 1, (2, 1), 2, 2),      # non-square, dilated, grouped
    (2, 1, 5, 4, 2, (5, 3), 1, (2, 1), 1, 1),      # kernel taller than the input, reaching only padding rows
    (2, 2, 6, 13, 5, (1, 4), 1, (0, 2), (1, 2), 1),
    (1, 2, 7, 19, 3, (3, 3), 1, 0, (1, 2), 1),     # unpadded, OW = 15: two blocks, dilated along the row
    (1, 16, 5, 5, 16, 3, 1, 3, 1, 1),              # padding 3
    (2, 3, 4, 12, 4, (1, 5), 1, 0, 1, 1),          # unpadded, OW = 8: exactly one block
    (1, 2, 3, 21, 3, (1, 5), 1, 0, 1, 1),          # unpadded, OW = 17: two blocks and a masked last one
]


@pytest.mark.parametrize("cache_bytes", [1, blocks.CACHE_BYTES])  # one output row a block, or the default
@pytest.mark.parametrize("case", CASES)
def test_strips_matches_reference(case, cache_bytes, monkeypatch, rng):
    monkeypatch.setattr(blocks, "CACHE_BYTES", cache_bytes)
    check("strips", case, rng, finite_differences=case in (CASES[0], CASES[2]))


def test_strips_in_float32_matches_reference(rng):
    check("strips", CASES[0], rng, dtype=np.float32, tolerance=2e-6)


def test_unpadded_strips_read_only_the_image(rng):
    """The block copies of an unpadded image end exactly at its last value: values placed right after the
    input in memory must not reach the output."""
    N, C, H, W, D, K = 2, 3, 6, 9, 4, 3
    memory = rng.standard_normal(N * C * H * W + 64)
    memory[N * C * H * W:] = np.nan
    x = memory[:N * C * H * W].reshape((N, C, H, W))
    w = rng.standard_normal((D, C, K, K))
    chosen = plan("forward", x.shape, w.shape, algorithm="strips", dtype=x.dtype)
    out = np.empty(chosen.convolution.output_shape)
    dispatch.run_forward(chosen, x, w, np.empty(0), out)
    assert np.isfinite(out).all()
    grad_w = np.empty_like(w)
    dispatch.run_backward_weight(plan("backward_weight", x.shape, w.shape, algorithm="strips", dtype=x.dtype),
                                 np.ones_like(out), x, grad_w)
    assert np.isfinite(grad_w).all()


def test_plan_sends_5x5_layers_off_lanes_and_row_lanes_here():
    assert plan("backward_input", (64, 6, 14, 14), (16, 6, 5, 5)).algorithm == "row_lanes"  # the others: lanes
    assert plan("backward_input", (64, 9, 14, 14), (16, 9, 5, 5)).algorithm == "strips"  # over 8 inputs
    assert plan("forward", (64, 6, 14, 14), (24, 6, 5, 5)).algorithm == "strips"
    for pass_ in ("forward", "backward_input", "backward_weight"):
        assert plan(pass_, (8, 3, 40, 40), (16, 3, 3, 3), 1, 1, 1, 1).algorithm == "wide"  # 42 / 40 wide


def test_weight_gradient_does_not_depend_on_thread_count(monkeypatch, rng):
    monkeypatch.setattr(blocks, "CACHE_BYTES", 64)  # many tasks, so the chunks really split the sum
    assert plan("backward_weight", (7, 3, 9, 9), (9, 3, 5, 5), 1, 1, 0, 0).algorithm == "strips"
    results = weight_gradients_under_thread_counts(3, rng, out=9, kernel=5, padding=0)
    assert all(np.array_equal(results[0], other) for other in results[1:])
