"""NaN and inf propagate exactly as the definition of convolution says, on every algorithm path.

The definition (tests/reference.py, float64): the forward pass and the weight gradient multiply the filters
(or output gradients) with the explicitly zero-padded input, every product taken, so an inf or NaN weight
meets the padding's zeros and gives NaN, as PyTorch's direct convolution does; the input gradient adds
grad_output * weight over the (output, tap) pairs whose window covers each input pixel. A NaN or inf
therefore reaches exactly the outputs and gradients whose receptive field contains it.
"""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv.kernels.cpu.conv import dispatch
from nbconv.kernels.cpu.conv.plan import plan
from tests import reference
from tests.test_threads import CONV_CASES

# one case per path, plus 'same' padding (asymmetric), dilation and a wide padding
CASES = CONV_CASES + [
    ((2, 3, 8, 9), (9, 3, 2, 3), dict(padding="same"), "wide"),
    ((2, 3, 8, 9), (4, 3, 2, 3), dict(padding="same"), "flat"),
    ((2, 16, 7, 8), (16, 16, 2, 2), dict(padding="same"), "shift"),
    ((1, 3, 9, 8), (9, 3, 3, 2), dict(padding=2, dilation=2), "wide"),
    ((1, 3, 9, 8), (2, 3, 3, 2), dict(padding=2, dilation=2), "flat"),
    ((1, 3, 5, 5), (9, 3, 3, 3), dict(padding=1), "strips"),
    ((1, 4, 6, 6), (4, 1, 3, 3), dict(padding=2, groups=4), "depthwise3x3"),
    ((2, 4, 7, 9), (6, 2, 3, 3), dict(stride=(2, 1), padding=(3, 1), groups=2), "gemm"),
]
SPECIALS = (np.nan, np.inf, -np.inf)


def _padding(weight_shape, hyper):
    padding = hyper.get("padding", 0)
    dilation = hyper.get("dilation", 1)
    if padding == "same":
        totals = [dilation * (k - 1) for k in weight_shape[2:]]
        return tuple((t // 2, t - t // 2) for t in totals)
    padding = padding if isinstance(padding, tuple) else (padding, padding)
    return ((padding[0],) * 2, (padding[1],) * 2)


def _reference_hyper(weight_shape, hyper):
    pair = lambda value: value if isinstance(value, tuple) else (value, value)  # noqa: E731
    return dict(stride=pair(hyper.get("stride", 1)), padding=_padding(weight_shape, hyper),
                dilation=pair(hyper.get("dilation", 1)), groups=hyper.get("groups", 1))


def _assert_matches(got, expected, what):
    """Same NaN positions, same infinities (with sign), finite values close: within 2e-4, or 1e-5 of the largest
    finite value where that is more (a float32 sum of 128 x 9 products by Winograd F(4x4, 3x3) is off by a
    few 1e-6 of the largest output: README.md, benchmarks/NOTES.md section 63)."""
    got = np.asarray(got, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f"{what}: NaN positions")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(expected), err_msg=f"{what}: +inf positions")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected), err_msg=f"{what}: -inf positions")
    finite = np.isfinite(expected)
    largest = np.abs(expected[finite]).max(initial=0.0)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=2e-4, atol=max(2e-4, 1e-5 * largest), err_msg=what)


def _sprinkle(array, rng, count):
    """Put NaN/inf values at `count` random positions of array (in place)."""
    flat = array.reshape(-1)
    for position in rng.choice(flat.size, size=min(count, flat.size), replace=False):
        flat[position] = SPECIALS[rng.integers(len(SPECIALS))]


