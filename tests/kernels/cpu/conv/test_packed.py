"""conv/packed.py: 1x1 convolutions with the weight packed once (panels of 6 output channels x sub-blocks of 16
positions in vector registers), any stride, with the inference epilogue; and nn.infer's use of it."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv import nn
from nbconv.kernels.cpu.conv import dispatch, packed
from nbconv.kernels.cpu.conv import plan as planning
from nbconv.kernels.cpu.conv.plan import Convolution, choose_prepared, plan, prepared_plan
from nbconv.kernels.cpu.threads import parallel_parts
from tests import reference
from tests.kernels.cpu.conv.algorithm_check import check, random_case

# (N, C, H, W, D, kernel, stride, padding, dilation, groups): channels on and off the panel of 6, positions on
# and off the sub-block of 16 (H*W odd, one position, a last sub-block of 8 or fewer and of 9-15), strides 1-3
CASES = [
    (1, 5, 3, 5, 7, 1, 1, 0, 1, 1),        # 15 positions: one narrow and one wide sub-block
    (2, 13, 7, 7, 17, 1, 1, 0, 1, 1),      # 49 positions: 3 full sub-blocks and one of 1
    (3, 9, 9, 7, 13, 1, 2, 0, 1, 1),       # stride 2: 5 x 4 outputs
    (1, 70, 5, 9, 67, 1, 1, 0, 1, 1),
    (2, 19, 1, 1, 6, 1, 1, 0, 1, 1),       # one position, one full panel
    (1, 3, 11, 13, 1, 1, 3, 0, 1, 1),      # stride 3, one output channel
    (2, 4, 8, 9, 5, 1, (2, 1), 0, 1, 1),   # different strides along the two axes
    (1, 300, 7, 7, 31, 1, 2, 0, 1, 1),     # more input channels than one depth block (256)
]


@pytest.mark.parametrize("case", CASES)
def test_packed_matches_reference(case, rng):
    check("packed", case, rng, passes=("forward",))


def test_packed_in_float32_matches_reference(rng):
    check("packed", (2, 64, 7, 9, 70, 1, 1, 0, 1, 1), rng, passes=("forward",), dtype=np.float32, tolerance=2e-6)
    check("packed", (1, 33, 9, 9, 64, 1, 2, 0, 1, 1), rng, passes=("forward",), dtype=np.float32, tolerance=2e-6)


def test_blocks_of_positions_and_depth_blocks(monkeypatch, rng):
    """Several blocks of positions an image (a small PACK_BYTES) and several depth blocks (C > 256)."""
    monkeypatch.setattr(packed, "PACK_BYTES", 4096)
    monkeypatch.setattr(packed, "MIN_POSITIONS", 16)
    for case in [(2, 300, 9, 11, 13, 1, 1, 0, 1, 1), (1, 40, 13, 13, 8, 1, 2, 0, 1, 1)]:
        x, w, b, hyper = random_case(case, rng)
        chosen = plan("forward", x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="packed")
        width, blocks, _ = packed.blocking(chosen.convolution, x.itemsize, 1)
        assert blocks > 1 and width < chosen.convolution.output_shape[2] * chosen.convolution.output_shape[3]
        out = np.full(chosen.convolution.output_shape, np.nan)
        dispatch.run_forward(chosen, x, w, b, out)
        expected = reference.conv2d(x, w, b, hyper[0:2], ((0, 0), (0, 0)), (1, 1), 1)
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("group_bytes", [1, 2 * packed.PANEL * 4 * 300, 1 << 30])
def test_panels_summed_in_groups(group_bytes, monkeypatch, rng):
    """Panels summed a group at a time over each sub-block (a group of 1, of 2 with a last partial group, of all
    panels), over two depth blocks (300 channels), with a narrow last sub-block, a partial last panel, the
    residual and ReLU in the epilogue: the reference's values, and the same bits whatever the group."""
    x = rng.standard_normal((1, 300, 5, 5)).astype(np.float32)
    w = (rng.standard_normal((17, 300, 1, 1)) * 0.1).astype(np.float32)
    scale, shift = rng.uniform(0.5, 1.5, 17).astype(np.float32), rng.standard_normal(17).astype(np.float32)
    residual = rng.standard_normal((1, 17, 5, 5)).astype(np.float32)
    monkeypatch.setattr(planning, "PACKED_MOST_POSITIONS", 1 << 30)
    epilogue = (scale, shift, residual, "relu")
    expected = F.scale_shift(F.conv2d(x, w, None), *epilogue)
    planning.prepared_plan(x.shape, w.shape)  # a plan remembered under the default GROUP_BYTES
    monkeypatch.setattr(packed, "GROUP_BYTES", group_bytes)
    group = {1: 1, 1 << 30: 3}.get(group_bytes, 2)
    assert packed.panel_group(300, 17, 4) == group
    chosen = planning.prepared_plan(x.shape, w.shape)
    tile = {buffer.name: buffer.shape for buffer in chosen.buffers}["tile"]
    assert chosen.algorithm == "packed" and tile[1] == group * packed.PANEL * 32  # 25 positions: a block of 32
    got = F._conv2d(x, w, None, 1, 0, 1, 1, prepared={}, epilogue=epilogue)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    monkeypatch.setattr(packed, "GROUP_BYTES", 1)
    np.testing.assert_array_equal(got, F._conv2d(x, w, None, 1, 0, 1, 1, prepared={}, epilogue=epilogue))


