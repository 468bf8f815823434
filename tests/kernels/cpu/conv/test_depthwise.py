"""conv/depthwise.py: depthwise 3x3 stride-1 convolution, every tap unrolled, 8 columns a vector."""
import numpy as np
import pytest

from nbconv.kernels.cpu.conv import depthwise, dispatch
from nbconv.kernels.cpu.conv.plan import plan
from nbconv.kernels.cpu.threads import parallel_parts
from tests.kernels.cpu.conv.algorithm_check import check, random_case

# (N, C, H, W, D, kernel, stride, padding, dilation, groups): one 3x3 filter per channel, stride 1
CASES = [
    (1, 6, 9, 10, 6, 3, 1, 1, 1, 6),              # 10 wide: one whole block and one overlapping it
    (3, 5, 7, 4, 5, 3, 1, (0, 2), 1, 5),          # padding differing per axis; narrower than a vector
    (2, 3, 3, 6, 3, 3, 1, 2, 1, 3),               # padding 2
    (2, 4, 1, 1, 4, 3, 1, 1, 1, 4),               # a single pixel
    (2, 3, 8, 8, 3, 3, 1, 1, 1, 3),               # exactly one block wide, an even row count
    (3, 7, 11, 17, 7, 3, 1, 1, 1, 7),             # odd rows (a last single row), 17 wide: an overlapping block
    (2, 5, 10, 23, 5, 3, 1, 0, 1, 5),             # unpadded: 21 outputs wide
    (1, 4, 6, 9, 4, 3, 1, (2, 0), 1, 4),          # 7 outputs wide after no column padding: scalar rows
    (2, 3, 13, 6, 3, 3, 1, (1, 2), 1, 3),         # 8 outputs wide from 6 columns padded by 2
    (4, 2, 5, 16, 2, 3, 1, 2, 1, 2),              # padding 2 both ways, 18 wide
]


@pytest.mark.parametrize("case", CASES)
def test_depthwise3x3_matches_reference(case, rng):
    check("depthwise3x3", case, rng, finite_differences=case in (CASES[1], CASES[7]))


def test_depthwise3x3_float32(rng):
    check("depthwise3x3", (2, 8, 11, 13, 8, 3, 1, 1, 1, 8), rng, dtype=np.float32, tolerance=1e-5)
    check("depthwise3x3", (3, 16, 28, 28, 16, 3, 1, 1, 1, 16), rng, dtype=np.float32, tolerance=2e-5)


@pytest.mark.parametrize("case", [(2, 3, 9, 10, 6, 3, 1, 1, 1, 3),    # two filters a channel
                                  (3, 2, 7, 17, 6, 3, 1, (2, 0), 1, 2)])  # three, 15 outputs wide
def test_filters_a_channel_forward_and_weight_gradient(case, rng):
    check("depthwise3x3", case, rng, passes=("forward", "backward_weight"), finite_differences=case[3] == 10)


@pytest.mark.parametrize("case", [(2, 5, 9, 9, 10, 3, 2, 1, 1, 5),    # two filters a channel, stride 2
                                  (3, 4, 11, 10, 4, 3, 2, 1, 1, 4),   # stride 2
                                  (2, 4, 12, 11, 4, 3, 1, 2, 2, 4),   # dilated
                                  (2, 4, 7, 9, 4, 3, 1, 3, 1, 4)])    # padding 3
def test_other_depthwise_layers_run_and_match_the_reference(case, rng):
    """The layers depthwise3x3 leaves: the plan's choice for them ('direct') is still right."""
    x, w, _, hyper = random_case(case, rng)
    chosen = plan("forward", x.shape, w.shape, *hyper)
    assert chosen.algorithm == "direct"
    check(chosen.algorithm, case, rng)


