"""conv/packed_windows.py: convolutions with windows over one pixel and the weight packed once (panels of 32, or
16 without AVX-512, output channels x sub-blocks of 7 (or 6) positions in vector registers, window values read
from a zero-padded copy of the image), any stride, padding and dilation, with the inference epilogue; nn.infer's
choice of it for the layers training runs by im2col ('gemm')."""
import os
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nbconv.functional as F
from nbconv import models, nn
from nbconv.kernels.cpu.conv import dispatch, packed_windows
from nbconv.kernels.cpu.conv import plan as planning
from nbconv.kernels.cpu.conv.plan import Convolution, choose_prepared, plan, prepared_plan
from nbconv.kernels.cpu.threads import parallel_parts
from tests import reference
from tests.kernels.cpu.conv.algorithm_check import check, random_case

# (N, C, H, W, D, kernel, stride, padding, dilation, groups): channels on and off the panel of 16, positions
# on and off the sub-block of 6 or 7, odd sizes, strides 1-4, padding 0-3, dilation, non-square kernels
CASES = [
    (1, 3, 13, 11, 17, 3, 2, 1, 1, 1),          # 7 x 6 outputs: whole sub-blocks of 6 or 7, 17 channels: a panel of 1
    (2, 5, 9, 9, 16, 3, 1, 1, 1, 1),            # stride 1, one full panel
    (1, 3, 23, 21, 29, 7, 2, 3, 1, 1),          # a 7x7 stem
    (3, 4, 11, 12, 33, (3, 5), (2, 3), (1, 2), 1, 1),
    (1, 7, 15, 13, 20, 3, 2, 2, 2, 1),          # dilation 2
    (2, 2, 17, 19, 5, 5, 4, 0, 1, 1),           # stride 4, unpadded, fewer channels than a vector
    (1, 300, 7, 7, 18, 3, 2, 1, 1, 1),          # 2700 taps: several depth blocks of 256
    (1, 6, 3, 3, 9, 3, 2, 1, 1, 1),             # 2 x 2 outputs: one partial sub-block
    (2, 4, 5, 5, 7, 5, 1, 0, 1, 1),             # one position an image
    (1, 300, 7, 7, 40, 1, 1, 0, 1, 1),          # 1x1: 49 positions, several depth blocks
    (2, 33, 14, 13, 37, 1, 2, 0, 1, 1),         # 1x1 stride 2: 7 x 7 outputs
]


@pytest.mark.parametrize("case", CASES)
def test_matches_reference(case, rng):
    check("packed_windows", case, rng, passes=("forward",))


def test_in_float32_matches_reference(rng):
    check("packed_windows", (2, 64, 15, 13, 70, 3, 2, 1, 1, 1), rng, passes=("forward",), dtype=np.float32,
          tolerance=2e-6)
    check("packed_windows", (1, 3, 31, 29, 64, 7, 2, 3, 1, 1), rng, passes=("forward",), dtype=np.float32,
          tolerance=2e-6)


def test_several_blocks_an_image_and_depth_blocks(monkeypatch, rng):
    """Several blocks of positions an image (a small PACK_BYTES), with a short last block, and taps over 256."""
    monkeypatch.setattr(packed_windows, "PACK_BYTES", 4096)
    monkeypatch.setattr(packed_windows, "MIN_POSITIONS", 6)
    for case in [(2, 40, 15, 15, 21, 3, 2, 1, 1, 1), (1, 3, 29, 29, 16, 7, 2, 3, 1, 1)]:
        x, w, b, hyper = random_case(case, rng)
        chosen = plan("forward", x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="packed_windows")
        width, blocks, _ = packed_windows.blocking(chosen.convolution, x.itemsize, 1)
        _, _, OH, OW = chosen.convolution.output_shape
        assert blocks > 1 and (OH * OW) % width
        out = np.full(chosen.convolution.output_shape, np.nan)
        dispatch.run_forward(chosen, x, w, b, out)
        expected = reference.conv2d(x, w, b, hyper[0:2], ((hyper[2],) * 2, (hyper[3],) * 2), (1, 1), 1)
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("case", [(1, 24, 9, 9, 72, 3, 2, 1, 1, 1), (2, 16, 11, 9, 13, 3, 2, 1, 1, 1),
                                  (1, 3, 30, 30, 100, 7, 2, 3, 1, 1)])
