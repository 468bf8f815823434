"""The layers: convolutions, pooling, activations, fully connected, dropout, flatten.

Every layer runs on the backend its input lives on (numpy -> CPU kernels, device arrays -> CUDA
kernels); parameters must be on the same backend (model.to(device)). Shapes are PyTorch's.
"""
import math

import numpy as np

from .. import backend, checks
from .. import functional as F
from .last_call import LastCall, host_key, identity, plan_for
from ..spec_grammar import number as _number, pair as _pair, token_args as _token_args
from .init import initial_weight
from .module import Layer, Parameter, WeightedLayer


def _plain(*arrays):
    """Whether every array that is not None is a C-contiguous numpy array (the validated path would pass
    anything else on as a contiguous copy or a view, which a remembered call must not skip)."""
    return all(array is None or host_key(array) is not None for array in arrays)


class Conv2d(WeightedLayer):
    """2-D convolution: (N, C, H, W) -> (N, D, OH, OW). weight (D, C/groups, kh, kw), bias (D,)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, rng=None, init="he", dtype=np.float32):
        super().__init__()
        checks.integer("in_channels", in_channels, 1)
        checks.integer("out_channels", out_channels, 1)
        kh, kw = checks.pair("kernel_size", kernel_size, 1)
        checks.integer("groups", groups, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        rng = rng if rng is not None else np.random.default_rng()
        fan_in = in_channels // groups * kh * kw
        self.weight = Parameter(initial_weight(rng, (out_channels, in_channels // groups, kh, kw), fan_in,
                                               out_channels // groups * kh * kw, init, dtype))
        self.bias = Parameter(np.zeros(out_channels, dtype)) if bias else None
        self.hyper = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)

    _last_forward = _last_backward = None  # see nbconv.nn.last_call

    def forward(self, input):
        self.input = input
        weight, bias = self.weight.value, None if self.bias is None else self.bias.value
        input_key = host_key(input)
        key = None if input_key is None else (input_key, identity(weight), identity(bias),
                                              tuple(self.hyper.values()))
        plan = plan_for(self._last_forward, key)
        if plan is not None:
            kernel, bias_array, output_shape, kernel_args = plan
            output = np.empty(output_shape, input.dtype)
            kernel(input, weight, bias_array, output, *kernel_args)
            return output
        output = F.conv2d(input, weight, bias, **self.hyper)
        if key is not None and input.ndim == 4 and _plain(weight, bias):
            geometry = self._geometry(input, weight)
            if geometry.extra_h == 0 and geometry.extra_w == 0:  # else the input is padded on the right: copied
                bias_array = np.empty((0,), input.dtype) if bias is None else bias
                self._last_forward = LastCall(key, (weight, bias), (
                    backend.kernels("cpu").conv2d_forward, bias_array, geometry.output_shape, geometry.kernel_args))
        return output

    def _geometry(self, input, weight):
        h = self.hyper
        return F.conv_geometry(input.shape, weight.shape, h["stride"], h["padding"], h["dilation"], h["groups"])

    def backward(self, grad_output, need_input_grad=True):
        h = self.hyper
        input, weight = self.input, self.weight.value
        need_weight_grad = bool(self.param_grads)
        grad_weight_buffer = self.weight.grad_buffer
        grad_bias_buffer = None if self.bias is None else self.bias.grad_buffer
        grad_key, input_key = host_key(grad_output), host_key(input)
        key = None if grad_key is None or input_key is None else (
            grad_key, input_key, identity(weight), identity(grad_weight_buffer), identity(grad_bias_buffer),
            self.bias is None, bool(need_input_grad), need_weight_grad, tuple(h.values()))
        plan = plan_for(self._last_backward, key)
        if plan is not None:
            grad_input, self.weight.grad, grad_bias = self._backward_direct(plan, grad_output, input, weight,
                                                                            grad_weight_buffer, grad_bias_buffer)
        else:
            grad_input, self.weight.grad, grad_bias = F.conv2d_backward(
                grad_output, input, weight, h["stride"], h["padding"], h["dilation"], h["groups"],
                need_input_grad, need_weight_grad, grad_weight_buffer, grad_bias_buffer,
                need_bias_grad=self.bias is not None)
            if key is not None and input.ndim == 4 and _plain(weight):
                geometry = self._geometry(input, weight)
                if geometry.extra_h == 0 and geometry.extra_w == 0:
                    self._last_backward = LastCall(key, (weight, grad_weight_buffer, grad_bias_buffer), (
                        backend.kernels("cpu"), geometry.kernel_args,
                        self.weight.grad is grad_weight_buffer, grad_bias is grad_bias_buffer,
                        bool(need_input_grad), need_weight_grad, self.bias is not None))
        if self.bias is not None:
            self.bias.grad = grad_bias
        return grad_input

    @staticmethod
    def _backward_direct(plan, grad_output, input, weight, grad_weight_buffer, grad_bias_buffer):
        """F.conv2d_backward's kernel calls for the arguments `plan` was worked out for."""
        kernels, kernel_args, weight_buffer_fits, bias_buffer_fits, need_input_grad, need_weight_grad, \
            need_bias_grad = plan
        dtype = input.dtype
        grad_weight = grad_bias = grad_input = None
        if need_weight_grad:
            grad_weight = grad_weight_buffer if weight_buffer_fits else np.empty(weight.shape, dtype)
            if need_bias_grad:
                grad_bias = grad_bias_buffer if bias_buffer_fits else np.empty((weight.shape[0],), dtype)
                kernels.conv2d_backward_weight_bias(grad_output, input, grad_weight, grad_bias, *kernel_args)
            else:
                kernels.conv2d_backward_weight(grad_output, input, grad_weight, *kernel_args)
        if need_input_grad:
            grad_input = np.empty(input.shape, dtype)
            kernels.conv2d_backward_input(grad_output, weight, grad_input, *kernel_args)
        return grad_input, grad_weight, grad_bias

    def spec(self):
        h = self.hyper
        k = self.kernel_size if self.kernel_size[0] != self.kernel_size[1] else self.kernel_size[0]
        k = f"{k[0]}x{k[1]}" if isinstance(k, tuple) else k
        return (f"conv{self.out_channels}k{k}" + _token_args(
            s=None if _pair(h["stride"]) == (1, 1) else h["stride"],
            p=None if h["padding"] in (0, (0, 0)) else h["padding"],
            d=None if _pair(h["dilation"]) == (1, 1) else h["dilation"],
            g=None if h["groups"] == 1 else h["groups"]) + ("" if self.bias is not None else "nobias"))


