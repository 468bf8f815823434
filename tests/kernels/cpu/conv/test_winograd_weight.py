"""conv/winograd_weight.py: the weight gradient of 3x3 stride-1 layers by Winograd's F(2x2, 3x3), against the
float64 definition and finite differences on odd shapes, in one block of images or many; float32 error;
independence from the thread count. Also the unrolled weight gradients' partial sums (blocks.max_chunks)."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv.kernels.cpu.conv import blocks, plan as planning, winograd_weight
from nbconv.kernels.cpu.conv.plan import plan
from nbconv.kernels.cpu.shared import sum_partials
from tests import reference
from tests.kernels.cpu.conv.algorithm_check import check, check_thread_counts_agree

# (N, C, H, W, D, kernel, stride, padding, dilation, groups): 3x3, stride 1, output sizes odd in either
# direction, padding 0 to 3, a 1x1 output (one tile, three quarters of it outside the output)
CASES = [
    (2, 3, 7, 9, 5, 3, 1, 1, 1, 1),
    (3, 4, 6, 5, 2, 3, 1, 0, 1, 1),
    (1, 2, 5, 8, 3, 3, 1, 2, 1, 1),
    (2, 5, 4, 4, 4, 3, 1, 3, 1, 1),
    (3, 1, 3, 3, 1, 3, 1, 0, 1, 1),
    (2, 6, 11, 6, 7, 3, 1, (1, 2), 1, 1),
]


@pytest.mark.parametrize("block_bytes", [1, winograd_weight.BLOCK_BYTES])  # one image a block, or all of them
@pytest.mark.parametrize("case", CASES)
def test_winograd_weight_gradient_matches_reference(case, block_bytes, monkeypatch, rng):
    monkeypatch.setattr(winograd_weight, "BLOCK_BYTES", block_bytes)
    check("winograd_weight", case, rng, passes=("backward_weight",), tolerance=1e-11,
          finite_differences=case is CASES[0] or case is CASES[3])  # small cases: differences are slow


def test_only_the_weight_gradient_of_3x3_stride_1_layers(monkeypatch, rng):
    monkeypatch.setattr(planning, "WINOGRAD4_WEIGHT_CHANNELS", 65)  # F(2x2) for the Winograd layers below 65
    assert plan("backward_weight", (2, 64, 14, 14), (64, 64, 3, 3), 1, 1, 1, 1).algorithm == "winograd_weight"
    for pass_, hyper in (("forward", (1, 1, 1, 1)), ("backward_input", (1, 1, 1, 1)),
                         ("backward_weight", (2, 2, 1, 1)), ("backward_weight", (1, 1, 1, 1, 2, 2))):
        with pytest.raises(ValueError, match="does not apply"):
            plan(pass_, (2, 64, 14, 14), (64, 64, 3, 3), *hyper, algorithm="winograd_weight")


def test_winograd_weight_gradient_float32_error_stays_small(rng):
    """Measured about 2e-7 of the largest gradient; the bound is the forward's."""
    x = rng.standard_normal((3, 32, 15, 14)).astype(np.float32)
    grad_y = rng.standard_normal((3, 24, 15, 14)).astype(np.float32)
    expected = reference.conv2d_backward_weight(grad_y, x, (24, 32, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    chosen = plan("backward_weight", x.shape, (24, 32, 3, 3), 1, 1, 1, 1, algorithm="winograd_weight")
    got = np.full((24, 32, 3, 3), np.nan, np.float32)
    from nbconv.kernels.cpu.conv import dispatch
    dispatch.run_backward_weight(chosen, grad_y, x, got)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * np.abs(expected).max())


def test_winograd_weight_gradient_does_not_depend_on_thread_count(monkeypatch, rng):
    monkeypatch.setattr(winograd_weight, "BLOCK_BYTES", 1)  # many blocks
    monkeypatch.setattr(planning, "WINOGRAD4_WEIGHT_CHANNELS", 33)  # F(2x2) for this 32-channel layer
    x = rng.standard_normal((5, 32, 24, 23)).astype(np.float32)
    w = rng.standard_normal((40, 32, 3, 3)).astype(np.float32)
    grad_y = rng.standard_normal((5, 40, 24, 23)).astype(np.float32)
    assert plan("backward_weight", x.shape, w.shape, 1, 1, 1, 1).algorithm == "winograd_weight"
    check_thread_counts_agree(lambda: F.conv2d_backward(grad_y, x, w, padding=1)[1])


def test_unrolled_weight_gradients_keep_few_partial_sums_when_they_are_large():
    """The im2col weight kernels' partial sums (one per chunk) stay within PARTIAL_BYTES, at least 2 chunks."""
    weight = "backward_weight"
    assert blocks.max_chunks(weight, 3, 16 * 16 * 9 * 4) == blocks.WEIGHT_CHUNKS
    assert blocks.max_chunks(weight, 3, 256 * 128 * 9 * 4) == 7       # 1.2 MB each
    assert blocks.max_chunks(weight, 3, 512 * 256 * 9 * 4) == 2       # 4.7 MB each
    assert blocks.max_chunks("forward", 3, 512 * 256 * 9 * 4) == 3 * blocks.CHUNKS_PER_THREAD
    chosen = plan(weight, (8, 256, 14, 14), (512, 256, 3, 3), 2, 2, 1, 1, threads=64)
    assert chosen.algorithm == "gemm" and dict((b.name, b.shape) for b in chosen.buffers)["partial_sums"][0] == 2


def test_partial_sums_add_in_chunk_order(rng):
    partial = rng.standard_normal((5, 2, 7, 3)).astype(np.float32)  # (chunks, groups, depth, D/groups)
    expected = partial[0].copy()
    for chunk in range(1, 5):
        expected += partial[chunk]  # float32, in order: the sums must match bit for bit
    grad_weight = np.empty((6, 7, 1, 1), np.float32)
    sum_partials(partial, grad_weight)
    np.testing.assert_array_equal(grad_weight.reshape(6, 7), expected.transpose(0, 2, 1).reshape(6, 7))