@pytest.mark.parametrize("claimed", [False, True])
def test_results_do_not_depend_on_the_thread_count(case, claimed, monkeypatch):
    """Buffers planned for 1, 2 and 3 threads, run in as many parts: the same values, bit for bit (batch 1
    cuts the panels, batch 2 the images; with CLAIMED_SLICES, up to 4 claimed slices a thread)."""
    monkeypatch.setattr(packed_windows, "CLAIMED_SLICES", claimed)
    x, w, b, hyper = random_case(case, np.random.default_rng(7), np.float32)
    results = []
    for threads in (1, 2, 3):
        if threads == 2:  # one image: 2 slices, or with CLAIMED_SLICES as many as its 3-7 panels
            assert (packed_windows.blocking(Convolution(x.shape, w.shape, *hyper), 4, 2)[2] > 2) == (
                claimed and case[0] == 1)
        monkeypatch.setattr(packed_windows, "parallel_parts", lambda span, _, *args, parts=threads: parallel_parts(
            span, parts, *args))
        monkeypatch.setattr(packed_windows, "num_threads", lambda threads=threads: threads)
        chosen = plan("forward", x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="packed_windows",
                      threads=threads)
        out = np.full(chosen.convolution.output_shape, np.nan, np.float32)
        packed_windows.forward(x, w, b, out, dispatch.buffers(chosen), chosen)
        results.append(out)
    for out in results[1:]:
        np.testing.assert_array_equal(out, results[0])


def test_blocks_cover_every_position_and_the_buffers_hold_them(rng):
    """On random shapes: the blocks cover an image's positions, only the last one short; the tile holds a
    block's sub-blocks of 16 channels, the padded buffer the padded image, one of each per chunk."""
    for _ in range(200):
        N, C, H, W, D = (int(v) for v in rng.integers(1, 5, 1).tolist() + rng.integers(1, 40, 4).tolist())
        K, stride, padding = int(rng.integers(2, 6)), int(rng.integers(1, 4)), int(rng.integers(0, 3))
        H, W = max(H, K), max(W, K)
        threads = int(rng.integers(1, 5))
        convolution = Convolution((N, C, H, W), (D, C, K, K), stride, stride, padding, padding)
        chosen = plan("forward", *convolution[:2], *convolution.hyper, algorithm="packed_windows", threads=threads)
        sizes = {buffer.name: buffer.shape for buffer in chosen.buffers}
        width, blocks, slices = packed_windows.blocking(convolution, 8, threads)
        _, _, OH, OW = convolution.output_shape
        assert width % packed_windows.POSITIONS == 0 and (blocks - 1) * width < OH * OW <= blocks * width
        assert sizes["tile"][1] >= packed_windows.PANEL * width
        planned_width = packed_windows.blocking(convolution, 4, threads)[0]  # the plan's float32
        assert sizes["tile"][1] == packed_windows.panel_group(convolution, 4) * packed_windows.PANEL * planned_width
        assert sizes["padded"][1] == C * (H + 2 * padding) * (W + 2 * padding)
        assert 1 <= sizes["tile"][0] == sizes["padded"][0] <= min(threads, N * blocks * slices)


