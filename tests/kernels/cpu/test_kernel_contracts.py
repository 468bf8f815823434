"""The public CPU kernels checked against their contracts (nbconv.kernels.cpu.contracts): a valid call gives the
raw kernel's result; a written array too small, of another dtype or read-only, a read array too short and a
hyper-parameter out of range are a ValueError naming the argument, with every array untouched; and the
package's own callers reach the raw kernels."""
import inspect
import re

import numpy as np
import pytest

import nbconv.kernels.cpu as cpu
from nbconv import backend
from nbconv.kernels.cpu import unchecked
from nbconv.kernels.cpu.contracts import CONTRACTS, SELF_CHECKED

SENTINEL = -1234.5
MARGIN = 16  # sentinel elements before and after each array


def _flat(rng, dtype, L=11):
    return rng.standard_normal(L).astype(dtype)


def _rows(rng, dtype, shape=(3, 5, 7)):
    return rng.standard_normal(shape).astype(dtype)


def _activation(rng, dtype, backward, **scalars):
    arrays = {"grad_output": _flat(rng, dtype)} if backward else {}
    arrays.update(input=_flat(rng, dtype), **{"grad_input" if backward else "output": np.empty(11, dtype)})
    return {**arrays, **scalars}


def _batch_norm(rng, dtype, forward, relu=False, absent=False):
    C = 5
    channel = (lambda: np.empty(0, dtype)) if absent else (lambda: rng.uniform(0.5, 2, C).astype(dtype))
    if forward:
        arrays = {"input": _rows(rng, dtype), "weight": channel(), "bias": channel(), "running_mean": channel(),
                  "running_var": channel()}
        if relu:
            arrays["residual"] = np.empty((0, 0, 0), dtype) if absent else _rows(rng, dtype)
        return {**arrays, "output": np.empty((3, C, 7), dtype), "mean": np.empty(C, dtype),
                "invstd": np.empty(C, dtype), "momentum": 0.1, "eps": 1e-5, "training": 1}
    arrays = {"grad_output": _rows(rng, dtype)}
    if relu:
        arrays["output"] = _rows(rng, dtype)
    empty_channel = np.empty(0, dtype)
    return {**arrays, "input": _rows(rng, dtype), "weight": channel(), "mean": rng.standard_normal(C).astype(dtype),
            "invstd": rng.uniform(0.5, 2, C).astype(dtype),
            "grad_input": np.empty((0, 0, 0) if absent else (3, C, 7), dtype),
            "grad_weight": empty_channel if absent else np.empty(C, dtype),
            "grad_bias": empty_channel.copy() if absent else np.empty(C, dtype), "training": 1}


def _planes(rng, dtype, shape=(2, 3, 7, 9)):
    return rng.standard_normal(shape).astype(dtype)


# 3x3 windows at stride 1, padding 1: (7, 9) planes stay (7, 9)
POOL = dict(kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, padding_h=1, padding_w=1)
LOCAL = dict(stride_h=1, stride_w=1, padding_h=1, padding_w=1)  # (3, 2) windows over (7, 9) give (7, 10)


def _segments():
    """Four segments of an 11-value buffer, one of them empty; segment_decay is float64 whatever the values'."""
    return {"segment_ends": np.array([3, 3, 8, 11], np.int64), "segment_decay": np.array([0.1, 0.0, 0.2, 0.0])}


