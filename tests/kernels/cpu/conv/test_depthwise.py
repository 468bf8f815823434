"""conv/depthwise.py: depthwise 3x3 stride-1 convolution, every tap unrolled."""
import numpy as np
import pytest

from nbconv.kernels.cpu.conv.plan import plan
from tests.kernels.cpu.conv.algorithm_check import check

# (N, C, H, W, D, kernel, stride, padding, dilation, groups): one 3x3 filter per channel, stride 1
CASES = [
    (1, 6, 9, 10, 6, 3, 1, 1, 1, 6),
    (3, 5, 7, 4, 5, 3, 1, (0, 2), 1, 5),          # padding differing per axis
    (2, 3, 3, 6, 3, 3, 1, 2, 1, 3),               # padding 2
    (2, 4, 1, 1, 4, 3, 1, 1, 1, 4),               # a single pixel
]


@pytest.mark.parametrize("case", CASES)
def test_depthwise3x3_matches_reference(case, rng):
    check("depthwise3x3", case, rng, finite_differences=case is CASES[1])


def test_depthwise3x3_float32(rng):
    check("depthwise3x3", (2, 8, 11, 13, 8, 3, 1, 1, 1, 8), rng, dtype=np.float32, tolerance=1e-5)


@pytest.mark.parametrize("weight_shape,hyper", [
    ((6, 1, 3, 3), (1, 1, 3, 3, 1, 1, 6)),        # padding 3
    ((6, 1, 3, 3), (2, 2, 1, 1, 1, 1, 6)),        # strided
    ((6, 1, 3, 3), (1, 1, 1, 1, 2, 2, 6)),        # dilated
    ((12, 1, 3, 3), (1, 1, 1, 1, 1, 1, 6)),       # two filters a channel
    ((6, 1, 5, 5), (1, 1, 2, 2, 1, 1, 6)),        # 5x5
])
def test_depthwise3x3_refuses_other_depthwise_layers(weight_shape, hyper):
    with pytest.raises(ValueError, match="does not apply"):
        plan("forward", (2, 6, 9, 9), weight_shape, *hyper, algorithm="depthwise3x3")