class Conv1d(WeightedLayer):
    """1-D convolution: (N, C, W) -> (N, D, OW). weight (D, C/groups, k), bias (D,)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, rng=None, init="he", dtype=np.float32):
        super().__init__()
        checks.integer("in_channels", in_channels, 1)
        checks.integer("out_channels", out_channels, 1)
        checks.integer("kernel_size", kernel_size, 1)
        checks.integer("groups", groups, 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
        rng = rng if rng is not None else np.random.default_rng()
        fan_in = in_channels // groups * kernel_size
        self.weight = Parameter(initial_weight(rng, (out_channels, in_channels // groups, kernel_size), fan_in,
                                               out_channels // groups * kernel_size, init, dtype))
        self.bias = Parameter(np.zeros(out_channels, dtype)) if bias else None
        self.hyper = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        self.out_channels, self.kernel_size = out_channels, kernel_size

    def forward(self, input):
        self.input = input
        return F.conv1d(input, self.weight.value, None if self.bias is None else self.bias.value, **self.hyper)

    def backward(self, grad_output, need_input_grad=True):
        grad_input, self.weight.grad, grad_bias = F.conv1d_backward(grad_output, self.input, self.weight.value,
                                                                    need_input_grad=need_input_grad, **self.hyper)
        if self.bias is not None:
            self.bias.grad = grad_bias
        return grad_input

    def spec(self):
        h = self.hyper
        return f"conv1d{self.out_channels}k{self.kernel_size}" + _token_args(
            s=None if h["stride"] == 1 else h["stride"], p=None if h["padding"] == 0 else h["padding"],
            d=None if h["dilation"] == 1 else h["dilation"], g=None if h["groups"] == 1 else h["groups"])


class LocallyConnected2d(WeightedLayer):
    """Like Conv2d, but every output position has its own filters (no weight sharing).

    input (N, C, H, W) -> (N, D, OH, OW); weight (OH, OW, D, C, kh, kw); bias (D, OH, OW).
    The input's spatial size is fixed at construction (input_size=(H, W)).
    """

    def __init__(self, in_channels, out_channels, kernel_size, input_size, stride=1, padding=0, bias=True,
                 rng=None, init="he", dtype=np.float32):
        super().__init__()
        kh, kw = checks.pair("kernel_size", kernel_size, 1)
        H, W = checks.pair("input_size", input_size, 1)
        OH, OW = F.local_conv2d_output_size((1, in_channels, H, W), (kh, kw), stride, padding)
        rng = rng if rng is not None else np.random.default_rng()
        self.weight = Parameter(initial_weight(rng, (OH, OW, out_channels, in_channels, kh, kw),
                                               in_channels * kh * kw, out_channels * kh * kw, init, dtype))
        self.bias = Parameter(np.zeros((out_channels, OH, OW), dtype)) if bias else None
        self.hyper = dict(stride=stride, padding=padding)
        self.out_channels, self.kernel_size, self.input_size = out_channels, (kh, kw), (H, W)

    def forward(self, input):
        self.input = input
        return F.local_conv2d(input, self.weight.value, None if self.bias is None else self.bias.value, **self.hyper)

    def backward(self, grad_output, need_input_grad=True):
        grad_input, self.weight.grad, grad_bias = F.local_conv2d_backward(grad_output, self.input,
                                                                          self.weight.value, **self.hyper,
                                                                          need_input_grad=need_input_grad)
        if self.bias is not None:
            self.bias.grad = grad_bias
        return grad_input

    def spec(self):
        k = self.kernel_size
        k = k[0] if k[0] == k[1] else f"{k[0]}x{k[1]}"
        return f"local{self.out_channels}k{k}" + _token_args(
            s=None if _pair(self.hyper["stride"]) == (1, 1) else self.hyper["stride"],
            p=None if self.hyper["padding"] in (0, (0, 0)) else self.hyper["padding"])


class Linear(WeightedLayer):
    """Fully connected: (N, in_features) -> (N, out_features). weight (out, in), bias (out,)."""

    def __init__(self, in_features, out_features, bias=True, rng=None, init="he", dtype=np.float32):
        super().__init__()
        checks.integer("in_features", in_features, 1)
        checks.integer("out_features", out_features, 1)
        rng = rng if rng is not None else np.random.default_rng()
        self.weight = Parameter(initial_weight(rng, (out_features, in_features), in_features, out_features, init,
                                               dtype))
        self.bias = Parameter(np.zeros(out_features, dtype)) if bias else None
        self.out_features = out_features

    _last_forward = _last_backward = None  # see nbconv.nn.last_call

    def forward(self, input):
        return self._forward(input, relu=False)

    def _forward(self, input, relu):
        """forward, or relu(forward) with `relu`: a remembered direct kernel call when the arrays are those of
        the last call (nn.last_call), else the validated functional one, remembered for the next."""
        self.input = input
        weight, bias = self.weight.value, None if self.bias is None else self.bias.value
        input_key = host_key(input)
        key = None if input_key is None else (input_key, identity(weight), identity(bias))
        plan = plan_for(self._last_fused_forward if relu else self._last_forward, key)
        if plan is not None:
            kernel, bias_array, output_shape = plan
            output = np.empty(output_shape, input.dtype)
            kernel(input, weight, bias_array, output)
            return output
        output = (F.linear_relu if relu else F.linear)(input, weight, bias)
        if key is not None and _plain(weight, bias):
            bias_array = np.empty((0,), input.dtype) if bias is None else bias
            kernels = backend.kernels("cpu")
            remembered = LastCall(key, (weight, bias), (
                kernels.linear_relu_forward if relu else kernels.linear_forward, bias_array, output.shape))
            if relu:
                self._last_fused_forward = remembered
            else:
                self._last_forward = remembered
        return output

    def backward(self, grad_output, need_input_grad=True):
        input, weight = self.input, self.weight.value
        grad_weight_buffer = self.weight.grad_buffer
        grad_bias_buffer = None if self.bias is None else self.bias.grad_buffer
        grad_key, input_key = host_key(grad_output), host_key(input)
        key = None if grad_key is None or input_key is None else (
            grad_key, input_key, identity(weight), identity(grad_weight_buffer), identity(grad_bias_buffer),
            bool(need_input_grad))
        plan = plan_for(self._last_backward, key)
        if plan is not None:
            kernels, weight_buffer_fits, bias_buffer_fits = plan
            dtype = input.dtype
            grad_weight = grad_weight_buffer if weight_buffer_fits else np.empty(weight.shape, dtype)
            grad_bias = grad_bias_buffer if bias_buffer_fits else np.empty((weight.shape[0],), dtype)
            grad_input = None
            if need_input_grad:
                grad_input = np.empty(input.shape, dtype)
                kernels.linear_backward_input(grad_output, weight, grad_input)
            kernels.linear_backward_weight_bias(grad_output, input, grad_weight, grad_bias)
        else:
            grad_input, grad_weight, grad_bias = F.linear_backward(grad_output, input, weight, need_input_grad,
                                                                   grad_weight_buffer, grad_bias_buffer)
            if key is not None and _plain(weight):
                self._last_backward = LastCall(key, (weight, grad_weight_buffer, grad_bias_buffer), (
                    backend.kernels("cpu"), grad_weight is grad_weight_buffer, grad_bias is grad_bias_buffer))
        self.weight.grad = grad_weight
        if self.bias is not None:
            self.bias.grad = grad_bias
        return grad_input

    _last_fused_forward = _last_fused_backward = None  # see nbconv.nn.last_call

    def fuses_with(self, following, input):
        # one kernel call instead of two each way: on the CUDA backend a launch costs more than a small
        # layer's arithmetic; on the CPU, for the arrays that take the remembered direct calls
        return type(following) is ReLU and (backend.is_device_array(input) or host_key(input) is not None)

    def forward_fused(self, input):
        """relu(self.forward(input)) in one kernel call; keeps the output for backward_fused."""
        self.output = self._forward(input, relu=True)
        return self.output

    def backward_fused(self, grad_output, need_input_grad=True):
        """The input gradient of relu(linear(input)) from the ReLU's output gradient; sets the parameters'."""
        input, output, weight = self.input, self.output, self.weight.value
        grad_weight_buffer = self.weight.grad_buffer
        grad_bias_buffer = None if self.bias is None else self.bias.grad_buffer
        grad_key, input_key, output_key = host_key(grad_output), host_key(input), host_key(output)
        key = None if None in (grad_key, input_key, output_key) else (
            grad_key, input_key, output_key, identity(weight), identity(grad_weight_buffer),
            identity(grad_bias_buffer), self.bias is None, bool(need_input_grad))
        plan = plan_for(self._last_fused_backward, key)
        if plan is not None:
            kernel, weight_buffer_fits, bias_buffer_fits, no_bias = plan
            dtype = input.dtype
            grad_weight = grad_weight_buffer if weight_buffer_fits else np.empty(weight.shape, dtype)
            if no_bias is not None:
                grad_bias = None
            else:
                grad_bias = grad_bias_buffer if bias_buffer_fits else np.empty((weight.shape[0],), dtype)
            grad_input = np.empty(input.shape, dtype) if need_input_grad else None
            kernel(grad_output, output, input, weight, grad_input, grad_weight,
                   no_bias if grad_bias is None else grad_bias)
        else:
            grad_input, grad_weight, grad_bias = F.linear_relu_backward(
                grad_output, output, input, weight, need_input_grad, grad_weight_buffer, grad_bias_buffer)
            if key is not None and _plain(weight):
                from ..kernels.cpu.fused import linear_relu_backward  # the CPU's one-mask path (not a CUDA twin)
                dtype = input.dtype
                self._last_fused_backward = LastCall(key, (weight, grad_weight_buffer, grad_bias_buffer), (
                    linear_relu_backward, grad_weight is grad_weight_buffer, grad_bias is grad_bias_buffer,
                    np.empty((0,), dtype) if self.bias is None else None))
        self.weight.grad = grad_weight
        if self.bias is not None:
            self.bias.grad = grad_bias
        return grad_input

    def spec(self):
        return f"fc{self.out_features}"


class MaxPool2d(Layer):
    takes_window_max = True

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self.hyper = dict(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode)

    _last_forward = _last_backward = None  # see nbconv.nn.last_call

    def forward(self, input):
        self.input = input
        input_key = host_key(input)
        key = None if input_key is None else (input_key, self.training, tuple(self.hyper.values()))
        plan = plan_for(self._last_forward, key)
        if plan is not None:
            kernel, output_shape, no_indices, kernel_args = plan
            output = np.empty(output_shape, input.dtype)
            indices = np.empty(output_shape, np.int64) if no_indices is None else no_indices
            kernel(input, output, indices, *kernel_args)
            self.indices = None if no_indices is not None else indices
            return output
        if not self.training:  # positions are only needed for a backward pass; finding them costs
            self.indices = None  # (backward without them recomputes them)
            output = F.max_pool2d(input, **self.hyper)
        else:
            output, self.indices = F.max_pool2d(input, return_indices=True, **self.hyper)
        if key is not None and input.ndim == 4:
            geometry = _pool_geometry(input, self.hyper)
            no_indices = None if self.training else np.empty((0, 0, 0, 0), np.int64)  # nothing is written there
            self._last_forward = LastCall(key, (), (backend.kernels("cpu").max_pool2d_forward, geometry.output_shape,
                                                    no_indices, geometry.kernel_args))
        return output

    def backward(self, grad_output):
        h = self.hyper
        indices = self.indices
        grad_key, input_key = host_key(grad_output), host_key(self.input)
        key = None if grad_key is None or input_key is None or host_key(indices) is None else (
            grad_key, input_key, indices.shape, indices.dtype, tuple(h.values()))
        plan = plan_for(self._last_backward, key)
        if plan is not None:
            kernel, kernel_args = plan
            grad_input = np.empty(self.input.shape, grad_output.dtype)
            kernel(grad_output, indices, grad_input, *kernel_args)
            return grad_input
        grad_input = F.max_pool2d_backward(grad_output, self.input, h["kernel_size"], h["stride"], h["padding"],
                                           h["ceil_mode"], indices, check_indices=False)  # made by its forward
        if key is not None and self.input.ndim == 4:
            geometry = _pool_geometry(self.input, h)
            self._last_backward = LastCall(key, (), (backend.kernels("cpu").max_pool2d_backward, geometry.kernel_args))
        return grad_input

    def spec(self):
        h = self.hyper
        return f"maxpool{_token_args(k=h['kernel_size'])[1:]}" + _token_args(
            s=h["stride"], p=None if h["padding"] in (0, (0, 0)) else h["padding"]) + ("ceil" if h["ceil_mode"] else "")


class AvgPool2d(Layer):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.hyper = dict(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                          count_include_pad=count_include_pad)

    _last_forward = _last_backward = None  # see nbconv.nn.last_call

    def forward(self, input):
        self.input = input
        input_key = host_key(input)
        key = None if input_key is None else (input_key, tuple(self.hyper.values()))
        plan = plan_for(self._last_forward, key)
        if plan is not None:
            kernel, output_shape, kernel_args = plan
            output = np.empty(output_shape, input.dtype)
            kernel(input, output, *kernel_args)
            return output
        output = F.avg_pool2d(input, **self.hyper)
        if key is not None and input.ndim == 4:
            geometry = _pool_geometry(input, self.hyper)
            self._last_forward = LastCall(key, (), (backend.kernels("cpu").avg_pool2d_forward, geometry.output_shape,
                                                    geometry.kernel_args + (self._include_pad(),)))
        return output

    def backward(self, grad_output):
        grad_key, input_key = host_key(grad_output), host_key(self.input)
        key = None if grad_key is None or input_key is None else (grad_key, input_key, tuple(self.hyper.values()))
        plan = plan_for(self._last_backward, key)
        if plan is not None:
            kernel, kernel_args = plan
            grad_input = np.empty(self.input.shape, grad_output.dtype)
            kernel(grad_output, grad_input, *kernel_args)
            return grad_input
        grad_input = F.avg_pool2d_backward(grad_output, self.input, **self.hyper)
        if key is not None and self.input.ndim == 4:
            geometry = _pool_geometry(self.input, self.hyper)
            self._last_backward = LastCall(key, (), (backend.kernels("cpu").avg_pool2d_backward,
                                                     geometry.kernel_args + (self._include_pad(),)))
        return grad_input

    def _include_pad(self):
        return int(bool(self.hyper["count_include_pad"]))

    def spec(self):
        h = self.hyper
        return f"avgpool{_token_args(k=h['kernel_size'])[1:]}" + _token_args(
            s=h["stride"], p=None if h["padding"] in (0, (0, 0)) else h["padding"]) + (
            "ceil" if h["ceil_mode"] else "") + ("" if h["count_include_pad"] else "nopad")


def _pool_geometry(input, hyper):
    return F.pool_geometry(input.shape, hyper["kernel_size"], hyper["stride"], hyper["padding"], hyper["ceil_mode"])


class GlobalAvgPool2d(Layer):
    """(N, C, H, W) -> (N, C, 1, 1)."""

    def forward(self, input):
        self.input = input
        return F.global_avg_pool2d(input)

    def backward(self, grad_output):
        return F.global_avg_pool2d_backward(grad_output, self.input)

    def spec(self):
        return "gap"


class _Activation(Layer):
    function = None  # the name in nbconv.functional; its kernels are function + "_forward" and "_backward"
    token = None
    _last_forward = _last_backward = None  # see nbconv.nn.last_call

    def forward(self, input):
        self.input = input
        key = host_key(input)
        kernel = plan_for(self._last_forward, key)
        if kernel is not None:
            output = np.empty(input.shape, input.dtype)
            kernel(input.reshape(-1), output.reshape(-1))
            return output
        output = getattr(F, self.function)(input)
        if key is not None:
            self._last_forward = LastCall(key, (), getattr(backend.kernels("cpu"), self.function + "_forward"))
        return output

    def backward(self, grad_output):
        grad_key, input_key = host_key(grad_output), host_key(self.input)
        key = None if grad_key is None or input_key is None else (grad_key, input_key)
        kernel = plan_for(self._last_backward, key)
        if kernel is not None:
            grad_input = np.empty(grad_output.shape, grad_output.dtype)
            kernel(grad_output.reshape(-1), self.input.reshape(-1), grad_input.reshape(-1))
            return grad_input
        grad_input = getattr(F, self.function + "_backward")(grad_output, self.input)
        if key is not None:
            self._last_backward = LastCall(key, (), getattr(backend.kernels("cpu"), self.function + "_backward"))
        return grad_input

    def spec(self):
        return self.token


class ReLU(_Activation):
    function, token = "relu", "relu"
    commutes_with_max = True


class ReLU6(_Activation):
    function, token = "relu6", "relu6"


class Sigmoid(_Activation):
    function, token = "sigmoid", "sigmoid"


class Tanh(_Activation):
    function, token = "tanh", "tanh"


class LeakyReLU(Layer):
    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = checks.finite_real("negative_slope", negative_slope)  # a spec says finite numbers

    def forward(self, input):
        self.input = input
        return F.leaky_relu(input, self.negative_slope)

    def backward(self, grad_output):
        return F.leaky_relu_backward(grad_output, self.input, self.negative_slope)

    def spec(self):
        return f"lrelu{_number(self.negative_slope)}"


class Flatten(Layer):
    """(N, ...) -> (N, prod(...))."""

    def forward(self, input):
        self.input_shape = tuple(input.shape)
        return input.reshape((self.input_shape[0], math.prod(self.input_shape[1:])))

    def backward(self, grad_output):
        if type(grad_output) is np.ndarray and grad_output.flags.c_contiguous:  # the common case, no look-ups
            return grad_output.reshape(self.input_shape)
        return backend.contiguous(grad_output).reshape(self.input_shape)

    def spec(self):
        return "flatten"


class Dropout(Layer):
    """Inverted dropout in training mode, the identity in eval mode."""

    def __init__(self, probability=0.5, rng=None):
        super().__init__()
        self.probability = checks.real("probability", probability)
        if not 0.0 <= self.probability < 1.0:
            raise ValueError(f"probability must lie in [0, 1), got {probability}")
        self.rng = rng if rng is not None else np.random.default_rng()
        self.mask = None

    def forward(self, input):
        if not self.training or self.probability == 0.0:
            self.mask = None
            return input
        output, self.mask = F.dropout(input, self.probability, self.rng)
        return output

    def backward(self, grad_output):
        return grad_output if self.mask is None else F.dropout_backward(grad_output, self.mask)

    def spec(self):
        return f"dropout{_number(self.probability)}"
