"""plan.choose_prepared / prepared_plan: the algorithm of a prepared forward pass (nn.infer), which may differ
from a training pass's: 'packed' (or 'packed_windows') for small-map 1x1 layers (see test_packed.py and
test_packed_windows.py), 'packed_windows' (or 'strips' with it off) for Winograd's 3x3 layers with outputs at
most PREPARED_NARROW_WIDEST wide at batch 1, F(4x4) with its transformed filters kept where choose() gives it;
each checked with its epilogue against the float64 reference, and nn.infer against the training-mode forward."""
import numpy as np
import pytest

from nbconv import models, nn
from nbconv.kernels.cpu.conv import dispatch
from nbconv.kernels.cpu.conv import plan as planning
from nbconv.kernels.cpu.conv.plan import Convolution, choose_prepared, plan, prepared_plan
from tests import reference

RESNET50_3X3 = [((1, 64, 56, 56), 64), ((1, 128, 28, 28), 128), ((1, 256, 14, 14), 256), ((8, 512, 7, 7), 512)]


def test_resnet50s_layers_choices():
    chosen = {input_shape[2]: choose_prepared(Convolution(input_shape, (D, input_shape[1], 3, 3), 1, 1, 1, 1))
              for input_shape, D in RESNET50_3X3}
    assert chosen == {56: "winograd4", 28: "winograd4", 14: "winograd", 7: "winograd4"}
    # at batch 1 the 7-wide layers run packed_windows, the 14-wide F(2x2) (16 tiles); training keeps F(4x4)
    assert choose_prepared(Convolution((1, 512, 7, 7), (512, 512, 3, 3), 1, 1, 1, 1)) == "packed_windows"
    assert choose_prepared(Convolution((2, 256, 14, 14), (256, 256, 3, 3), 1, 1, 1, 1)) == "winograd4"
    assert plan("forward", (1, 256, 14, 14), (256, 256, 3, 3), 1, 1, 1, 1).algorithm == "winograd4"
    assert plan("forward", (1, 512, 7, 7), (512, 512, 3, 3), 1, 1, 1, 1).algorithm == "winograd4"
    assert choose_prepared(Convolution((1, 512, 14, 14), (512, 512, 3, 3), 2, 2, 1, 1)) == "packed_windows"  # stride 2
    assert choose_prepared(Convolution((1, 2048, 7, 7), (512, 2048, 1, 1))) in ("packed", "packed_windows")  # 7x7 1x1:
    # packed_windows with 32-channel panels (AVX-512), else packed (test_packed_windows.py)
    assert choose_prepared(Convolution((1, 4096, 7, 7), (512, 4096, 1, 1))) == "pointwise"  # past the inputs' limit
    assert choose_prepared(Convolution((1, 1024, 14, 14), (256, 1024, 1, 1))) == "pointwise"  # past the positions'


def test_the_setting_is_read_at_plan_time(monkeypatch):
    assert prepared_plan((1, 512, 7, 7), (512, 512, 3, 3), 1, 1, 1, 1).algorithm == "packed_windows"
    monkeypatch.setattr(planning, "PREPARED_PACKED_WINDOWS", False)
    assert prepared_plan((1, 512, 7, 7), (512, 512, 3, 3), 1, 1, 1, 1).algorithm == "strips"
    monkeypatch.setattr(planning, "PREPARED_NARROW_WIDEST", 0)
    assert prepared_plan((1, 512, 7, 7), (512, 512, 3, 3), 1, 1, 1, 1).algorithm == "winograd"  # 4 tiles
    monkeypatch.setattr(planning, "PREPARED_WINOGRAD4_TILES", 4)
    assert prepared_plan((1, 512, 7, 7), (512, 512, 3, 3), 1, 1, 1, 1).algorithm == "winograd4"
    monkeypatch.setattr(planning, "PREPARED_WINOGRAD4", False)
    assert prepared_plan((1, 512, 7, 7), (512, 512, 3, 3), 1, 1, 1, 1).algorithm == "winograd"
    monkeypatch.setattr(planning, "PREPARED_NARROW_WIDEST", 7)
    assert prepared_plan((8, 512, 7, 7), (512, 512, 3, 3), 1, 1, 1, 1).algorithm == "strips"
    monkeypatch.setattr(planning, "PREPARED_WINOGRAD4", True)
    assert prepared_plan((8, 512, 7, 7), (512, 512, 3, 3), 1, 1, 1, 1).algorithm == "winograd4"
    monkeypatch.setattr(planning, "PREPARED_NARROW_MOST_IMAGES", 8)
    assert prepared_plan((8, 512, 7, 7), (512, 512, 3, 3), 1, 1, 1, 1).algorithm == "strips"
    monkeypatch.setattr(planning, "PREPARED_NARROW_WIDEST", 9)
    assert prepared_plan((1, 128, 9, 9), (128, 128, 3, 3), 1, 1, 1, 1).algorithm == "strips"
    monkeypatch.setattr(planning, "PREPARED_PACKED_WINDOWS", True)
    assert prepared_plan((1, 128, 9, 9), (128, 128, 3, 3), 1, 1, 1, 1).algorithm == "packed_windows"


