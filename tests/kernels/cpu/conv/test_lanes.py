"""conv/lanes.py: direct convolution with channels in the vector lanes (16 channels x 4 positions; the weight
gradient 16 channels x 6 taps), all passes, any stride, padding and dilation; and the vector values it is built
on (kernels/cpu/vectors.py)."""
import numpy as np
import pytest
from numba import njit

from nbconv.kernels.cpu import vectors
from nbconv.kernels.cpu.conv import dispatch, lanes
from nbconv.kernels.cpu.conv.plan import Convolution, plan
from nbconv.kernels.cpu.threads import parallel_parts
from tests.kernels.cpu.conv.algorithm_check import check, random_case

# (N, C, H, W, D, kernel, stride, padding, dilation, groups): channels on and off the blocks of 16, rows on
# and off 4 positions, strides 1 to 4, padding 0-3, maps from 1x1 up
CASES = [
    (2, 3, 9, 7, 5, 3, 1, 1, 1, 1),
    (2, 5, 9, 8, 6, 3, 2, 1, 1, 1),                # stride 2, ResNet's down-sampling form
    (1, 7, 6, 5, 9, 3, 2, 2, 1, 1),                # stride 2, padding 2
    (2, 2, 1, 1, 3, 3, 1, 1, 1, 1),                # a 1x1 map: every tap but the centre reads padding
    (2, 3, 2, 3, 1, 3, 1, 1, 1, 1),                # a 2x3 map, one output channel
    (1, 3, 4, 5, 5, 3, 2, 0, 1, 1),                # stride 2, unpadded, odd sizes
    (2, 4, 9, 8, 6, (2, 3), 1, (2, 1), 2, 1),      # non-square, dilated
    (1, 16, 5, 5, 16, 3, 1, 3, 1, 1),              # padding 3: wider than the kernel's reach
    (3, 6, 14, 14, 16, 5, 1, 0, 1, 1),             # LeNet-5's second layer
    (2, 3, 11, 10, 5, 3, 2, 2, 1, 1),
    (1, 70, 5, 7, 67, 3, 1, 1, 1, 1),              # 70 -> 67 channels
    (2, 17, 8, 8, 33, 3, 2, 1, 1, 1),              # ResNet-20's stride-2 layer, smaller
    (1, 1, 7, 9, 2, 3, (2, 1), (0, 2), 1, 1),      # different strides along the two axes
    (2, 5, 9, 8, 6, 1, 2, 0, 1, 1),                # 1x1 stride 2 (a projection shortcut): no tap reaches odd rows
    (1, 3, 11, 9, 4, 3, 4, 1, 1, 1),               # a filter smaller than its stride
    (2, 64, 8, 8, 64, 3, 1, 1, 1, 1),              # ResNet-20's 8-wide layer, smaller batch
    (2, 32, 16, 16, 64, 3, 2, 1, 1, 1),            # ResNet-20's stride-2 layer to 8 wide
    (3, 17, 7, 6, 33, 3, 1, 1, 1, 1),              # 33 channels: a third block of 16, mostly zero
    (1, 20, 5, 9, 40, 3, 2, 1, 1, 1),
    (2, 16, 6, 4, 32, 3, 1, 1, 1, 1),              # whole blocks of 16 and of 4 positions: no grid in between
    (1, 32, 7, 13, 16, 3, 1, 2, 1, 1),             # the same, rows of 13 and 15: each row's last block overlaps
    (2, 16, 5, 3, 16, 3, 1, 1, 1, 1),              # rows of 3: through the grid
]


@pytest.mark.parametrize("case", CASES)
def test_lanes_matches_reference(case, rng):
    check("lanes", case, rng, finite_differences=case in (CASES[1], CASES[6]))


def test_lanes_in_float32_matches_reference(rng):
    check("lanes", (2, 16, 8, 8, 16, 3, 1, 1, 1, 1), rng, dtype=np.float32, tolerance=2e-6)
    check("lanes", (2, 32, 16, 16, 64, 3, 2, 1, 1, 1), rng, dtype=np.float32, tolerance=2e-6)
    check("lanes", (3, 6, 14, 14, 16, 5, 1, 0, 1, 1), rng, dtype=np.float32, tolerance=2e-6)  # LeNet-5's second layer


