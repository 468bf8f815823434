"""The public CUDA launchers checked against the kernels' contracts (nbconv.kernels.contracts, one table for both
backends), under Numba's simulator: every exported name is checked; a valid call gives the raw launcher's
result; a written array one element short or of another dtype, and a read array one element short, are a
ValueError naming the argument, raised before any launch with every device buffer untouched; the values of
device arrays are not read; and the package's own callers reach the raw launchers."""
import inspect

import numpy as np
import pytest

from nbconv import backend

cuda = pytest.importorskip("numba.cuda")
if not backend.simulated():
    pytest.skip("watches launches through Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)", allow_module_level=True)

import nbconv.kernels.cpu as cpu  # noqa: E402
import nbconv.kernels.cuda as cuda_kernels  # noqa: E402
from nbconv.kernels.contracts import CONTRACTS  # noqa: E402
from nbconv.kernels.cuda import unchecked  # noqa: E402
from tests.kernels.contract_cases import (BUILDERS, MARGIN, SENTINEL, arguments, constrained_axis,  # noqa: E402
                                          one_short)

MAIN_CASES = [case for case in BUILDERS if "[" not in case]


@pytest.fixture
def no_launch(monkeypatch):
    """Any simulated kernel launch fails the test."""
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    def launch(kernel, *args):
        raise AssertionError(f"{kernel.fn.__name__} was launched")
    monkeypatch.setattr(FakeCUDAKernel, "__call__", launch)


def _on_device(values):
    return {key: cuda.to_device(value) if isinstance(value, np.ndarray) else value for key, value in values.items()}


def _on_host(values):
    return {key: value.copy_to_host() for key, value in values.items() if backend.is_device_array(value)}


class DevicePlaced:
    """Device arrays each inside a larger device buffer of SENTINEL values, to tell whether a call wrote anywhere
    in or around them."""

    def __init__(self):
        self.buffers = []

    def __call__(self, array):
        host = np.full(array.size + 2 * MARGIN, SENTINEL, array.dtype)
        host[MARGIN:MARGIN + array.size] = array.reshape(-1)
        buffer = cuda.to_device(host)
        self.buffers.append((buffer, host))
        return buffer[MARGIN:MARGIN + array.size].reshape(array.shape)

    def assert_untouched(self):
        for buffer, before in self.buffers:
            assert buffer.copy_to_host().tobytes() == before.tobytes()


def _refused(name, values, change):
    """Call the public launcher with every array placed on the device in a sentinel buffer, `change` applied to
    the arguments first; return the ValueError's message, checking nothing was written."""
    placed = DevicePlaced()
    values = {key: placed(value) if isinstance(value, np.ndarray) else value
              for key, value in dict(values, **change).items()}
    with pytest.raises(ValueError) as error:
        getattr(cuda_kernels, name)(**values)
    placed.assert_untouched()
    return str(error.value)


def test_every_exported_launcher_is_checked():
    assert set(CONTRACTS) == set(cuda_kernels.__all__) == set(unchecked.__all__) == set(cpu.__all__)
    assert {BUILDERS[case][0] for case in BUILDERS} == set(CONTRACTS)
    for name in cuda_kernels.__all__:
        public, raw = getattr(cuda_kernels, name), getattr(unchecked, name)
        assert public is not raw and public.__wrapped__ is raw and public.__name__ == name
        assert public.contract is CONTRACTS[name]
        assert inspect.signature(public) == inspect.signature(raw)


@pytest.mark.parametrize("case", list(BUILDERS))
def test_every_case_fits_its_contract_on_the_device(case, no_launch):
    name, values = arguments(case, np.float32)
    assert list(values) == list(inspect.signature(getattr(cuda_kernels, name)).parameters), case
    CONTRACTS[name].check(_on_device(values), device=True)


VALID = ["relu_forward", "leaky_relu_backward", "dropout_forward", "add_forward", "cat_forward", "cat_backward",
         "batch_norm_forward", "batch_norm_backward[absent]", "scale_shift_forward", "local_response_norm_forward",
         "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
         "global_avg_pool2d_backward", "adaptive_avg_pool2d_forward", "adaptive_max_pool2d_forward[absent]",
         "adaptive_max_pool2d_backward", "local_conv2d_forward", "softmax_cross_entropy", "sgd_update",
         "adam_update", "sgd_update_flat", "adam_update_flat", "conv2d_forward", "conv2d_backward_input",
         "conv2d_backward_weight", "conv2d_backward_bias", "linear_forward", "linear_relu_backward_input",
         "linear_backward_weight_bias"]


@pytest.mark.parametrize("case", VALID)
def test_a_valid_call_gives_the_raw_launchers_result(case):
    name, values = arguments(case)
    checked = _on_device(values)
    getattr(cuda_kernels, name)(**checked)
    raw = _on_device(values)
    getattr(unchecked, name)(**raw)
    checked, raw = _on_host(checked), _on_host(raw)
    for key in checked:
        np.testing.assert_array_equal(checked[key], raw[key], err_msg=f"{case}: {key}")


@pytest.mark.parametrize("case", ["relu_backward", "cat_forward", "scale_shift_forward", "linear_forward"])
def test_strided_device_arrays_give_the_contiguous_result(case):
    """The checks accept strided device views, read and written, as the kernels index them through their
    strides."""
    name, values = arguments(case, np.float32)
    contiguous = _on_device(values)
    getattr(cuda_kernels, name)(**contiguous)
    strided = {}
    for key, value in values.items():
        if isinstance(value, np.ndarray) and value.size:
            wide = np.zeros(value.shape[:-1] + (2 * value.shape[-1],), value.dtype)
            wide[..., ::2] = value
            value = cuda.to_device(wide)[..., ::2]
        strided[key] = value
    getattr(cuda_kernels, name)(**strided)
    for key, expected in _on_host(contiguous).items():
        np.testing.assert_array_equal(strided[key].copy_to_host(), expected, err_msg=f"{case}: {key}")