@pytest.mark.parametrize("group", [1, 3])
def test_buffers_are_not_written_past_their_ends(group, monkeypatch, rng):
    """The kernel run on buffers with a margin of NaN after each chunk: the margins stay NaN (one panel at a
    time, and 3 panels summed together: 37 channels, a last group of 1 partial panel)."""
    monkeypatch.setattr(packed_windows, "PANEL_GROUP", group)
    monkeypatch.setattr(packed_windows, "GROUP_IMAGE_BYTES", 0)
    x, w, b, hyper = random_case((2, 21, 9, 11, 37, 3, 2, 1, 1, 1), rng, np.float32)
    chosen = plan("forward", x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="packed_windows", threads=2)
    shapes = {buffer.name: buffer.shape for buffer in chosen.buffers}
    margin = 64
    padded = np.full((shapes["padded"][0], shapes["padded"][1] + margin), np.nan, np.float32)
    tile = np.full((shapes["tile"][0], shapes["tile"][1] + margin), np.nan, np.float32)
    out = np.full(chosen.convolution.output_shape, np.nan, np.float32)
    width, _, slices = packed_windows.blocking(chosen.convolution, 4, 2)
    empty = np.empty(0, np.float32)
    packed_windows.conv2d_forward_windows(x, packed_windows.pack_weight(w), b, out, padded[:, :shapes["padded"][1]],
                                          tile[:, :shapes["tile"][1]], 3, 3, *hyper[:6], width, slices, empty,
                                          empty, np.empty((0, 0, 0), np.float32), 0)
    assert np.isnan(padded[:, -margin:]).all() and np.isnan(tile[:, -margin:]).all()
    expected = reference.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), hyper[0:2],
                                ((1, 1), (1, 1)), (1, 1), 1)
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=2e-6 * np.abs(expected).max())


@pytest.mark.parametrize("case", [(1, 300, 9, 9, 70, 3, 2, 1, 1, 1), (2, 5, 13, 11, 37, 3, 1, 1, 1, 1),
                                  (1, 3, 23, 21, 29, 7, 2, 3, 1, 1), (1, 24, 9, 9, 40, 3, 2, 1, 1, 1)])
