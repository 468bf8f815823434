"""conv/row_lanes.py: the input gradient of stride-1 layers with 8 positions of a row in the vector lanes (6
input channels x 2 vectors a block), any padding; and conv/claims.py, the tasks its threads claim."""
import threading

import numpy as np
import pytest
from numba import njit

from nbconv.kernels.cpu.conv import claims, dispatch, row_lanes
from nbconv.kernels.cpu.conv.plan import Convolution, plan
from nbconv.kernels.cpu.threads import parallel_parts
from tests.kernels.cpu.conv.algorithm_check import check, random_case

# (N, C, H, W, D, kernel, stride, padding, dilation, groups): rows of 8 to 21 (one vector, two overlapping, a
# pair and a lone one), 6 to 13 input channels (a last block overlapping the one before), padding 0 to 4
# (wider than the kernel's reach), non-square filters
CASES = [
    (3, 6, 14, 14, 16, 5, 1, 0, 1, 1),             # LeNet-5's second layer
    (2, 7, 9, 11, 5, 3, 1, 1, 1, 1),
    (2, 13, 8, 8, 3, (3, 5), 1, (2, 4), 1, 1),     # padding past the filter's reach, a row of one vector
    (1, 6, 5, 17, 4, (5, 2), 1, (0, 1), 1, 1),     # three vectors a row: a pair, then one with itself
    (2, 6, 3, 8, 2, 7, 1, 3, 1, 1),                # a filter taller than the image
    (2, 12, 6, 21, 9, 1, 1, 0, 1, 1),              # 1x1
    (1, 8, 10, 9, 17, (4, 6), 1, (2, 3), 1, 1),
]


@pytest.mark.parametrize("case", CASES)
def test_row_lanes_matches_reference(case, rng):
    check("row_lanes", case, rng, passes=("backward_input",), finite_differences=case in (CASES[1], CASES[3]))


def test_row_lanes_in_float32_matches_reference(rng):
    check("row_lanes", CASES[0], rng, passes=("backward_input",), dtype=np.float32, tolerance=2e-6)
    check("row_lanes", CASES[2], rng, passes=("backward_input",), dtype=np.float32, tolerance=2e-6)


def test_applies_to_stride_1_undilated_ungrouped_input_gradients_only():
    layer = Convolution((2, 6, 14, 14), (16, 6, 5, 5))
    assert row_lanes.applies("backward_input", layer)
    assert not row_lanes.applies("forward", layer) and not row_lanes.applies("backward_weight", layer)
    assert not row_lanes.applies("backward_input", Convolution((2, 6, 14, 14), (16, 6, 5, 5), 2, 2))
    assert not row_lanes.applies("backward_input", Convolution((2, 6, 14, 14), (16, 6, 5, 5), 1, 1, 0, 0, 2, 2))
    assert not row_lanes.applies("backward_input", Convolution((2, 6, 14, 14), (16, 3, 5, 5), groups=2))
    assert not row_lanes.applies("backward_input", Convolution((2, 5, 14, 14), (16, 5, 5, 5)))  # under 6 inputs
    assert not row_lanes.applies("backward_input", Convolution((2, 6, 14, 7), (16, 6, 5, 5)))  # 7 wide


def _run_parts(case, parts, monkeypatch):
    x, w, _, hyper = random_case(case, np.random.default_rng(7))
    monkeypatch.setattr(row_lanes, "parallel_parts", lambda span, _, *args: parallel_parts(span, parts, *args))
    chosen = plan("backward_input", x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="row_lanes", threads=3)
    grad_y = np.random.default_rng(8).standard_normal(chosen.convolution.output_shape)
    out = np.empty(x.shape)
    row_lanes.backward_input(grad_y, w, out, dispatch.buffers(chosen), chosen)
    return out


