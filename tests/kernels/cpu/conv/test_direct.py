"""conv/direct.py: loop nests, any convolution (and the definition non-finite results are recomputed by)."""
import pytest

from tests.kernels.cpu.conv.algorithm_check import check

# (N, C, H, W, D, kernel, stride, padding, dilation, groups)
CASES = [
    (1, 1, 5, 5, 1, 3, 1, 0, 1, 1),
    (2, 3, 7, 9, 4, (3, 2), 2, 1, 1, 1),
    (3, 4, 11, 8, 6, 3, (2, 1), (1, 2), (2, 1), 2),
    (2, 2, 6, 7, 4, 3, 1, 1, 1, 2),               # depthwise, two filters a channel
    (2, 6, 9, 8, 6, 5, 1, 2, 1, 6),               # depthwise 5x5
    (2, 2, 6, 13, 5, (1, 4), (1, 3), (0, 2), (1, 2), 1),
    (1, 3, 8, 8, 3, 5, 3, 2, 1, 3),
    (2, 1, 5, 4, 2, (5, 3), 1, (2, 1), 1, 1),     # kernel taller than the input
]


@pytest.mark.parametrize("case", CASES)
def test_direct_matches_reference(case, rng):
    check("direct", case, rng, finite_differences=case is CASES[3])
