"""Arrays from other libraries in, without copies: PyTorch CPU tensors, DLPack and buffer-protocol
exporters on the host, objects with __cuda_array_interface__ on the device (under the simulator here)."""
import array

import numpy as np
import pytest

import nbconv.functional as F
from nbconv import backend

try:
    import torch
except ImportError:  # PyTorch is optional: its tests skip, the others run
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def test_buffer_protocol_objects_are_viewed_not_copied():
    values = array.array("d", [1.0, -2.0, 3.0])
    view = backend.as_array(values, "input")
    assert isinstance(view, np.ndarray) and view.dtype == np.float64
    values[0] = 5.0
    assert view[0] == 5.0  # same memory
    np.testing.assert_array_equal(F.relu(memoryview(values)), [5.0, 0.0, 3.0])


class _HostDLPack:
    """A minimal DLPack exporter on the CPU (as JAX or TensorFlow host arrays are)."""

    def __init__(self, values):
        self.values = values

    def __dlpack__(self, **kwargs):
        return self.values.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.values.__dlpack_device__()


def test_dlpack_host_exporters_are_viewed_not_copied(rng):
    values = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    view = backend.as_array(_HostDLPack(values), "input")
    assert view.ctypes.data == values.ctypes.data
    np.testing.assert_array_equal(F.max_pool2d(_HostDLPack(values), 2), F.max_pool2d(values, 2))


def test_other_objects_are_refused_naming_the_argument():
    with pytest.raises(TypeError, match="weight must be a numpy array or a CUDA device array .*got list"):
        F.conv2d(np.zeros((1, 1, 3, 3), np.float32), [[[[1.0]]]])
    with pytest.raises(TypeError, match="labels must be a numpy array"):
        F.softmax_cross_entropy(np.zeros((1, 2)), "0")


class _ForeignDeviceArray:
    """An object that only exposes __cuda_array_interface__ (as a PyTorch CUDA tensor or a CuPy array
    does), here over a simulated device array's memory."""

    def __init__(self, device_array):
        self.device_array = device_array
        host = device_array._ary  # the simulator's device memory is a numpy array
        self.__cuda_array_interface__ = {"shape": host.shape, "strides": None, "typestr": host.dtype.str,
                                         "data": (host.ctypes.data, False), "version": 3, "stream": None}


@pytest.mark.skipif(not backend.simulated(), reason="builds foreign device arrays from simulated ones")
def test_cuda_array_interface_inputs_run_on_the_device_without_copies(rng):
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    x_device, w_device = backend.to_device(x), backend.to_device(w)
    foreign = _ForeignDeviceArray(x_device)
    assert backend.is_device_array(foreign) and backend.backend_of(foreign) == "cuda"
    view = backend.as_array(foreign, "input")
    assert view._ary.ctypes.data == x_device._ary.ctypes.data  # the same memory, not a copy
    y = F.conv2d(foreign, _ForeignDeviceArray(w_device), padding=1)
    assert backend.is_device_array(y)
    np.testing.assert_allclose(backend.to_host(y), F.conv2d(x, w, padding=1), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="one backend"):
        F.conv2d(foreign, w)


@needs_torch
def test_torch_cpu_tensors_are_viewed_not_copied():
    tensor = torch.randn(2, 3, 7, 6)
    view = backend.as_array(tensor, "input")
    assert isinstance(view, np.ndarray) and view.ctypes.data == tensor.data_ptr()
    weight = torch.randn(4, 3, 3, 3)
    expected = torch.nn.functional.conv2d(tensor, weight, padding=1).numpy()
    np.testing.assert_allclose(F.conv2d(tensor, weight, padding=1), expected, rtol=1e-4, atol=1e-4)
    labels = torch.tensor([1, 0])
    loss, _ = F.softmax_cross_entropy(torch.randn(2, 3), labels)
    assert np.isfinite(loss)


@needs_torch
def test_torch_tensors_that_require_grad_are_refused_clearly():
    with pytest.raises(TypeError, match=r"input could not be viewed .*detach"):
        F.relu(torch.randn(3, requires_grad=True))


@needs_torch
def test_torch_dtypes_dlpack_cannot_carry_are_refused_without_a_wrong_hint():
    with pytest.raises(TypeError, match="input could not be viewed") as error:
        F.relu(torch.randn(3).bfloat16())
    assert "detach" not in str(error.value)


@needs_torch
def test_torch_tensors_with_the_negative_bit_are_refused_not_read_unnegated():
    """z.conj().imag is a lazy negation: its memory holds -imag, and PyTorch's DLPack export hands that over
    without the sign, so conv2d computed the convolution of the negated input."""
    z = torch.complex(torch.randn(2, 3, 7, 6), torch.randn(2, 3, 7, 6))
    negated = z.conj().imag
    assert negated.is_neg()
    weight = torch.randn(4, 3, 3, 3)
    with pytest.raises(TypeError, match=r"input is a PyTorch tensor with its negative bit set .* input\.resolve_neg"):
        F.conv2d(negated, weight)
    with pytest.raises(TypeError, match="running_mean is a PyTorch tensor with its negative bit set"):
        F.batch_norm(torch.randn(4, 3, 2, 2), torch.complex(torch.zeros(3), torch.zeros(3)).conj().imag, torch.ones(3),
                     training=True)
    expected = torch.nn.functional.conv2d(negated, weight).numpy()
    np.testing.assert_allclose(F.conv2d(negated.resolve_neg(), weight), expected, rtol=1e-4, atol=1e-4)


def _cuda_torch():
    """PyTorch with a usable GPU, when this run is on the real device (NUMBA_ENABLE_CUDASIM=0)."""
    return torch if torch is not None and not backend.simulated() and torch.cuda.is_available() else None


@pytest.mark.skipif(_cuda_torch() is None, reason="needs a GPU, PyTorch with CUDA and NUMBA_ENABLE_CUDASIM=0")
def test_torch_cuda_tensors_in_and_out_without_copies(monkeypatch):
    import nbconv.torch as nbt
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # compare float32 with float32
    x, w = torch.randn(2, 3, 7, 6, device="cuda"), torch.randn(4, 3, 3, 3, device="cuda")
    assert backend.as_array(x, "input").__cuda_array_interface__["data"][0] == x.data_ptr()
    y = F.conv2d(x, w, padding=1)
    y_tensor = torch.as_tensor(y, device="cuda")
    assert y_tensor.data_ptr() == y.__cuda_array_interface__["data"][0]
    torch.testing.assert_close(y_tensor, torch.nn.functional.conv2d(x, w, padding=1), rtol=1e-4, atol=1e-4)
    ours, theirs = nbt.Conv2d(3, 4, 3, padding=1).cuda(), torch.nn.Conv2d(3, 4, 3, padding=1).cuda()
    theirs.load_state_dict(ours.state_dict())
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    (ours(x_ours) ** 2).sum().backward()
    (theirs(x_theirs) ** 2).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-4, atol=1e-3)


@needs_torch
def test_torch_cpu_tensors_are_written_in_place():
    x = torch.randn(4, 3, 2, 2)
    running_mean, running_var = torch.zeros(3), torch.ones(3)
    F.batch_norm(x, running_mean, running_var, training=True)
    torch.testing.assert_close(running_mean, 0.1 * x.mean(dim=(0, 2, 3)))
    total = torch.ones(3)
    assert F.add_(total, torch.ones(3)) is total and total.tolist() == [2.0, 2.0, 2.0]
    out = torch.zeros(2, 3, 4)
    assert F.scale_shift(torch.ones(2, 3, 4), out=out) is out and out.sum().item() == 24.0