def _run_parts(pass_, case, parts, monkeypatch):
    """One pass of the lanes kernel with buffers for 3 threads, its outer loop cut into `parts` parts."""
    x, w, b, hyper = random_case(case, np.random.default_rng(7))
    monkeypatch.setattr(lanes, "parallel_parts", lambda span, _, *args: parallel_parts(span, parts, *args))
    chosen = plan(pass_, x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="lanes", threads=3)
    buffers = dispatch.buffers(chosen)
    grad_y = np.random.default_rng(8).standard_normal(chosen.convolution.output_shape)
    if pass_ == "forward":
        out = np.empty(chosen.convolution.output_shape)
        lanes.forward(x, w, b, out, buffers, chosen)
    elif pass_ == "backward_input":
        out = np.empty(x.shape)
        lanes.backward_input(grad_y, w, out, buffers, chosen)
    else:
        out = np.empty(w.shape)
        lanes.backward_weight(grad_y, x, out, buffers, chosen)
    return out


@pytest.mark.parametrize("pass_", ["forward", "backward_input", "backward_weight"])
def test_results_do_not_depend_on_the_thread_count(pass_, monkeypatch):
    case = (7, 5, 9, 9, 6, 3, 2, 1, 1, 1)
    results = [_run_parts(pass_, case, parts, monkeypatch) for parts in (1, 2, 3)]
    assert all(np.array_equal(results[0], other) for other in results[1:])


def test_the_weight_gradient_sums_small_images_in_groups(rng):
    """8x8 outputs: 4 images a block (images_per_block), with batches that end in a part group; and the result as
    the reference check's (the summation order within a chunk differs, not the sums)."""
    assert lanes.images_per_block(8, 8) == 4 and lanes.images_per_block(16, 16) == 1
    assert lanes.images_per_block(5, 7) == 8
    for N in (1, 5, 6, 9):
        check("lanes", (N, 17, 8, 8, 20, 3, 1, 1, 1, 1), rng, passes=("backward_weight",))
    check("lanes", (7, 5, 9, 10, 6, 3, 2, 1, 1, 1), rng, passes=("backward_weight",))  # 5x5 outputs: groups of 11


def test_weight_gradient_chunks_do_not_depend_on_the_thread_count():
    shapes = ((64, 16, 32, 32), (16, 16, 3, 3), 1, 1, 1, 1)
    chunks = {plan("backward_weight", *shapes, algorithm="lanes", threads=threads).buffers[2].shape[0]
              for threads in (1, 2, 3, 8)}
    assert len(chunks) == 1