def _run(pass_, case, threads, parts, monkeypatch, views=False):
    """One pass of the depthwise kernels with buffers for `threads` threads, cut into `parts` parts; with
    views, the output is a channel slice of a NaN array (not C-contiguous), which is checked untouched around."""
    x, w, b, hyper = random_case(case, np.random.default_rng(7))
    monkeypatch.setattr(depthwise, "parallel_parts", lambda span, _, *args: parallel_parts(span, parts, *args))
    chosen = plan(pass_, x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="depthwise3x3", threads=threads)
    grad_y = np.random.default_rng(8).standard_normal(chosen.convolution.output_shape)
    shape = {"forward": chosen.convolution.output_shape, "backward_input": x.shape, "backward_weight": w.shape}[pass_]
    whole = np.full(shape[:1] + (shape[1] + 3,) + shape[2:], np.nan)
    out = whole[:, 1:-2] if views else np.full(shape, np.nan)
    buffers = dispatch.buffers(chosen)
    if pass_ == "forward":
        depthwise.forward(x, w, b, out, buffers, chosen)
    elif pass_ == "backward_input":
        depthwise.backward_input(grad_y, w, out, buffers, chosen)
    else:
        depthwise.backward_weight(grad_y, x, out, buffers, chosen)
    if views:
        assert np.isnan(whole[:, :1]).all() and np.isnan(whole[:, -2:]).all()
    assert not np.isnan(out).any()
    return np.array(out)


@pytest.mark.parametrize("pass_", ["forward", "backward_input", "backward_weight"])
def test_results_do_not_depend_on_the_thread_count(pass_, monkeypatch):
    """Threads claim planes (channels for the weight gradient) one at a time; each is computed whole by one
    thread, so 1, 2 or 3 parts, or more parts than buffers (the extra parts claim nothing), agree exactly."""
    case = (3, 5, 9, 12, 5, 3, 1, 1, 1, 5)
    results = [_run(pass_, case, threads, parts, monkeypatch) for threads, parts in ((1, 1), (2, 2), (3, 3), (1, 3))]
    assert all(np.array_equal(results[0], other) for other in results[1:])


@pytest.mark.parametrize("pass_", ["forward", "backward_input"])
def test_the_passes_write_only_their_outputs(pass_, monkeypatch):
    case = (2, 4, 7, 11, 4, 3, 1, 1, 1, 4)
    np.testing.assert_array_equal(_run(pass_, case, 2, 2, monkeypatch, views=True),
                                  _run(pass_, case, 2, 2, monkeypatch))


def test_buffers_are_one_plane_a_thread():
    chosen = plan("forward", (16, 128, 56, 56), (128, 1, 3, 3), 1, 1, 1, 1, 1, 1, 128, threads=2)
    assert dict((b.name, b.shape) for b in chosen.buffers)["planes"] == (2, 60 * 60)
    chosen = plan("backward_input", (1, 2, 5, 5), (2, 1, 3, 3), 1, 1, 1, 1, 1, 1, 2, threads=4,
                  algorithm="depthwise3x3")
    assert dict((b.name, b.shape) for b in chosen.buffers)["planes"] == (2, 9 * 9)


@pytest.mark.parametrize("weight_shape,hyper", [
    ((6, 1, 3, 3), (1, 1, 3, 3, 1, 1, 6)),        # padding 3
    ((6, 1, 3, 3), (2, 2, 1, 1, 1, 1, 6)),        # strided
    ((6, 1, 3, 3), (1, 1, 1, 1, 2, 2, 6)),        # dilated
    ((6, 1, 5, 5), (1, 1, 2, 2, 1, 1, 6)),        # 5x5
])
def test_depthwise3x3_refuses_other_depthwise_layers(weight_shape, hyper):
    with pytest.raises(ValueError, match="does not apply"):
        plan("forward", (2, 6, 9, 9), weight_shape, *hyper, algorithm="depthwise3x3")


def test_filters_a_channel_leave_the_input_gradient_to_direct():
    with pytest.raises(ValueError, match="does not apply"):
        plan("backward_input", (2, 6, 9, 9), (12, 1, 3, 3), 1, 1, 1, 1, 1, 1, 6, algorithm="depthwise3x3")
    assert plan("backward_input", (2, 6, 9, 9), (12, 1, 3, 3), 1, 1, 1, 1, 1, 1, 6).algorithm == "direct"
