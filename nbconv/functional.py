"""The public numeric API: validated, allocating wrappers over the kernels.

numpy arrays in give numpy arrays out (compiled CPU kernels); Numba device arrays (or objects with
`__cuda_array_interface__`) in give device arrays out (CUDA kernels). Parameter names follow
PyTorch's torch.nn.functional. Image inputs are (N, C, H, W), or (C, H, W) for a single map;
sequence inputs (N, C, W) or (C, W). Each forward `f` has `f_backward(grad_output, input, <same
hyper-parameters>)`; the convolutions' backward returns (grad_input, grad_weight, grad_bias).
"""
from dataclasses import dataclass

import numpy as np

from . import backend, checks
from .remembered import remembered

__all__ = [
    "conv2d", "conv2d_backward", "conv1d", "conv1d_backward",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "global_avg_pool2d", "global_avg_pool2d_backward",
    "relu", "relu_backward", "relu6", "relu6_backward", "leaky_relu", "leaky_relu_backward",
    "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
    "linear", "linear_backward", "linear_relu", "linear_relu_backward", "local_conv2d", "local_conv2d_backward",
    "softmax_cross_entropy", "dropout", "dropout_backward",
]


# ----------------------------------------------------------------------------- helpers

def _batched(name, array, spatial_dims, layout):
    """(array with a batch axis, whether one was added) for inputs given with or without N."""
    checks.ndim(name, array, (spatial_dims + 1, spatial_dims + 2), layout)
    if array.ndim == spatial_dims + 1:
        return array.reshape((1,) + tuple(array.shape)), True
    return array, False


def _unbatched(array, squeeze):
    return array.reshape(tuple(array.shape)[1:]) if squeeze else array


def _output_size(name, size, kernel, stride, padding, dilation=1, ceil_mode=False):
    out = checks.windows(size, kernel, stride, padding, dilation, ceil_mode)
    if out == 0:
        extent = dilation * (kernel - 1) + 1
        raise ValueError(f"{name}: the kernel (extent {extent} after dilation) is larger than the padded input "
                         f"({size} + 2*{padding} = {size + 2 * padding})")
    return out


def _pad_right(array, extra_h, extra_w):
    """Zero-pad the bottom and right of an (N, C, H, W) array on its own backend."""
    if extra_h == 0 and extra_w == 0:
        return array
    padded = np.pad(backend.to_host(array), ((0, 0), (0, 0), (0, extra_h), (0, extra_w)))
    return backend.transfer(padded, backend.backend_of(array))


def _crop(array, height, width):
    if array.shape[2] == height and array.shape[3] == width:
        return array
    cropped = np.ascontiguousarray(backend.to_host(array)[:, :, :height, :width])
    return backend.transfer(cropped, backend.backend_of(array))


# ----------------------------------------------------------------------------- convolution

@dataclass(frozen=True)
class ConvGeometry:
    """Hyper-parameters of one 2-D convolution, resolved against concrete input and weight shapes.

    padding holds the symmetric part the kernels apply; extra_h/extra_w the one extra row/column
    that padding='same' adds at the bottom/right when the total padding is odd (as PyTorch does).
    """
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    extra_h: int
    extra_w: int
    output_shape: tuple

    @property
    def kernel_args(self):
        return (self.stride[0], self.stride[1], self.padding[0], self.padding[1],
                self.dilation[0], self.dilation[1], self.groups)


