"""The weight gradient of 3x3 stride-1 layers by Winograd F(2x2, 3x3) (conv_winograd_weight): against the
float64 definition and finite differences on odd shapes, in one block of images or many, float32 error,
independence from the thread count, and the dispatcher's choice."""
import numba
import numpy as np
import pytest

import nbconv.functional as F
from nbconv.kernels.cpu import conv, conv_winograd_weight
from nbconv.kernels.cpu.blas import single_threaded
from tests import reference

# (N, C, H, W, D, padding): odd and even sizes, output sizes odd in either direction, padding 0 to 3
CASES = [
    (2, 3, 7, 9, 5, 1),
    (3, 4, 6, 5, 2, 0),
    (1, 2, 5, 8, 3, 2),
    (2, 5, 4, 4, 4, 3),
    (3, 1, 3, 3, 1, 0),   # a 1x1 output: one tile, three quarters of it outside the output
    (2, 6, 11, 6, 7, 1),
]


def _weight_gradient(grad_y, x, padding, block_bytes, monkeypatch, chunks=3):
    """The module's kernel alone, its buffers filled with NaN first (they may hold anything)."""
    monkeypatch.setattr(conv_winograd_weight, "BLOCK_BYTES", block_bytes)
    D = grad_y.shape[1]
    shapes = conv_winograd_weight.workspace_shapes(x.shape, grad_y.shape, D, x.itemsize, chunks)
    buffers = [np.full(shape, np.nan, x.dtype) for shape in shapes]
    grad_w = np.full((D, x.shape[1], 3, 3), np.nan, x.dtype)
    with single_threaded():
        conv_winograd_weight.conv2d_backward_weight_winograd(grad_y, x, grad_w, *buffers, padding, padding)
    return grad_w


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("block_bytes", [1, conv_winograd_weight.BLOCK_BYTES])  # one image a block, or all
def test_winograd_weight_gradient_matches_the_definition(case, block_bytes, monkeypatch, rng):
    N, C, H, W, D, p = case
    x = rng.standard_normal((N, C, H, W))
    grad_y = rng.standard_normal((N, D, H + 2 * p - 2, W + 2 * p - 2))
    expected = reference.conv2d_backward_weight(grad_y, x, (D, C, 3, 3), (1, 1), ((p, p), (p, p)), (1, 1), 1)
    got = _weight_gradient(grad_y, x, p, block_bytes, monkeypatch)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


@pytest.fixture
def winograd_for_small_layers(monkeypatch):
    """Send this file's small 3x3 layers through Winograd, weight gradient included."""
    monkeypatch.setattr(conv, "WINOGRAD_CHANNELS", 1)
    monkeypatch.setattr(conv, "WINOGRAD_WORK", 0)
    monkeypatch.setattr(conv, "WINOGRAD_WEIGHT_CHANNELS", 1)


@pytest.mark.parametrize("case", CASES[:4])
def test_winograd_weight_gradient_matches_finite_differences(case, winograd_for_small_layers, rng):
    N, C, H, W, D, p = case
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((D, C, 3, 3))
    grad_y = rng.standard_normal((N, D, H + 2 * p - 2, W + 2 * p - 2))
    calls = []
    original = conv_winograd_weight.conv2d_backward_weight_winograd

    def spy(*args):
        calls.append(args[0].shape)
        return original(*args)
    conv_winograd_weight.conv2d_backward_weight_winograd = spy
    try:
        grad_w = F.conv2d_backward(grad_y, x, w, padding=p)[1]
    finally:
        conv_winograd_weight.conv2d_backward_weight_winograd = original
    assert calls == [grad_y.shape], "the dispatcher took the Winograd weight gradient"
    numerical = reference.numerical_gradient(lambda: F.conv2d(x, w, padding=p), w, grad_y)
    np.testing.assert_allclose(grad_w, numerical, rtol=1e-6, atol=1e-7 * max(1.0, np.abs(numerical).max()))


def test_winograd_weight_gradient_float32_error_stays_small(monkeypatch, rng):
    """Measured about 1e-7 of the largest gradient; the bound leaves room for sums over more tiles."""
    x = rng.standard_normal((3, 32, 15, 14)).astype(np.float32)
    grad_y = rng.standard_normal((3, 24, 15, 14)).astype(np.float32)
    expected = reference.conv2d_backward_weight(grad_y, x, (24, 32, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    got = _weight_gradient(grad_y, x, 1, 1, monkeypatch)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * np.abs(expected).max())


def test_winograd_weight_gradient_does_not_depend_on_thread_count(monkeypatch, rng):
    monkeypatch.setattr(conv_winograd_weight, "BLOCK_BYTES", 1)  # many blocks
    x = rng.standard_normal((5, 32, 12, 11)).astype(np.float32)
    w = rng.standard_normal((40, 32, 3, 3)).astype(np.float32)
    grad_y = rng.standard_normal((5, 40, 12, 11)).astype(np.float32)
    before = numba.get_num_threads()
    try:
        results = []
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            results.append(F.conv2d_backward(grad_y, x, w, padding=1)[1])
    finally:
        numba.set_num_threads(before)
    assert all(np.array_equal(results[0], other) for other in results[1:])


def test_wide_winograd_layers_take_the_winograd_weight_gradient(monkeypatch, rng):
    calls = []
    monkeypatch.setattr(conv, "_winograd_weight", lambda *args: calls.append(args[2].shape))
    for shape, weight_shape, taken in (((2, 64, 14, 14), (64, 64, 3, 3), True),
                                       ((2, 16, 32, 32), (16, 16, 3, 3), False),   # conv_shift's
                                       ((2, 128, 7, 7), (128, 128, 3, 3), True)):
        calls.clear()
        x = np.zeros(shape, np.float32)
        w = np.zeros(weight_shape, np.float32)
        conv.conv2d_backward_weight(np.zeros((2, weight_shape[0]) + shape[2:], np.float32), x, w, 1, 1, 1, 1, 1, 1, 1)
        assert calls == ([weight_shape] if taken else [])


def test_unrolled_weight_gradients_keep_few_partial_sums_when_they_are_large():
    """The im2col weight kernels' partial sums (one per chunk) stay within PARTIAL_BYTES, at least 2 chunks."""
    assert conv._weight_chunks(np.empty((16, 16, 3, 3), np.float32)) == conv.conv_gemm.WEIGHT_CHUNKS
    assert conv._weight_chunks(np.empty((256, 128, 3, 3), np.float32)) == 7       # 1.2 MB each
    assert conv._weight_chunks(np.empty((512, 256, 3, 3), np.float32)) == 2       # 4.7 MB each


def test_partial_sums_add_in_chunk_order(rng):
    from nbconv.kernels.cpu.shared import sum_partials
    partial = rng.standard_normal((5, 2, 7, 3)).astype(np.float32)  # (chunks, groups, depth, D/groups)
    expected = partial[0].copy()
    for chunk in range(1, 5):
        expected += partial[chunk]  # float32, in order: the sums must match bit for bit
    grad_weight = np.empty((6, 7, 1, 1), np.float32)
    sum_partials(partial, grad_weight)
    np.testing.assert_array_equal(grad_weight.reshape(6, 7), expected.transpose(0, 2, 1).reshape(6, 7))
