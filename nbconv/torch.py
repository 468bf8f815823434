"""nbconv's kernels inside PyTorch models: autograd Functions and drop-in modules.

    import nbconv.torch as nbt
    model = torch.nn.Sequential(nbt.Conv2d(1, 6, 5, padding=2), nbt.ReLU(), nbt.MaxPool2d(2), ...)

`Conv2d`, `Conv1d`, `Linear`, `MaxPool2d`, `AvgPool2d` and `ReLU` are subclasses of their torch.nn
namesakes (same parameters, initialisation and state_dict), whose forward and backward run nbconv's
kernels: the compiled CPU kernels for CPU tensors, the CUDA kernels for CUDA tensors. Tensors cross
without copies where their memory allows it (contiguous float32/float64 tensors): CPU tensors as numpy
views (DLPack), CUDA tensors as Numba device arrays (__cuda_array_interface__), and the results come back
as tensors over nbconv's output memory (torch.from_numpy, torch.as_tensor). Needs PyTorch (not a
dependency of nbconv).
"""
import numpy as np
import torch

from . import backend, functional as F

__all__ = ["Conv2d", "Conv1d", "Linear", "MaxPool2d", "AvgPool2d", "ReLU",
           "conv2d", "conv1d", "linear", "max_pool2d", "avg_pool2d", "relu"]


def _array(tensor, name):
    """A numpy or Numba device array over `tensor`'s memory (None stays None). A non-contiguous tensor
    (e.g. the expanded gradient of a sum) is made contiguous by PyTorch first, on its own device, and a lazy
    negation (z.conj().imag) carried out, since its memory holds the negated values."""
    if tensor is None:
        return None
    return backend.as_array(tensor.detach().resolve_neg().contiguous(), name)


def _tensor(array, like):
    """A tensor over `array`'s memory, on `like`'s device."""
    if array is None:
        return None
    if isinstance(array, np.ndarray):
        return torch.from_numpy(array)
    return torch.as_tensor(array, device=like.device)


def _convolution_function(forward, backward, name):
    """An autograd Function running nbconv's `forward(input, weight, bias, **hyper)` and its
    `backward(grad_output, input, weight, need_input_grad=..., **hyper)` (conv1d or conv2d)."""
    class Convolution(torch.autograd.Function):
        @staticmethod
        def forward(ctx, input, weight, bias, stride, padding, dilation, groups):
            ctx.hyper = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
            ctx.save_for_backward(input, weight)
            ctx.has_bias = bias is not None
            output = forward(_array(input, "input"), _array(weight, "weight"), _array(bias, "bias"), **ctx.hyper)
            return _tensor(output, input)

        @staticmethod
        def backward(ctx, grad_output):
            input, weight = ctx.saved_tensors
            grad_input, grad_weight, grad_bias = backward(
                _array(grad_output, "grad_output"), _array(input, "input"), _array(weight, "weight"),
                need_input_grad=ctx.needs_input_grad[0], **ctx.hyper)
            return (_tensor(grad_input, input), _tensor(grad_weight, input),
                    _tensor(grad_bias, input) if ctx.has_bias else None, None, None, None, None)

    Convolution.__name__ = Convolution.__qualname__ = name
    return Convolution


_Conv2d = _convolution_function(F.conv2d, F.conv2d_backward, "_Conv2d")
_Conv1d = _convolution_function(F.conv1d, F.conv1d_backward, "_Conv1d")


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias):
        ctx.save_for_backward(input, weight)
        ctx.has_bias = bias is not None
        return _tensor(F.linear(_array(input, "input"), _array(weight, "weight"), _array(bias, "bias")), input)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        grad_input, grad_weight, grad_bias = F.linear_backward(
            _array(grad_output, "grad_output"), _array(input, "input"), _array(weight, "weight"),
            need_input_grad=ctx.needs_input_grad[0])
        return _tensor(grad_input, input), _tensor(grad_weight, input), \
            _tensor(grad_bias, input) if ctx.has_bias else None