@remembered  # a training step asks the same every time: checked once per set of arguments
def conv_geometry(input_shape, weight_shape, stride, padding, dilation, groups, names=("input", "weight")):
    """Validate a 2-D convolution's shapes and hyper-parameters; return its ConvGeometry."""
    input_name, weight_name = names
    N, C, H, W = input_shape
    D, Cg, KH, KW = weight_shape
    checks.spatial(input_name, input_shape)
    groups = checks.integer("groups", groups, 1)
    if C == 0:
        raise ValueError(f"{input_name} must have at least one channel, got shape {tuple(input_shape)}")
    checks.nonempty(weight_name, weight_shape)
    if C % groups or D % groups:
        raise ValueError(f"groups={groups} must divide both the input channels ({C}) and the output channels "
                         f"({D}, the first axis of {weight_name})")
    if Cg * groups != C:
        raise ValueError(f"{weight_name} must have shape (D, C/groups, kh, kw) with C/groups = {C // groups} "
                         f"for {input_name} with C={C} channels and groups={groups}, got {tuple(weight_shape)}")
    stride = checks.pair("stride", stride, 1)
    dilation = checks.pair("dilation", dilation, 1)
    extra = (0, 0)
    if isinstance(padding, str):
        if padding == "valid":
            pad = (0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1 (as in PyTorch), got stride={stride}")
            totals = (dilation[0] * (KH - 1), dilation[1] * (KW - 1))
            pad = (totals[0] // 2, totals[1] // 2)
            extra = (totals[0] - 2 * pad[0], totals[1] - 2 * pad[1])
        else:
            raise ValueError(f"padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}")
    else:
        pad = checks.pair("padding", padding, 0)
    OH = _output_size(f"{weight_name} height vs {input_name} height", H + extra[0], KH, stride[0], pad[0], dilation[0])
    OW = _output_size(f"{weight_name} width vs {input_name} width", W + extra[1], KW, stride[1], pad[1], dilation[1])
    checks.fits_in_memory("the output", (N, D, OH, OW), np.float32, {"padding": pad, "stride": stride})
    return ConvGeometry(stride, pad, dilation, groups, extra[0], extra[1], (N, D, OH, OW))


def _conv2d(input, weight, bias, stride, padding, dilation, groups, prepared=None, epilogue=None):
    """conv2d; `prepared`: a dict kept per version of the weight (nbconv.nn.infer), on the CPU reused for
    what depends on the weight alone (see kernels.cpu.conv.dispatch.conv2d_forward_prepared); epilogue:
    None or (scale, shift, residual, activation) as scale_shift takes them, applied to the output in place
    (on the CPU inside the convolution kernels where they can)."""
    where, dtype, a = checks.arrays(input=input, weight=weight, bias=bias, optional=("bias",))
    x, squeeze = _batched("input", a["input"], 2, "(N, C, H, W) or (C, H, W)")
    checks.ndim("weight", a["weight"], (4,), "(D, C/groups, kh, kw)")
    geometry = conv_geometry(x.shape, a["weight"].shape, stride, padding, dilation, groups)
    D = a["weight"].shape[0]
    if bias is None:
        bias_array = backend.empty((0,), dtype, where)
    else:
        bias_array = a["bias"]
        checks.shape("bias", bias_array, (D,))
    output = backend.empty(geometry.output_shape, dtype, where)
    if prepared is not None and where == "cpu":
        from .kernels.cpu.conv.dispatch import conv2d_forward_prepared
        from .kernels.serial import LAUNCH_LOCK  # the scratch memory is shared, as for every kernel call
        padded, epilogue_arrays = _pad_right(x, geometry.extra_h, geometry.extra_w), \
            None if epilogue is None else _epilogue_arrays(epilogue, output)
        with LAUNCH_LOCK:
            conv2d_forward_prepared(padded, a["weight"], bias_array, output, prepared, *geometry.kernel_args,
                                    epilogue=epilogue_arrays)
        return _unbatched(output, squeeze)
    if epilogue is not None:
        backend.kernels(where).conv2d_forward(_pad_right(x, geometry.extra_h, geometry.extra_w), a["weight"],
                                              bias_array, output, *geometry.kernel_args)
        scale_shift(output, *epilogue, out=output)
        return _unbatched(output, squeeze)
    backend.kernels(where).conv2d_forward(_pad_right(x, geometry.extra_h, geometry.extra_w), a["weight"],
                                          bias_array, output, *geometry.kernel_args)
    return _unbatched(output, squeeze)


def _out_or_empty(out, shape, dtype, where, reads=()):
    """`out` when it is an array of this shape and dtype on this backend that the kernels can write (a layer's
    gradient buffer, see Parameter.grad_buffer), else a new array. Writable means C-contiguous, not read-only,
    and for numpy arrays sharing no memory with the arrays the call still reads (`reads`)."""
    if out is None or tuple(out.shape) != tuple(shape) or np.dtype(out.dtype) != dtype or \
            backend.backend_of(out) != where:
        return backend.empty(shape, dtype, where)
    if isinstance(out, np.ndarray):
        if out.flags.c_contiguous and out.flags.writeable and \
                not any(isinstance(other, np.ndarray) and np.may_share_memory(out, other) for other in reads):
            return out
    elif not (hasattr(out, "is_c_contiguous") and not out.is_c_contiguous()):
        return out
    return backend.empty(shape, dtype, where)


def _conv2d_backward(grad_output, input, weight, stride, padding, dilation, groups, need_input_grad=True,
                     need_weight_grad=True, grad_weight_out=None, grad_bias_out=None, need_bias_grad=True):
    where, dtype, a = checks.arrays(grad_output=grad_output, input=input, weight=weight)
    x, squeeze = _batched("input", a["input"], 2, "(N, C, H, W) or (C, H, W)")
    checks.ndim("weight", a["weight"], (4,), "(D, C/groups, kh, kw)")
    geometry = conv_geometry(x.shape, a["weight"].shape, stride, padding, dilation, groups)
    grad_y = a["grad_output"]
    if squeeze and grad_y.ndim == 3:  # like an unbatched input: the output's shape without N
        checks.shape("grad_output", grad_y, geometry.output_shape[1:])
        grad_y = grad_y.reshape(geometry.output_shape)
    checks.shape("grad_output", grad_y, geometry.output_shape)
    kernels = backend.kernels(where)
    padded = _pad_right(x, geometry.extra_h, geometry.extra_w)
    grad_weight = grad_bias = None
    if need_weight_grad:
        reads = (grad_y, padded, a["weight"])
        grad_weight = _out_or_empty(grad_weight_out, a["weight"].shape, dtype, where, reads)
        if need_bias_grad:
            grad_bias = _out_or_empty(grad_bias_out, (a["weight"].shape[0],), dtype, where, reads + (grad_weight,))
            kernels.conv2d_backward_weight_bias(grad_y, padded, grad_weight, grad_bias, *geometry.kernel_args)
        else:  # a layer without bias: no pass over grad_output for a sum nobody reads
            kernels.conv2d_backward_weight(grad_y, padded, grad_weight, *geometry.kernel_args)
    if not need_input_grad:
        return None, grad_weight, grad_bias
    grad_input = backend.empty(padded.shape, dtype, where)
    kernels.conv2d_backward_input(grad_y, a["weight"], grad_input, *geometry.kernel_args)
    grad_input = _crop(grad_input, x.shape[2], x.shape[3])
    return _unbatched(grad_input, squeeze), grad_weight, grad_bias


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation. input (N, C, H, W) or (C, H, W); weight (D, C/groups, kh, kw); bias (D,) or None.

    stride, dilation: int or (sh, sw); padding: int, (ph, pw), 'valid' or 'same' (stride 1 only).
    Returns (N, D, OH, OW) with OH = (H + 2ph - dh(kh-1) - 1) // sh + 1, likewise OW.
    """
    return _conv2d(input, weight, bias, stride, padding, dilation, groups)


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, need_input_grad=True,
                    need_weight_grad=True, grad_weight_out=None, grad_bias_out=None, need_bias_grad=True):
    """Gradients of conv2d: (grad_input like input, grad_weight like weight, grad_bias (D,)).

    need_input_grad=False skips grad_input (returned as None), e.g. for a network's first layer;
    need_weight_grad=False skips grad_weight and grad_bias (None), e.g. for gradient ascent on the input.
    grad_weight_out, grad_bias_out: arrays to write those gradients into (an optimizer's flat gradient
    buffer, see Parameter.grad_buffer), used when they have the gradient's shape, dtype and backend, are
    C-contiguous and writable, and share no memory with the arrays the call reads; otherwise new arrays are
    returned. need_bias_grad=False (a convolution without bias) skips grad_bias (None).
    """
    return _conv2d_backward(grad_output, input, weight, stride, padding, dilation, groups, need_input_grad,
                            bool(need_weight_grad), grad_weight_out, grad_bias_out, bool(need_bias_grad))


def _as_2d_hyper(name, value, minimum, fill):
    """A 1-D hyper-parameter (int or 1-tuple) as the 2-D pair (fill, value)."""
    if isinstance(value, str):
        return value
    return (fill, checks.pair(name, value, minimum, size=1)[0])


def _conv1d_views(input, weight, grad_output=checks.ABSENT):
    """(N, C, 1, W) and (D, Cg, 1, K) views of 1-D convolution arrays, after validating their layouts, and
    grad_output as given (when given)."""
    _, _, a = checks.arrays(input=input, weight=weight, grad_output=grad_output)
    x, squeeze = _batched("input", a["input"], 1, "(N, C, W) or (C, W)")
    checks.ndim("weight", a["weight"], (3,), "(D, C/groups, k)")
    views = [x.reshape((x.shape[0], x.shape[1], 1, x.shape[2])),
             a["weight"].reshape((a["weight"].shape[0], a["weight"].shape[1], 1, a["weight"].shape[2]))]
    if grad_output is not checks.ABSENT:
        views.append(a["grad_output"])  # checked against the output's shape by conv1d_backward
    return views, squeeze


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D cross-correlation. input (N, C, W) or (C, W); weight (D, C/groups, k); bias (D,) or None.

    Runs the 2-D kernels with H = 1. Returns (N, D, OW) (or (D, OW) for unbatched input).
    """
    (x, w), squeeze = _conv1d_views(input, weight)
    output = _conv2d(x, w, bias, _as_2d_hyper("stride", stride, 1, 1), _as_2d_hyper("padding", padding, 0, 0),
                     _as_2d_hyper("dilation", dilation, 1, 1), groups)
    output = output.reshape((output.shape[0], output.shape[1], output.shape[3]))
    return _unbatched(output, squeeze)


def conv1d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, need_input_grad=True):
    """Gradients of conv1d: (grad_input like input, grad_weight like weight, grad_bias (D,))."""
    (x, w, grad_y), squeeze = _conv1d_views(input, weight, grad_output)
    hyper = (_as_2d_hyper("stride", stride, 1, 1), _as_2d_hyper("padding", padding, 0, 0),
             _as_2d_hyper("dilation", dilation, 1, 1), groups)
    N, D, _, OW = conv_geometry(x.shape, w.shape, *hyper).output_shape
    checks.shape("grad_output", grad_y, (D, OW) if squeeze else (N, D, OW))
    grad_input, grad_weight, grad_bias = _conv2d_backward(grad_y.reshape((N, D, 1, OW)), x, w, *hyper,
                                                          need_input_grad)
    grad_weight = grad_weight.reshape(tuple(weight.shape))
    if grad_input is None:
        return None, grad_weight, grad_bias
    grad_input = grad_input.reshape((x.shape[0], x.shape[1], x.shape[3]))
    return _unbatched(grad_input, squeeze), grad_weight, grad_bias


# ----------------------------------------------------------------------------- pooling

@dataclass(frozen=True)
class PoolGeometry:
    kernel: tuple
    stride: tuple
    padding: tuple
    output_shape: tuple

    @property
    def kernel_args(self):
        return self.kernel + self.stride + self.padding


@remembered
def pool_geometry(input_shape, kernel_size, stride, padding, ceil_mode):
    """Validate pooling hyper-parameters against an (N, C, H, W) shape; return its PoolGeometry."""
    N, C, H, W = input_shape
    checks.spatial("input", input_shape)
    kernel = checks.pair("kernel_size", kernel_size, 1)
    stride = kernel if stride is None else checks.pair("stride", stride, 1)
    padding = checks.pair("padding", padding, 0)
    for axis in range(2):
        if 2 * padding[axis] > kernel[axis]:
            raise ValueError(f"padding must be at most half of kernel_size, got padding={padding} "
                             f"for kernel_size={kernel}")
    OH = _output_size("kernel_size height vs input height", H, kernel[0], stride[0], padding[0], ceil_mode=ceil_mode)
    OW = _output_size("kernel_size width vs input width", W, kernel[1], stride[1], padding[1], ceil_mode=ceil_mode)
    return PoolGeometry(kernel, stride, padding, (N, C, OH, OW))


def _pool_arrays(input, grad_output=checks.ABSENT):
    where, dtype, a = checks.arrays(input=input, grad_output=grad_output)
    x, squeeze = _batched("input", a["input"], 2, "(N, C, H, W) or (C, H, W)")
    grad_y = a.get("grad_output")
    if grad_y is not None and squeeze and grad_y.ndim == 3:
        grad_y = grad_y.reshape((1,) + tuple(grad_y.shape))
    return where, dtype, x, grad_y, squeeze


def max_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, return_indices=False):
    """Max pooling over (N, C, H, W) or (C, H, W); stride defaults to kernel_size.

    With return_indices=True also returns int64 indices (flat ih * W + iw within each plane),
    which max_pool2d_backward accepts to skip recomputing the forward pass.
    """
    where, dtype, x, _, squeeze = _pool_arrays(input)
    geometry = pool_geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    output = backend.empty(geometry.output_shape, dtype, where)
    indices = backend.empty(geometry.output_shape if return_indices else (0, 0, 0, 0), np.int64, where)
    backend.kernels(where).max_pool2d_forward(x, output, indices, *geometry.kernel_args)
    if return_indices:
        return _unbatched(output, squeeze), _unbatched(indices, squeeze)
    return _unbatched(output, squeeze)


