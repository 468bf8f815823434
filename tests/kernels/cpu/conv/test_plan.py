"""conv/plan.py: every (shape class, pass) gets the algorithm the plan documents, and buffers that fit it."""
import numpy as np
import pytest

from nbconv.kernels.cpu.conv import dispatch, plan as planning
from nbconv.kernels.cpu.conv.plan import ALGORITHMS, PASSES, applicable, plan

FORWARD, INPUT, WEIGHT = PASSES

# (shape class, input (N, C, H, W), weight (D, C/groups, KH, KW), (stride, padding, dilation, groups),
#  algorithm per pass: forward, input gradient, weight gradient)
CLASSES = [
    ("depthwise 3x3", (2, 32, 14, 14), (32, 1, 3, 3), (1, 1, 1, 32), ("depthwise3x3",) * 3),
    ("depthwise 3x3, padding 2", (2, 8, 9, 9), (8, 1, 3, 3), (1, 2, 1, 8), ("depthwise3x3",) * 3),
    ("depthwise 3x3, padding 3", (2, 8, 9, 9), (8, 1, 3, 3), (1, 3, 1, 8), ("direct",) * 3),
    ("depthwise 3x3, strided", (2, 32, 14, 14), (32, 1, 3, 3), (2, 1, 1, 32), ("direct",) * 3),
    ("depthwise 5x5", (2, 32, 14, 14), (32, 1, 5, 5), (1, 2, 1, 32), ("direct",) * 3),
    ("depthwise, two filters a channel", (2, 8, 9, 9), (16, 1, 3, 3), (1, 1, 1, 8),
     ("depthwise3x3", "direct", "depthwise3x3")),
    ("pointwise 1x1", (2, 64, 14, 14), (128, 64, 1, 1), (1, 0, 1, 1), ("pointwise", "pointwise", "pointwise_weight")),
    ("pointwise 1x1, grouped", (2, 64, 14, 14), (64, 16, 1, 1), (1, 0, 1, 4),
     ("pointwise", "pointwise", "pointwise_weight")),
    ("pointwise 1x1, 28 wide", (2, 64, 28, 28), (128, 64, 1, 1), (1, 0, 1, 1),
     ("pointwise", "pointwise_tiles", "pointwise")),
    ("pointwise 1x1, 28 wide, fewer outputs", (2, 64, 28, 28), (32, 64, 1, 1), (1, 0, 1, 1),
     ("pointwise_tiles", "pointwise_tiles", "pointwise")),
    ("1x1, strided", (2, 64, 14, 14), (128, 64, 1, 1), (2, 0, 1, 1), ("subsampled",) * 3),
    ("1x1, strided, grouped", (2, 64, 14, 14), (128, 16, 1, 1), (2, 0, 1, 4), ("subsampled",) * 3),
    ("1x1, strided and padded", (2, 64, 14, 14), (128, 64, 1, 1), (2, 1, 1, 1), ("gemm",) * 3),
    ("1x1, padded", (2, 64, 14, 14), (128, 64, 1, 1), (1, 1, 1, 1), ("shift", "shift", "wide")),
    ("3x3, strided", (2, 64, 28, 28), (128, 64, 3, 3), (2, 1, 1, 1), ("gemm",) * 3),
    ("7x7 stem, strided", (2, 3, 32, 32), (64, 3, 7, 7), (2, 3, 1, 1), ("gemm",) * 3),
    ("Winograd, 64 channels 14 wide", (2, 64, 14, 14), (64, 64, 3, 3), (1, 1, 1, 1), ("winograd", "winograd", "winograd4_weight")),
    ("Winograd, 32 channels 28 wide", (2, 32, 28, 28), (32, 32, 3, 3), (1, 1, 1, 1), ("winograd", "winograd", "winograd4_weight")),
    ("Winograd, padding 3", (2, 64, 14, 14), (64, 64, 3, 3), (1, 3, 1, 1), ("winograd", "shift", "winograd4_weight")),
    ("Winograd F(4x4), 128 channels 7 wide", (2, 128, 7, 7), (128, 128, 3, 3), (1, 1, 1, 1),
     ("winograd4", "winograd4", "winograd4_weight")),
    ("Winograd F(4x4), 64 channels 56 wide", (2, 64, 56, 56), (64, 64, 3, 3), (1, 1, 1, 1),
     ("winograd4", "winograd4", "winograd4_weight")),
    ("Winograd, 64 channels 28 wide: F(2x2)", (2, 64, 28, 28), (64, 64, 3, 3), (1, 1, 1, 1),
     ("winograd", "winograd", "winograd4_weight")),
    ("Winograd, 512 channels 4 wide: F(2x2)", (2, 512, 4, 4), (512, 512, 3, 3), (1, 1, 1, 1),
     ("winograd", "winograd", "winograd4_weight")),
    ("Winograd F(4x4), padding 3", (2, 128, 14, 14), (128, 128, 3, 3), (1, 3, 1, 1),
     ("winograd4", "shift", "winograd4_weight")),
    ("3x3, 64 channels 7 wide: lanes", (2, 64, 7, 7), (64, 64, 3, 3), (1, 1, 1, 1), ("lanes",) * 3),
    ("3x3, 64 channels 8 wide (ResNet-20)", (2, 64, 8, 8), (64, 64, 3, 3), (1, 1, 1, 1), ("lanes",) * 3),
    ("3x3, 32 channels 14 wide: lanes", (2, 32, 14, 14), (32, 32, 3, 3), (1, 1, 1, 1), ("lanes",) * 3),
    ("3x3, 32 channels 16 wide (ResNet-20)", (2, 32, 16, 16), (32, 32, 3, 3), (1, 1, 1, 1), ("lanes",) * 3),
    ("3x3, 16 channels 32 wide (ResNet-20)", (2, 16, 32, 32), (16, 16, 3, 3), (1, 1, 1, 1), ("lanes",) * 3),
    ("3x3, 3 -> 16 channels 32 wide (ResNet-20's first)", (2, 3, 32, 32), (16, 3, 3, 3), (1, 1, 1, 1), ("lanes",) * 3),
    ("3x3, 2 -> 16 channels: too few taps", (2, 2, 32, 32), (16, 2, 3, 3), (1, 1, 1, 1), ("wide",) * 3),
    ("3x3, 32 channels 17 wide", (2, 32, 17, 17), (32, 32, 3, 3), (1, 1, 1, 1), ("lanes",) * 3),
    ("3x3, 16 channels 33 wide: too wide for lanes", (2, 16, 33, 33), (16, 16, 3, 3), (1, 1, 1, 1), ("shift", "shift", "shift")),
    ("3x3 strided, 16 -> 32 channels (ResNet-20)", (2, 16, 32, 32), (32, 16, 3, 3), (2, 1, 1, 1), ("lanes",) * 3),
    ("3x3 strided, 32 -> 64 channels 8 wide", (2, 32, 16, 16), (64, 32, 3, 3), (2, 1, 1, 1), ("lanes",) * 3),
    ("3x3 strided, 16 -> 32 channels 17 wide", (2, 16, 34, 34), (32, 16, 3, 3), (2, 1, 1, 1), ("lanes",) * 3),
    ("3x3, 16 channels: too few for Winograd", (2, 16, 56, 56), (16, 16, 3, 3), (1, 1, 1, 1), ("shift",) * 3),
    ("3x3 dilated, 32 channels", (2, 32, 28, 28), (32, 32, 3, 3), (1, 2, 2, 1), ("shift",) * 3),
    ("3x3 grouped, 64 a group", (2, 128, 14, 14), (128, 64, 3, 3), (1, 1, 1, 2), ("shift", "shift", "wide")),
    ("3x3 grouped, 16 a group", (2, 32, 8, 8), (32, 16, 3, 3), (1, 1, 1, 2), ("shift",) * 3),
    ("3x3 grouped, 8 a group", (2, 16, 8, 8), (16, 8, 3, 3), (1, 1, 1, 2), ("wide",) * 3),
    ("5x5, 6 channels (LeNet-5)", (2, 6, 14, 14), (16, 6, 5, 5), (1, 0, 1, 1), ("lanes", "row_lanes", "lanes")),
    ("5x5, 6 -> 32 channels: more than LANES_LARGE_CHANNELS", (2, 6, 14, 14), (32, 6, 5, 5), (1, 0, 1, 1),
     ("strips",) * 3),
    ("5x5, 1 -> 6 channels (LeNet-5's first layer)", (2, 1, 28, 28), (6, 1, 5, 5), (1, 2, 1, 1),
     ("flat", "wide", "flat")),
    ("3x3 dilated, 8 -> 8 channels: 72 taps", (2, 8, 9, 9), (8, 8, 3, 3), (1, 2, 2, 1), ("flat", "strips", "flat")),
    ("3x3, 8 -> 4 channels, grouped", (2, 8, 9, 9), (4, 4, 3, 3), (1, 1, 1, 2), ("wide",) * 3),
    ("3x3 from 3 channels, 40 wide", (2, 3, 40, 40), (64, 3, 3, 3), (1, 1, 1, 1), ("wide",) * 3),
]