# (N, C, H, W, D, padding): Winograd's layers (min(C, D) >= 32, min(C, D) x output width >= 672) at most 7
# wide, odd sizes, non-square
CASES = [(1, 97, 7, 7, 101, 1), (2, 120, 5, 9, 99, 0), (3, 130, 6, 7, 96, 1), (1, 96, 3, 5, 160, 2)]


@pytest.mark.parametrize("activation", [0, 1, 2])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("windows", [True, False])
def test_prepared_narrow_layers_with_their_epilogue_match_reference(case, activation, windows, rng, monkeypatch):
    monkeypatch.setattr(planning, "PREPARED_NARROW_WIDEST", 9)
    monkeypatch.setattr(planning, "PREPARED_PACKED_WINDOWS", windows)
    N, C, H, W, D, padding = case
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((D, C, 3, 3)) / np.sqrt(9 * C)
    b = rng.standard_normal(D)
    assert choose("forward", x, w, padding) == "winograd"
    assert prepared_plan(x.shape, w.shape, 1, 1, padding, padding, dtype=x.dtype).algorithm == \
        ("packed_windows" if windows else "strips")
    OH, OW = H + 2 * padding - 2, W + 2 * padding - 2
    scale, shift = rng.standard_normal(D), rng.standard_normal(D)
    residual = rng.standard_normal((N, D, OH * OW))
    out = np.full((N, D, OH, OW), np.nan)
    prepared = {}
    for _ in range(2):  # the second call with what the first kept
        dispatch.conv2d_forward_prepared(x, w, b, out, prepared, 1, 1, padding, padding, 1, 1, 1,
                                         (scale, shift, residual, activation))
        expected = reference.conv2d(x, w, b, (1, 1), ((padding, padding),) * 2) * scale[:, None, None] \
            + shift[:, None, None] + residual.reshape(out.shape)
        if activation:
            expected = np.maximum(expected, 0)
        if activation == 2:
            expected = np.minimum(expected, 6)
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


def choose(pass_, x, w, padding):
    return plan(pass_, x.shape, w.shape, 1, 1, padding, padding, dtype=x.dtype).algorithm