def max_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False, indices=None,
                        check_indices=True):
    """Gradient of max_pool2d w.r.t. its input; pass the forward's indices to avoid recomputing them
    (each must be a position inside its input plane, 0 <= index < H * W). check_indices=False skips that
    check, for indices max_pool2d itself returned (a layer's own forward)."""
    return _max_pool2d_backward(grad_output, input, kernel_size, stride, padding, ceil_mode, indices,
                                bool(check_indices))


def _user_indices(indices, where):
    """Pooling indices given by a caller, as an int64 array on `where` (other libraries' arrays viewed as
    backend.as_array does), else a TypeError saying what is expected."""
    try:
        indices = backend.as_array(indices, "indices")
    except TypeError:
        pass  # not an array of any kind: int64_array's message says what is expected
    return checks.int64_array("indices", indices, where)


def _max_pool2d_backward(grad_output, input, kernel_size, stride, padding, ceil_mode, indices, check_indices):
    """max_pool2d_backward; check_indices=False trusts indices made by max_pool2d (the MaxPool2d layer's own)."""
    where, dtype, x, grad_y, squeeze = _pool_arrays(input, grad_output)
    geometry = pool_geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    checks.shape("grad_output", grad_y, geometry.output_shape)
    kernels = backend.kernels(where)
    if indices is None:
        indices = backend.empty(geometry.output_shape, np.int64, where)
        kernels.max_pool2d_forward(x, backend.empty(geometry.output_shape, dtype, where), indices,
                                   *geometry.kernel_args)
    else:
        indices = _user_indices(indices, where)
        if tuple(indices.shape) not in (geometry.output_shape, geometry.output_shape[1:] if squeeze else None):
            raise ValueError(f"indices must have the pooled output's shape {geometry.output_shape}, "
                             f"got {tuple(indices.shape)}")
        indices = backend.contiguous(indices).reshape(geometry.output_shape)
        if check_indices and indices.size:  # the kernel writes at these positions unchecked
            values = backend.to_host(indices)
            plane = x.shape[2] * x.shape[3]
            if values.min() < 0 or values.max() >= plane:
                raise ValueError(f"indices must be positions inside the input planes, 0 <= index < H*W = {plane}, "
                                 f"got values in [{values.min()}, {values.max()}]")
    grad_input = backend.empty(x.shape, dtype, where)
    kernels.max_pool2d_backward(grad_y, indices, grad_input, *geometry.kernel_args)
    return _unbatched(grad_input, squeeze)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling over (N, C, H, W) or (C, H, W); stride defaults to kernel_size.

    count_include_pad=True divides by the window size including zero padding (PyTorch's default).
    """
    where, dtype, x, _, squeeze = _pool_arrays(input)
    geometry = pool_geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    output = backend.empty(geometry.output_shape, dtype, where)
    backend.kernels(where).avg_pool2d_forward(x, output, *geometry.kernel_args, int(bool(count_include_pad)))
    return _unbatched(output, squeeze)


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """Gradient of avg_pool2d w.r.t. its input."""
    where, dtype, x, grad_y, squeeze = _pool_arrays(input, grad_output)
    geometry = pool_geometry(x.shape, kernel_size, stride, padding, ceil_mode)
    checks.shape("grad_output", grad_y, geometry.output_shape)
    grad_input = backend.empty(x.shape, dtype, where)
    backend.kernels(where).avg_pool2d_backward(grad_y, grad_input, *geometry.kernel_args, int(bool(count_include_pad)))
    return _unbatched(grad_input, squeeze)


def global_avg_pool2d(input):
    """Mean of each (H, W) plane: (N, C, H, W) -> (N, C, 1, 1) (like adaptive_avg_pool2d(input, 1))."""
    where, dtype, x, _, squeeze = _pool_arrays(input)
    checks.spatial("input", x.shape)
    output = backend.empty((x.shape[0], x.shape[1], 1, 1), dtype, where)
    backend.kernels(where).global_avg_pool2d_forward(x, output)
    return _unbatched(output, squeeze)


def global_avg_pool2d_backward(grad_output, input):
    """Gradient of global_avg_pool2d: grad_output (N, C, 1, 1) spread evenly over each plane."""
    where, dtype, x, grad_y, squeeze = _pool_arrays(input, grad_output)
    checks.spatial("input", x.shape)
    checks.shape("grad_output", grad_y, (x.shape[0], x.shape[1], 1, 1))
    grad_input = backend.empty(x.shape, dtype, where)
    backend.kernels(where).global_avg_pool2d_backward(grad_y, grad_input)
    return _unbatched(grad_input, squeeze)


# ----------------------------------------------------------------------------- activations

def _elementwise(kernel_of, *scalars, **named):
    """Run an element-wise kernel, kernel_of(the backend's kernels module), over flat views of arrays of one
    shape; return a new array of that shape."""
    where, dtype, a = checks.arrays(**named)
    first_name = next(iter(named))
    shape = tuple(a[first_name].shape)
    for name, array in a.items():
        checks.shape(name, array, shape)
    output = backend.empty(shape, dtype, where)
    kernel = kernel_of(backend.kernels(where))
    kernel(*(backend.flat(array) for array in a.values()), backend.flat(output), *scalars)
    return output


def relu(input):
    """max(input, 0), element-wise, any shape."""
    return _elementwise(lambda kernels: kernels.relu_forward, input=input)


def relu_backward(grad_output, input):
    return _elementwise(lambda kernels: kernels.relu_backward, grad_output=grad_output, input=input)


def relu6(input):
    """min(max(input, 0), 6), element-wise, any shape (MobileNet's activation; ONNX's Clip(0, 6))."""
    return _elementwise(lambda kernels: kernels.relu6_forward, input=input)


def relu6_backward(grad_output, input):
    return _elementwise(lambda kernels: kernels.relu6_backward, grad_output=grad_output, input=input)


def leaky_relu(input, negative_slope=0.01):
    """input where positive, negative_slope * input elsewhere."""
    return _elementwise(lambda kernels: kernels.leaky_relu_forward, checks.real("negative_slope", negative_slope),
                        input=input)


def leaky_relu_backward(grad_output, input, negative_slope=0.01):
    return _elementwise(lambda kernels: kernels.leaky_relu_backward, checks.real("negative_slope", negative_slope),
                        grad_output=grad_output, input=input)


def sigmoid(input):
    """1 / (1 + exp(-input)), computed without overflow."""
    return _elementwise(lambda kernels: kernels.sigmoid_forward, input=input)


def sigmoid_backward(grad_output, input):
    return _elementwise(lambda kernels: kernels.sigmoid_backward, grad_output=grad_output, input=input)


def tanh(input):
    return _elementwise(lambda kernels: kernels.tanh_forward, input=input)


def tanh_backward(grad_output, input):
    return _elementwise(lambda kernels: kernels.tanh_backward, grad_output=grad_output, input=input)


# ----------------------------------------------------------------------------- fully connected

def _linear_arrays(input, weight, grad_output=checks.ABSENT, bias=checks.ABSENT):
    where, dtype, a = checks.arrays(input=input, weight=weight, grad_output=grad_output, bias=bias,
                                    optional=("bias",))
    checks.ndim("input", a["input"], (2,), "(N, in_features)")
    checks.ndim("weight", a["weight"], (2,), "(out_features, in_features)")
    if a["weight"].shape[1] != a["input"].shape[1]:
        raise ValueError(f"weight must have shape (out_features, {a['input'].shape[1]}) for input with "
                         f"{a['input'].shape[1]} features, got {tuple(a['weight'].shape)}")
    return where, dtype, a


def linear(input, weight, bias=None):
    """Fully connected layer: input (N, I) @ weight (O, I).T + bias (O,) -> (N, O)."""
    return _linear_forward(lambda kernels: kernels.linear_forward, input, weight, bias)


def _linear_forward(kernel_of, input, weight, bias):
    """Validate a fully connected layer's arrays, run kernel_of(kernels) into a new (N, O) output."""
    where, dtype, a = _linear_arrays(input, weight, bias=bias)
    out_features = a["weight"].shape[0]
    if bias is not None:
        checks.shape("bias", a["bias"], (out_features,))
    output = backend.empty((a["input"].shape[0], out_features), dtype, where)
    bias_array = a["bias"] if bias is not None else backend.empty((0,), dtype, where)
    kernel_of(backend.kernels(where))(a["input"], a["weight"], bias_array, output)
    return output


def linear_backward(grad_output, input, weight, need_input_grad=True, grad_weight_out=None, grad_bias_out=None):
    """Gradients of linear: (grad_input (N, I) or None, grad_weight (O, I), grad_bias (O,)); grad_weight_out
    and grad_bias_out as for conv2d_backward."""
    return _linear_backward(lambda kernels: (kernels.linear_backward_input, kernels.linear_backward_weight_bias),
                            grad_output, None, input, weight, need_input_grad, grad_weight_out, grad_bias_out)


def _linear_backward(kernels_of, grad_output, output, input, weight, need_input_grad, grad_weight_out,
                     grad_bias_out):
    """A fully connected layer's gradients by kernels_of(kernels) = (input-gradient kernel, weight-and-bias
    kernel); with the ReLU's `output` (N, O) given (not None), the kernels take it after grad_output."""
    where, dtype, a = _linear_arrays(input, weight, grad_output=grad_output)
    shape = (a["input"].shape[0], a["weight"].shape[0])
    checks.shape("grad_output", a["grad_output"], shape)
    masks = ()
    if output is not None:
        _, _, b = checks.arrays(grad_output=a["grad_output"], output=output)
        checks.shape("output", b["output"], shape)
        masks = (b["output"],)
    input_kernel, weight_bias_kernel = kernels_of(backend.kernels(where))
    grad_input = None
    reads = (a["grad_output"], a["input"], a["weight"]) + masks
    grad_weight = _out_or_empty(grad_weight_out, a["weight"].shape, dtype, where, reads)
    grad_bias = _out_or_empty(grad_bias_out, (a["weight"].shape[0],), dtype, where, reads + (grad_weight,))
    if need_input_grad:
        grad_input = backend.empty(a["input"].shape, dtype, where)
        input_kernel(a["grad_output"], *masks, a["weight"], grad_input)
    weight_bias_kernel(a["grad_output"], *masks, a["input"], grad_weight, grad_bias)
    return grad_input, grad_weight, grad_bias


def linear_relu(input, weight, bias=None):
    """relu(linear(input, weight, bias)) in one kernel call (nn.Sequential runs Linear then ReLU so)."""
    return _linear_forward(lambda kernels: kernels.linear_relu_forward, input, weight, bias)


def linear_relu_backward(grad_output, output, input, weight, need_input_grad=True, grad_weight_out=None,
                         grad_bias_out=None):
    """Gradients of relu(linear(input)) from the ReLU's output gradient and its output (N, O):
    (grad_input or None, grad_weight, grad_bias), in one or two kernel calls."""
    if output is None:
        raise TypeError("output must be a numpy array or a CUDA device array, got None")
    return _linear_backward(
        lambda kernels: (kernels.linear_relu_backward_input, kernels.linear_relu_backward_weight_bias),
        grad_output, output, input, weight, need_input_grad, grad_weight_out, grad_bias_out)


# ----------------------------------------------------------------------------- locally connected

def local_conv2d_output_size(input_shape, kernel_size, stride=1, padding=0):
    """(OH, OW) of a locally connected layer over (N, C, H, W) input."""
    kernel = checks.pair("kernel_size", kernel_size, 1)
    stride = checks.pair("stride", stride, 1)
    padding = checks.pair("padding", padding, 0)
    return (_output_size("kernel_size height vs input height", input_shape[2], kernel[0], stride[0], padding[0]),
            _output_size("kernel_size width vs input width", input_shape[3], kernel[1], stride[1], padding[1]))


def _local_arrays(input, weight, stride, padding, grad_output=checks.ABSENT, bias=checks.ABSENT):
    where, dtype, a = checks.arrays(input=input, weight=weight, grad_output=grad_output, bias=bias,
                                    optional=("bias",))
    checks.ndim("input", a["input"], (4,), "(N, C, H, W)")
    checks.ndim("weight", a["weight"], (6,), "(OH, OW, D, C, kh, kw)")
    checks.spatial("input", a["input"].shape)
    checks.nonempty("weight", a["weight"].shape)
    OH, OW, D, C, KH, KW = a["weight"].shape
    expected = local_conv2d_output_size(a["input"].shape, (KH, KW), stride, padding) + (D, a["input"].shape[1], KH, KW)
    checks.shape("weight", a["weight"], expected)
    hyper = checks.pair("stride", stride, 1) + checks.pair("padding", padding, 0)
    return where, dtype, a, (a["input"].shape[0], D, OH, OW), hyper


def local_conv2d(input, weight, bias=None, stride=1, padding=0):
    """Locally connected layer (unshared weights): input (N, C, H, W), weight (OH, OW, D, C, kh, kw),
    bias (D, OH, OW) or None -> (N, D, OH, OW)."""
    where, dtype, a, output_shape, hyper = _local_arrays(input, weight, stride, padding, bias=bias)
    if bias is not None:
        checks.shape("bias", a["bias"], output_shape[1:])
    output = backend.empty(output_shape, dtype, where)
    bias_array = a["bias"] if bias is not None else backend.empty((0, 0, 0), dtype, where)
    backend.kernels(where).local_conv2d_forward(a["input"], a["weight"], bias_array, output, *hyper)
    return output


def local_conv2d_backward(grad_output, input, weight, stride=1, padding=0, need_input_grad=True):
    """Gradients of local_conv2d: (grad_input or None when need_input_grad=False, grad_weight,
    grad_bias (D, OH, OW))."""
    where, dtype, a, output_shape, hyper = _local_arrays(input, weight, stride, padding, grad_output=grad_output)
    checks.shape("grad_output", a["grad_output"], output_shape)
    kernels = backend.kernels(where)
    grad_input = None
    grad_weight = backend.empty(a["weight"].shape, dtype, where)
    grad_bias = backend.empty(output_shape[1:], dtype, where)
    if need_input_grad:
        grad_input = backend.empty(a["input"].shape, dtype, where)
        kernels.local_conv2d_backward_input(a["grad_output"], a["weight"], grad_input, *hyper)
    kernels.local_conv2d_backward_weight(a["grad_output"], a["input"], grad_weight, *hyper)
    kernels.local_conv2d_backward_bias(a["grad_output"], grad_bias)
    return grad_input, grad_weight, grad_bias


# ----------------------------------------------------------------------------- joining branches

__all__ += ["add", "add_", "cat", "cat_backward"]


def add(input, other):
    """input + other, element-wise, for arrays of one shape, dtype and backend (a residual sum). Its
    gradient reaches both operands unchanged, so there is no add_backward."""
    return _elementwise(lambda kernels: kernels.add_forward, input=input, other=other)


def _writable_in_place(name, array, purpose):
    """`array` itself (a Numba view of it for other device arrays) to be written in place; it must be
    C-contiguous, since a contiguous copy would take the writes instead."""
    if isinstance(array, np.ndarray):
        target = array
    elif backend.is_device_array(array):
        target = backend.as_device_array(array)
    else:  # a view of host memory (a PyTorch CPU tensor, a DLPack or buffer-protocol exporter), never a copy
        target = backend.as_array(array, name)
    contiguous = target.flags.c_contiguous if isinstance(target, np.ndarray) else target.is_c_contiguous()
    if not contiguous:
        raise ValueError(f"{name} must be a C-contiguous array ({purpose})")
    if isinstance(target, np.ndarray) and not target.flags.writeable:
        raise ValueError(f"{name} must be a writable array ({purpose}), got a read-only one")
    return target


def add_(input, other):
    """input += other in place (input must be C-contiguous); returns input. A residual sum without a new array."""
    where, dtype, a = checks.arrays(input=input, other=other)
    target = _writable_in_place("input", input, "it is added to in place; use add() for a new array")
    checks.shape("other", a["other"], tuple(target.shape))
    other = a["other"]
    if _overlaps_elsewhere(target, other):  # as numpy's +=: other is read as it was before the sum
        other = other.copy()
    flat_input = backend.flat(target)
    backend.kernels(where).add_forward(flat_input, backend.flat(other), flat_input)
    return input


def _cat_dim(dim, ndim, name="dim"):
    """dim (negative counts from the end, as in PyTorch) as an axis in [0, ndim)."""
    dim = checks.integer(name, dim, -ndim)
    if dim >= ndim:
        raise ValueError(f"{name} must lie in [{-ndim}, {ndim}) for {ndim}-D arrays, got {dim}")
    return dim % ndim


def _folded(array, dim, extent):
    """(outer, extent, inner) view of a contiguous array joined along `dim`."""
    shape = tuple(array.shape)
    outer = int(np.prod(shape[:dim], dtype=np.int64))
    inner = int(np.prod(shape[dim + 1:], dtype=np.int64))
    return array.reshape((outer, extent, inner))


def cat(inputs, dim=1):
    """Concatenate arrays along `dim` (default 1: channels of (N, C, H, W)), like torch.cat.

    inputs: a list or tuple of arrays of one dtype and backend whose shapes agree except along dim.
    Returns a new array; cat_backward(grad_output, [x.shape[dim] for x in inputs], dim) splits a gradient.
    """
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise TypeError(f"inputs must be a non-empty list or tuple of arrays, got {type(inputs).__name__}"
                        + (" (empty)" if isinstance(inputs, (list, tuple)) else ""))
    where, dtype, a = checks.arrays(**{f"inputs[{k}]": array for k, array in enumerate(inputs)})
    if len(a) != len(inputs):
        raise TypeError("inputs must not hold None")
    arrays = list(a.values())
    first = tuple(arrays[0].shape)
    if not first:
        raise ValueError("inputs must be at least 1-D to be concatenated, got 0-D arrays")
    dim = _cat_dim(dim, len(first))
    for k, array in enumerate(arrays):
        shape = tuple(array.shape)
        if len(shape) != len(first) or shape[:dim] != first[:dim] or shape[dim + 1:] != first[dim + 1:]:
            raise ValueError(f"inputs must have equal shapes except along dim={dim}: inputs[0] has shape {first}, "
                             f"inputs[{k}] has {shape}")
    total = sum(int(array.shape[dim]) for array in arrays)
    output = backend.empty(first[:dim] + (total,) + first[dim + 1:], dtype, where)
    folded_output = _folded(output, dim, total)
    kernel = backend.kernels(where).cat_forward
    offset = 0
    for array in arrays:
        extent = int(array.shape[dim])
        if extent and array.size:
            kernel(_folded(array, dim, extent), folded_output, offset)
        offset += extent
    return output


def cat_backward(grad_output, sizes, dim=1):
    """Split the gradient of cat into one gradient per input: sizes are the inputs' extents along dim.

    Where a piece is already contiguous in grad_output (every axis before dim has size 1) it is returned
    as a view rather than a copy.
    """
    where, dtype, a = checks.arrays(grad_output=grad_output)
    grad_y = a["grad_output"]
    shape = tuple(grad_y.shape)
    if not shape:
        raise ValueError("grad_output must be at least 1-D, got a 0-D array")
    dim = _cat_dim(dim, len(shape))
    if not isinstance(sizes, (list, tuple)) or not sizes:
        raise TypeError(f"sizes must be a non-empty list or tuple of ints, got {sizes!r}")
    sizes = [checks.integer(f"sizes[{k}]", size, 0) for k, size in enumerate(sizes)]
    if sum(sizes) != shape[dim]:
        raise ValueError(f"sizes must add up to grad_output's extent along dim={dim} ({shape[dim]}), "
                         f"got {sizes} (sum {sum(sizes)})")
    folded = _folded(grad_y, dim, shape[dim])
    kernel = backend.kernels(where).cat_backward
    grads, offset = [], 0
    for extent in sizes:
        piece_shape = shape[:dim] + (extent,) + shape[dim + 1:]
        if folded.shape[0] == 1:
            grads.append(folded[:, offset:offset + extent, :].reshape(piece_shape))
        else:
            grad = backend.empty(piece_shape, dtype, where)
            if grad.size:
                kernel(folded, _folded(grad, dim, extent), offset)
            grads.append(grad)
        offset += extent
    return grads


# ----------------------------------------------------------------------------- batch normalization

__all__ += ["batch_norm", "batch_norm_backward"]


def _batch_norm_arrays(input, running_mean, running_var, weight, bias, grad_output=checks.ABSENT, stats=None):
    """Validate batch_norm's arrays; return (backend, dtype, {name: array}, input as (N, C, S))."""
    mean, invstd = (checks.ABSENT, checks.ABSENT) if stats is None else _stats_pair(stats)
    where, dtype, a = checks.arrays(input=input, grad_output=grad_output, running_mean=running_mean,
                                    running_var=running_var, weight=weight, bias=bias, mean=mean, invstd=invstd,
                                    optional=("running_mean", "running_var", "weight", "bias"))
    x = a["input"]
    checks.ndim("input", x, (2, 3, 4), "(N, C), (N, C, L) or (N, C, H, W)")
    N, C = x.shape[0], x.shape[1]
    if C == 0:
        raise ValueError(f"input must have at least one channel, got shape {tuple(x.shape)}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must be given together (or both None)")
    for name in ("running_mean", "running_var", "weight", "bias", "mean", "invstd"):
        if name in a:
            checks.shape(name if name not in ("mean", "invstd") else f"stats' {name}", a[name], (C,))
    if grad_output is not checks.ABSENT:
        checks.shape("grad_output", a["grad_output"], tuple(x.shape))
    S = int(np.prod(x.shape[2:], dtype=np.int64))
    return where, dtype, a, x.reshape((N, C, S))


def _stats_pair(stats):
    if not isinstance(stats, (tuple, list)) or len(stats) != 2:
        raise TypeError(f"stats must be the (mean, invstd) pair that batch_norm(..., return_stats=True) returns, "
                        f"got {type(stats).__name__}")
    return stats


def _bn_hyper(training, momentum, eps):
    momentum = checks.real("momentum", momentum)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
    eps = checks.real("eps", eps)
    if not eps > 0.0:
        raise ValueError(f"eps must be > 0, got {eps}")
    return int(bool(training)), momentum, eps


def _check_values_per_channel(x, training):
    if training and x.shape[0] * x.shape[2] <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input of shape "
                         f"{(x.shape[0], x.shape[1]) + ((x.shape[2],) if x.shape[2] != 1 else ())} "
                         f"(batch statistics need at least two values per channel)")


def _empty_channels(dtype, where):
    return backend.empty((0,), dtype, where)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               return_stats=False):
    """Batch normalization over the channels (axis 1) of input (N, C), (N, C, L) or (N, C, H, W), as
    torch.nn.functional.batch_norm: output = (input - mean) / sqrt(var + eps) * weight + bias.

    training=True normalises with the batch's mean and biased variance and, when running_mean and
    running_var (C,) are given, updates them IN PLACE: running = (1 - momentum) * running + momentum * batch,
    with the unbiased batch variance. training=False uses running_mean and running_var. weight, bias: (C,)
    or None. return_stats=True also returns (mean, invstd), the (C,) statistics used (invstd =
    1 / sqrt(var + eps)), which batch_norm_backward accepts as stats= to skip recomputing them.
    """
    return _batch_norm_forward_call(input, running_mean, running_var, weight, bias, training, momentum, eps,
                                    return_stats, relu=False, residual=None)