@pytest.mark.parametrize("where", ["input", "weight", "grad_output"])
@pytest.mark.parametrize("case", CASES, ids=[f"{case[3]}-{index}" for index, case in enumerate(CASES)])
def test_nonfinite_values_reach_exactly_their_receptive_field(case, where):
    input_shape, weight_shape, hyper, path = case
    rng = np.random.default_rng(abs(hash((where, input_shape, weight_shape))) % 2 ** 32)
    ref_hyper = _reference_hyper(weight_shape, hyper)
    for trial in range(3):
        x = rng.standard_normal(input_shape).astype(np.float32)
        w = rng.standard_normal(weight_shape).astype(np.float32)
        y_shape = F.conv2d(x, w, **hyper).shape
        grad_y = rng.standard_normal(y_shape).astype(np.float32)
        _sprinkle({"input": x, "weight": w, "grad_output": grad_y}[where], rng, 1 + trial)
        with np.errstate(invalid="ignore", over="ignore"):
            expected_y = reference.conv2d(x, w, **ref_hyper)
        expected_grad_x = reference.conv2d_backward_input(grad_y, w, x.shape, **ref_hyper)
        expected_grad_w = reference.conv2d_backward_weight(grad_y, x, w.shape, **ref_hyper)
        grad_x, grad_w, _ = F.conv2d_backward(grad_y, x, w, **hyper)
        label = f"{path} {hyper} trial {trial}, specials in {where}"
        _assert_matches(F.conv2d(x, w, **hyper), expected_y, f"output, {label}")
        _assert_matches(grad_x, expected_grad_x, f"grad_input, {label}")
        _assert_matches(grad_w, expected_grad_w, f"grad_weight, {label}")


PASSES = ("forward", "backward_input", "backward_weight")
EXACT_CASES = [case for case in CASES if any(dispatch.exact_pass(pass_, case[3]) for pass_ in PASSES)]


@pytest.mark.parametrize("where", ["input", "grad_output"])
@pytest.mark.parametrize("case", EXACT_CASES, ids=[f"{case[3]}-{index}" for index, case in enumerate(EXACT_CASES)])
def test_exact_algorithms_give_the_definition_without_recomputing(case, where, monkeypatch):
    """The exact passes (gemm, pointwise, subsampled, depthwise3x3, lanes, row_lanes, ..., flat's forward) with a finite
    weight: NaN and inf in the data reach exactly their receptive field straight from the algorithm, the
    definition's loop nests never called for a pass the plan gives one of them."""
    def recompute(*args):
        raise AssertionError("recomputed by the definition")
    input_shape, weight_shape, hyper, path = case
    kernel_args = F.conv_geometry(input_shape, weight_shape, hyper.get("stride", 1), hyper.get("padding", 0),
                                  hyper.get("dilation", 1), hyper.get("groups", 1)).kernel_args
    for pass_, name in (("forward", "conv2d_forward_direct"), ("backward_input", "conv2d_backward_input_direct"),
                        ("backward_weight", "conv2d_backward_weight_direct")):
        if dispatch.exact_pass(pass_, plan(pass_, input_shape, weight_shape, *kernel_args, dtype=np.float32).algorithm):
            monkeypatch.setattr(dispatch, name, recompute)
    rng = np.random.default_rng(11)
    ref_hyper = _reference_hyper(weight_shape, hyper)
    x = rng.standard_normal(input_shape).astype(np.float32)
    w = rng.standard_normal(weight_shape).astype(np.float32)
    grad_y = rng.standard_normal(F.conv2d(x, w, **hyper).shape).astype(np.float32)
    _sprinkle({"input": x, "grad_output": grad_y}[where], rng, 3)
    with np.errstate(invalid="ignore", over="ignore"):
        expected_y = reference.conv2d(x, w, **ref_hyper)
    grad_x, grad_w, _ = F.conv2d_backward(grad_y, x, w, **hyper)
    label = f"{path} {hyper}, specials in {where}"
    _assert_matches(F.conv2d(x, w, **hyper), expected_y, f"output, {label}")
    _assert_matches(grad_x, reference.conv2d_backward_input(grad_y, w, x.shape, **ref_hyper), f"grad_input, {label}")
    _assert_matches(grad_w, reference.conv2d_backward_weight(grad_y, x, w.shape, **ref_hyper), f"grad_weight, {label}")