@pytest.mark.parametrize("windows", [True, False])
def test_nn_infer_on_narrow_layers_gives_the_training_mode_forward(windows, rng, monkeypatch):
    monkeypatch.setattr(planning, "PREPARED_PACKED_WINDOWS", windows)
    model = models.build("conv96k3p1nobias,bn,relu,res[conv96k3p1nobias,bn,relu,conv96k3p1nobias,bn],relu,gap,fc5",
                         input_shape=(5, 7, 7), seed=2)
    x = rng.standard_normal((3, 5, 7, 7)).astype(np.float32)
    model.train()
    model.forward(x)  # running statistics away from 0 and 1
    model.eval()
    assert prepared_plan((3, 96, 7, 7), (96, 96, 3, 3), 1, 1, 1, 1).algorithm == \
        ("packed_windows" if windows else "strips")
    expected = model.forward(x)
    got = nn.infer(model, x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


# (N, C, H, W, D, padding): layers choose() gives F(4x4) (at least WINOGRAD4_CHANNELS channels, outputs at least
# 7 wide), odd sizes, non-square, one image and several; batch 1 at 7 wide would run packed_windows
WINOGRAD4_CASES = [(1, 129, 9, 11, 131, 1), (2, 128, 7, 7, 133, 1), (3, 130, 10, 9, 128, 0), (1, 133, 13, 8, 129, 2)]


@pytest.fixture(autouse=True)
def every_batch_takes_winograd4(request, monkeypatch):
    """The F(4x4) tests' small layers have fewer tiles than PREPARED_WINOGRAD4_TILES."""
    if "winograd4" in request.node.name:
        monkeypatch.setattr(planning, "PREPARED_WINOGRAD4_TILES", 1)


def test_few_tiles_run_winograd(monkeypatch):
    shapes = (1, 256, 14, 14), (256, 256, 3, 3), 1, 1, 1, 1
    assert prepared_plan(*shapes).algorithm == "winograd"  # 16 tiles
    monkeypatch.setattr(planning, "PREPARED_WINOGRAD4_TILES", 16)
    assert prepared_plan(*shapes).algorithm == "winograd4"


@pytest.mark.parametrize("activation", [0, 1])
@pytest.mark.parametrize("case", WINOGRAD4_CASES)
def test_prepared_winograd4_with_its_epilogue_matches_reference(case, activation, rng):
    N, C, H, W, D, padding = case
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((D, C, 3, 3)) / np.sqrt(9 * C)
    b = rng.standard_normal(D)
    assert choose("forward", x, w, padding) == "winograd4"
    assert prepared_plan(x.shape, w.shape, 1, 1, padding, padding, dtype=x.dtype).algorithm == "winograd4"
    OH, OW = H + 2 * padding - 2, W + 2 * padding - 2
    scale, shift = rng.standard_normal(D), rng.standard_normal(D)
    residual = rng.standard_normal((N, D, OH * OW))
    prepared = {}
    expected = reference.conv2d(x, w, b, (1, 1), ((padding, padding),) * 2) * scale[:, None, None] \
        + shift[:, None, None] + residual.reshape((N, D, OH, OW))
    if activation:
        expected = np.maximum(expected, 0)
    for _ in range(2):  # the second call with the filters the first kept
        out = np.full((N, D, OH, OW), np.nan)
        dispatch.conv2d_forward_prepared(x, w, b, out, prepared, 1, 1, padding, padding, 1, 1, 1,
                                         (scale, shift, residual, activation))
        np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    assert "winograd4 filters" in prepared


def test_prepared_winograd4_non_finite_values_follow_the_definition(rng):
    N, C, H, W, D = 2, 128, 9, 9, 130
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((D, C, 3, 3)) / np.sqrt(9 * C)
    x[1, 5, 0, 0] = np.inf  # reaches the outputs whose windows cover it; by Winograd's transforms, its whole tile
    expected = reference.conv2d(x, w, np.zeros(D), (1, 1), ((1, 1),) * 2)
    out = np.empty((N, D, H, W))
    dispatch.conv2d_forward_prepared(x, w, np.zeros(0), out, {}, 1, 1, 1, 1, 1, 1, 1)
    assert prepared_plan(x.shape, w.shape, 1, 1, 1, 1, dtype=x.dtype).algorithm == "winograd4"
    np.testing.assert_array_equal(np.isfinite(out), np.isfinite(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=1e-10, atol=1e-10 * np.abs(expected[finite]).max())


def test_nn_infer_with_winograd4_gives_the_training_mode_forward(rng):
    model = models.build("conv128k3p1nobias,bn,relu,res[conv128k3p1nobias,bn,relu,conv128k3p1nobias,bn],relu,gap,fc5",
                         input_shape=(5, 9, 9), seed=2)
    x = rng.standard_normal((2, 5, 9, 9)).astype(np.float32)
    model.train()
    model.forward(x)  # running statistics away from 0 and 1
    model.eval()
    assert prepared_plan((2, 128, 9, 9), (128, 128, 3, 3), 1, 1, 1, 1).algorithm == "winograd4"
    expected = model.forward(x)
    got = nn.infer(model, x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))