def _batch_norm_forward_call(input, running_mean, running_var, weight, bias, training, momentum, eps, return_stats,
                             relu, residual):
    """batch_norm (relu=False) or batch_norm_relu (relu=True, residual an array or None): checks, allocation
    and the kernel call."""
    where, dtype, a, x = _batch_norm_arrays(input, running_mean, running_var, weight, bias)
    training, momentum, eps = _bn_hyper(training, momentum, eps)
    if not training and running_mean is None:
        raise ValueError("running_mean and running_var are needed when training=False")
    _check_values_per_channel(x, training)
    for name, given in (("running_mean", running_mean), ("running_var", running_var)):
        if given is not None and training:
            a[name] = _writable_in_place(name, given, "it is updated in place when training")
        elif given is not None and isinstance(a[name], np.ndarray) and not a[name].flags.writeable:
            a[name] = a[name].copy()  # only read in evaluation; the kernel's signature is that of a writable array
    C = x.shape[1]
    empty = _empty_channels(dtype, where)
    output = backend.empty(x.shape, dtype, where)
    mean, invstd = backend.empty((C,), dtype, where), backend.empty((C,), dtype, where)
    kernels = backend.kernels(where)
    arrays = (x, a.get("weight", empty), a.get("bias", empty), a.get("running_mean", empty),
              a.get("running_var", empty))
    if relu:
        residual_array = backend.empty((0, 0, 0), dtype, where) if residual is None else \
            _same_shape_array("residual", residual, a["input"], where, dtype).reshape(x.shape)
        kernels.batch_norm_relu_forward(*arrays, residual_array, output, mean, invstd, momentum, eps, training)
    else:
        kernels.batch_norm_forward(*arrays, output, mean, invstd, momentum, eps, training)
    output = output.reshape(tuple(a["input"].shape))
    return (output, (mean, invstd)) if return_stats else output


