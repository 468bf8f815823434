"""conv/pointwise_tiles.py: 1x1 stride-1 forward passes and input gradients summed in registers, 8 rows x 48
positions a tile, the input read in place; rows past the last panel and positions past the last vector taken by an
overlapping panel and vector; tasks cut along rows or positions."""
import numpy as np
import pytest

from nbconv.kernels.cpu.conv import dispatch, plan as planning, pointwise_tiles
from nbconv.kernels.cpu.conv.plan import Convolution, plan
from tests import reference
from tests.kernels.cpu.conv.algorithm_check import (check, check_concurrent_calls, check_thread_counts_agree,
                                                    random_case)

PASSES = ("forward", "backward_input")
# (N, C, H, W, D, kernel, stride, padding, dilation, groups): rows (D forward, C input gradient) from 8 to 70,
# whole panels and not; positions from 16 to 196: one vector, a vector past whole tiles, a last vector overlapping,
# whole tiles only, tiles then an overlapping vector
CASES = [
    (2, 8, 4, 4, 8, 1, 1, 0, 1, 1),       # 16 positions: one vector; one panel each way
    (3, 13, 7, 7, 17, 1, 1, 0, 1, 1),     # 49: a tile, then an overlapping vector; 13 / 17 rows
    (1, 24, 14, 14, 70, 1, 1, 0, 1, 1),   # 196: four tiles and an overlapping vector
    (2, 9, 6, 8, 23, 1, 1, 0, 1, 1),      # 48: one whole tile
    (1, 40, 10, 21, 12, 1, 1, 0, 1, 1),   # 210: four tiles, a vector, an overlapping vector
    (2, 17, 1, 37, 9, 1, 1, 0, 1, 1),     # one row of an image
]


@pytest.mark.parametrize("case", CASES)
def test_pointwise_tiles_matches_reference(case, rng):
    check("pointwise_tiles", case, rng, passes=PASSES, finite_differences=case in (CASES[0], CASES[3]))


@pytest.mark.parametrize("case", CASES[1:3])
def test_pointwise_tiles_in_float32_matches_reference(case, rng):
    check("pointwise_tiles", case, rng, passes=PASSES, dtype=np.float32, tolerance=2e-6)


def test_applies_to_1x1_stride_1_unpadded_ungrouped_passes_with_a_panel_and_a_vector():
    layer = Convolution((2, 8, 4, 4), (8, 8, 1, 1))
    assert pointwise_tiles.applies("forward", layer) and pointwise_tiles.applies("backward_input", layer)
    assert not pointwise_tiles.applies("backward_weight", layer)
    assert not pointwise_tiles.applies("forward", Convolution((2, 8, 5, 5), (8, 8, 1, 1), 2, 2))
    assert not pointwise_tiles.applies("forward", Convolution((2, 8, 5, 5), (8, 8, 1, 1), 1, 1, 1, 1))
    assert not pointwise_tiles.applies("forward", Convolution((2, 8, 5, 5), (8, 4, 1, 1), groups=2))
    assert not pointwise_tiles.applies("forward", Convolution((2, 8, 5, 5), (8, 8, 3, 3)))
    assert not pointwise_tiles.applies("forward", Convolution((2, 8, 3, 5), (8, 8, 1, 1)))  # 15 positions
    assert not pointwise_tiles.applies("forward", Convolution((2, 8, 4, 4), (7, 8, 1, 1)))  # 7 output channels
    assert pointwise_tiles.applies("backward_input", Convolution((2, 8, 4, 4), (7, 8, 1, 1)))  # 8 input channels
    assert not pointwise_tiles.applies("backward_input", Convolution((2, 7, 4, 4), (8, 7, 1, 1)))


