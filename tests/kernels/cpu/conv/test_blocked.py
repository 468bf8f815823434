"""conv/blocked.py: direct convolution blocked in vector registers (4 channels x 16 positions), all passes,
any stride, padding and dilation; and the vector values it is built on (kernels/cpu/vectors.py). The thread
count, buffer bounds and applicability tests it shares with lanes are in test_lanes.py."""
import numpy as np
import pytest
from numba import njit

from nbconv.kernels.cpu import vectors
from nbconv.kernels.cpu.conv import blocked
from nbconv.kernels.cpu.conv.plan import plan
from tests.kernels.cpu.conv.algorithm_check import check

# (N, C, H, W, D, kernel, stride, padding, dilation, groups): channels on and off the block of 4, strides 1
# and 2, padding 0-3, maps from 1x1 up, grids shorter than, equal to and longer than one 16-position block
CASES = [
    (2, 3, 9, 7, 5, 3, 1, 1, 1, 1),
    (2, 5, 9, 8, 6, 3, 2, 1, 1, 1),                # stride 2, ResNet's down-sampling form
    (1, 7, 6, 5, 9, 3, 2, 2, 1, 1),                # stride 2, padding 2
    (2, 2, 1, 1, 3, 3, 1, 1, 1, 1),                # a 1x1 map: every tap but the centre reads padding
    (2, 3, 2, 3, 1, 3, 1, 1, 1, 1),                # a 2x3 map, one output channel
    (1, 3, 4, 5, 5, 3, 2, 0, 1, 1),                # stride 2, unpadded, odd sizes
    (2, 4, 9, 8, 6, (2, 3), 1, (2, 1), 2, 1),      # non-square, dilated
    (1, 16, 5, 5, 16, 3, 1, 3, 1, 1),              # padding 3: wider than the kernel's reach
    (3, 6, 14, 14, 16, 5, 1, 0, 1, 1),             # LeNet-5's second layer
    (2, 3, 11, 10, 5, 3, 2, 2, 1, 1),
    (1, 70, 5, 7, 67, 3, 1, 1, 1, 1),              # 70 -> 67 channels
    (2, 17, 8, 8, 33, 3, 2, 1, 1, 1),              # ResNet-20's stride-2 layer, smaller
    (1, 1, 7, 9, 2, 3, (2, 1), (0, 2), 1, 1),      # different strides along the two axes
    (2, 5, 9, 8, 6, 1, 2, 0, 1, 1),                # 1x1 stride 2 (a projection shortcut): no tap reaches odd rows
    (1, 3, 11, 9, 4, 3, 4, 1, 1, 1),               # a filter smaller than its stride
]


@pytest.mark.parametrize("case", CASES)
def test_blocked_matches_reference(case, rng):
    check("blocked", case, rng, finite_differences=case in (CASES[1], CASES[6]))


def test_blocked_in_float32_matches_reference(rng):
    check("blocked", (2, 16, 10, 10, 16, 3, 1, 1, 1, 1), rng, dtype=np.float32, tolerance=2e-6)
    check("blocked", (2, 16, 10, 10, 32, 3, 2, 1, 1, 1), rng, dtype=np.float32, tolerance=2e-6)


def test_weight_gradient_chunks_do_not_depend_on_the_thread_count():
    shapes = ((64, 16, 32, 32), (16, 16, 3, 3), 1, 1, 1, 1)
    chunks = {plan("backward_weight", *shapes, algorithm="blocked", threads=threads).buffers[2].shape[0]
              for threads in (1, 2, 3, 8)}
    assert len(chunks) == 1


def furthest(pass_, convolution):
    """(last source index read + 1, grid values the blocks touch) of one pass of blocked, worked out from the
    taps' offsets as the kernels compute them: reads run up to 15 values past a grid of 16-position blocks."""
    N, C, H, W = convolution.input_shape
    D, _, KH, KW = convolution.weight_shape
    _, _, OH, OW = convolution.output_shape
    strides = convolution.hyper[:6]
    plane_h, plane_w, _, _ = blocked.phase_geometry(H, W, KH, KW, *strides)
    if pass_ == "backward_input":
        top, left, source_h, source_w = blocked.transposed_geometry(H, W, OH, OW, KH, KW, *strides)
        offsets, _, counts = blocked.transposed_taps(D, KH, KW, *strides, top, left, source_w, source_h * source_w)
        source_end = 0
        for ry in range(min(strides[0], H)):
            for rx in range(min(strides[1], W)):
                phase = ry * strides[1] + rx
                grid_len = -(-(H - ry) // strides[0]) * source_w
                if counts[phase]:
                    source_end = max(source_end, offsets[phase, :counts[phase]].max() + -(-grid_len // 16) * 16)
        rows = -(-H // strides[0]) * source_w
        return source_end, -(-rows // 16) * 16 * (-(-C // 4) * 4)
    offsets = blocked.tap_offsets(C, KH, KW, strides[0], strides[1], strides[4], strides[5], plane_h, plane_w)
    step = 16 if pass_ == "forward" else 8
    grid_len = -(-OH * plane_w // step) * step
    return offsets.max() + grid_len, grid_len * (-(-D // 4) * 4)


@njit
def _vector_ops(values, weights, out):
    """out[0:8] = values[0:8]*weights[1] + values[8:16]*weights[2]; out[8:16] = values[0:8]*values[8:16];
    returns the sum of out[0:8]'s lanes."""
    first = vectors.add_products(vectors.zeros(values), vectors.load(values, 0), vectors.broadcast(weights, 1))
    first = vectors.add_products(first, vectors.load(values, 8), vectors.broadcast(weights, 2))
    vectors.store(out, 0, first)
    vectors.store(out, 8, vectors.add_products(vectors.zeros(values), vectors.load(values, 0),
                                               vectors.load(values, 8)))
    return vectors.lane_sum(first)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_values(dtype, rng):
    values = rng.standard_normal(16).astype(dtype)
    weights = rng.standard_normal(3).astype(dtype)
    out = np.zeros(16, dtype)
    total = _vector_ops(values, weights, out)
    expected = values[:8] * weights[1] + values[8:] * weights[2]
    np.testing.assert_allclose(out[:8], expected, rtol=1e-6)
    np.testing.assert_allclose(out[8:], values[:8] * values[8:], rtol=1e-6)
    np.testing.assert_allclose(total, expected.sum(), rtol=1e-5)