def batch_norm_backward(grad_output, input, running_mean, running_var, weight=None, bias=None, training=False,
                        eps=1e-5, stats=None, need_input_grad=True):
    """Gradients of batch_norm: (grad_input like input, grad_weight (C,) or None, grad_bias (C,) or None);
    grad_weight is None when weight is, grad_bias when bias is.

    training=True gives the full gradient through the batch statistics; training=False treats the running
    statistics as constants. stats: the (mean, invstd) that batch_norm(..., return_stats=True) returned for
    this input (recomputed when None; the running statistics are not touched). need_input_grad=False
    returns None for grad_input.
    """
    return _batch_norm_backward_call(grad_output, input, running_mean, running_var, weight, bias, training, eps,
                                     stats, need_input_grad, relu=False, output=None)


def _batch_norm_backward_call(grad_output, input, running_mean, running_var, weight, bias, training, eps, stats,
                              need_input_grad, relu, output):
    """batch_norm_backward (relu=False) or batch_norm_relu_backward (relu=True, output: the fused forward's):
    checks, statistics when not given, allocation and the kernel call."""
    where, dtype, a, x = _batch_norm_arrays(input, running_mean, running_var, weight, bias,
                                            grad_output=grad_output, stats=stats)
    if relu:
        output = _same_shape_array("output", output, a["input"], where, dtype).reshape(x.shape)
    training, _, eps = _bn_hyper(training, 0.0, eps)
    _check_values_per_channel(x, training)
    C = x.shape[1]
    kernels = backend.kernels(where)
    empty = _empty_channels(dtype, where)
    if stats is not None:
        mean, invstd = a["mean"], a["invstd"]
    else:
        if not training and running_mean is None:
            raise ValueError("running_mean and running_var are needed when training=False")
        mean, invstd = backend.empty((C,), dtype, where), backend.empty((C,), dtype, where)
        running = (empty, empty) if training else (a["running_mean"], a["running_var"])
        kernels.batch_norm_stats(x, *running, mean, invstd, 0.0, eps, training)
    grad_input = backend.empty(x.shape if need_input_grad else (0, 0, 0), dtype, where)
    grad_weight = backend.empty((C,), dtype, where) if weight is not None else empty
    grad_bias = backend.empty((C,), dtype, where) if bias is not None else empty
    grad = a["grad_output"].reshape(x.shape)
    if not relu:
        kernels.batch_norm_backward(grad, x, a.get("weight", empty), mean, invstd, grad_input, grad_weight,
                                    grad_bias, training)
    else:
        kernels.batch_norm_relu_backward(grad, output, x, a.get("weight", empty), mean, invstd, grad_input,
                                         grad_weight, grad_bias, training)
    return (grad_input.reshape(tuple(a["input"].shape)) if need_input_grad else None,
            grad_weight if weight is not None else None, grad_bias if bias is not None else None)