def _furthest(pass_, convolution):
    """(last source index read + 1, the size that read must stay within, last grid index written + 1) of one pass,
    worked out from the taps' offsets and the blocks' positions as the kernels compute them: the forward pass and
    the input gradient read the windows of output positions only (a plane's blocks taken flat, the last
    overlapping), the forward pass and weight gradient of an unpadded layer from the input image itself (limit
    C*H*W), else from the padded buffer; the grid is written only where the blocks do not go straight to the output."""
    N, C, H, W = convolution.input_shape
    D, _, KH, KW = convolution.weight_shape
    _, _, OH, OW = convolution.output_shape
    strides = convolution.hyper[:6]
    chosen = plan(pass_, *convolution[:2], *strides, algorithm="lanes")
    sizes = {buffer.name: buffer.shape[1] for buffer in chosen.buffers}
    round_up = lambda count, multiple: -(-count // multiple) * multiple  # noqa: E731
    if pass_ == "backward_input":
        top, left, source_h, source_w = lanes.transposed_geometry(H, W, OH, OW, KH, KW, *strides)
        offsets, _, counts = lanes.transposed_taps(D, KH, KW, *strides, top, left, source_w, source_h * source_w)
        straight = strides[0] == strides[1] == 1 and C % 16 == 0 and H * W >= 4
        read, written = 0, 0
        for ry in range(min(strides[0], H)):
            for rx in range(min(strides[1], W)):
                phase = ry * strides[1] + rx
                rows, cols = -(-(H - ry) // strides[0]), -(-(W - rx) // strides[1])
                if not straight:
                    written = max(written, max(rows * cols, 4) * round_up(C, 16))
                if counts[phase]:
                    read = max(read, offsets[phase, :counts[phase]].max() + (rows - 1) * source_w + cols)
        return read, sizes["padded"], written
    padded_h, padded_w = H + 2 * strides[2], W + 2 * strides[3]
    offsets = lanes.tap_offsets(C, KH, KW, strides[4], strides[5], padded_h, padded_w)
    row_stride, step = strides[0] * padded_w, strides[1]
    read = offsets.max() + (OH - 1) * row_stride + (OW - 1) * step + 1
    if pass_ == "forward":
        limit = C * H * W if strides[2] == strides[3] == 0 else sizes["padded"]
        straight = D % 16 == 0 and OH * OW >= 4
        return read, limit, 0 if straight else max(OH * OW, 4) * round_up(D, 16)
    group = lanes.images_per_block(OH, OW)  # images summed at once, their padded copies back to back
    written = (group * OH * OW + C * KH * KW) * round_up(D, 16)
    if strides[2] == strides[3] == 0:  # each image's reads inside itself, in the input
        return read, C * H * W, written
    return (group - 1) * C * padded_h * padded_w + read, sizes["padded"], written


@pytest.mark.parametrize("pass_", ["forward", "backward_input", "backward_weight"])
def test_the_reads_stay_inside_the_buffers(pass_, rng):
    """The last block's reads and its writes lie inside the plan's buffers (or, for an unpadded forward pass,
    inside the input image), on random shapes (strides 1-3, padding 0-3, dilation 1-2, kernels 1-5)."""
    checked = 0
    while checked < 300:
        C, D, H, W = rng.integers(1, 9, 4)
        KH, KW, stride_h, stride_w, dilation = rng.integers(1, 6), rng.integers(1, 6), rng.integers(1, 4), \
            rng.integers(1, 4), rng.integers(1, 3)
        padding_h, padding_w = rng.integers(0, 4, 2)
        convolution = Convolution((2, C, H, W), (D, C, KH, KW), stride_h, stride_w, padding_h, padding_w,
                                  dilation, dilation)
        if min(convolution.output_shape[2:]) < 1:
            continue
        checked += 1
        chosen = plan(pass_, *convolution[:2], *convolution.hyper[:6], algorithm="lanes")
        sizes = {buffer.name: buffer.shape[1] for buffer in chosen.buffers}
        read, limit, written = _furthest(pass_, convolution)
        assert read <= limit, convolution
        assert written <= sizes["grid"], convolution


def test_applies_to_ungrouped_layers_only():
    assert lanes.applies("forward", Convolution((1, 4, 5, 5), (4, 4, 3, 3), 2, 2, 1, 1))
    assert not lanes.applies("forward", Convolution((1, 4, 5, 5), (4, 2, 3, 3), groups=2))


@pytest.mark.parametrize("width", [7, 8, 16, 19])
@pytest.mark.parametrize("top, left, plane_h, plane_w", [(1, 1, 7, 21), (0, 0, 5, 20), (2, 0, 8, 22), (0, 3, 5, 23)])
def test_copy_image_writes_the_inside_only(width, top, left, plane_h, plane_w, rng):
    """Image 1 of 2 into a target full of NaN: the image at (top, left) of each plane, nothing written elsewhere
    (the padding, which the kernels zero once a call, stays as it was), rows of 8-value vectors and a tail."""
    images = rng.standard_normal((2, 3, 5, width))
    target = np.full(3 * plane_h * plane_w + 5, np.nan)
    lanes.copy_image(images, 1, target, top, left, plane_h, plane_w)
    expected = np.full((3, plane_h, plane_w), np.nan)
    expected[:, top:top + 5, left:left + width] = images[1]
    np.testing.assert_array_equal(target[:3 * plane_h * plane_w], expected.reshape(-1))
    assert np.isnan(target[3 * plane_h * plane_w:]).all()


@njit
def _store_columns(values, out, index, stride):
    lanes.store_columns(out, index, stride, vectors.load(values, 0), vectors.load(values, 8),
                        vectors.load(values, 16), vectors.load(values, 24))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_store_columns_transposes_four_vectors(dtype, rng):
    """Four vectors of 8 lanes as 8 runs of 4 values, `stride` apart, and nothing written between the runs."""
    values = rng.standard_normal(32).astype(dtype)
    out = np.full(3 + 7 * 6 + 4 + 2, np.nan, dtype)
    _store_columns(values, out, 3, 6)
    expected = np.full(out.shape, np.nan, dtype)
    for v in range(8):
        expected[3 + 6 * v:3 + 6 * v + 4] = values.reshape(4, 8)[:, v]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("pass_", ["forward", "backward_input"])
@pytest.mark.parametrize("case", [(3, 16, 6, 8, 32, 3, 1, 1, 1, 1),    # whole blocks: straight into the output
                                  (2, 32, 5, 4, 16, 3, 1, 1, 1, 1),
                                  (2, 16, 6, 7, 16, 3, 1, 1, 1, 1),    # the last block of a plane overlaps
                                  (3, 16, 14, 14, 16, 5, 1, 0, 1, 1),  # unpadded: read from the input itself
                                  (2, 16, 3, 3, 16, 3, 1, 0, 1, 1),    # a plane of one position: the grid
                                  (2, 16, 1, 3, 16, 1, 1, 0, 1, 1),    # a plane of three positions
                                  (2, 5, 9, 8, 6, 3, 2, 1, 1, 1)])     # through the grid
def test_the_passes_write_only_their_images(pass_, case):
    """The output as a view into a larger array with NaN images either side, and one not C-contiguous (a
    channel slice): the results match the reference check's kernel, and the images around stay NaN."""
    x, w, b, hyper = random_case(case, np.random.default_rng(3))
    chosen = plan(pass_, x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="lanes")
    grad_y = np.random.default_rng(4).standard_normal(chosen.convolution.output_shape)
    shape = chosen.convolution.output_shape if pass_ == "forward" else x.shape
    run = (lambda out: dispatch.run_forward(chosen, x, w, b, out)) if pass_ == "forward" else \
        (lambda out: dispatch.run_backward_input(chosen, grad_y, w, out))
    expected = np.full(shape, np.nan)
    run(expected)
    assert not np.isnan(expected).any()
    around = np.full((shape[0] + 2,) + shape[1:], np.nan)
    run(around[1:-1])
    np.testing.assert_array_equal(around[1:-1], expected)
    assert np.isnan(around[0]).all() and np.isnan(around[-1]).all()
    wider = np.full(shape[:1] + (shape[1] + 3,) + shape[2:], np.nan)
    run(wider[:, 1:-2])
    np.testing.assert_array_equal(wider[:, 1:-2], expected)
    assert np.isnan(wider[:, :1]).all() and np.isnan(wider[:, -2:]).all()


@njit
def _vector_ops(values, weights, out):
    """out[0:8] = values[0:8]*weights[1] + values[8:16]*weights[2]; out[8:16] = values[0:8]*values[8:16];
    returns the sum of out[0:8]'s lanes."""
    first = vectors.add_products(vectors.zeros(values), vectors.load(values, 0), vectors.broadcast(weights, 1))
    first = vectors.add_products(first, vectors.load(values, 8), vectors.broadcast(weights, 2))
    vectors.store(out, 0, first)
    vectors.store(out, 8, vectors.add_products(vectors.zeros(values), vectors.load(values, 0),
                                               vectors.load(values, 8)))
    return vectors.lane_sum(first)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_values(dtype, rng):
    values = rng.standard_normal(16).astype(dtype)
    weights = rng.standard_normal(3).astype(dtype)
    out = np.zeros(16, dtype)
    total = _vector_ops(values, weights, out)
    expected = values[:8] * weights[1] + values[8:] * weights[2]
    np.testing.assert_allclose(out[:8], expected, rtol=1e-6)
    np.testing.assert_allclose(out[8:], values[:8] * values[8:], rtol=1e-6)
    np.testing.assert_allclose(total, expected.sum(), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("D, OH, OW", [(16, 4, 6), (24, 8, 8), (5, 3, 3), (8, 3, 5)])
def test_spread_image_transposes_one_image(D, OH, OW, dtype, rng):
    """Image 1's output gradient as (positions, channels rounded up to 16), by 8 x 8 transposes (channels and
    positions in whole eights) or one value at a time; the channels past D are left as they were."""
    grad_output = rng.standard_normal((2, D, OH, OW)).astype(dtype)
    rounded = -(-D // 16) * 16
    spread = np.full(OH * OW * rounded, np.nan, dtype)
    lanes.spread_image(grad_output, 1, spread, rounded)
    expected = np.full((OH * OW, rounded), np.nan, dtype)
    expected[:, :D] = grad_output[1].reshape(D, -1).T
    np.testing.assert_array_equal(spread.reshape(OH * OW, rounded), expected)


@pytest.mark.parametrize("helper", ["copy_image", "block_sums", "plane_products", "weight_block_sums", "spread_image"])
def test_the_row_helpers_are_inlined_into_the_spans(helper):
    """Each span compiles its row helpers inline: one compiled on its own and called cost the calling span more
    CPU seconds on an empty cache than the inlined body (benchmarks/NOTES.md, section 82), and a literal argument
    (row_lanes' top row of 0) compiled copy_image once more."""
    assert getattr(lanes, helper).targetoptions.get("inline") == "always"


@pytest.mark.parametrize("padding", [0, 1])
def test_a_changed_weight_positions_setting_sizes_the_buffers_the_kernel_fills(padding, rng, monkeypatch):
    """WEIGHT_POSITIONS is read when the plan sizes the buffers and when the pass runs, never frozen into the
    compiled kernel: at 64 positions an 8x8 output sums one image a block, not 4, in buffers sized for one."""
    monkeypatch.setattr(lanes, "WEIGHT_POSITIONS", 64)
    assert lanes.images_per_block(8, 8) == 1
    check("lanes", (9, 5, 8 + 2 * (1 - padding), 8 + 2 * (1 - padding), 20, 3, 1, padding, 1, 1), rng,
          passes=("backward_weight",))