BUILDERS = {  # case: (kernel, builder(rng, dtype) -> {parameter: value} in the kernel's order)
    "relu_forward": ("relu_forward", lambda r, t: _activation(r, t, False)),
    "relu_backward": ("relu_backward", lambda r, t: _activation(r, t, True)),
    "relu6_forward": ("relu6_forward", lambda r, t: _activation(r, t, False)),
    "relu6_backward": ("relu6_backward", lambda r, t: _activation(r, t, True)),
    "leaky_relu_forward": ("leaky_relu_forward", lambda r, t: _activation(r, t, False, negative_slope=0.1)),
    "leaky_relu_backward": ("leaky_relu_backward", lambda r, t: _activation(r, t, True, negative_slope=0.1)),
    "sigmoid_forward": ("sigmoid_forward", lambda r, t: _activation(r, t, False)),
    "sigmoid_backward": ("sigmoid_backward", lambda r, t: _activation(r, t, True)),
    "tanh_forward": ("tanh_forward", lambda r, t: _activation(r, t, False)),
    "tanh_backward": ("tanh_backward", lambda r, t: _activation(r, t, True)),
    "add_forward": ("add_forward", lambda r, t: {"input": _flat(r, t), "other": _flat(r, t),
                                                 "output": np.empty(11, t)}),
    "dropout_forward": ("dropout_forward", lambda r, t: {
        "input": _flat(r, t), "noise": r.uniform(0, 1, 11).astype(t), "output": np.empty(11, t),
        "mask": np.empty(11, t), "probability": 0.3}),
    "dropout_backward": ("dropout_backward", lambda r, t: {
        "grad_output": _flat(r, t), "mask": (r.uniform(0, 1, 11) > 0.3).astype(t), "grad_input": np.empty(11, t)}),
    "cat_forward": ("cat_forward", lambda r, t: {"input": _rows(r, t, (3, 4, 5)), "output": np.zeros((3, 11, 5), t),
                                                 "offset": 2}),
    "cat_backward": ("cat_backward", lambda r, t: {"grad_output": _rows(r, t, (3, 11, 5)),
                                                   "grad_input": np.empty((3, 4, 5), t), "offset": 2}),
    "batch_norm_stats": ("batch_norm_stats", lambda r, t: {
        "input": _rows(r, t), "running_mean": _flat(r, t, 5), "running_var": r.uniform(0.5, 2, 5).astype(t),
        "mean": np.empty(5, t), "invstd": np.empty(5, t), "momentum": 0.1, "eps": 1e-5, "training": 1}),
    "batch_norm_forward": ("batch_norm_forward", lambda r, t: _batch_norm(r, t, True)),
    "batch_norm_forward[absent]": ("batch_norm_forward", lambda r, t: _batch_norm(r, t, True, absent=True)),
    "batch_norm_backward": ("batch_norm_backward", lambda r, t: _batch_norm(r, t, False)),
    "batch_norm_backward[absent]": ("batch_norm_backward", lambda r, t: _batch_norm(r, t, False, absent=True)),
    "batch_norm_relu_forward": ("batch_norm_relu_forward", lambda r, t: _batch_norm(r, t, True, relu=True)),
    "batch_norm_relu_forward[absent]": ("batch_norm_relu_forward",
                                        lambda r, t: _batch_norm(r, t, True, relu=True, absent=True)),
    "batch_norm_relu_backward": ("batch_norm_relu_backward", lambda r, t: _batch_norm(r, t, False, relu=True)),
    "scale_shift_forward": ("scale_shift_forward", lambda r, t: {
        "input": _rows(r, t), "scale": _flat(r, t, 5), "shift": _flat(r, t, 5), "residual": _rows(r, t),
        "output": np.empty((3, 5, 7), t), "activation": 1}),
    "scale_shift_forward[absent]": ("scale_shift_forward", lambda r, t: {
        "input": _rows(r, t), "scale": np.empty(0, t), "shift": _flat(r, t, 5), "residual": np.empty((0, 0, 0), t),
        "output": np.empty((3, 5, 7), t), "activation": 2}),
    "local_response_norm_forward": ("local_response_norm_forward", lambda r, t: {
        "input": _rows(r, t), "output": np.empty((3, 5, 7), t), "size": 3, "alpha": 1e-2, "beta": 0.75, "k": 1.0}),
    "local_response_norm_backward": ("local_response_norm_backward", lambda r, t: {
        "grad_output": _rows(r, t), "input": _rows(r, t), "grad_input": np.empty((3, 5, 7), t), "size": 3,
        "alpha": 1e-2, "beta": 0.75, "k": 1.0}),
    "max_pool2d_backward": ("max_pool2d_backward", lambda r, t: {
        "grad_output": _planes(r, t), "indices": r.integers(0, 63, (2, 3, 7, 9)),
        "grad_input": np.empty((2, 3, 7, 9), t), **POOL}),
    "avg_pool2d_forward": ("avg_pool2d_forward", lambda r, t: {
        "input": _planes(r, t), "output": np.empty((2, 3, 7, 9), t),
        **POOL,
        "count_include_pad": 0}),
    "avg_pool2d_backward": ("avg_pool2d_backward", lambda r, t: {
        "grad_output": _planes(r, t), "grad_input": np.empty((2, 3, 7, 9), t),
        **POOL,
        "count_include_pad": 1}),
    "global_avg_pool2d_forward": ("global_avg_pool2d_forward", lambda r, t: {
        "input": _planes(r, t), "output": np.empty((2, 3, 1, 1), t)}),
    "global_avg_pool2d_backward": ("global_avg_pool2d_backward", lambda r, t: {
        "grad_output": _planes(r, t, (2, 3, 1, 1)), "grad_input": np.empty((2, 3, 7, 9), t)}),
    "adaptive_avg_pool2d_forward": ("adaptive_avg_pool2d_forward", lambda r, t: {
        "input": _planes(r, t), "output": np.empty((2, 3, 4, 5), t)}),
    "adaptive_avg_pool2d_backward": ("adaptive_avg_pool2d_backward", lambda r, t: {
        "grad_output": _planes(r, t, (2, 3, 4, 5)), "grad_input": np.empty((2, 3, 7, 9), t)}),
    "adaptive_max_pool2d_forward": ("adaptive_max_pool2d_forward", lambda r, t: {
        "input": _planes(r, t), "output": np.empty((2, 3, 4, 5), t), "indices": np.empty((2, 3, 4, 5), np.int64)}),
    "adaptive_max_pool2d_forward[absent]": ("adaptive_max_pool2d_forward", lambda r, t: {
        "input": _planes(r, t), "output": np.empty((2, 3, 4, 5), t), "indices": np.empty((0, 0, 0, 0), np.int64)}),
    "local_conv2d_forward": ("local_conv2d_forward", lambda r, t: {
        "input": _planes(r, t), "weight": _planes(r, t, (7, 10, 4, 3, 3, 2)), "bias": _planes(r, t, (4, 7, 10)),
        "output": np.empty((2, 4, 7, 10), t), **LOCAL}),
    "local_conv2d_forward[absent]": ("local_conv2d_forward", lambda r, t: {
        "input": _planes(r, t), "weight": _planes(r, t, (7, 10, 4, 3, 3, 2)), "bias": np.empty((0, 0, 0), t),
        "output": np.empty((2, 4, 7, 10), t), **LOCAL}),
    "local_conv2d_backward_input": ("local_conv2d_backward_input", lambda r, t: {
        "grad_output": _planes(r, t, (2, 4, 7, 10)), "weight": _planes(r, t, (7, 10, 4, 3, 3, 2)),
        "grad_input": np.empty((2, 3, 7, 9), t), **LOCAL}),
    "local_conv2d_backward_weight": ("local_conv2d_backward_weight", lambda r, t: {
        "grad_output": _planes(r, t, (2, 4, 7, 10)), "input": _planes(r, t),
        "grad_weight": np.empty((7, 10, 4, 3, 3, 2), t),
        **LOCAL}),
    "local_conv2d_backward_bias": ("local_conv2d_backward_bias", lambda r, t: {
        "grad_output": _planes(r, t, (2, 4, 7, 10)), "grad_bias": np.empty((4, 7, 10), t)}),
    "softmax_cross_entropy": ("softmax_cross_entropy", lambda r, t: {
        "logits": _rows(r, t, (5, 7)), "labels": r.integers(0, 7, 5), "losses": np.empty(5, t),
        "grad_logits": np.empty((5, 7), t)}),
    "sgd_update": ("sgd_update", lambda r, t: {
        "param": _flat(r, t), "grad": _flat(r, t), "velocity": _flat(r, t), "lr": 0.1, "momentum": 0.9,
        "weight_decay": 1e-3, "nesterov": 1}),
    "adam_update": ("adam_update", lambda r, t: {
        "param": _flat(r, t), "grad": _flat(r, t), "exp_avg": _flat(r, t), "exp_avg_sq": np.abs(_flat(r, t)),
        "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2, "step": 3}),
    "sgd_update_flat": ("sgd_update_flat", lambda r, t: {
        "param": _flat(r, t), "grad": _flat(r, t), "velocity": _flat(r, t), **_segments(), "lr": 0.1,
        "momentum": 0.9, "nesterov": 0}),
    "adam_update_flat": ("adam_update_flat", lambda r, t: {
        "param": _flat(r, t), "grad": _flat(r, t), "exp_avg": _flat(r, t), "exp_avg_sq": np.abs(_flat(r, t)),
        **_segments(), "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "step": 3}),
}
MAIN_CASES = [case for case in BUILDERS if "[" not in case]


def _arguments(case, dtype=np.float64, seed=0):
    name, build = BUILDERS[case]
    arguments = build(np.random.default_rng(seed), dtype)
    assert list(arguments) == list(inspect.signature(getattr(cpu, name)).parameters), case
    return name, arguments


class Placed:
    """Arrays each inside a larger buffer of SENTINEL values, to tell whether a call wrote anywhere in or
    around them."""

    def __init__(self):
        self.buffers = []

    def __call__(self, array):
        buffer = np.full(array.size + 2 * MARGIN, SENTINEL, array.dtype)
        view = buffer[MARGIN:MARGIN + array.size].reshape(array.shape)
        view[...] = array
        self.buffers.append((buffer, buffer.copy()))
        return view

    def assert_untouched(self):
        for buffer, before in self.buffers:
            assert buffer.tobytes() == before.tobytes()


def _placed_call(name, arguments, change):
    """Call the public kernel with every array placed in a sentinel buffer, `change` applied to the arguments
    first ({name: value} replaced); return the ValueError's message, checking nothing was written."""
    placed = Placed()
    values = dict(arguments, **change)
    values = {key: placed(value) if isinstance(value, np.ndarray) else value for key, value in values.items()}
    for key, value in change.items():  # read-only views stay read-only once placed
        if isinstance(value, np.ndarray) and not value.flags.writeable:
            values[key].flags.writeable = False
    with pytest.raises(ValueError) as error:
        getattr(cpu, name)(**values)
    placed.assert_untouched()
    return str(error.value)


def _constrained_axis(name, argument):
    """The last axis of `argument` whose size another argument (or a literal) fixes."""
    shapes = CONTRACTS[name].shapes
    shape = shapes[argument][0]
    for axis in reversed(range(len(shape))):
        dim = shape[axis]
        if isinstance(dim, int) or any(dim in other for key, (other, _) in shapes.items() if key != argument):
            return axis
    raise AssertionError(f"{name}: no axis of {argument} is fixed by another argument")


def _one_short(array, axis):
    return np.ascontiguousarray(np.take(array, range(array.shape[axis] - 1), axis=axis))


def test_every_public_kernel_is_checked():
    assert set(CONTRACTS) | SELF_CHECKED == set(cpu.__all__)
    assert not set(CONTRACTS) & SELF_CHECKED
    assert sorted(unchecked.__all__) == sorted(cpu.__all__)
    assert {BUILDERS[case][0] for case in BUILDERS} == set(CONTRACTS)
    for name in cpu.__all__:
        public = getattr(cpu, name)
        assert public.__name__ == name
        assert (public is getattr(unchecked, name)) == (name in SELF_CHECKED), name
        raw = getattr(unchecked, name)
        assert inspect.signature(public) == inspect.signature(getattr(raw, "py_func", raw)), name


def _results(kernel, arguments):
    kernel(**arguments)
    return {key: value for key, value in arguments.items() if isinstance(value, np.ndarray)}


@pytest.mark.parametrize("case", list(BUILDERS))
def test_a_valid_call_gives_the_raw_kernels_result(case):
    name, arguments = _arguments(case)
    checked = _results(getattr(cpu, name), arguments)
    _, again = _arguments(case)
    raw = _results(getattr(unchecked, name), again)
    for key in checked:
        np.testing.assert_array_equal(checked[key], raw[key], err_msg=f"{case}: {key}")
    for key in CONTRACTS[name].written:
        if arguments[key].size:
            assert (checked[key] != SENTINEL).all()


@pytest.mark.parametrize("case", ["relu_backward", "add_forward", "cat_forward", "batch_norm_relu_forward",
                                  "scale_shift_forward", "avg_pool2d_backward", "local_conv2d_backward_bias",
                                  "softmax_cross_entropy", "adam_update_flat"])
def test_strided_arrays_give_the_contiguous_result(case):
    """The checks accept strided views, read and written, as the loops index them through their strides."""
    name, arguments = _arguments(case, np.float32)
    expected = _results(getattr(cpu, name), arguments)
    _, strided = _arguments(case, np.float32)
    for key, value in strided.items():
        if isinstance(value, np.ndarray) and value.size:
            wide = np.zeros(value.shape[:-1] + (2 * value.shape[-1],), value.dtype)
            wide[..., ::2] = value
            strided[key] = wide[..., ::2]
    results = _results(getattr(cpu, name), strided)
    for key in expected:
        np.testing.assert_array_equal(results[key], expected[key], err_msg=f"{case}: {key}")


WRITTEN = [(name, argument) for name in MAIN_CASES for argument in CONTRACTS[name].written]


@pytest.mark.parametrize("name,argument", WRITTEN, ids=[f"{name}-{argument}" for name, argument in WRITTEN])
def test_a_written_array_that_does_not_fit_is_refused_untouched(name, argument):
    _, arguments = _arguments(name)
    array = arguments[argument]
    short = _one_short(array, _constrained_axis(name, argument))
    assert argument in _placed_call(name, arguments, {argument: short})
    other = {np.dtype(np.float64): np.float32, np.dtype(np.int64): np.int32}[array.dtype]
    assert _placed_call(name, arguments, {argument: np.zeros(array.shape, other)}).startswith(argument)
    read_only = array.copy()
    read_only.flags.writeable = False
    assert _placed_call(name, arguments, {argument: read_only}).startswith(f"{argument} must be a writeable array")


READ = [(name, argument) for name in MAIN_CASES for argument in CONTRACTS[name].shapes
        if argument not in CONTRACTS[name].written]


@pytest.mark.parametrize("name,argument", READ, ids=[f"{name}-{argument}" for name, argument in READ])
def test_a_read_array_one_element_short_is_named(name, argument):
    _, arguments = _arguments(name)
    short = _one_short(arguments[argument], _constrained_axis(name, argument))
    assert argument in _placed_call(name, arguments, {argument: short})


BAD_HYPER = [
    ("leaky_relu_forward", {"negative_slope": "0.1"}, "negative_slope must be a real number"),
    ("dropout_forward", {"probability": 1.0}, r"probability must be a real number in \[0.0, 1.0\)"),
    ("cat_forward", {"offset": -1}, "offset must be an integer of at least 0"),
    ("cat_forward", {"offset": 8}, "offset . input's extent must be at most the joined extent 11"),
    ("cat_backward", {"offset": 2.0}, "offset must be an integer"),
    ("batch_norm_forward", {"eps": 0.0}, r"eps must be a real number in \(0.0, inf\]"),
    ("batch_norm_stats", {"momentum": 1.5}, "momentum must be"),
    ("batch_norm_relu_backward", {"training": 2}, "training must be one of 0, 1"),
    ("batch_norm_forward[absent]", {"training": 0}, "running_mean and running_var must be .* when training=0"),
    ("scale_shift_forward", {"activation": 3}, "activation must be one of 0, 1, 2"),
    ("local_response_norm_forward", {"size": 0}, "size must be an integer of at least 1"),
    ("avg_pool2d_forward", {"stride_h": 0}, "stride_h must be an integer of at least 1"),
    ("avg_pool2d_backward", {"kernel_w": 0}, "kernel_w must be an integer of at least 1"),
    ("avg_pool2d_forward", {"padding_w": 2}, "padding_w must be at most half of kernel_w"),
    ("avg_pool2d_forward", {"count_include_pad": 2}, "count_include_pad must be one of 0, 1"),
    ("max_pool2d_backward", {"stride_w": 2}, "grad_output must have OW = 5 for grad_input's W = 9"),
    ("max_pool2d_backward", {"padding_h": -1}, "padding_h must be an integer of at least 0"),
    ("local_conv2d_forward", {"stride_h": 0}, "stride_h must be an integer of at least 1"),
    ("local_conv2d_backward_input", {"padding_w": 0}, "weight must have OW = 8 for W = 9"),
    ("local_conv2d_backward_weight", {"stride_h": 2}, "grad_weight must have OH = 4"),
    ("softmax_cross_entropy", {"labels": np.array([0, 1, 7, 2, 3], np.int64)}, r"labels must lie in \[0, 7\)"),
    ("softmax_cross_entropy", {"labels": np.array([0, -1, 6, 2, 3], np.int64)}, r"labels must lie in \[0, 7\)"),
    ("sgd_update", {"nesterov": 2}, "nesterov must be one of 0, 1"),
    ("adam_update", {"step": 0}, "step must be an integer of at least 1"),
    ("sgd_update_flat", {"segment_ends": np.array([3, 3, 8, 10], np.int64)},
     "segment_ends must be .* param's length 11"),
    ("adam_update_flat", {"segment_ends": np.array([3, 2, 8, 11], np.int64)}, "segment_ends must be non-decreasing"),
    ("relu_forward", {"input": [1.0] * 11}, "input must be a numpy array, got list"),
    ("relu_backward", {"input": np.ones((11, 1))}, r"input must be 1-D"),
    ("add_forward", {"other": np.ones(11, np.int64)}, "other must be float64 like input, got int64"),
    ("sgd_update_flat", {"segment_ends": np.array([3, 3, 8, 11], np.int32)}, "segment_ends must be int64"),
]


@pytest.mark.parametrize("case,change,message", BAD_HYPER, ids=[f"{case}-{next(iter(change))}"
                                                                 for case, change, _ in BAD_HYPER])
def test_bad_hyper_parameters_are_named(case, change, message):
    name, arguments = _arguments(case)
    assert re.search(message, _placed_call(name, arguments, change))


def test_the_packages_own_callers_reach_the_raw_kernels():
    kernels = backend.kernels("cpu")
    for name in ("relu_forward", "dropout_forward", "batch_norm_forward", "softmax_cross_entropy"):
        assert getattr(kernels, name).__wrapped__ is getattr(unchecked, name)
        assert getattr(cpu, name).__wrapped__ is getattr(unchecked, name)