# Batch normalization fused with a ReLU (and a residual sum before it): the layers run a ResNet's
# normalise-add-rectify in one pass when training, and its backward in one call.

__all__ += ["batch_norm_relu", "batch_norm_relu_backward"]


def _same_shape_array(name, value, x_array, where, dtype):
    """`value` as a C-contiguous array of x's shape, backend and dtype (else a clear error naming it)."""
    value_where, value_dtype, a = checks.arrays(**{name: value})
    if value_where != where:
        raise TypeError(f"{name} must be on the same backend as input ({where})")
    if value_dtype != dtype:
        raise TypeError(f"{name} must have input's dtype {dtype}, got {value_dtype}")
    checks.shape(name, a[name], tuple(x_array.shape))
    return a[name]


def batch_norm_relu(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                    eps=1e-5, residual=None, return_stats=False):
    """relu(batch_norm(input, ...) + residual) in one pass (residual None: relu(batch_norm(input, ...))), with
    batch_norm's arguments, rules and running-statistics update; the same values as the separate calls (bit
    for bit; the backward up to the order of its sums). residual: an array shaped like input, or None.
    return_stats=True also returns (mean, invstd) for batch_norm_relu_backward's stats=."""
    return _batch_norm_forward_call(input, running_mean, running_var, weight, bias, training, momentum, eps,
                                    return_stats, relu=True, residual=residual)


