"""conv/lanes.py: direct convolution with channels in the vector lanes (16 channels x 4 positions; the weight
gradient 16 channels x 6 taps), all passes, any stride, padding and dilation; and, for lanes and blocked alike,
results independent of the thread count, reads and writes inside the plan's buffers."""
import numpy as np
import pytest

from nbconv.kernels.cpu.conv import blocked, dispatch, lanes
from nbconv.kernels.cpu.conv.plan import Convolution, plan
from nbconv.kernels.cpu.threads import parallel_parts
from tests.kernels.cpu.conv import test_blocked
from tests.kernels.cpu.conv.algorithm_check import check, random_case
from tests.kernels.cpu.conv.test_blocked import CASES

# besides blocked's cases: channels on and off the blocks of 16, rows on and off 4 positions
LANE_CASES = CASES + [
    (2, 64, 8, 8, 64, 3, 1, 1, 1, 1),              # ResNet-20's 8-wide layer, smaller batch
    (2, 32, 16, 16, 64, 3, 2, 1, 1, 1),            # ResNet-20's stride-2 layer to 8 wide
    (3, 17, 7, 6, 33, 3, 1, 1, 1, 1),              # 33 channels: a third block of 16, mostly zero
    (1, 20, 5, 9, 40, 3, 2, 1, 1, 1),
]


@pytest.mark.parametrize("case", LANE_CASES)
def test_lanes_matches_reference(case, rng):
    check("lanes", case, rng, finite_differences=case in (CASES[1], CASES[6]))


def test_lanes_in_float32_matches_reference(rng):
    check("lanes", (2, 16, 8, 8, 16, 3, 1, 1, 1, 1), rng, dtype=np.float32, tolerance=2e-6)
    check("lanes", (2, 32, 16, 16, 64, 3, 2, 1, 1, 1), rng, dtype=np.float32, tolerance=2e-6)


# lanes and blocked share these: the thread count, the buffers' bounds and the layers they apply to
DIRECT_ALGORITHMS = {"lanes": lanes, "blocked": blocked}


def _run_parts(algorithm, pass_, case, parts, monkeypatch):
    """One pass of an algorithm's kernel with buffers for 3 threads, its outer loop cut into `parts` parts."""
    module = DIRECT_ALGORITHMS[algorithm]
    x, w, b, hyper = random_case(case, np.random.default_rng(7))
    monkeypatch.setattr(module, "parallel_parts", lambda span, _, *args: parallel_parts(span, parts, *args))
    chosen = plan(pass_, x.shape, w.shape, *hyper, dtype=x.dtype, algorithm=algorithm, threads=3)
    buffers = dispatch.buffers(chosen)
    grad_y = np.random.default_rng(8).standard_normal(chosen.convolution.output_shape)
    if pass_ == "forward":
        out = np.empty(chosen.convolution.output_shape)
        module.forward(x, w, b, out, buffers, chosen)
    elif pass_ == "backward_input":
        out = np.empty(x.shape)
        module.backward_input(grad_y, w, out, buffers, chosen)
    else:
        out = np.empty(w.shape)
        module.backward_weight(grad_y, x, out, buffers, chosen)
    return out


@pytest.mark.parametrize("algorithm", DIRECT_ALGORITHMS)
@pytest.mark.parametrize("pass_", ["forward", "backward_input", "backward_weight"])
def test_results_do_not_depend_on_the_thread_count(algorithm, pass_, monkeypatch):
    case = (7, 5, 9, 9, 6, 3, 2, 1, 1, 1)
    results = [_run_parts(algorithm, pass_, case, parts, monkeypatch) for parts in (1, 2, 3)]
    assert all(np.array_equal(results[0], other) for other in results[1:])