def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    results = [_run_parts((7, 6, 9, 12, 5, 3, 1, 1, 1, 1), parts, monkeypatch) for parts in (1, 2, 3)]
    assert all(np.array_equal(results[0], other) for other in results[1:])


def test_reads_stay_inside_the_padded_output_gradient(rng):
    """Every tap a row sums reads 8 values inside the padded output gradient's rows (columns in [0, Ws),
    rows in [0, OH)), on random shapes (padding 0-4, kernels 1-6)."""
    checked = 0
    while checked < 200:
        C, D = rng.integers(6, 10), rng.integers(1, 5)
        H, W = rng.integers(1, 12), rng.integers(8, 20)
        KH, KW = rng.integers(1, 7, 2)
        padding_h, padding_w = rng.integers(0, 5, 2)
        convolution = Convolution((1, C, H, W), (D, C, KH, KW), 1, 1, padding_h, padding_w)
        OH, OW = convolution.output_shape[2:]
        if min(OH, OW) < 1:
            continue
        checked += 1
        left, source_w = row_lanes.geometry(convolution)
        assert left + OW <= source_w  # the copy fits
        buffer = row_lanes.buffers("backward_input", convolution, 8, 1)[0][2][1]
        assert buffer == D * OH * source_w
        for y in range(H):
            rows = [i for i in range(KH) if 0 <= y + padding_h - i < OH]
            for i in rows:
                for j in range(KW):
                    first = (y + padding_h - i) * source_w + left + padding_w - j  # x = 0, channel 0
                    assert first >= (y + padding_h - i) * source_w  # inside its row, left
                    assert first + W - 1 < (y + padding_h - i + 1) * source_w  # ... and right (x = W - 1)
            # the kernel's own tap range for the row is exactly these rows
            first_tap = max(0, y + padding_h - OH + 1)
            last_tap = min(KH, y + padding_h + 1)
            assert list(range(first_tap, last_tap)) == rows


@pytest.mark.parametrize("case", [CASES[0], CASES[2]])
def test_writes_only_its_images(case):
    """The input gradient as a view into a larger array with NaN images either side, and one not
    C-contiguous (a channel slice): the same results, and the values around stay NaN."""
    x, w, _, hyper = random_case(case, np.random.default_rng(3))
    chosen = plan("backward_input", x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="row_lanes")
    grad_y = np.random.default_rng(4).standard_normal(chosen.convolution.output_shape)
    expected = np.full(x.shape, np.nan)
    dispatch.run_backward_input(chosen, grad_y, w, expected)
    assert not np.isnan(expected).any()
    around = np.full((x.shape[0] + 2,) + x.shape[1:], np.nan)
    dispatch.run_backward_input(chosen, grad_y, w, around[1:-1])
    np.testing.assert_array_equal(around[1:-1], expected)
    assert np.isnan(around[0]).all() and np.isnan(around[-1]).all()
    wider = np.full(x.shape[:1] + (x.shape[1] + 3,) + x.shape[2:], np.nan)
    dispatch.run_backward_input(chosen, grad_y, w, wider[:, 1:-2])
    np.testing.assert_array_equal(wider[:, 1:-2], expected)
    assert np.isnan(wider[:, :1]).all() and np.isnan(wider[:, -2:]).all()


@njit(nogil=True)
def _claim_all(counter, tasks, claimed):
    count = 0
    while True:
        task = claims.claim(counter)
        if task >= tasks:
            return count
        claimed[task] += 1
        count += 1


def test_claims_hand_out_every_task_once_across_threads():
    """Four threads claiming 200000 tasks from one counter without the GIL: each task claimed exactly once."""
    counter, tasks = claims.claims(), 200_000
    claimed = np.zeros(tasks, np.int64)
    _claim_all(claims.claims(), 1, np.zeros(1, np.int64))  # compile first
    counts = []
    threads = [threading.Thread(target=lambda: counts.append(_claim_all(counter, tasks, claimed))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == tasks and (claimed == 1).all()