def batch_norm_relu_backward(grad_output, output, input, running_mean, running_var, weight=None, bias=None,
                             training=False, eps=1e-5, stats=None, need_input_grad=True):
    """Gradients of relu(batch_norm(input, ...)) given its output: batch_norm_backward's (grad_input, grad_weight,
    grad_bias) for the gradient that passes the ReLU, grad_output where output > 0. `output` is
    batch_norm_relu's (without a residual), stats= the (mean, invstd) it returned (recomputed when None)."""
    return _batch_norm_backward_call(grad_output, input, running_mean, running_var, weight, bias, training, eps,
                                     stats, need_input_grad, relu=True, output=output)


# ----------------------------------------------------------------------------- local response normalization

__all__ += ["local_response_norm", "local_response_norm_backward"]


# Inference: eval-mode batch normalization as a per-channel scale and shift, fused with a residual sum and
# a ReLU in one pass (nbconv.nn.infer runs ResNets' normalisations, sums and activations through it).

_SCALE_SHIFT_ACTIVATIONS = {None: 0, "relu": 1, "relu6": 2}

__all__ += ["batch_norm_scale_shift", "scale_shift"]


def batch_norm_scale_shift(running_mean, running_var, weight=None, bias=None, eps=1e-5):
    """(scale, shift), each (C,), with batch_norm(x, running_mean, running_var, weight, bias, training=False)
    == x * scale[c] + shift[c] per channel c: scale = weight / sqrt(running_var + eps), shift = bias -
    running_mean * scale; computed in float64, returned in the arrays' dtype on their backend."""
    where, dtype, a = checks.arrays(running_mean=running_mean, running_var=running_var, weight=weight, bias=bias,
                                    optional=("weight", "bias"))
    checks.ndim("running_mean", a["running_mean"], (1,), "(C,)")
    C = a["running_mean"].shape[0]
    for name in ("running_var", "weight", "bias"):
        if name in a:
            checks.shape(name, a[name], (C,))
    eps = checks.real("eps", eps)
    if not eps > 0.0:
        raise ValueError(f"eps must be > 0, got {eps}")
    host = {name: np.asarray(backend.to_host(value), np.float64) for name, value in a.items()}
    with np.errstate(invalid="ignore", divide="ignore"):  # a negative variance gives NaN, as batch_norm does
        scale = 1.0 / np.sqrt(host["running_var"] + eps)
        if "weight" in host:
            scale = scale * host["weight"]
        shift = (host["bias"] if "bias" in host else 0.0) - host["running_mean"] * scale
    return (backend.transfer(np.ascontiguousarray(scale, dtype), where),
            backend.transfer(np.ascontiguousarray(shift, dtype), where))


def scale_shift(input, scale=None, shift=None, residual=None, activation=None, out=None):
    """activation(input * scale[c] + shift[c] + residual) per channel c of axis 1, in one pass: an eval-mode
    batch normalization (scale and shift from batch_norm_scale_shift), a residual sum and a ReLU at once.

    input (N, C, ...) with at least two axes; scale, shift (C,) or None (1 and 0); residual shaped like input
    or None; activation None, 'relu' or 'relu6'. The scaled value is rounded to the dtype before the residual
    is added, as separate batch_norm and add calls round it. out: None for a new array, or a C-contiguous
    array shaped like input to write into: input itself (or residual) for an update in place. Returns it.
    """
    if not (activation is None or isinstance(activation, str)) or activation not in _SCALE_SHIFT_ACTIVATIONS:
        raise ValueError(f"activation must be None, 'relu' or 'relu6', got {activation!r}")
    where, dtype, a = checks.arrays(input=input, scale=scale, shift=shift, residual=residual, out=out,
                                    optional=("scale", "shift", "residual", "out"))
    x = a["input"]
    if x.ndim < 2:
        raise ValueError(f"input must have layout (N, C, ...) with at least two axes, got shape {tuple(x.shape)}")
    N, C = x.shape[0], x.shape[1]
    for name in ("scale", "shift"):
        if name in a:
            checks.shape(name, a[name], (C,))
    if "residual" in a:
        checks.shape("residual", a["residual"], tuple(x.shape))
    if out is None:
        output = backend.empty(tuple(x.shape), dtype, where)
    else:
        output = _writable_in_place("out", out, "the result is written into it")
        checks.shape("out", output, tuple(x.shape))
        for name in ("input", "residual"):
            if name in a and _overlaps_elsewhere(output, a[name]):
                raise ValueError(f"out must be {name} itself or not overlap it (each element is read where it "
                                 "is written)")
    S = int(np.prod(x.shape[2:], dtype=np.int64))
    empty = _empty_channels(dtype, where)
    output_view = output.reshape((N, C, S))

    def view(array):  # the output's own view for the output itself: the kernel sees a call in place at once
        return output_view if array is output else array.reshape((N, C, S))
    residual_view = view(a["residual"]) if "residual" in a else backend.empty((0, 0, 0), dtype, where)
    backend.kernels(where).scale_shift_forward(
        view(x), a.get("scale", empty), a.get("shift", empty), residual_view, output_view,
        _SCALE_SHIFT_ACTIVATIONS[activation])
    return output if out is None else out


def _epilogue_arrays(epilogue, output):
    """(scale, shift, residual, activation) for the CPU convolution kernels' epilogue, validated against the
    convolution's new output (N, D, OH, OW): absent arrays empty, residual as (N, D, OH*OW), activation 0/1/2."""
    scale, shift, residual, activation = epilogue
    if not (activation is None or isinstance(activation, str)) or activation not in _SCALE_SHIFT_ACTIVATIONS:
        raise ValueError(f"activation must be None, 'relu' or 'relu6', got {activation!r}")
    _, dtype, a = checks.arrays(output=output, scale=scale, shift=shift, residual=residual,
                                optional=("scale", "shift", "residual"))
    N, D, OH, OW = output.shape
    for name in ("scale", "shift"):
        if name in a:
            checks.shape(name, a[name], (D,))
    if "residual" in a:
        checks.shape("residual", a["residual"], tuple(output.shape))
    empty = np.empty(0, dtype)
    return (a.get("scale", empty), a.get("shift", empty),
            a["residual"].reshape((N, D, OH * OW)) if "residual" in a else np.empty((0, 0, 0), dtype),
            _SCALE_SHIFT_ACTIVATIONS[activation])


def _overlaps_elsewhere(output, other):
    """Whether two host arrays share memory without being the same elements in the same order."""
    if output is other or not isinstance(output, np.ndarray) or not isinstance(other, np.ndarray):
        return False  # device arrays: only the same array or separate ones are made by nbconv
    if not np.may_share_memory(output, other):
        return False
    return not (output.ctypes.data == other.ctypes.data and output.strides == other.strides)


