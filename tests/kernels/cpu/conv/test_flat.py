"""conv/flat.py: stride-1 convolutions with few output channels (LeNet-5's first layer) as vectorised loops over
the flat padded image, forward and weight gradient, against the float64 definition and finite differences."""
import numba
import numpy as np
import pytest

import nbconv.functional as F
from nbconv.kernels.cpu.conv import blocks, flat, plan as planning
from nbconv.kernels.cpu.conv.plan import plan
from tests import reference
from tests.kernels.cpu.conv.algorithm_check import (check, check_concurrent_calls, check_thread_counts_agree, pair,
                                                    random_case, run)
from tests.kernels.cpu.conv.test_wide import STRIDE_1

PASSES = ("forward", "backward_weight")  # flat has no input gradient


@pytest.mark.parametrize("case", [case for case in STRIDE_1 if case[-1] == 1])  # one group
def test_flat_matches_reference_on_the_stride_1_cases(case, rng):
    check("flat", case, rng, passes=PASSES, finite_differences=case is STRIDE_1[2])


def _random_case(rng):
    """(input shape, weight shape, padding pair, dilation pair) with odd sizes that conv.py sends to conv_flat."""
    while True:
        C, D = int(rng.integers(1, 4)), int(rng.integers(1, planning.FLAT_CHANNELS + 1))
        KH, KW = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        N, H, W = int(rng.integers(1, 6)), int(rng.integers(1, 12)), int(rng.integers(1, 12))
        fits = all(size + 2 * p >= d * (k - 1) + 1 for size, p, d, k in
                   ((H, padding[0], dilation[0], KH), (W, padding[1], dilation[1], KW)))
        if fits and C * KH * KW <= planning.FLAT_TAPS and (KH, KW) != (1, 1):
            return (N, C, H, W), (D, C, KH, KW), padding, dilation


@pytest.mark.parametrize("seed", range(12))
def test_forward_and_weight_gradient_match_the_definition(seed):
    rng = np.random.default_rng(seed)
    input_shape, weight_shape, padding, dilation = _random_case(rng)
    for pass_ in PASSES:
        assert plan(pass_, input_shape, weight_shape, 1, 1, *padding, *dilation, 1).algorithm == "flat"
    x, w = rng.standard_normal(input_shape), rng.standard_normal(weight_shape)
    b = rng.standard_normal(weight_shape[0])
    hyper = dict(padding=padding, dilation=dilation)
    pads = tuple((p, p) for p in padding)
    y = F.conv2d(x, w, b, **hyper)
    np.testing.assert_allclose(y, reference.conv2d(x, w, b, (1, 1), pads, dilation), rtol=1e-12, atol=1e-12)
    grad_y = rng.standard_normal(y.shape)
    grad_x, grad_w, grad_b = F.conv2d_backward(grad_y, x, w, **hyper)
    np.testing.assert_allclose(grad_w, reference.conv2d_backward_weight(grad_y, x, w.shape, (1, 1), pads, dilation),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_x, reference.conv2d_backward_input(grad_y, w, x.shape, (1, 1), pads, dilation),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_b, grad_y.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)
    numerical = reference.numerical_gradient(lambda: F.conv2d(x, w, b, **hyper), w, grad_y)
    np.testing.assert_allclose(grad_w, numerical, rtol=1e-6, atol=1e-7 * max(1.0, np.abs(numerical).max()))


# Output rows at least flat.ROWS_FROM wide are summed a row at a time, read and written where they lie: rows of one
# block exactly (32, 64), shorter (24, 25, 28: the last vector moved back), longer (33, 41, 68: the last block moved
# back over the one before), with paddings, dilations and channel counts the blocks of 3 leave over.
ROW_CASES = [
    (2, 1, 28, 28, 6, 5, 1, 2, 1, 1),        # LeNet-5's first layer: 28 wide
    (3, 2, 9, 25, 5, (3, 2), 1, (1, 0), 1, 1),
    (2, 3, 7, 29, 7, 3, 1, 0, (1, 2), 1),
    (1, 1, 5, 30, 8, (2, 5), 1, (0, 1), 1, 1),
    (1, 2, 3, 32, 3, 3, 1, 1, 1, 1),
    (2, 2, 6, 33, 4, 3, 1, 1, 1, 1),
    (1, 1, 4, 41, 1, 5, 1, 2, 1, 1),
    (1, 1, 3, 66, 5, 3, 1, 0, 1, 1),
    (2, 1, 5, 68, 2, 3, 1, 1, (2, 1), 1),
    (19, 2, 4, 26, 4, 3, 1, 1, 1, 1),        # more images than chunks (16 for the weight gradient): later ones
    # reuse their chunk's padding
]