class _MaxPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, kernel_size, stride, padding, ceil_mode):
        ctx.hyper = (kernel_size, stride, padding, ceil_mode)
        output, indices = F.max_pool2d(_array(input, "input"), kernel_size, stride, padding, ceil_mode,
                                       return_indices=True)
        ctx.save_for_backward(input)
        ctx.indices = indices  # nbconv's own array, kept as it is for the backward
        return _tensor(output, input)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        grad_input = F.max_pool2d_backward(_array(grad_output, "grad_output"), _array(input, "input"),
                                            *ctx.hyper, ctx.indices, check_indices=False)  # made by forward
        return _tensor(grad_input, input), None, None, None, None


class _AvgPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, kernel_size, stride, padding, ceil_mode, count_include_pad):
        ctx.hyper = dict(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                         count_include_pad=count_include_pad)
        ctx.save_for_backward(input)
        return _tensor(F.avg_pool2d(_array(input, "input"), **ctx.hyper), input)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        grad_input = F.avg_pool2d_backward(_array(grad_output, "grad_output"), _array(input, "input"), **ctx.hyper)
        return _tensor(grad_input, input), None, None, None, None, None


class _ReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return _tensor(F.relu(_array(input, "input")), input)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return _tensor(F.relu_backward(_array(grad_output, "grad_output"), _array(input, "input")), input)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d on nbconv's kernels (differentiable)."""
    return _Conv2d.apply(input, weight, bias, stride, padding, dilation, groups)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv1d on nbconv's kernels (differentiable)."""
    return _Conv1d.apply(input, weight, bias, stride, padding, dilation, groups)


def linear(input, weight, bias=None):
    """torch.nn.functional.linear on nbconv's kernels, for (N, in_features) input (differentiable)."""
    return _Linear.apply(input, weight, bias)


def max_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False):
    """torch.nn.functional.max_pool2d on nbconv's kernels (differentiable)."""
    return _MaxPool2d.apply(input, kernel_size, stride, padding, ceil_mode)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """torch.nn.functional.avg_pool2d on nbconv's kernels (differentiable)."""
    return _AvgPool2d.apply(input, kernel_size, stride, padding, ceil_mode, count_include_pad)


def relu(input):
    """torch.relu on nbconv's kernels (differentiable)."""
    return _ReLU.apply(input)


def _supported(module, **unsupported):
    for name, (value, default) in unsupported.items():
        if value != default:
            raise ValueError(f"nbconv.torch.{type(module).__name__} supports only {name}={default!r}, got {value!r}")


class Conv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d whose forward and backward run nbconv's kernels (padding_mode 'zeros' only)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _supported(self, padding_mode=(self.padding_mode, "zeros"))

    def forward(self, input):
        return conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Conv1d(torch.nn.Conv1d):
    """torch.nn.Conv1d whose forward and backward run nbconv's kernels (padding_mode 'zeros' only)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _supported(self, padding_mode=(self.padding_mode, "zeros"))

    def forward(self, input):
        return conv1d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Linear(torch.nn.Linear):
    """torch.nn.Linear whose forward and backward run nbconv's kernels ((N, in_features) input)."""

    def forward(self, input):
        return linear(input, self.weight, self.bias)


class MaxPool2d(torch.nn.MaxPool2d):
    """torch.nn.MaxPool2d on nbconv's kernels (dilation 1, no return_indices)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        dilation = 1 if self.dilation in ((1, 1), [1, 1]) else self.dilation  # PyTorch takes both spellings
        _supported(self, dilation=(dilation, 1), return_indices=(self.return_indices, False))

    def forward(self, input):
        return max_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode)


class AvgPool2d(torch.nn.AvgPool2d):
    """torch.nn.AvgPool2d on nbconv's kernels (no divisor_override)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _supported(self, divisor_override=(self.divisor_override, None))

    def forward(self, input):
        return avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)


class ReLU(torch.nn.ReLU):
    """torch.nn.ReLU on nbconv's kernels (not in place)."""

    def __init__(self, inplace=False):
        super().__init__(inplace)
        _supported(self, inplace=(self.inplace, False))

    def forward(self, input):
        return relu(input)