@pytest.mark.parametrize("group", [2, 4])
def test_panels_summed_in_groups(case, group, monkeypatch, rng):
    """Panels summed together sub-block by sub-block (panel_group, here for every image size): against the
    float64 definition, and bit for bit the values of one panel at a time, on 1-3 threads (batch 1 cuts the
    panels: slices that are not whole groups), with partial last groups and panels and several DEPTHs."""
    monkeypatch.setattr(packed_windows, "PANEL_GROUP", group)
    monkeypatch.setattr(packed_windows, "GROUP_IMAGE_BYTES", 0)
    check("packed_windows", case, rng, passes=("forward",))
    x, w, b, hyper = random_case(case, np.random.default_rng(5), np.float32)
    results = []
    for grouped in (False, True):
        monkeypatch.setattr(packed_windows, "GROUP_IMAGE_BYTES", 0 if grouped else 1 << 60)
        for threads in (1, 2, 3):
            monkeypatch.setattr(packed_windows, "parallel_parts", lambda span, _, *args, parts=threads:
                                parallel_parts(span, parts, *args))
            monkeypatch.setattr(packed_windows, "num_threads", lambda threads=threads: threads)
            chosen = plan("forward", x.shape, w.shape, *hyper, dtype=x.dtype, algorithm="packed_windows",
                          threads=threads)
            panels = -(-w.shape[0] // packed_windows.PANEL)
            assert packed_windows.panel_group(chosen.convolution, 4) == (min(group, panels) if grouped else 1)
            out = np.full(chosen.convolution.output_shape, np.nan, np.float32)
            packed_windows.forward(x, w, b, out, dispatch.buffers(chosen), chosen)
            results.append(out)
    for out in results[1:]:
        np.testing.assert_array_equal(out, results[0])


def test_panel_group_only_for_large_images():
    """Grouped where the padded image is over GROUP_IMAGE_BYTES (ResNet-50's 128-channel 3x3 stride-2 layer on
    56x56, 1.7 MB), one panel at a time elsewhere (its 256- and 512-channel ones, the stem), at most the panels."""
    def group(C, H, D, kernel, padding):
        return packed_windows.panel_group(Convolution((1, C, H, H), (D, C, kernel, kernel), 2, 2, padding, padding), 4)
    assert group(128, 56, 128, 3, 1) == packed_windows.PANEL_GROUP
    assert group(256, 28, 256, 3, 1) == group(512, 14, 512, 3, 1) == group(3, 224, 64, 7, 3) == 1
    assert group(128, 56, packed_windows.PANEL + 4, 3, 1) == 2  # two panels, the second partial


@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
def test_prepared_epilogue_matches_convolution_then_scale_shift(activation, rng):
    """Through nn.infer's path (dispatch.conv2d_forward_prepared), which chooses it for a strided 3x3 layer:
    bias, scale, shift, residual and activation, 67 channels (a partial panel), 5 x 6 outputs."""
    x = rng.standard_normal((2, 23, 9, 11)).astype(np.float32)
    w = rng.standard_normal((67, 23, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(67).astype(np.float32)
    assert prepared_plan(x.shape, w.shape, 2, 2, 1, 1, dtype=x.dtype).algorithm == "packed_windows"
    conv = F.conv2d(x, w, bias, 2, 1)
    scale, shift = rng.standard_normal(67).astype(np.float32), rng.standard_normal(67).astype(np.float32)
    residual = rng.standard_normal(conv.shape).astype(np.float32)
    prepared = {}
    for epilogue in [(scale, shift, residual, activation), (scale, None, None, activation),
                     (None, shift, residual, activation), (None, None, None, None)]:
        expected = F.scale_shift(conv, *epilogue)
        for _ in range(2):  # the first call packs the weight, the second reuses it
            got = F._conv2d(x, w, bias, 2, 1, 1, 1, prepared=prepared, epilogue=epilogue)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_array_equal(prepared["packed windows weight"], packed_windows.pack_weight(w))


def test_prepared_non_finite_values_follow_the_definition(rng):
    """An inf in the input: the prepared pass gives what the definition gives (NaN where the inf meets a zero
    weight, inf elsewhere), as every other path."""
    x = rng.standard_normal((1, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((18, 4, 3, 3)).astype(np.float32)
    w[5] = 0
    x[0, 1, 4, 4] = np.inf
    got = F._conv2d(x, w, None, 2, 1, 1, 1, prepared={}, epilogue=None)
    with np.errstate(invalid="ignore"):
        expected = reference.conv2d(x.astype(np.float64), w.astype(np.float64), np.zeros(18), (2, 2),
                                    ((1, 1), (1, 1)), (1, 1), 1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    assert np.isnan(got).any() and np.isinf(got).any()


def test_infer_packs_each_weight_once_and_again_after_a_change(rng):
    model = models.build("conv70k3s2p1nobias,bn,relu,conv12k3s2,bn,relu,gap,fc3", (5, 13, 11), seed=0).eval()
    x = rng.standard_normal((2, 5, 13, 11)).astype(np.float32)
    first = nn.infer(model, x)
    np.testing.assert_allclose(first, model.forward(x), rtol=1e-5, atol=1e-5)
    layer = model.layers[0]
    packed_weight = layer._inference_prepared[1]["packed windows weight"]
    nn.infer(model, x)
    assert layer._inference_prepared[1]["packed windows weight"] is packed_weight  # kept
    layer.weight.value[3, 2] = 5.0
    layer.weight.mark_changed()
    changed = nn.infer(model, x)
    np.testing.assert_allclose(changed, model.eval().forward(x), rtol=1e-5, atol=1e-5)
    assert not np.allclose(changed, first)
    assert layer._inference_prepared[1]["packed windows weight"] is not packed_weight


def test_applies_to_the_forward_of_ungrouped_layers_only():
    assert packed_windows.applies("forward", Convolution((1, 4, 9, 9), (8, 4, 3, 3), 2, 2, 1, 1))
    assert packed_windows.applies("forward", Convolution((1, 4, 9, 9), (8, 4, 1, 3)))
    assert packed_windows.applies("forward", Convolution((1, 4, 9, 9), (8, 4, 1, 1), 2, 2))  # where nn.infer asks
    assert not packed_windows.applies("backward_input", Convolution((1, 4, 9, 9), (8, 4, 3, 3), 2, 2))
    assert not packed_windows.applies("forward", Convolution((1, 4, 9, 9), (8, 2, 3, 3), groups=2))
    assert plan("forward", (1, 128, 56, 56), (128, 128, 3, 3), 2, 2, 1, 1).algorithm == "gemm"  # training keeps it


def test_nn_infer_chooses_it_for_gemms_layers_with_windows(monkeypatch):
    stem = Convolution((1, 3, 224, 224), (64, 3, 7, 7), 2, 2, 3, 3)
    assert choose_prepared(stem) == "packed_windows"
    assert choose_prepared(Convolution((8, 256, 28, 28), (256, 256, 3, 3), 2, 2, 1, 1)) == "packed_windows"
    assert choose_prepared(Convolution((1, 256, 56, 56), (512, 256, 1, 1), 2, 2)) == "gemm"  # 1x1 stride 2
    assert choose_prepared(Convolution((1, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, 1)) == "winograd4"  # stride 1: Winograd
    monkeypatch.setattr(planning, "PREPARED_PACKED_WINDOWS", False)  # read at plan time
    assert prepared_plan(*stem[:2], *stem.hyper).algorithm == "gemm"


@pytest.mark.parametrize("activation", [0, 1, 2])
@pytest.mark.parametrize("summed", [False, True])
def test_write_panel_finishes_every_value_as_one_multiply_and_adds(activation, summed, rng):
    """The write-back, eight positions at a time through transposes and one at a time after them, against the
    same operations in numpy float32 (sums * factor + offset, + residual, activation): the same bits, a partial
    last panel and a count that is not a multiple of 8 included; nothing written outside the panel's values."""
    panel = packed_windows.PANEL
    D, P, p0, p1 = 2 * panel + 5, 45, 3, 42  # two full panels and a partial one
    tile = rng.standard_normal(panel * 48).astype(np.float32) * 8
    tile[[5, 40, 4 * panel + 13]] = [np.nan, np.inf, -0.0]
    factors, offsets = rng.standard_normal(D).astype(np.float32), rng.standard_normal(D).astype(np.float32)
    factors[13], offsets[13] = 1.0, -0.0  # position 4, channel 13 is -0: -0 * 1 + -0 stays -0
    residual = rng.standard_normal((2, D, P)).astype(np.float32) if summed else np.empty((0, 0, 0), np.float32)
    scratch = np.empty(panel * 8, np.float32)
    for d0 in (0, panel, 2 * panel):
        output = np.full((2, D, P), 99.0, np.float32)
        packed_windows.write_panel(tile, output, 1, d0, p0, p1, factors, offsets, residual, summed, activation,
                                   scratch)
        channels = min(panel, D - d0)
        sums = tile.reshape(48, panel)[:p1 - p0, :channels].T  # (channels, positions)
        expected = sums * factors[d0:d0 + channels, None] + offsets[d0:d0 + channels, None]
        if summed:
            expected = expected + residual[1, d0:d0 + channels, p0:p1]
        with np.errstate(invalid="ignore"):
            if activation >= 1:
                expected = np.where(expected <= 0, np.float32(0), expected)
            if activation == 2:
                expected = np.where(expected >= 6, np.float32(6), expected)
        written = output[1, d0:d0 + channels, p0:p1]
        np.testing.assert_array_equal(written.view(np.uint32), expected.astype(np.float32).view(np.uint32))
        untouched = np.ones(output.shape, bool)
        untouched[1, d0:d0 + channels, p0:p1] = False
        assert (output[untouched] == 99.0).all()


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="an x86 CPU name")
def test_six_positions_where_the_cpu_has_16_vector_registers(tmp_path):
    """Compiled for an AVX2 CPU (16 vector registers, NUMBA_CPU_NAME=haswell), the micro-kernel sums 16 channels
    (two 256-bit vectors) x 6 positions, not 7 (which spill there); its results against the reference, in a
    process of its own."""
    code = textwrap.dedent("""
        import numpy as np
        from nbconv.kernels.cpu import vectors
        from nbconv.kernels.cpu.conv import packed_windows
        from tests.kernels.cpu.conv.algorithm_check import check
        assert vectors.REGISTERS == 16 and packed_windows.POSITIONS == 6, packed_windows.POSITIONS
        assert vectors.WIDE_LANES == 8 and packed_windows.PANEL == 16, packed_windows.PANEL
        rng = np.random.default_rng(3)
        for case in [(1, 3, 13, 11, 17, 3, 2, 1, 1, 1), (1, 3, 23, 21, 29, 7, 2, 3, 1, 1), (1, 300, 7, 7, 18, 3, 2, 1, 1, 1)]:
            check("packed_windows", case, rng, passes=("forward",))
        print("six positions checked")
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("NUMBA_CPU_FEATURES", None)
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0 and "six positions checked" in result.stdout, result.stderr[-3000:]


def test_1x1_layers_where_its_wide_panels_fit_better(monkeypatch):
    """nn.infer's 1x1 layers on 49 positions (ResNet-50's 7x7 ones, stride 1 and 2) run packed_windows where its
    panels are 32 channels (AVX-512), 'packed' elsewhere: 64 positions fit 'packed''s vectors of 8 exactly,
    and 16-channel panels were slower on such layers."""
    wide = packed_windows.PANEL >= 32
    seven = "packed_windows" if wide else "packed"
    assert choose_prepared(Convolution((1, 512, 7, 7), (2048, 512, 1, 1))) == seven
    assert choose_prepared(Convolution((1, 1024, 14, 14), (2048, 1024, 1, 1), 2, 2)) == seven
    assert choose_prepared(Convolution((1, 2048, 7, 7), (512, 2048, 1, 1))) == seven
    assert choose_prepared(Convolution((1, 256, 8, 8), (1024, 256, 1, 1))) == "packed"  # 64 positions
    assert choose_prepared(Convolution((1, 256, 4, 4), (1024, 256, 1, 1))) == "packed"  # fewer than 49
    assert choose_prepared(Convolution((1, 256, 14, 14), (1024, 256, 1, 1))) == "pointwise"  # larger maps: BLAS
    monkeypatch.setattr(packed_windows, "PANEL", 16)  # AVX2's panels
    assert choose_prepared(Convolution((1, 512, 7, 7), (2048, 512, 1, 1))) == "packed"
    monkeypatch.setattr(packed_windows, "PANEL", 32)
    monkeypatch.setattr(planning, "PREPARED_WINDOWS_POINTWISE", False)
    assert choose_prepared(Convolution((1, 512, 7, 7), (2048, 512, 1, 1))) == "packed"


@pytest.mark.parametrize("stride", [1, 2])
def test_1x1_through_the_prepared_path_with_the_epilogue(stride, rng, monkeypatch):
    """A 1x1 layer on 49 output positions through dispatch.conv2d_forward_prepared, run by packed_windows (as
    with 32-channel panels), with the batch norm's scale and shift, the residual and ReLU: the convolution then
    the epilogue; the weight packed once."""
    monkeypatch.setattr(planning, "_windows_fit_better", lambda positions: positions == 49)
    size = 7 * stride
    x = rng.standard_normal((1, 45, size, size)).astype(np.float32)
    w = rng.standard_normal((70, 45, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(70).astype(np.float32)
    assert prepared_plan(x.shape, w.shape, stride, stride).algorithm == "packed_windows"
    conv = F.conv2d(x, w, bias, stride, 0)
    scale, shift = rng.standard_normal(70).astype(np.float32), rng.standard_normal(70).astype(np.float32)
    residual = rng.standard_normal(conv.shape).astype(np.float32)
    prepared = {}
    for epilogue in [(scale, shift, residual, "relu"), (None, None, None, None)]:
        expected = F.scale_shift(conv, *epilogue)
        for _ in range(2):
            got = F._conv2d(x, w, bias, stride, 0, 1, 1, prepared=prepared, epilogue=epilogue)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_array_equal(prepared["packed windows weight"], packed_windows.pack_weight(w))