@pytest.mark.parametrize("case", [(1, 24, 7, 7, 40, 1, 1, 0, 1, 1), (2, 16, 9, 9, 13, 1, 2, 0, 1, 1),
                                  (1, 20, 28, 28, 64, 1, 1, 0, 1, 1)])
@pytest.mark.parametrize("claimed", [False, True])
def test_results_do_not_depend_on_the_thread_count(case, claimed, monkeypatch):
    """Buffers planned for 1, 2 and 3 threads, run in as many parts: the same values, bit for bit (batch 1
    cuts the panels, batch 2 the images; with CLAIMED_SLICES, 1-2 images of one block each, fewer tasks than
    TASKS_PER_THREAD a thread, have their panels cut into slices that the threads claim, up to 4 a thread)."""
    monkeypatch.setattr(packed, "CLAIMED_SLICES", claimed)
    x, w, b, hyper = random_case(case, np.random.default_rng(7), np.float32)
    results = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(packed, "parallel_parts", lambda span, _, *args, parts=threads: parallel_parts(
            span, parts, *args))
        monkeypatch.setattr(packed, "num_threads", lambda threads=threads: threads)
        chosen = plan("forward", x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="packed", threads=threads)
        out = np.full(chosen.convolution.output_shape, np.nan, np.float32)
        packed.forward(x, w, b, out, dispatch.buffers(chosen), chosen)
        results.append(out)
    panels = -(-w.shape[0] // packed.PANEL)
    slices = min(panels, 8 // case[0]) if claimed else (2 if case[0] == 1 else 1)
    assert packed.blocking(Convolution(x.shape, w.shape, *hyper), 4, 2)[2] == slices
    assert packed.blocking(Convolution(x.shape, w.shape, *hyper), 4, 1)[2] == 1
    for out in results[1:]:
        np.testing.assert_array_equal(out, results[0])


def test_the_buffers_hold_every_read_and_write(rng):
    """On random shapes, the packed input's sub-blocks and the tile's rows that the kernel touches lie inside
    the plan's buffers, whatever the thread count; and the output is written completely."""
    for _ in range(200):
        N, C, H, W, D = rng.integers(1, 4), rng.integers(1, 40), rng.integers(1, 30), rng.integers(1, 30), \
            rng.integers(1, 20)
        stride_h, stride_w, threads = rng.integers(1, 4), rng.integers(1, 4), rng.integers(1, 5)
        convolution = Convolution((N, C, H, W), (D, C, 1, 1), stride_h, stride_w)
        chosen = plan("forward", *convolution[:2], stride_h, stride_w, algorithm="packed", threads=threads)
        sizes = {buffer.name: buffer.shape for buffer in chosen.buffers}
        width, blocks, slices = packed.blocking(convolution, 4, threads)
        P = convolution.output_shape[2] * convolution.output_shape[3]
        assert (blocks - 1) * width < P <= blocks * width
        subs = -(-width // packed.POSITIONS)
        assert sizes["packed_input"][1] >= subs * C * packed.POSITIONS
        assert sizes["tile"][1] >= packed.PANEL * subs * packed.POSITIONS
        assert 1 <= sizes["tile"][0] == sizes["packed_input"][0] <= threads


def test_buffers_are_not_written_past_their_ends(rng):
    """The kernel run on buffers with a margin of NaN after each chunk: the margins stay NaN."""
    x, w, b, hyper = random_case((2, 21, 7, 9, 13, 1, 2, 0, 1, 1), rng, np.float32)
    chosen = plan("forward", x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="packed", threads=2)
    shapes = {buffer.name: buffer.shape for buffer in chosen.buffers}
    margin = 64
    source = np.full((shapes["packed_input"][0], shapes["packed_input"][1] + margin), np.nan, np.float32)
    tile = np.full((shapes["tile"][0], shapes["tile"][1] + margin), np.nan, np.float32)
    out = np.full(chosen.convolution.output_shape, np.nan, np.float32)
    width, _, slices = packed.blocking(chosen.convolution, 4, 2)
    empty = np.empty(0, np.float32)
    packed.conv2d_forward_packed(x, packed.pack_weight(w), b, out, source[:, :shapes["packed_input"][1]],
                                 tile[:, :shapes["tile"][1]], *hyper[:2], width, slices, empty, empty,
                                 np.empty((0, 0, 0), np.float32), 0)
    assert np.isnan(source[:, -margin:]).all() and np.isnan(tile[:, -margin:]).all()
    expected = reference.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), hyper[0:2],
                                ((0, 0), (0, 0)), (1, 1), 1)
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=2e-6 * np.abs(expected).max())


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
@pytest.mark.parametrize("in_registers", [True, False])
def test_prepared_epilogue_matches_convolution_then_scale_shift(stride, activation, in_registers, rng,
                                                                 monkeypatch):
    """Through nn.infer's path (dispatch.conv2d_forward_prepared), finished in registers or through the tile;
    49 and 12 positions, 29 channels: full and partial panels and sub-blocks."""
    monkeypatch.setattr(packed, "REGISTER_EPILOGUE", in_registers)
    monkeypatch.setattr(planning, "PACKED_MOST_POSITIONS", 1 << 30)
    monkeypatch.setattr(planning, "PREPARED_WINDOWS_POINTWISE", False)  # 49 positions: else packed_windows'
    x = rng.standard_normal((2, 23, 7, 7)).astype(np.float32)
    w = rng.standard_normal((29, 23, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(29).astype(np.float32)
    conv = F.conv2d(x, w, bias, stride, 0)
    scale, shift = rng.standard_normal(29).astype(np.float32), rng.standard_normal(29).astype(np.float32)
    residual = rng.standard_normal(conv.shape).astype(np.float32)
    prepared = {}
    for epilogue in [(scale, shift, residual, activation), (scale, None, None, activation),
                     (None, shift, residual, activation), (None, None, None, None)]:
        expected = F.scale_shift(conv, *epilogue)
        for _ in range(2):  # the first call packs the weight, the second reuses it
            got = F._conv2d(x, w, bias, stride, 0, 1, 1, prepared=prepared, epilogue=epilogue)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_array_equal(prepared["packed weight"], packed.pack_weight(w))


def test_infer_packs_each_1x1_weight_once_and_again_after_a_change(rng, monkeypatch):
    from nbconv import models
    monkeypatch.setattr(planning, "PREPARED_WINDOWS_POINTWISE", False)  # 63 positions: else packed_windows'
    model = models.build("conv16k1nobias,bn,relu,conv12k1s2,bn,relu,gap,fc3", (5, 7, 9), seed=0).eval()
    x = rng.standard_normal((2, 5, 7, 9)).astype(np.float32)
    first = nn.infer(model, x)
    np.testing.assert_allclose(first, model.forward(x), rtol=1e-5, atol=1e-5)
    layer = model.layers[0]
    packed_weight = layer._inference_prepared[1]["packed weight"]
    nn.infer(model, x)
    assert layer._inference_prepared[1]["packed weight"] is packed_weight  # kept
    layer.weight.value[3, 2] = 5.0
    layer.weight.mark_changed()
    changed = nn.infer(model, x)
    np.testing.assert_allclose(changed, model.eval().forward(x), rtol=1e-5, atol=1e-5)
    assert not np.allclose(changed, first)
    assert layer._inference_prepared[1]["packed weight"] is not packed_weight


def test_applies_to_the_forward_of_unpadded_ungrouped_1x1_layers_only():
    assert packed.applies("forward", Convolution((1, 4, 5, 5), (8, 4, 1, 1), 2, 2))
    assert not packed.applies("backward_input", Convolution((1, 4, 5, 5), (8, 4, 1, 1)))
    assert not packed.applies("forward", Convolution((1, 4, 5, 5), (8, 4, 3, 3)))
    assert not packed.applies("forward", Convolution((1, 4, 5, 5), (8, 4, 1, 1), 1, 1, 1, 1))
    assert not packed.applies("forward", Convolution((1, 4, 5, 5), (8, 2, 1, 1), groups=2))
    assert plan("forward", (1, 4, 5, 5), (8, 4, 1, 1)).algorithm == "pointwise"  # training keeps BLAS


def test_nn_infer_prefers_it_for_small_maps_only(monkeypatch):
    monkeypatch.setattr(planning, "PREPARED_WINDOWS_POINTWISE", False)  # (packed_windows' share: its own tests)
    assert choose_prepared(Convolution((1, 512, 7, 7), (2048, 512, 1, 1))) == "packed"
    assert choose_prepared(Convolution((8, 1024, 14, 14), (2048, 1024, 1, 1), 2, 2)) == "packed"
    assert choose_prepared(Convolution((1, 256, 14, 14), (1024, 256, 1, 1))) == "pointwise"  # 196 positions
    assert choose_prepared(Convolution((1, 2048, 7, 7), (512, 2048, 1, 1))) == "packed"  # 2048 inputs
    assert choose_prepared(Convolution((1, 4096, 7, 7), (512, 4096, 1, 1))) == "pointwise"  # 4096 inputs
    assert choose_prepared(Convolution((1, 64, 7, 7), (64, 64, 3, 3), padding_h=1, padding_w=1)) == \
        plan("forward", (1, 64, 7, 7), (64, 64, 3, 3), 1, 1, 1, 1).algorithm
    assert prepared_plan((1, 512, 7, 7), (2048, 512, 1, 1)).algorithm == "packed"
    monkeypatch.setattr(planning, "PREPARED_PACKED", False)  # a setting changed at run time is planned afresh
    assert prepared_plan((1, 512, 7, 7), (2048, 512, 1, 1)).algorithm == "pointwise"