def _hyper(stride, padding, dilation, groups):
    return (stride, stride, padding, padding, dilation, dilation, groups)


@pytest.mark.parametrize("name,input_shape,weight_shape,hyper,algorithms", CLASSES, ids=[c[0] for c in CLASSES])
def test_every_shape_class_gets_its_documented_algorithm(name, input_shape, weight_shape, hyper, algorithms):
    for pass_, algorithm in zip(PASSES, algorithms):
        chosen = plan(pass_, input_shape, weight_shape, *_hyper(*hyper))
        assert (pass_, chosen.algorithm) == (pass_, algorithm)
        assert chosen.algorithm in applicable(pass_, chosen.convolution)


def test_the_classes_cover_every_algorithm_and_pass():
    covered = {(pass_, algorithms[i]) for *_, algorithms in CLASSES for i, pass_ in enumerate(PASSES)}
    for name in ALGORITHMS:
        if name in ("packed", "packed_windows"):
            continue  # nn.infer's layers with the weight packed once, never choose()'s (test_packed*.py)
        for pass_ in PASSES:
            if (name, pass_) in (("winograd", WEIGHT), ("winograd4", WEIGHT), ("flat", INPUT)) or (
                    name in ("winograd_weight", "winograd4_weight", "pointwise_weight") and pass_ != WEIGHT) or (
                    name == "row_lanes" and pass_ != INPUT) or (name, pass_) == ("pointwise_tiles", WEIGHT):
                continue  # Winograd's and pointwise_weight's weight gradients are algorithms of their own; no flat
                # input gradient;
                # row_lanes is an input gradient only; pointwise_tiles a forward pass and input gradient
            if (name, pass_) == ("winograd_weight", WEIGHT):
                continue  # only below WINOGRAD4_WEIGHT_CHANNELS, which no Winograd layer is by default (below)
            assert (pass_, name) in covered