def _lrn_arrays(input, size, alpha, beta, k, grad_output=checks.ABSENT):
    where, dtype, a = checks.arrays(input=input, grad_output=grad_output)
    x = a["input"]
    if x.ndim < 3:
        raise ValueError(f"input must be 3-D or more, with layout (N, C, L), (N, C, H, W), ..., "
                         f"got shape {tuple(x.shape)}")
    if grad_output is not checks.ABSENT:
        checks.shape("grad_output", a["grad_output"], tuple(x.shape))
    hyper = (checks.integer("size", size, 1), checks.real("alpha", alpha), checks.real("beta", beta),
             checks.real("k", k))
    folded = (x.shape[0], x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64)))
    return where, dtype, a, folded, hyper


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalization across channels (AlexNet), as torch.nn.functional.local_response_norm:
    output[:, c] = input[:, c] / (k + alpha / size * sum of input[:, c']**2 over
    c' in [c - size // 2, c + (size - 1) // 2], channels outside [0, C) counting as zeros) ** beta.

    input: (N, C, L), (N, C, H, W) or more axes; size >= 1 channels in the window.
    """
    where, dtype, a, folded, hyper = _lrn_arrays(input, size, alpha, beta, k)
    output = backend.empty(folded, dtype, where)
    if output.size:
        backend.kernels(where).local_response_norm_forward(a["input"].reshape(folded), output, *hyper)
    return output.reshape(tuple(a["input"].shape))


def local_response_norm_backward(grad_output, input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Gradient of local_response_norm w.r.t. its input (like input)."""
    where, dtype, a, folded, hyper = _lrn_arrays(input, size, alpha, beta, k, grad_output)
    grad_input = backend.empty(folded, dtype, where)
    if grad_input.size:
        backend.kernels(where).local_response_norm_backward(a["grad_output"].reshape(folded),
                                                            a["input"].reshape(folded), grad_input, *hyper)
    return grad_input.reshape(tuple(a["input"].shape))


# ----------------------------------------------------------------------------- adaptive pooling

__all__ += ["adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "adaptive_max_pool2d",
            "adaptive_max_pool2d_backward"]


def _adaptive_geometry(x, output_size):
    """(N, C, OH, OW) for output_size = int, (OH, OW) (None in a pair keeps that input size)."""
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = tuple(x.shape[2 + axis] if value is None else value for axis, value in enumerate(output_size))
    OH, OW = checks.pair("output_size", output_size, 1)
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"input must have a non-empty plane to pool, got shape {tuple(x.shape)}")
    shape = (x.shape[0], x.shape[1], OH, OW)
    checks.fits_in_memory("the output", shape, x.dtype, {"output_size": (OH, OW)})
    return shape


def adaptive_avg_pool2d(input, output_size):
    """Average pooling of (N, C, H, W) or (C, H, W) to output_size (int or (OH, OW)) with PyTorch's windows:
    output row i averages input rows [floor(i * H / OH), ceil((i + 1) * H / OH)), likewise columns."""
    where, dtype, x, _, squeeze = _pool_arrays(input)
    output = backend.empty(_adaptive_geometry(x, output_size), dtype, where)
    if output.size:
        backend.kernels(where).adaptive_avg_pool2d_forward(x, output)
    return _unbatched(output, squeeze)


def adaptive_avg_pool2d_backward(grad_output, input, output_size):
    """Gradient of adaptive_avg_pool2d w.r.t. its input."""
    where, dtype, x, grad_y, squeeze = _pool_arrays(input, grad_output)
    checks.shape("grad_output", grad_y, _adaptive_geometry(x, output_size))
    grad_input = backend.empty(x.shape, dtype, where)
    if grad_input.size:
        backend.kernels(where).adaptive_avg_pool2d_backward(grad_y, grad_input)
    return _unbatched(grad_input, squeeze)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max pooling of (N, C, H, W) or (C, H, W) to output_size with adaptive_avg_pool2d's windows. With
    return_indices=True also returns int64 indices (flat ih * W + iw within each plane), which
    adaptive_max_pool2d_backward accepts to skip recomputing them."""
    where, dtype, x, _, squeeze = _pool_arrays(input)
    shape = _adaptive_geometry(x, output_size)
    output = backend.empty(shape, dtype, where)
    indices = backend.empty(shape if return_indices else (0, 0, 0, 0), np.int64, where)
    if output.size:
        backend.kernels(where).adaptive_max_pool2d_forward(x, output, indices)
    if return_indices:
        return _unbatched(output, squeeze), _unbatched(indices, squeeze)
    return _unbatched(output, squeeze)


def adaptive_max_pool2d_backward(grad_output, input, output_size, indices=None, check_indices=True):
    """Gradient of adaptive_max_pool2d w.r.t. its input; indices: the forward's, to avoid recomputing them
    (each a position inside its input plane, 0 <= index < H * W). check_indices=False skips that check, for
    indices adaptive_max_pool2d itself returned."""
    return _adaptive_max_pool2d_backward(grad_output, input, output_size, indices, bool(check_indices))


def _adaptive_max_pool2d_backward(grad_output, input, output_size, indices, check_indices):
    """adaptive_max_pool2d_backward; check_indices=False trusts indices made by adaptive_max_pool2d."""
    where, dtype, x, grad_y, squeeze = _pool_arrays(input, grad_output)
    shape = _adaptive_geometry(x, output_size)
    checks.shape("grad_output", grad_y, shape)
    kernels = backend.kernels(where)
    if indices is None:
        indices = backend.empty(shape, np.int64, where)
        if indices.size:
            kernels.adaptive_max_pool2d_forward(x, backend.empty(shape, dtype, where), indices)
    else:
        indices = _user_indices(indices, where)
        if tuple(indices.shape) not in (shape, shape[1:] if squeeze else None):
            raise ValueError(f"indices must have the pooled output's shape {shape}, got {tuple(indices.shape)}")
        indices = backend.contiguous(indices).reshape(shape)
        if check_indices and indices.size:  # the CPU kernel writes at these positions unchecked
            values = backend.to_host(indices)
            plane = x.shape[2] * x.shape[3]
            if values.min() < 0 or values.max() >= plane:
                raise ValueError(f"indices must be positions inside the input planes, 0 <= index < H*W = {plane}, "
                                 f"got values in [{values.min()}, {values.max()}]")
    grad_input = backend.empty(x.shape, dtype, where)
    if grad_input.size:
        kernels.adaptive_max_pool2d_backward(grad_y, indices, grad_input)
    return _unbatched(grad_input, squeeze)


# ----------------------------------------------------------------------------- loss and dropout

def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy of logits (N, K) against integer labels (N,) in [0, K).

    Returns (loss as a float, grad_logits (N, K)): forward and backward in one fused kernel.
    labels live on the same backend as logits. An empty batch (N = 0) gives a NaN loss (the mean of no
    values, as PyTorch's cross_entropy with reduction='mean' gives) and an empty (0, K) gradient, without a
    warning.
    """
    where, dtype, a = checks.arrays(logits=logits)
    checks.ndim("logits", a["logits"], (2,), "(N, classes)")
    N, K = a["logits"].shape
    labels = backend.as_array(labels, "labels")
    host_labels = backend.to_host(labels) if backend.is_device_array(labels) else labels
    if not isinstance(host_labels, np.ndarray) or not np.issubdtype(host_labels.dtype, np.integer):
        raise TypeError(f"labels must be an integer array, got {type(labels).__name__} "
                        f"of dtype {getattr(labels, 'dtype', None)}")
    checks.shape("labels", host_labels, (N,))
    if N and (host_labels.min() < 0 or host_labels.max() >= K):
        raise ValueError(f"labels must lie in [0, {K}) for logits with {K} classes, "
                         f"got values from {host_labels.min()} to {host_labels.max()}")
    if backend.backend_of(labels) != where:
        raise TypeError(f"labels must be on the same backend as logits ({where})")
    label_array = backend.contiguous(labels) if np.dtype(labels.dtype) == np.int64 else \
        backend.transfer(host_labels.astype(np.int64), where)
    losses = backend.empty((N,), dtype, where)
    grad_logits = backend.empty((N, K), dtype, where)
    if N == 0:  # nothing to compute, and numpy's mean of nothing warns
        return float("nan"), grad_logits
    backend.kernels(where).softmax_cross_entropy(a["logits"], label_array, losses, grad_logits)
    return float(backend.to_host(losses).mean()), grad_logits


def dropout(input, probability, rng):
    """Inverted dropout: zero each element with `probability`, scale the rest by 1 / (1 - probability).

    rng: a numpy Generator or a legacy RandomState (the noise is drawn on the host, so runs are reproducible
    on both backends).
    Returns (output, mask); dropout_backward takes the mask.
    """
    probability = checks.real("probability", probability)
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"probability must lie in [0, 1), got {probability}")
    where, dtype, a = checks.arrays(input=input)
    checks.generator("rng", rng)
    noise = backend.transfer(checks.uniform_float32(rng, a["input"].size).astype(dtype, copy=False), where)
    output = backend.empty(a["input"].shape, dtype, where)
    mask = backend.empty(a["input"].shape, dtype, where)
    backend.kernels(where).dropout_forward(backend.flat(a["input"]), noise, backend.flat(output), backend.flat(mask),
                                           probability)
    return output, mask


def dropout_backward(grad_output, mask):
    return _elementwise(lambda kernels: kernels.dropout_backward, grad_output=grad_output, mask=mask)
