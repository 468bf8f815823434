"""conv/subsampled.py: strided 1x1 convolutions as the kept pixels times the weight, by numpy's BLAS."""
import numpy as np
import pytest

from nbconv.kernels.cpu.conv.plan import plan
from tests.kernels.cpu.conv.algorithm_check import (check, check_concurrent_calls, check_thread_counts_agree,
                                                     random_case)
from tests.kernels.cpu.conv.algorithm_check import run as run_algorithm

# (N, C, H, W, D, kernel, stride, padding, dilation, groups): odd sizes, strides 2 and 3 and unequal, a stride
# past the image, groups, dilation (meaningless for 1x1), one image
CASES = [
    (3, 5, 7, 9, 6, 1, 2, 0, 1, 1),
    (2, 6, 8, 5, 9, 1, (3, 2), 0, 1, 3),
    (1, 4, 5, 5, 7, 1, (1, 2), 0, 2, 1),
    (5, 3, 4, 3, 2, 1, 5, 0, 1, 1),
    (4, 16, 32, 32, 32, 1, 2, 0, 1, 1),  # ResNet-20's first shortcut, fewer images
]


@pytest.mark.parametrize("case", CASES)
def test_subsampled_matches_reference(case, rng):
    check("subsampled", case, rng, finite_differences=case is CASES[1])
    check("subsampled", case, rng, dtype=np.float32, tolerance=2e-5)


def test_the_plan_sends_unpadded_strided_1x1_layers_here():
    hyper = (2, 2, 0, 0, 1, 1, 1)
    for pass_ in ("forward", "backward_input", "backward_weight"):
        assert plan(pass_, (8, 16, 32, 32), (32, 16, 1, 1), *hyper).algorithm == "subsampled"
        assert plan(pass_, (8, 16, 32, 32), (32, 16, 1, 1), 2, 2, 1, 1, 1, 1, 1).algorithm == "gemm"  # padded
        assert plan(pass_, (8, 16, 32, 32), (32, 16, 3, 3), *hyper).algorithm != "subsampled"


@pytest.mark.parametrize("pass_", ["forward", "backward_input", "backward_weight"])
def test_the_results_do_not_depend_on_the_thread_count(pass_, rng):
    """Each image's product is one BLAS call whatever the part, the weight gradient's summed in image order:
    1 and 2 threads give the same bits."""
    x, w, b, hyper = random_case((9, 24, 33, 31, 20, 1, 2, 0, 1, 1), rng, np.float32)
    grad_y = rng.standard_normal(plan("forward", x.shape, w.shape, *hyper).convolution.output_shape).astype(np.float32)
    check_thread_counts_agree(lambda: run_algorithm("subsampled", pass_, x, w, b, grad_y, hyper))


@pytest.mark.parametrize("pass_", ["forward", "backward_input", "backward_weight"])
def test_concurrent_calls_give_one_call_s_results(pass_, rng):
    check_concurrent_calls("subsampled", pass_, (6, 8, 17, 15, 12, 1, 2, 0, 1, 2), rng)