WRITTEN = [(name, argument) for name in MAIN_CASES for argument in CONTRACTS[name].written]


@pytest.mark.parametrize("name,argument", WRITTEN, ids=[f"{name}-{argument}" for name, argument in WRITTEN])
def test_a_written_array_that_does_not_fit_is_refused_before_any_launch(name, argument, no_launch):
    _, values = arguments(name)
    array = values[argument]
    assert argument in _refused(name, values, {argument: one_short(array, constrained_axis(name, argument))})
    other = {np.dtype(np.float64): np.float32, np.dtype(np.int64): np.int32}[array.dtype]
    assert _refused(name, values, {argument: np.zeros(array.shape, other)}).startswith(argument)


READ = [(name, argument) for name in MAIN_CASES for argument in CONTRACTS[name].shapes
        if argument not in CONTRACTS[name].written]


@pytest.mark.parametrize("name,argument", READ, ids=[f"{name}-{argument}" for name, argument in READ])
def test_a_read_array_one_element_short_is_named_before_any_launch(name, argument, no_launch):
    _, values = arguments(name)
    short = one_short(values[argument], constrained_axis(name, argument))
    assert argument in _refused(name, values, {argument: short})


BAD = [
    ("conv2d_forward", {"groups": 3}, "weight must be .* groups=3"),
    ("conv2d_forward", {"padding_w": 0}, "output must have OW = 5 for input's W = 6"),
    ("conv2d_backward_input", {"dilation_h": 0}, "dilation_h must be an integer of at least 1"),
    ("conv2d_backward_weight", {"stride_h": 2}, "grad_output must have OH = 3 for input's H = 5"),
    ("max_pool2d_forward", {"stride_w": 2}, "output must have OW = 5 for input's W = 9"),
    ("linear_forward", {"bias": np.zeros(5)}, r"bias must have shape \(4,\)"),
    ("softmax_cross_entropy", {"labels": np.array([0, 1, 7, 2, 3])}, r"labels must lie in \[0, 7\)"),
    ("sgd_update_flat", {"segment_ends": np.array([3, 3, 8, 10])}, "segment_ends must be .* param's length 11"),
    ("relu_forward", {"input": [1.0] * 11}, "input must be a numpy array or a Numba CUDA device array, got list"),
]


@pytest.mark.parametrize("case,change,message", BAD, ids=[f"{case}-{next(iter(change))}" for case, change, _ in BAD])
def test_hyper_parameters_and_host_values_that_do_not_fit_are_named(case, change, message, no_launch):
    """Numpy arrays (which a launch copies to the device and back) have their values read: labels, segment
    ends."""
    name, values = arguments(case)
    values = dict(_on_device(values), **change)
    with pytest.raises(ValueError, match=message):
        getattr(cuda_kernels, name)(**values)


def test_the_values_of_device_arrays_are_not_read(no_launch):
    """Reading them would copy them to the host on every call: only their shape and dtype are checked."""
    name, values = arguments("softmax_cross_entropy")
    values = _on_device(dict(values, labels=np.array([0, 1, 7, 2, 3], np.int64)))
    CONTRACTS[name].check(values, device=True)
    name, values = arguments("adam_update_flat")
    values = _on_device(dict(values, segment_ends=np.array([3, 2, 8, 10], np.int64)))
    CONTRACTS[name].check(values, device=True)
    with pytest.raises(ValueError, match="segment_ends must hold at least one"):  # their shape still is
        CONTRACTS[name].check(dict(values, segment_ends=cuda.device_array(0, np.int64),
                                   segment_decay=cuda.device_array(0)), device=True)


def test_device_arrays_that_share_memory_are_refused(no_launch):
    name, values = arguments("local_response_norm_forward")
    values = _on_device(values)
    with pytest.raises(ValueError, match="output must not share memory with input"):
        cuda_kernels.local_response_norm_forward(**dict(values, output=values["input"]))
    buffer = cuda.device_array(2 * 105 - 1)
    with pytest.raises(ValueError, match="output must not share memory with input"):  # one element in common
        CONTRACTS[name].check(dict(values, input=buffer[:105].reshape(3, 5, 7),
                                   output=buffer[104:].reshape(3, 5, 7)), device=True)
    buffer = cuda.device_array(2 * 105)
    CONTRACTS[name].check(dict(values, input=buffer[:105].reshape(3, 5, 7), output=buffer[105:].reshape(3, 5, 7)),
                          device=True)


def test_the_cpu_kernels_refuse_device_arrays():
    _, values = arguments("relu_forward")
    with pytest.raises(ValueError, match="input must be a numpy array, got FakeCUDAArray"):
        cpu.relu_forward(**dict(values, input=cuda.to_device(values["input"])))


def test_the_packages_own_callers_reach_the_raw_launchers():
    kernels = backend.kernels("cuda")
    for name in ("relu_forward", "conv2d_forward", "batch_norm_forward", "softmax_cross_entropy"):
        assert getattr(kernels, name).__wrapped__ is getattr(unchecked, name)
        assert getattr(cuda_kernels, name).__wrapped__ is getattr(unchecked, name)
