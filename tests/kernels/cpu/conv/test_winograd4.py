"""conv/winograd4.py: 3x3 stride-1 convolution by Winograd's F(4x4, 3x3), forward and input gradient."""
import numpy as np
import pytest

from nbconv.kernels.cpu.conv import blocks, dispatch, winograd4
from nbconv.kernels.cpu.conv.plan import Convolution, plan
from nbconv.kernels.cpu.scale_shift import RELU
from tests import reference
from tests.kernels.cpu.conv.algorithm_check import check, check_concurrent_calls, random_case, run

# (N, C, H, W, D, kernel, stride, padding, dilation, groups): 3x3, stride 1, outputs not multiples of 4
CASES = [
    (2, 16, 7, 9, 17, 3, 1, 1, 1, 1),             # 7 x 9 outputs: a partial last tile both ways
    (1, 16, 6, 5, 16, 3, 1, 0, 1, 1),             # 4 x 3
    (2, 16, 5, 6, 16, 3, 1, 2, 1, 1),             # 7 x 8
    (3, 5, 13, 10, 6, 3, 1, (1, 2), 1, 1),        # few channels, 13 x 12
    (1, 3, 3, 3, 2, 3, 1, 0, 1, 1),               # a single output
]


@pytest.mark.parametrize("cache_bytes", [1, blocks.CACHE_BYTES])  # one row of tiles a block, or the default
@pytest.mark.parametrize("case", CASES)
def test_winograd4_matches_reference(case, cache_bytes, monkeypatch, rng):
    monkeypatch.setattr(blocks, "CACHE_BYTES", cache_bytes)
    check("winograd4", case, rng, passes=("forward", "backward_input"), tolerance=1e-11,
          finite_differences=case is CASES[3])  # a small case: differences are slow


def test_transforms_are_those_of_minimal_filtering():
    """One 6x6 patch through G g G^T, B^T d B and A^T m A gives the 4x4 correlation, exactly in float64."""
    rng = np.random.default_rng(5)
    patch, g = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
    transformed = np.empty((36, 1, 1))
    winograd4.winograd4_weights(g.reshape(1, 1, 3, 3), transformed, False)
    patches = np.empty((36, 1, 1))
    winograd4.transform_patches(patch.reshape(-1).copy(), np.empty((36, 1)), patches, 0, 1, 1, 6)
    products = transformed * patches
    out = np.full((1, 1, 4, 4), np.nan)
    winograd4.untransform_tiles(products, np.empty(40), out, np.empty(0), 0, 0, 0, 1, 1, 0, 1)
    expected = reference.conv2d(patch[None, None], g[None, None])[0, 0]
    np.testing.assert_allclose(out[0, 0], expected, rtol=0, atol=1e-13)


def test_batch_larger_than_chunks_and_several_blocks(monkeypatch, rng):
    monkeypatch.setattr(blocks, "CACHE_BYTES", 36 * 8 * 8 * 4 * 2)  # two rows of tiles a block
    check("winograd4", (5, 8, 19, 21, 9, 3, 1, 1, 1, 1), rng, passes=("forward", "backward_input"), tolerance=1e-11)


def test_padding_3_has_a_forward_but_no_input_gradient(rng):
    check("winograd4", (1, 16, 5, 5, 16, 3, 1, 3, 1, 1), rng, passes=("forward",), tolerance=1e-11)
    with pytest.raises(ValueError, match="does not apply"):
        plan("backward_input", (1, 16, 5, 5), (16, 16, 3, 3), 1, 1, 3, 3, algorithm="winograd4")
    with pytest.raises(ValueError, match="does not apply"):
        plan("backward_weight", (1, 16, 5, 5), (16, 16, 3, 3), 1, 1, 1, 1, algorithm="winograd4")
    with pytest.raises(ValueError, match="does not apply"):
        plan("forward", (1, 16, 9, 9), (16, 16, 3, 3), 2, 2, 1, 1, algorithm="winograd4")