def test_winograd_thresholds_at_their_boundaries(monkeypatch):
    """Winograd from WINOGRAD_CHANNELS channels and channels x output width >= WINOGRAD_WORK."""
    monkeypatch.setattr(planning, "LANES_WIDEST", 0)  # the rules below lanes'
    channels, work = planning.WINOGRAD_CHANNELS, planning.WINOGRAD_WORK
    width = -(-work // channels)  # the narrowest output that qualifies
    at = plan(FORWARD, (1, channels, width, width), (channels, channels, 3, 3), 1, 1, 1, 1)
    narrower = plan(FORWARD, (1, channels, width - 1, width - 1), (channels, channels, 3, 3), 1, 1, 1, 1)
    fewer = plan(FORWARD, (1, channels - 1, 64, 64), (channels - 1, channels - 1, 3, 3), 1, 1, 1, 1)
    assert (at.algorithm, narrower.algorithm, fewer.algorithm) == ("winograd", "shift", "shift")


def test_winograd_weight_gradient_threshold_at_its_boundary(monkeypatch):
    """The Winograd layers' weight gradient by F(4x4) from WINOGRAD4_WEIGHT_CHANNELS channels, F(2x2) below."""
    monkeypatch.setattr(planning, "WINOGRAD4_WEIGHT_CHANNELS", 64)
    at = plan(WEIGHT, (2, 64, 28, 28), (64, 64, 3, 3), 1, 1, 1, 1)
    fewer = plan(WEIGHT, (2, 63, 28, 28), (64, 63, 3, 3), 1, 1, 1, 1)
    assert (at.algorithm, fewer.algorithm) == ("winograd4_weight", "winograd_weight")


def test_strips_threshold_at_its_boundary(monkeypatch):
    """strips once the padded width reaches STRIPS_WASTE output widths."""
    monkeypatch.setattr(planning, "LANES_WIDEST", 0)  # the rules below lanes'
    for width in range(3, 40):
        out_w = width + 2 - 2  # 3x3, padding 1
        expected = "strips" if width + 2 >= planning.STRIPS_WASTE * out_w else "wide"
        for pass_ in PASSES:
            assert plan(pass_, (1, 4, width, width), (16, 4, 3, 3), 1, 1, 1, 1).algorithm == expected


def test_strips_for_narrow_layers_at_their_boundaries(monkeypatch):
    """3x3 layers short of Winograd with SHIFT_CHANNELS or more: strips up to STRIPS_NARROW output columns, the
    weight gradient up to STRIPS_NARROW_WEIGHT; not for fewer channels, groups or dilation."""
    monkeypatch.setattr(planning, "LANES_WIDEST", 0)  # the rules below lanes'
    channels = planning.SHIFT_CHANNELS
    for pass_, limit in ((FORWARD, planning.STRIPS_NARROW), (INPUT, planning.STRIPS_NARROW),
                         (WEIGHT, planning.STRIPS_NARROW_WEIGHT)):
        at = plan(pass_, (1, channels, limit, limit), (channels, channels, 3, 3), 1, 1, 1, 1)
        wider = plan(pass_, (1, channels, limit + 1, limit + 1), (channels, channels, 3, 3), 1, 1, 1, 1)
        assert (at.algorithm, wider.algorithm) == ("strips", "shift"), pass_
        assert plan(pass_, (1, channels, 8, 8), (channels, channels, 3, 3), *_hyper(1, 2, 2, 1)).algorithm == "shift"
        assert plan(pass_, (1, 2 * channels, 8, 8), (2 * channels, channels, 3, 3),
                    *_hyper(1, 1, 1, 2)).algorithm == "shift"
        assert plan(pass_, (1, channels - 1, 8, 8), (channels, channels - 1, 3, 3),
                    *_hyper(1, 1, 1, 1)).algorithm == "wide"


def test_shift_thresholds_at_their_boundaries(monkeypatch):
    monkeypatch.setattr(planning, "LANES_WIDEST", 0)  # the rules below lanes'
    monkeypatch.setattr(planning, "STRIPS_NARROW", 0)  # the rules below it, for the narrow layers of this test
    monkeypatch.setattr(planning, "STRIPS_NARROW_WEIGHT", 0)
    shift, shift_weight = planning.SHIFT_CHANNELS, planning.SHIFT_WEIGHT_CHANNELS
    assert plan(FORWARD, (1, shift, 8, 8), (shift, shift, 3, 3), 1, 1, 1, 1).algorithm == "shift"
    assert plan(FORWARD, (1, shift - 1, 8, 8), (shift, shift - 1, 3, 3), 1, 1, 1, 1).algorithm == "wide"
    assert plan(FORWARD, (1, 64, 8, 8), (shift - 1, 64, 3, 3), 1, 1, 1, 1).algorithm == "wide"  # few outputs
    narrow = (1, 64, 7, 7)  # too narrow for Winograd
    assert plan(WEIGHT, narrow, (shift_weight, 64, 3, 3), 1, 1, 1, 1).algorithm == "shift"
    assert plan(WEIGHT, narrow, (shift_weight + 1, 64, 3, 3), 1, 1, 1, 1).algorithm == "wide"
    assert plan(WEIGHT, (1, 64, 4, 4), (shift_weight + 1, 64, 3, 3), 1, 1, 1, 1).algorithm == "strips"  # 6 / 4


def test_lanes_for_narrow_outputs_at_its_boundary(monkeypatch):
    """Among the narrow 3x3 layers, 'lanes' for outputs up to LANES_WIDEST wide, every pass, stride 1 and 2 (as
    set, every such layer); wider, or with LANES_WIDEST = 0, the rules below it (strips at 8 wide, gemm for
    stride 2)."""
    monkeypatch.setattr(planning, "LANES_WIDEST", 16)
    limit = planning.LANES_WIDEST
    for stride in (1, 2):
        at = (1, 32, limit * stride, limit * stride)
        wider = (1, 32, (limit + 1) * stride, (limit + 1) * stride)
        for pass_ in PASSES:
            assert plan(pass_, at, (32, 32, 3, 3), stride, stride, 1, 1).algorithm == "lanes"
            assert plan(pass_, wider, (32, 32, 3, 3), stride, stride, 1, 1).algorithm != "lanes"
    monkeypatch.setattr(planning, "LANES_WIDEST", 0)
    assert [plan(pass_, (1, 64, 8, 8), (64, 64, 3, 3), 1, 1, 1, 1).algorithm for pass_ in PASSES] == \
        ["strips", "strips", "strips"]
    assert [plan(pass_, (1, 32, 16, 16), (64, 32, 3, 3), 2, 2, 1, 1).algorithm for pass_ in PASSES] == \
        ["gemm", "gemm", "gemm"]


def test_thresholds_are_read_at_each_call(monkeypatch):
    monkeypatch.setattr(planning, "WINOGRAD_CHANNELS", 16)
    monkeypatch.setattr(planning, "WINOGRAD_WORK", 0)
    assert plan(FORWARD, (2, 16, 8, 8), (16, 16, 3, 3), 1, 1, 1, 1).algorithm == "winograd"


def test_applicable_lists_what_can_run():
    strided = planning.Convolution((2, 8, 9, 9), (4, 8, 3, 3), 2, 2, 1, 1)
    assert applicable(FORWARD, strided) == ["direct", "gemm", "lanes", "packed_windows"]
    depthwise = planning.Convolution((2, 8, 9, 9), (8, 1, 3, 3), 1, 1, 1, 1, 1, 1, 8)
    assert applicable(WEIGHT, depthwise) == ["depthwise3x3", "direct", "shift", "wide", "strips", "gemm"]
    layer = planning.Convolution((2, 8, 9, 9), (4, 8, 3, 3), 1, 1, 1, 1)
    assert applicable(INPUT, layer) == ["direct", "winograd", "winograd4", "shift", "wide", "strips", "gemm", "lanes",
                                        "row_lanes"]
    assert applicable(WEIGHT, layer) == ["direct", "winograd_weight", "winograd4_weight", "shift", "flat", "wide",
                                         "strips", "gemm", "lanes"]


def test_bad_requests_are_value_errors():
    with pytest.raises(ValueError, match="pass_ must be one of"):
        plan("sideways", (1, 1, 5, 5), (1, 1, 3, 3))
    with pytest.raises(ValueError, match="algorithm must be one of"):
        plan(FORWARD, (1, 1, 5, 5), (1, 1, 3, 3), algorithm="fft")
    with pytest.raises(ValueError, match="does not apply"):
        plan(FORWARD, (1, 1, 5, 5), (1, 1, 3, 3), 2, 2, algorithm="shift")


@pytest.mark.parametrize("name,input_shape,weight_shape,hyper,algorithms", CLASSES, ids=[c[0] for c in CLASSES])
def test_buffers_are_named_sized_and_counted_in_bytes(name, input_shape, weight_shape, hyper, algorithms):
    for pass_ in PASSES:
        chosen = plan(pass_, input_shape, weight_shape, *_hyper(*hyper), dtype=np.float64, threads=3)
        names = [buffer.name for buffer in chosen.buffers]
        assert len(set(names)) == len(names)
        slots = [buffer.slot for buffer in chosen.buffers]
        assert len(set(slots)) == len(slots)  # a plan never hands out one scratch slot twice
        assert all(min(buffer.shape) >= 1 and buffer.dtype == np.float64 for buffer in chosen.buffers)
        assert chosen.nbytes == sum(8 * int(np.prod(buffer.shape)) for buffer in chosen.buffers)
        assert (chosen.nbytes == 0) == (chosen.algorithm == "direct")


def test_the_public_kernels_run_what_the_plan_says(monkeypatch, rng):
    ran = []

    def recording(pass_, original):
        def run(*args):
            ran.append((pass_, args[-1].algorithm))  # the last argument is the plan
            return original(*args)
        return run
    for algorithm in ALGORITHMS.values():
        for pass_ in PASSES:
            if hasattr(algorithm.module, pass_):
                monkeypatch.setattr(algorithm.module, pass_, recording(pass_, getattr(algorithm.module, pass_)))
    x = rng.standard_normal((2, 64, 14, 14)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    y = np.empty((2, 64, 14, 14), np.float32)
    hyper = (1, 1, 1, 1, 1, 1, 1)
    dispatch.conv2d_forward(x, w, np.empty(0, np.float32), y, *hyper)
    dispatch.conv2d_backward_input(y, w, np.empty_like(x), *hyper)
    dispatch.conv2d_backward_weight(y, x, np.empty_like(w), *hyper)
    assert ran == [(FORWARD, "winograd"), (INPUT, "winograd"), (WEIGHT, "winograd4_weight")]



def test_flat_thresholds_at_their_boundaries():
    """flat for at most FLAT_CHANNELS output channels and FLAT_TAPS taps a filter, one group, stride 1."""
    channels, taps = planning.FLAT_CHANNELS, planning.FLAT_TAPS
    inputs = taps // 25  # 5x5 filters: the most input channels within FLAT_TAPS
    image = (2, inputs, 12, 12)
    assert plan(FORWARD, image, (channels, inputs, 5, 5), 1, 1, 2, 2).algorithm == "flat"
    assert plan(WEIGHT, image, (channels, inputs, 5, 5), 1, 1, 2, 2).algorithm == "flat"
    assert plan(INPUT, image, (channels, inputs, 5, 5), 1, 1, 2, 2).algorithm == "strips"  # 16 / 12
    assert plan(FORWARD, image, (channels + 1, inputs, 5, 5), 1, 1, 2, 2).algorithm == "strips"  # more outputs
    more_taps = (2, inputs + 1, 12, 12)
    assert plan(FORWARD, more_taps, (channels, inputs + 1, 5, 5), 1, 1, 2, 2).algorithm == "strips"
    assert plan(FORWARD, image, (channels, inputs, 5, 5), 2, 2, 2, 2).algorithm == "gemm"  # strided


def _uppercase_numbers_read(function, seen):
    """(module name, global name) of every upper-case int or float global that `function` reads, following the
    nbconv functions it calls by name (their globals in their own modules)."""
    import types
    if function in seen:
        return set()
    seen.add(function)
    namespace, found, codes = function.__globals__, set(), [function.__code__]
    while codes:
        code = codes.pop()
        codes += [constant for constant in code.co_consts if isinstance(constant, types.CodeType)]
        for name in code.co_names:
            value = namespace.get(name)
            if isinstance(value, types.FunctionType) and value.__module__.startswith("nbconv"):
                found |= _uppercase_numbers_read(value, seen)
            elif name.isupper() and type(value) in (int, float):
                found.add((namespace["__name__"], name))
    return found


def test_every_setting_the_plan_reads_is_part_of_its_key():
    """The choice and every algorithm's buffers read these numbers at plan time: a remembered plan must be
    keyed on each, so that a setting changed at run time is planned afresh."""
    listed = {(module.__name__, name) for module, names in planning.SETTINGS for name in names}
    seen, read = set(), set()
    for function in [planning.choose, planning._worked_out] + [
            getattr(algorithm.module, "buffers") for algorithm in ALGORITHMS.values()] + [
            algorithm.applies for algorithm in ALGORITHMS.values()]:
        read |= _uppercase_numbers_read(function, seen)
    assert ("nbconv.kernels.cpu.conv.blocks", "CACHE_BYTES") in read  # the walk reaches the helpers' settings
    assert read - listed == set()


def test_plans_are_remembered_per_arguments_thread_count_and_settings(monkeypatch):
    args = (INPUT, (2, 6, 14, 14), (24, 6, 5, 5), 1, 1, 0, 0, 1, 1, 1)  # strips
    first = plan(*args)
    assert plan(*args) is first and plan(*args, dtype=np.float32) is first
    batch = (INPUT, (64, 6, 14, 14)) + args[2:]
    assert plan(*batch, threads=1).buffers != plan(*batch, threads=8).buffers  # sized per thread count
    assert plan(*args, dtype=np.float64).buffers[0].dtype == np.float64
    monkeypatch.setattr(planning, "STRIPS_WASTE", float("inf"))  # wide, as before strips existed
    assert plan(*args).algorithm == "wide"
    monkeypatch.setattr(planning, "STRIPS_WASTE", 1.3)
    assert plan(*args) is first
    planning.forget_plans()
    assert plan(*args) == first and plan(*args) is not first


def test_a_failed_plan_is_not_remembered():
    for _ in range(2):
        with pytest.raises(ValueError, match="pass_ must be one of"):
            plan("sideways", (2, 3, 8, 8), (4, 3, 3, 3))
        with pytest.raises(ValueError, match="does not apply"):
            plan(FORWARD, (2, 3, 8, 8), (4, 3, 3, 3), algorithm="pointwise")


def test_buffers_are_the_same_views_until_the_scratch_grows():
    """dispatch hands out a plan's views again while the scratch under them stays; once a buffer grows, the
    views are taken afresh from the new memory (and none keeps the old buffer alive)."""
    from nbconv.kernels.cpu.workspace import release
    release()  # from empty scratch memory, so that the big plan below grows it
    small = plan(FORWARD, (1, 6, 14, 14), (16, 6, 5, 5))
    views = dispatch.buffers(small)
    assert dispatch.buffers(small) is views
    big = plan(FORWARD, (4 * 1024, 6, 14, 14), (16, 6, 5, 5))  # needs more of the same slots
    big_views = dispatch.buffers(big)
    again = dispatch.buffers(small)
    assert again is not views
    for buffer in small.buffers:
        assert again[buffer.name].shape == buffer.shape
        assert np.shares_memory(again[buffer.name], big_views[buffer.name])
    assert len(dispatch._views) <= dispatch.VIEWS_REMEMBERED


def test_lanes_for_large_filters_at_its_boundaries(monkeypatch):
    """lanes for the forward and weight gradient of stride-1 filters over 3 taps both ways with 16 up to
    LANES_LARGE_CHANNELS output channels in whole blocks of 16 and outputs at most LANES_WIDEST wide; row_lanes
    for their input gradient with at most ROW_LANES_MOST_CHANNELS inputs at least 8 wide; strips for every other
    such layer."""
    image = (2, 6, 14, 14)
    assert [plan(p, image, (16, 6, 5, 5)).algorithm for p in PASSES] == ["lanes", "row_lanes", "lanes"]
    assert plan(INPUT, (2, 9, 14, 14), (16, 9, 5, 5)).algorithm == "strips"  # more than 8 inputs
    assert plan(INPUT, (2, 6, 11, 7), (16, 6, 5, 5)).algorithm == "strips"  # inputs 7 wide
    assert plan(INPUT, (2, 6, 11, 8), (16, 6, 5, 5)).algorithm == "row_lanes"  # ... 8 wide
    assert plan(INPUT, (2, 5, 14, 14), (16, 5, 5, 5)).algorithm == "strips"  # fewer inputs than a block
    assert plan(INPUT, image, (24, 6, 5, 5)).algorithm == "strips"  # not lanes' layer
    assert plan(FORWARD, image, (16, 6, 3, 5)).algorithm != "lanes"  # 3 taps one way
    assert plan(FORWARD, image, (24, 6, 5, 5)).algorithm == "strips"  # not whole blocks of 16
    assert plan(FORWARD, image, (16, 6, 5, 5), 2, 2).algorithm == "gemm"  # strided
    assert plan(FORWARD, image, (16, 6, 5, 5), 1, 1, 0, 0, 2, 2).algorithm == "strips"  # dilated
    wide_image = (2, 6, 40, 40)  # 36 outputs a row
    assert plan(FORWARD, wide_image, (16, 6, 5, 5)).algorithm == "wide"  # 40 / 36: wide, not strips
    monkeypatch.setattr(planning, "LANES_LARGE_CHANNELS", 32)
    assert plan(FORWARD, image, (32, 6, 5, 5)).algorithm == "lanes"
    monkeypatch.setattr(planning, "LANES_LARGE_CHANNELS", 0)
    assert plan(FORWARD, image, (16, 6, 5, 5)).algorithm == "strips"
    assert plan(INPUT, image, (16, 6, 5, 5)).algorithm == "strips"
    monkeypatch.setattr(planning, "LANES_LARGE_CHANNELS", 16)
    monkeypatch.setattr(planning, "ROW_LANES_MOST_CHANNELS", 0)
    assert plan(INPUT, image, (16, 6, 5, 5)).algorithm == "strips"
