"""conv/wide.py: stride-1 convolution by im2col over whole padded rows."""
import numba
import numpy as np
import pytest

import nbconv.functional as F
from nbconv.kernels.cpu.conv import blocks
from nbconv.kernels.cpu.conv.plan import plan
from tests.kernels.cpu.conv.algorithm_check import check

# (N, C, H, W, D, kernel, stride, padding, dilation, groups), all stride 1
STRIDE_1 = [
    (3, 4, 9, 7, 6, 3, 1, 1, 1, 1),
    (3, 4, 9, 8, 6, (2, 3), 1, (2, 1), 2, 2),     # non-square, dilated, grouped
    (2, 1, 5, 4, 2, (5, 3), 1, (2, 1), 1, 1),     # kernel taller than the input, reaching only padding rows
    (2, 2, 6, 13, 5, (1, 4), 1, (0, 2), (1, 2), 1),
    (2, 16, 7, 9, 17, 3, 1, 1, 1, 1),             # odd output sizes, 16 channels
    (1, 16, 5, 5, 16, 3, 1, 3, 1, 1),             # padding 3
]


@pytest.mark.parametrize("cache_bytes", [1, blocks.CACHE_BYTES])  # one output row a block, or the default
@pytest.mark.parametrize("case", STRIDE_1)
def test_wide_matches_reference(case, cache_bytes, monkeypatch, rng):
    monkeypatch.setattr(blocks, "CACHE_BYTES", cache_bytes)
    check("wide", case, rng, finite_differences=case is STRIDE_1[1])


def weight_gradients_under_thread_counts(channels, rng, out=None, kernel=3, padding=1):
    """The weight gradient of a stride-1 kernel x kernel layer (9x9 input) with `channels` channels in and
    `out` (default channels + 1) out, run with 1 and with all threads."""
    out = channels + 1 if out is None else out
    x = rng.standard_normal((7, channels, 9, 9)).astype(np.float32)
    w = rng.standard_normal((out, channels, kernel, kernel)).astype(np.float32)
    size = 9 + 2 * padding - kernel + 1
    grad_y = rng.standard_normal((7, out, size, size)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        results = []
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            results.append(F.conv2d_backward(grad_y, x, w, padding=padding)[1])
    finally:
        numba.set_num_threads(before)
    return results


def test_weight_gradient_does_not_depend_on_thread_count(monkeypatch, rng):
    monkeypatch.setattr(blocks, "CACHE_BYTES", 64)  # many tasks, so the chunks really split the sum
    assert plan("backward_weight", (7, 3, 9, 9), (9, 3, 3, 3), 1, 1, 1, 1).algorithm == "wide"
    results = weight_gradients_under_thread_counts(3, rng, out=9)
    assert all(np.array_equal(results[0], other) for other in results[1:])
