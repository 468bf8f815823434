"""Bad input raises ValueError/TypeError naming the argument and what was expected."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv import backend

X = np.zeros((2, 3, 8, 8), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)


@pytest.mark.parametrize("call,error,words", [
    (lambda: F.conv2d(np.zeros((8, 8), np.float32), W), ValueError, ["input", "(N, C, H, W)"]),
    (lambda: F.conv2d(X, np.zeros((4, 3, 3), np.float32)), ValueError, ["weight", "4-D"]),
    (lambda: F.conv2d(X, np.zeros((4, 2, 3, 3), np.float32)), ValueError, ["weight", "C/groups = 3"]),
    (lambda: F.conv2d(X, np.zeros((4, 3, 11, 3), np.float32), padding=1), ValueError, ["kernel", "larger", "padded"]),
    (lambda: F.conv2d(X, W, stride=0), ValueError, ["stride", ">= 1"]),
    (lambda: F.conv2d(X, W, stride=-2), ValueError, ["stride"]),
    (lambda: F.conv2d(X, W, dilation=(1, 0)), ValueError, ["dilation"]),
    (lambda: F.conv2d(X, W, padding=-1), ValueError, ["padding", ">= 0"]),
    (lambda: F.conv2d(X, W, padding="full"), ValueError, ["padding", "'same'"]),
    (lambda: F.conv2d(X, W, padding="same", stride=2), ValueError, ["same", "stride 1"]),
    (lambda: F.conv2d(X, np.zeros((4, 1, 3, 3), np.float32), groups=2), ValueError, ["groups=2", "divide"]),
    (lambda: F.conv2d(X, W, groups=0), ValueError, ["groups"]),
    (lambda: F.conv2d(X, W, groups=1.5), TypeError, ["groups", "int"]),
    (lambda: F.conv2d(X, W, np.zeros(5, np.float32)), ValueError, ["bias", "(4,)"]),
    (lambda: F.conv2d(X.astype(np.int32), W), TypeError, ["input", "float32 or float64"]),
    (lambda: F.conv2d(X, W.astype(np.float64)), TypeError, ["dtype", "weight is float64"]),
    (lambda: F.conv2d([[1.0]], W), TypeError, ["input", "numpy array"]),
    (lambda: F.conv2d_backward(np.zeros((2, 4, 5, 5), np.float32), X, W), ValueError, ["grad_output", "(2, 4, 6, 6)"]),
    (lambda: F.conv1d(X, W), ValueError, ["input", "(N, C, W)"]),
    (lambda: F.scale_shift(np.zeros(3, np.float32)), ValueError,
     ["input must have layout (N, C, ...) with at least two axes"]),
    (lambda: F.conv2d_backward(np.zeros((4, 5, 5), np.float32), X[0], W), ValueError, ["grad_output", "(4, 6, 6)"]),
    (lambda: F.conv1d_backward(np.zeros((3, 4, 6), np.float32), X[:, :, 0], W[:, :, 0]), ValueError,
     ["grad_output", "(2, 4, 6)"]),
    (lambda: F.conv1d_backward(np.zeros((4, 7), np.float32), X[0, :, 0], W[:, :, 0]), ValueError,
     ["grad_output", "(4, 6)"]),
    (lambda: F.conv1d_backward(np.zeros((2, 4, 1, 6), np.float32), X[:, :, 0], W[:, :, 0]), ValueError,
     ["grad_output", "(2, 4, 6)"]),
    (lambda: F.max_pool2d(X, 0), ValueError, ["kernel_size"]),
    (lambda: F.max_pool2d(X, 2, padding=2), ValueError, ["padding", "half of kernel_size"]),
    (lambda: F.max_pool2d(X, 9), ValueError, ["kernel", "larger"]),
    (lambda: F.avg_pool2d(X, 2, stride=0), ValueError, ["stride"]),
    (lambda: F.conv2d(np.zeros((2, 0, 8, 8), np.float32), np.zeros((4, 0, 3, 3), np.float32)), ValueError,
     ["input", "at least one channel"]),
    (lambda: F.max_pool2d_backward(np.ones((2, 3, 4, 4), np.float32), X, 2, indices=np.zeros((2, 3, 3, 3), np.int64)),
     ValueError, ["indices", "(2, 3, 4, 4)"]),
    (lambda: F.max_pool2d_backward(np.ones((2, 3, 4, 4), np.float32), X, 2,
                                   indices=np.full((2, 3, 4, 4), 64, np.int64)), ValueError, ["indices", "H*W = 64"]),
    (lambda: F.max_pool2d_backward(np.ones((2, 3, 4, 4), np.float32), X, 2,
                                   indices=np.full((2, 3, 4, 4), -1, np.int64)), ValueError, ["indices", "[-1, -1]"]),
    (lambda: F.relu(np.zeros(3, np.int64)), TypeError, ["input", "float32"]),
    (lambda: F.relu_backward(np.zeros(3), np.zeros(4)), ValueError, ["input", "(3,)"]),
    (lambda: F.leaky_relu(X, negative_slope="a"), TypeError, ["negative_slope"]),
    (lambda: F.conv2d(None, W), TypeError, ["input", "got None"]),
    (lambda: F.conv2d(X, None), TypeError, ["weight", "got None"]),
    (lambda: F.conv2d_backward(None, X, W), TypeError, ["grad_output", "got None"]),
    (lambda: F.max_pool2d_backward(None, X, 2), TypeError, ["grad_output", "got None"]),
    (lambda: F.linear_backward(None, np.zeros((2, 3)), np.zeros((4, 3))), TypeError, ["grad_output", "got None"]),
    (lambda: F.relu(None), TypeError, ["input", "got None"]),
    (lambda: F.dropout_backward(np.zeros(3), None), TypeError, ["mask", "got None"]),
    (lambda: F.max_pool2d_backward(np.ones((2, 3, 4, 4), np.float32), X, 2, indices=[[0]]), TypeError,
     ["indices", "int64", "list"]),
    (lambda: F.max_pool2d_backward(np.ones((2, 3, 4, 4), np.float32), X, 2, indices=1.5), TypeError,
     ["indices", "float"]),
    (lambda: F.max_pool2d_backward(np.ones((2, 3, 4, 4), np.float32), X, 2, indices=np.zeros((2, 3, 4, 4))),
     TypeError, ["indices", "int64", "float64"]),
    (lambda: F.dropout(X, 0.5, None), TypeError, ["rng", "Generator"]),
    (lambda: F.dropout(X, 0.5, 42), TypeError, ["rng", "int"]),
    (lambda: F.conv2d(X, np.zeros((4, 3, 0, 3), np.float32)), ValueError, ["weight", "zero-size"]),
    (lambda: F.conv2d(X, np.zeros((0, 3, 3, 3), np.float32)), ValueError, ["weight", "zero-size"]),
    (lambda: F.local_conv2d(X, np.zeros((8, 8, 4, 3, 0, 1), np.float32)), ValueError, ["weight", "zero-size"]),
    (lambda: F.conv2d(X, W, stride=2 ** 64), ValueError, ["stride", "<="]),
    (lambda: F.conv2d(X, W, stride=(1, 2 ** 63)), ValueError, ["stride", "<="]),
    (lambda: F.max_pool2d(X, 2, stride=2 ** 64), ValueError, ["stride"]),
    (lambda: F.avg_pool2d(X, 2 ** 40), ValueError, ["kernel_size"]),
    (lambda: F.conv2d(X, W, dilation=2 ** 64), ValueError, ["dilation"]),
    (lambda: F.conv2d(X, W, groups=2 ** 64), ValueError, ["groups"]),
    (lambda: F.conv2d(X, W, padding=2 ** 64), ValueError, ["padding"]),
    (lambda: F.conv2d(X, W, padding=10 ** 6), ValueError, ["padding=(1000000, 1000000)", "memory"]),
    (lambda: F.conv1d(np.zeros((2, 3, 8), np.float32), np.zeros((4, 3, 3), np.float32), padding=10 ** 9),
     ValueError, ["padding", "memory"]),
    (lambda: F.global_avg_pool2d(np.zeros((2, 3, 0, 4), np.float32)), ValueError, ["input", "non-empty"]),
])
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error) as raised:
        call()
    for word in words:
        assert word in str(raised.value), f"{word!r} not in {raised.value}"


def test_cpu_and_device_arrays_cannot_be_mixed():
    device_weight = backend.to_device(W)
    with pytest.raises(TypeError, match="one backend.*input on cpu, weight on cuda"):
        F.conv2d(X, device_weight)


def test_unknown_device_name():
    with pytest.raises(ValueError, match="device must be one of cpu, cuda, auto"):
        backend.resolve("tpu")


def test_auto_never_picks_the_simulator(monkeypatch):
    import numba
    monkeypatch.setattr(numba.config, "ENABLE_CUDASIM", 1)
    assert backend.resolve("auto") == "cpu"
    assert backend.resolve("cuda") == "cuda"  # still usable when asked for by name


def test_auto_without_a_driver_picks_the_cpu_without_asking_cuda(monkeypatch):
    def no_call():
        raise AssertionError("cuda_status must not run when no driver library exists")
    monkeypatch.setattr(backend, "simulated", lambda: False)
    monkeypatch.setattr(backend, "_driver_library_present", lambda: False)
    monkeypatch.setattr(backend, "cuda_status", no_call)
    assert backend.resolve("auto") == "cpu"


def test_dropout_accepts_a_legacy_random_state():
    output, mask = F.dropout(np.ones((4, 5), np.float32), 0.5, np.random.RandomState(0))
    assert set(np.unique(mask)) <= {0.0, 2.0} and np.array_equal(output, mask)
