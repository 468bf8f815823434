"""The public CPU kernels checked against their contracts (nbconv.kernels.contracts): a valid call gives the
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
from nbconv.kernels.contracts import CONTRACTS, SELF_CHECKED
from tests.kernels.contract_cases import BUILDERS, SENTINEL, MARGIN, arguments, constrained_axis, one_short

CASES = [case for case in BUILDERS if BUILDERS[case][0] not in SELF_CHECKED]  # the others check themselves

MAIN_CASES = [case for case in CASES if "[" not in case]


def _arguments(case, dtype=np.float64, seed=0):
    name, values = arguments(case, dtype, seed)
    assert list(values) == list(inspect.signature(getattr(cpu, name)).parameters), case
    return name, values


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


def test_every_public_kernel_is_checked():
    assert set(CONTRACTS) == set(cpu.__all__)
    assert SELF_CHECKED < set(CONTRACTS)
    assert sorted(unchecked.__all__) == sorted(cpu.__all__)
    assert {BUILDERS[case][0] for case in CASES} == set(CONTRACTS) - SELF_CHECKED
    for name in cpu.__all__:
        public = getattr(cpu, name)
        assert public.__name__ == name
        assert (public is getattr(unchecked, name)) == (name in SELF_CHECKED), name
        raw = getattr(unchecked, name)
        assert inspect.signature(public) == inspect.signature(getattr(raw, "py_func", raw)), name


def _results(kernel, arguments):
    kernel(**arguments)
    return {key: value for key, value in arguments.items() if isinstance(value, np.ndarray)}


@pytest.mark.parametrize("case", CASES)
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
    short = one_short(array, constrained_axis(name, argument))
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
    short = one_short(arguments[argument], constrained_axis(name, argument))
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