@pytest.mark.parametrize("where", ["input", "weight", "grad_output"])
def test_nonfinite_values_in_the_locally_connected_layer(where):
    rng = np.random.default_rng(7)
    stride, padding = (2, 1), (1, 2)
    for trial in range(3):
        x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
        OH, OW = F.local_conv2d_output_size(x.shape, (3, 2), stride, padding)
        w = rng.standard_normal((OH, OW, 4, 3, 3, 2)).astype(np.float32)
        grad_y = rng.standard_normal((2, 4, OH, OW)).astype(np.float32)
        _sprinkle({"input": x, "weight": w, "grad_output": grad_y}[where], rng, 1 + trial)
        with np.errstate(invalid="ignore", over="ignore"):
            expected_y = reference.local_conv2d(x, w, stride=stride, padding=padding)
        expected_grad_x, expected_grad_w = reference.local_conv2d_backward(grad_y, x, w, stride, padding)
        grad_x, grad_w, _ = F.local_conv2d_backward(grad_y, x, w, stride, padding)
        _assert_matches(F.local_conv2d(x, w, stride=stride, padding=padding), expected_y, f"output, {where}")
        _assert_matches(grad_x, expected_grad_x, f"grad_input, {where}")
        _assert_matches(grad_w, expected_grad_w, f"grad_weight, {where}")


def test_activations_and_pooling_pass_nan_on():
    x = np.array([[[[np.nan, -1.0], [2.0, -np.inf]]]], np.float32)
    assert np.isnan(F.relu(x)[0, 0, 0, 0]) and F.relu(x)[0, 0, 1, 1] == 0
    assert np.isnan(F.leaky_relu(x)[0, 0, 0, 0]) and np.isnan(F.tanh(x)[0, 0, 0, 0])
    assert np.isnan(F.max_pool2d(x, 2)).all() and np.isnan(F.avg_pool2d(x, 2)).all()
    assert F.relu_backward(np.ones_like(x), x)[0, 0, 0, 0] == 0  # the gradient where the input is not > 0


@pytest.mark.parametrize("where", ["input", "weight", "grad_output"])
def test_cuda_kernels_follow_the_same_definition(where):
    """The CUDA twins (under the simulator in CI): convolution and locally connected layer, small shapes."""
    from nbconv import backend
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    grad_y = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)
    _sprinkle({"input": x, "weight": w, "grad_output": grad_y}[where], rng, 2)
    ref_hyper = _reference_hyper(w.shape, dict(padding=1))
    device = [backend.to_device(a) for a in (grad_y, x, w)]
    with np.errstate(invalid="ignore", over="ignore"):
        expected_y = reference.conv2d(x, w, **ref_hyper)
    _assert_matches(backend.to_host(F.conv2d(device[1], device[2], padding=1)), expected_y, f"cuda output, {where}")
    grad_x, grad_w, _ = (backend.to_host(a) for a in F.conv2d_backward(*device, padding=1))
    _assert_matches(grad_x, reference.conv2d_backward_input(grad_y, w, x.shape, **ref_hyper), f"cuda grad_input, {where}")
    _assert_matches(grad_w, reference.conv2d_backward_weight(grad_y, x, w.shape, **ref_hyper), f"cuda grad_weight, {where}")
    local_w = rng.standard_normal((2, 3, 2, 2, 3, 3)).astype(np.float32)
    local_grad_y = rng.standard_normal((1, 2, 2, 3)).astype(np.float32)
    special = {"input": x, "weight": local_w, "grad_output": local_grad_y}[where]
    if where != "input":
        _sprinkle(special, rng, 2)
    hyper = dict(stride=2, padding=1)
    with np.errstate(invalid="ignore", over="ignore"):
        expected_local = reference.local_conv2d(x, local_w, stride=(2, 2), padding=(1, 1))
    got_local = backend.to_host(F.local_conv2d(backend.to_device(x), backend.to_device(local_w), **hyper))
    _assert_matches(got_local, expected_local, f"cuda local output, {where}")
    expected_grads = reference.local_conv2d_backward(local_grad_y, x, local_w, (2, 2), (1, 1))
    got_grads = F.local_conv2d_backward(*(backend.to_device(a) for a in (local_grad_y, x, local_w)), **hyper)
    for got, expected, what in zip(got_grads, expected_grads, ("grad_input", "grad_weight")):
        _assert_matches(backend.to_host(got), expected, f"cuda local {what}, {where}")