@pytest.mark.parametrize("case", ROW_CASES)
def test_rows_written_and_read_in_place_match_the_definition(case, rng):
    N, C, H, W, D, kernel, stride, padding, dilation, groups = case
    chosen = plan("forward", (N, C, H, W), (D, C) + pair(kernel), 1, 1, *pair(padding), *pair(dilation), 1,
                  algorithm="flat")
    assert chosen.convolution.output_shape[3] >= flat.ROWS_FROM
    check("flat", case, rng, passes=PASSES, finite_differences=case is ROW_CASES[1])


@pytest.mark.parametrize("case", ROW_CASES[:4])
def test_rows_in_float32_stay_close_to_float64(case, rng):
    check("flat", case, rng, passes=PASSES, dtype=np.float32, tolerance=2e-5)


@pytest.mark.parametrize("pass_", PASSES)
def test_rows_in_place_from_concurrent_calls_and_any_thread_count(pass_, rng):
    case = ROW_CASES[-1]  # more images than chunks
    check_concurrent_calls("flat", pass_, case, rng)
    x, w, b, hyper = random_case(case, rng, np.float32)
    grad_y = rng.standard_normal((case[0], case[4], 4, 26)).astype(np.float32)
    check_thread_counts_agree(lambda: run("flat", pass_, x, w, b, grad_y, hyper))


def test_lenet5_first_layer_in_float32_stays_close_to_float64(rng):
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    w = (rng.standard_normal((6, 1, 5, 5)) * 0.2).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    expected = reference.conv2d(x, w, b, (1, 1), ((2, 2), (2, 2)))
    np.testing.assert_allclose(F.conv2d(x, w, b, padding=2), expected, rtol=0, atol=2e-6 * np.abs(expected).max())
    grad_y = rng.standard_normal(expected.shape).astype(np.float32)
    grad_w = F.conv2d_backward(grad_y, x, w, padding=2, need_input_grad=False)[1]
    expected_w = reference.conv2d_backward_weight(grad_y, x, w.shape, (1, 1), ((2, 2), (2, 2)))
    np.testing.assert_allclose(grad_w, expected_w, rtol=0, atol=2e-6 * np.abs(expected_w).max())


def test_weight_gradient_sums_in_the_same_order_on_any_thread_count(rng):
    x = rng.standard_normal((37, 1, 13, 11)).astype(np.float32)  # more images than chunks, not a multiple
    w = rng.standard_normal((6, 1, 5, 5)).astype(np.float32)
    grad_y = rng.standard_normal((37, 6, 13, 11)).astype(np.float32)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            results.append(F.conv2d_backward(grad_y, x, w, padding=2)[1])
    finally:
        numba.set_num_threads(before)
    assert all(np.array_equal(results[0], other) for other in results[1:])
    assert x.shape[0] > blocks.WEIGHT_CHUNKS


def test_empty_batch_and_single_pixel_images(rng):
    w = rng.standard_normal((3, 2, 3, 3))
    empty = np.zeros((0, 2, 5, 5))
    assert F.conv2d(empty, w, padding=1).shape == (0, 3, 5, 5)
    assert np.array_equal(F.conv2d_backward(np.zeros((0, 3, 5, 5)), empty, w, padding=1)[1], np.zeros(w.shape))
    x = rng.standard_normal((2, 2, 1, 1))
    y = F.conv2d(x, w, padding=1)  # only the centre tap meets the pixel
    np.testing.assert_allclose(y[:, :, 0, 0], x[:, :, 0, 0] @ w[:, :, 1, 1].T, rtol=1e-12)