def test_epilogue_and_prepared_filters(rng):
    x, w, b, hyper = random_case((2, 12, 11, 10, 8, 3, 1, 1, 1, 1), rng, np.float32)
    chosen = plan("forward", x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="winograd4")
    N, D, OH, OW = chosen.convolution.output_shape
    scale, shift = rng.standard_normal(D).astype(np.float32), rng.standard_normal(D).astype(np.float32)
    residual = rng.standard_normal((N, D, OH * OW)).astype(np.float32)
    out = np.full((N, D, OH, OW), np.nan, np.float32)
    filters = winograd4.transformed_filters(w, chosen)
    winograd4.run_transformed(x, filters, b, out, dispatch.buffers(chosen), 1, 1, (scale, shift, residual, RELU))
    plain = reference.conv2d(x, w, b, (1, 1), ((1, 1), (1, 1)))
    expected = np.maximum(plain * scale[:, None, None] + shift[:, None, None] + residual.reshape(plain.shape), 0)
    np.testing.assert_allclose(out, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


def test_concurrent_calls_from_threads_agree(rng):
    check_concurrent_calls("winograd4", "forward", (3, 16, 14, 13, 16, 3, 1, 1, 1, 1), rng)


@pytest.mark.parametrize("mean", [0.0, 1.0])
def test_winograd4_float32_error_stays_small(mean, rng):
    """Max |error| / max |result| against the float64 definition on the 32-channel layer winograd.py's
    test uses, for zero-mean data and data with a large mean; the bound is F(2x2)'s, 2e-6."""
    x = (rng.standard_normal((2, 32, 15, 14)) + mean).astype(np.float32)
    w = rng.standard_normal((24, 32, 3, 3)).astype(np.float32)
    b = np.zeros(24, np.float32)
    hyper = (1, 1, 1, 1, 1, 1, 1)
    expected = reference.conv2d(x, w, None, (1, 1), ((1, 1), (1, 1)))
    got = run("winograd4", "forward", x, w, b, None, hyper)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * np.abs(expected).max())
    grad_y = rng.standard_normal(expected.shape).astype(np.float32)
    grad_x = run("winograd4", "backward_input", x, w, b, grad_y, hyper)
    by_definition = reference.conv2d_backward_input(grad_y, w, x.shape, (1, 1), ((1, 1), (1, 1)))
    np.testing.assert_allclose(grad_x, by_definition, rtol=0, atol=2e-6 * np.abs(by_definition).max())


def test_one_block_is_cut_into_rows_of_tiles_not_channel_slices_up_to_the_limit(monkeypatch, rng):
    """Batch 1 with one block of tiles and fewer blocks than threads: up to ROWS_NOT_SLICES_MOST_CHANNELS output
    channels, one block of rows of tiles a thread (the input transformed once); past it, channel slices."""
    def patches_shape(channels, threads):
        convolution = Convolution((1, channels, 28, 28), (channels, channels, 3, 3), 1, 1, 1, 1, 1, 1, 1)
        return dict((name, shape) for name, _, shape in winograd4.buffers("forward", convolution, 4, threads))["patches"]
    assert patches_shape(winograd4.ROWS_NOT_SLICES_MOST_CHANNELS, 2) == (2, 36, 4 * 7, 128)  # rows 4 + 3
    assert patches_shape(2 * winograd4.ROWS_NOT_SLICES_MOST_CHANNELS, 2) == (2, 36, 7 * 7, 256)  # one block, sliced
    assert patches_shape(winograd4.ROWS_NOT_SLICES_MOST_CHANNELS, 1)[2] == 7 * 7  # one thread: one block
    # computed right either way, on a small layer that the rule then cuts into rows or into channel slices
    monkeypatch.setattr(blocks, "MIN_PART_CHANNELS", 4)
    for most in (8, 0):
        monkeypatch.setattr(winograd4, "ROWS_NOT_SLICES_MOST_CHANNELS", most)
        check("winograd4", (1, 8, 13, 10, 8, 3, 1, 1, 1, 1), rng, passes=("forward", "backward_input"),
              tolerance=1e-11)