def test_the_plan_takes_it_for_float32_maps_whose_last_vector_overlaps_little(monkeypatch):
    for pass_ in PASSES:
        assert plan(pass_, (8, 64, 28, 28), (32, 64, 1, 1)).algorithm == "pointwise_tiles"  # 784 = 49 vectors
        assert plan(pass_, (8, 64, 30, 30), (64, 64, 1, 1)).algorithm == "pointwise_tiles"  # 12 of 900 again
        assert plan(pass_, (8, 64, 14, 14), (32, 64, 1, 1)).algorithm == "pointwise"  # 12 of 196
        assert plan(pass_, (8, 64, 28, 28), (32, 64, 1, 1), dtype=np.float64).algorithm == "pointwise"
    assert plan("backward_weight", (8, 64, 28, 28), (32, 64, 1, 1)).algorithm == "pointwise"
    # a widening forward pass stays BLAS's, its input gradient does not
    assert plan("forward", (8, 64, 28, 28), (128, 64, 1, 1)).algorithm == "pointwise"
    assert plan("backward_input", (8, 64, 28, 28), (128, 64, 1, 1)).algorithm == "pointwise_tiles"
    monkeypatch.setattr(planning, "POINTWISE_TILES", False)
    assert plan("forward", (8, 64, 28, 28), (32, 64, 1, 1)).algorithm == "pointwise"


@pytest.mark.parametrize("images,rows,positions,threads,expected", [
    (8, 64, 784, 2, (1, 1)),      # enough images: one task each
    (1, 64, 784, 2, (1, 4)),      # one image, more positions than rows: cut along the positions
    (1, 256, 196, 2, (4, 1)),     # deep layer on a small map: cut along the rows
    (1, 12, 196, 2, (1, 4)),
    (1, 12, 30, 4, (1, 1)),       # no whole tile: one block
    (1, 300, 16, 2, (4, 1)),
    (1, 9, 8, 2, (1, 1)),         # one panel: one slice
    (3, 64, 784, 1, (1, 1)),      # one thread
])
def test_pieces_cut_images_along_the_larger_side_in_whole_panels_and_tiles(images, rows, positions, threads,
                                                                            expected):
    assert pointwise_tiles.pieces(images, rows, 32, positions, threads) == expected


@pytest.mark.parametrize("pass_", PASSES)
def test_results_do_not_depend_on_how_images_are_cut_or_on_the_thread_count(pass_, monkeypatch):
    # 26 output and 25 input channels: 3 whole panels and an overlapping one; 143 positions: 2 whole tiles, then
    # vectors, the last overlapping
    x, w, b, hyper = random_case((2, 25, 13, 11, 26, 1, 1, 0, 1, 1), np.random.default_rng(3), np.float32)
    grad_y = np.random.default_rng(4).standard_normal((2, 26, 13, 11)).astype(np.float32)

    def run():
        chosen = plan(pass_, x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="pointwise_tiles")
        out = np.full(x.shape if pass_ == "backward_input" else grad_y.shape, np.nan, np.float32)
        if pass_ == "forward":
            dispatch.run_forward(chosen, x, w, b, out)
        else:
            dispatch.run_backward_input(chosen, grad_y, w, out)
        return out

    whole = run()
    for cut in ((3, 1), (2, 1), (1, 2), (2, 2), (3, 2)):  # rows in 2 or 3 slices, positions in 2 blocks
        monkeypatch.setattr(pointwise_tiles, "pieces", lambda *args, cut=cut: cut)
        for threads in (1, 2, 3):
            monkeypatch.setattr(pointwise_tiles, "num_threads", lambda threads=threads: threads)
            np.testing.assert_array_equal(run(), whole)
    monkeypatch.undo()
    check_thread_counts_agree(run)


def test_an_epilogue_cuts_images_into_blocks_whose_output_stays_in_l2(monkeypatch, rng):
    """With an epilogue, a task's output is at most TASK_OUTPUT_BYTES (whole tiles): the same bits as uncut."""
    assert pointwise_tiles.pieces(1, 64, 256, 3136, 1, 64 * 3136 * 4) == (1, 4)  # 784 KB in 4 blocks
    assert pointwise_tiles.pieces(1, 64, 256, 3136, 1) == (1, 1)
    assert pointwise_tiles.pieces(1, 256, 64, 196, 2, 256 * 196 * 4) == (4, 1)  # slices small enough already
    assert pointwise_tiles.pieces(1, 8, 64, 40, 2, 8 * 40 * 4 * 10 ** 6) == (1, 1)  # no whole tile to cut
    x = rng.standard_normal((2, 24, 12, 20)).astype(np.float32)
    w = rng.standard_normal((13, 24, 1, 1)).astype(np.float32)
    scale, shift = rng.standard_normal(13).astype(np.float32), rng.standard_normal(13).astype(np.float32)
    residual = rng.standard_normal((2, 13, 240)).astype(np.float32)
    chosen = plan("forward", x.shape, w.shape, algorithm="pointwise_tiles")
    results = []
    for output_bytes in (pointwise_tiles.TASK_OUTPUT_BYTES, 13 * 48 * 4):  # one block an image, then a tile each
        monkeypatch.setattr(pointwise_tiles, "TASK_OUTPUT_BYTES", output_bytes)
        out = np.full((2, 13, 12, 20), np.nan, np.float32)
        pointwise_tiles.forward(x, w, np.zeros(0, np.float32), out, dispatch.buffers(chosen), chosen,
                                (scale, shift, residual, 1))
        results.append(out)
    np.testing.assert_array_equal(results[1], results[0])
    conv = reference.conv2d(x.astype(np.float64), w.astype(np.float64), np.zeros(13), (1, 1), ((0, 0),) * 2)
    expected = np.maximum(conv * scale[:, None, None] + shift[:, None, None] + residual.reshape(2, 13, 12, 20), 0)
    np.testing.assert_allclose(results[0], expected, rtol=2e-6, atol=2e-6 * np.abs(expected).max())


