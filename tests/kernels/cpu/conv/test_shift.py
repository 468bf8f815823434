"""conv/shift.py: stride-1 convolution as one matrix product per window tap over shifted views."""
import numpy as np
import pytest

from nbconv.kernels.cpu.conv import plan as planning
from nbconv.kernels.cpu.conv.plan import plan
from tests.kernels.cpu.conv.algorithm_check import check
from tests.kernels.cpu.conv.test_wide import STRIDE_1, weight_gradients_under_thread_counts

SHIFT_CASES = STRIDE_1 + [
    (2, 32, 6, 7, 32, 3, 1, 1, 1, 2),             # 16 channels a group
    (3, 16, 4, 9, 20, (3, 2), 1, (1, 0), (2, 3), 1),
]


@pytest.mark.parametrize("case", SHIFT_CASES)
def test_shift_matches_reference(case, rng):
    check("shift", case, rng, finite_differences=case is STRIDE_1[1])  # a small case: differences are slow


def test_weight_gradient_does_not_depend_on_thread_count(monkeypatch, rng):
    monkeypatch.setattr(planning, "LANES_WIDEST", 0)  # the rules below lanes'
    monkeypatch.setattr(planning, "STRIPS_NARROW_WEIGHT", 0)  # this narrow layer's weight gradient by shift
    assert plan("backward_weight", (7, 16, 9, 9), (17, 16, 3, 3), 1, 1, 1, 1).algorithm == "shift"
    results = weight_gradients_under_thread_counts(16, rng)
    assert all(np.array_equal(results[0], other) for other in results[1:])
