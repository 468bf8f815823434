"""conv/winograd4_weight.py: the weight gradient of 3x3 stride-1 layers by Winograd's F(4x4, 3x3), against the
float64 definition and finite differences on odd shapes (outputs not multiples of 4), padding 0 to 3, one
block of images or many, one tile row a task or several; its transforms in exact arithmetic; float32 error;
independence from the thread count; concurrent calls; through the Conv2d layer."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv import nn
from nbconv.kernels.cpu.conv import dispatch, winograd4_weight
from nbconv.kernels.cpu.conv.plan import plan
from tests import reference
from tests.kernels.cpu.conv.algorithm_check import check, check_concurrent_calls, check_thread_counts_agree, run

# (N, C, H, W, D, kernel, stride, padding, dilation, groups): 3x3, stride 1
CASES = [
    (2, 3, 7, 9, 5, 3, 1, 1, 1, 1),               # 7 x 9 outputs: a partial last tile both ways
    (3, 4, 6, 5, 2, 3, 1, 0, 1, 1),               # 4 x 3
    (1, 2, 5, 8, 3, 3, 1, 2, 1, 1),               # 7 x 10
    (2, 5, 4, 4, 4, 3, 1, 3, 1, 1),               # padding 3: 8 x 8, rows and columns of zero input
    (3, 1, 3, 3, 1, 3, 1, 0, 1, 1),               # a single output: one tile, 15 of its 16 outside
    (2, 6, 11, 6, 7, 3, 1, (1, 2), 1, 1),         # 11 x 8
    (5, 9, 13, 14, 11, 3, 1, 1, 1, 1),            # 13 x 14: several tile rows
]


@pytest.mark.parametrize("sizes", [(1, 1), (winograd4_weight.BLOCK_BYTES, winograd4_weight.SLAB_BYTES)],
                         ids=["one image a block, one tile row a task", "defaults"])
@pytest.mark.parametrize("case", CASES)
def test_winograd4_weight_gradient_matches_reference(case, sizes, monkeypatch, rng):
    monkeypatch.setattr(winograd4_weight, "BLOCK_BYTES", sizes[0])
    monkeypatch.setattr(winograd4_weight, "SLAB_BYTES", sizes[1])
    check("winograd4_weight", case, rng, passes=("backward_weight",), tolerance=1e-11,
          finite_differences=case is CASES[0] or case is CASES[3])  # small cases: differences are slow


def test_several_blocks_and_tasks_of_several_tile_rows(monkeypatch, rng):
    """Blocks of 2 images (the last of 1), tasks of 2 tile rows (the last of 1) with both sizes forced."""
    case = (5, 4, 18, 11, 6, 3, 1, 1, 1, 1)  # 18 x 11 outputs: 5 x 3 tiles an image
    tiles = 5 * 3
    monkeypatch.setattr(winograd4_weight, "BLOCK_BYTES", 2 * 36 * (4 + 6) * tiles * 8)
    monkeypatch.setattr(winograd4_weight, "SLAB_BYTES", (2 + 4 * 2) * (4 * 3 + 2) * 6 * 8)
    chosen = plan("backward_weight", (5, 4, 18, 11), (6, 4, 3, 3), 1, 1, 1, 1, dtype=np.float64,
                  algorithm="winograd4_weight")
    assert winograd4_weight._rows(chosen.convolution, 8) == 2
    assert dict((b.name, b.shape) for b in chosen.buffers)["input_tiles"] == (36, 2 * tiles, 4)
    check("winograd4_weight", case, rng, passes=("backward_weight",), tolerance=1e-11)


def test_transforms_are_the_adjoint_of_minimal_filtering():
    """One 6x6 patch and one 4x4 output-gradient tile through B^T d B, A y A^T and G^T (.) G give the 3x3
    weight gradient of that tile, exactly in float64."""
    rng = np.random.default_rng(5)
    patch, gradient = rng.standard_normal((6, 6)), rng.standard_normal((4, 4))
    x, grad_y = patch.reshape(1, 1, 6, 6), gradient.reshape(1, 1, 4, 4)
    chosen = plan("backward_weight", x.shape, (1, 1, 3, 3), dtype=np.float64, algorithm="winograd4_weight")
    got = np.full((1, 1, 3, 3), np.nan)
    dispatch.run_backward_weight(chosen, grad_y, x, got)
    expected = reference.conv2d_backward_weight(grad_y, x, (1, 1, 3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)


def test_only_the_weight_gradient_of_3x3_stride_1_layers():
    for pass_, hyper in (("forward", (1, 1, 1, 1)), ("backward_input", (1, 1, 1, 1)),
                         ("backward_weight", (2, 2, 1, 1)), ("backward_weight", (1, 1, 1, 1, 2, 2)),
                         ("backward_weight", (1, 1, 1, 1, 1, 1, 2))):
        with pytest.raises(ValueError, match="does not apply"):
            plan(pass_, (2, 64, 14, 14), (64, 64 // (hyper[6] if len(hyper) > 6 else 1), 3, 3), *hyper,
                 algorithm="winograd4_weight")
    with pytest.raises(ValueError, match="does not apply"):
        plan("backward_weight", (2, 64, 14, 14), (64, 64, 5, 5), 1, 1, 2, 2, algorithm="winograd4_weight")


@pytest.mark.parametrize("mean", [0.0, 1.0])
def test_winograd4_weight_gradient_float32_error_stays_small(mean, rng):
    """Max |error| / max |gradient| against the float64 definition, zero-mean input and input with a large
    mean; measured 1.1-1.7e-6 here (F(2x2): 5-6e-7); the bound is the Winograd forward's, 2e-6."""
    x = (rng.standard_normal((3, 32, 15, 14)) + mean).astype(np.float32)
    grad_y = rng.standard_normal((3, 24, 15, 14)).astype(np.float32)
    expected = reference.conv2d_backward_weight(grad_y, x, (24, 32, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    got = run("winograd4_weight", "backward_weight", x, np.empty((24, 32, 3, 3), np.float32), None, grad_y,
              (1, 1, 1, 1, 1, 1, 1))
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * np.abs(expected).max())


def test_winograd4_weight_gradient_does_not_depend_on_thread_count(monkeypatch, rng):
    monkeypatch.setattr(winograd4_weight, "BLOCK_BYTES", 1)  # many blocks
    x = rng.standard_normal((5, 32, 24, 23)).astype(np.float32)
    w = rng.standard_normal((40, 32, 3, 3)).astype(np.float32)
    grad_y = rng.standard_normal((5, 40, 24, 23)).astype(np.float32)
    assert plan("backward_weight", x.shape, w.shape, 1, 1, 1, 1).algorithm == "winograd4_weight"
    check_thread_counts_agree(lambda: F.conv2d_backward(grad_y, x, w, padding=1)[1])


def test_concurrent_calls_from_threads_agree(rng):
    check_concurrent_calls("winograd4_weight", "backward_weight", (3, 16, 14, 13, 16, 3, 1, 1, 1, 1), rng)


def test_conv2d_layer_weight_gradient_by_finite_differences(rng):
    """Through nn.Conv2d in float64, on a layer the plan gives F(4x4)'s weight gradient (32 channels, 21 x 22
    outputs: partial tiles both ways): d sum(layer(x) * grad_y) / d weight by central differences, on a sample
    of the weights."""
    layer = nn.Conv2d(32, 32, 3, padding=1, rng=rng, dtype=np.float64)
    layer.bias.value[:] = rng.standard_normal(32)
    weight = layer.weight.value
    x = rng.standard_normal((2, 32, 21, 22))
    assert plan("backward_weight", x.shape, weight.shape, 1, 1, 1, 1, dtype=x.dtype).algorithm == "winograd4_weight"
    y = layer.forward(x)
    grad_y = rng.standard_normal(y.shape)
    layer.backward(grad_y)
    got = layer.weight.grad.copy()
    flat = weight.reshape(-1)
    epsilon = 1e-6
    for k in rng.choice(flat.size, 12, replace=False):
        saved = flat[k]
        flat[k] = saved + epsilon
        plus = np.sum(layer.forward(x) * grad_y)
        flat[k] = saved - epsilon
        minus = np.sum(layer.forward(x) * grad_y)
        flat[k] = saved
        numerical = (plus - minus) / (2 * epsilon)
        assert abs(got.reshape(-1)[k] - numerical) <= 1e-6 * max(1.0, abs(numerical))