@pytest.mark.parametrize("pass_", PASSES)
def test_writes_stay_inside_the_output(pass_, rng):
    """The overlapping panel and vector write inside the output: a margin either side keeps its values."""
    for case in CASES:
        x, w, b, hyper = random_case(case, rng, np.float32)
        chosen = plan(pass_, x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="pointwise_tiles")
        shape = chosen.convolution.output_shape if pass_ == "forward" else x.shape
        size, margin = int(np.prod(shape)), 64
        memory = np.full(size + 2 * margin, -7.0, np.float32)
        out = memory[margin:margin + size].reshape(shape)
        if pass_ == "forward":
            dispatch.run_forward(chosen, x, w, b, out)
        else:
            grad_y = rng.standard_normal(chosen.convolution.output_shape).astype(np.float32)
            dispatch.run_backward_input(chosen, grad_y, w, out)
        assert (memory[:margin] == -7.0).all() and (memory[margin + size:] == -7.0).all()


def test_non_finite_inputs_give_the_definitions_result(rng):
    """An exact pass (dispatch.EXACT_PRODUCTS): NaN and inf in the input and under zero weights come out where the
    definition puts them, with no check after the kernel."""
    x, w, b, hyper = random_case((2, 12, 7, 9, 19, 1, 1, 0, 1, 1), rng, np.float32)
    x[0, 3, 2, 5], x[1, 7, 6, 8], x[1, 0, 0, 0] = np.nan, np.inf, -np.inf
    w[4, 7] = 0.0
    chosen = plan("forward", x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="pointwise_tiles")
    assert dispatch.exact_pass("forward", "pointwise_tiles")
    out = np.empty(chosen.convolution.output_shape, np.float32)
    dispatch.run_forward(chosen, x, w, b, out)
    with np.errstate(invalid="ignore"):
        expected = reference.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), (1, 1),
                                    ((0, 0), (0, 0)), (1, 1), 1)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=2e-6, atol=2e-6 * np.abs(expected[finite]).max())


@pytest.mark.parametrize("pass_", PASSES)
def test_concurrent_calls_give_one_calls_result(pass_, rng):
    check_concurrent_calls("pointwise_tiles", pass_, CASES[2], rng)


def test_a_prepared_layer_keeps_the_packed_weight(rng):
    w = rng.standard_normal((24, 32, 1, 1)).astype(np.float32)
    x = rng.standard_normal((1, 32, 16, 16)).astype(np.float32)  # past PACKED_MOST_POSITIONS: choose()'s
    assert planning.prepared_plan(x.shape, w.shape, dtype=x.dtype).algorithm == "pointwise_tiles"
    prepared = {}
    out = np.empty((1, 24) + x.shape[2:], np.float32)
    dispatch.conv2d_forward_prepared(x, w, np.zeros(0, np.float32), out, prepared, 1, 1, 0, 0, 1, 1, 1)
    np.testing.assert_array_equal(prepared["pointwise tiles weight"], pointwise_tiles.pack_weight(w))
    expected = reference.conv2d(x.astype(np.float64), w.astype(np.float64), np.zeros(24), (1, 1), ((0, 0),) * 2)
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=2e-6 * np.abs(expected).max())