def furthest(pass_, convolution):
    """(last source index read + 1, last sums index written + 1) of one pass of lanes, worked out from the
    taps' offsets and the blocks' positions as the kernels compute them: reads run up to 3 positions past a
    row's last output."""
    N, C, H, W = convolution.input_shape
    D, _, KH, KW = convolution.weight_shape
    _, _, OH, OW = convolution.output_shape
    strides = convolution.hyper[:6]
    round_up = lambda count, multiple: -(-count // multiple) * multiple  # noqa: E731
    if pass_ == "backward_input":
        top, left, source_h, source_w = lanes.transposed_geometry(H, W, OH, OW, KH, KW, *strides)
        offsets, _, counts = lanes.transposed_taps(D, KH, KW, *strides, top, left, source_w, source_h * source_w)
        read, written = 0, 0
        for ry in range(min(strides[0], H)):
            for rx in range(min(strides[1], W)):
                phase = ry * strides[1] + rx
                rows, cols = -(-(H - ry) // strides[0]), -(-(W - rx) // strides[1])
                written = max(written, rows * round_up(cols, 4) * round_up(C, 16))
                if counts[phase]:
                    read = max(read, offsets[phase, :counts[phase]].max() + (rows - 1) * source_w
                               + round_up(cols, 4))
        return read, written
    padded_h, padded_w = H + 2 * strides[2], W + 2 * strides[3]
    offsets = lanes.tap_offsets(C, KH, KW, 1, 1, strides[4], strides[5], padded_h, padded_w)
    row_stride, step = strides[0] * padded_w, strides[1]
    if pass_ == "forward":
        return (offsets.max() + (OH - 1) * row_stride + (round_up(OW, 4) - 1) * step + 1,
                OH * round_up(OW, 4) * round_up(D, 16))
    return offsets.max() + (OH - 1) * row_stride + (OW - 1) * step + 1, (OH * OW + C * KH * KW) * round_up(D, 16)


FURTHEST = {"lanes": furthest, "blocked": test_blocked.furthest}


@pytest.mark.parametrize("algorithm", DIRECT_ALGORITHMS)
@pytest.mark.parametrize("pass_", ["forward", "backward_input", "backward_weight"])
def test_the_reads_stay_inside_the_buffers(algorithm, pass_, rng):
    """The last block's reads past its row or grid, and its writes, lie inside the plan's buffers, on random
    shapes (strides 1-3, padding 0-3, dilation 1-2, kernels 1-5)."""
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
        chosen = plan(pass_, *convolution[:2], *convolution.hyper[:6], algorithm=algorithm)
        sizes = {buffer.name: buffer.shape[1] for buffer in chosen.buffers}
        read, written = FURTHEST[algorithm](pass_, convolution)
        assert read <= sizes["padded"], convolution
        assert written <= sizes["grid"], convolution


@pytest.mark.parametrize("algorithm", DIRECT_ALGORITHMS)
def test_applies_to_ungrouped_layers_only(algorithm):
    module = DIRECT_ALGORITHMS[algorithm]
    assert module.applies("forward", Convolution((1, 4, 5, 5), (4, 4, 3, 3), 2, 2, 1, 1))
    assert not module.applies("forward", Convolution((1, 4, 5, 5), (4, 2, 3, 3), groups=2))


@pytest.mark.parametrize("top, left, plane_h, plane_w", [(1, 1, 7, 9), (0, 0, 5, 7), (2, 0, 8, 8), (0, 3, 5, 11)])
def test_pad_image_writes_every_value(top, left, plane_h, plane_w, rng):
    """The padded copy over a target full of NaN: the image at (top, left) of each plane, zero everywhere else,
    the slack past the last plane included."""
    image = rng.standard_normal((3, 5, 7))
    target = np.full(3 * plane_h * plane_w + 5, np.nan)
    lanes.pad_image(image, target, top, left, plane_h, plane_w)
    expected = np.zeros((3, plane_h, plane_w))
    expected[:, top:top + 5, left:left + 7] = image
    np.testing.assert_array_equal(target[:3 * plane_h * plane_w], expected.reshape(-1))
    np.testing.assert_array_equal(target[3 * plane_h * plane_w:], 0)
