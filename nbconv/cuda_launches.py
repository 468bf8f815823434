"""Record the CUDA kernel launches the product makes: which kernel, with which argument types and block.

Run as `NUMBA_ENABLE_CUDASIM=1 python -m nbconv.cuda_launches OUT.json`: under Numba's simulator, every
public entry point that reaches a CUDA kernel (`WORKLOAD`: the functional API and the optimizers, on tiny
float32 and float64 device arrays) runs once with a hook in place of the simulator's kernel launch. The
hook notes the kernel, the block size and the Numba type of each argument (the type a real GPU launch
compiles for: device arrays by dtype, dimensions and layout; Python ints as int64, floats as float64) and
skips running it, so recording takes seconds. `nbconv.cuda_compile` then compiles exactly those
signatures for real GPUs. Each launch is also tagged with the launcher of nbconv.kernels.cuda (a name in
its `__all__`, as the product calls it: from nbconv.kernels.cuda.unchecked) it came from, so a launcher the
workload never reaches shows up as missing.

The launchers use the GPU's block sizes here (NBCONV_CUDASIM_GPU_BLOCKS=1, set by `main`), so the
recorded launch configurations are those a GPU gets.
"""
import json
import os
import sys
import threading

import numpy as np

from .kernels.cuda.launch import GPU_BLOCKS_VARIABLE

DTYPES = (np.float32, np.float64)


def _workload(dtype, rng):
    """Launch every CUDA kernel the product uses, on tiny device arrays of one element type."""
    from . import backend, functional as F, optim
    from .nn.module import Parameter

    def device(*shape, integer=False):
        values = rng.integers(0, 3, shape) if integer else rng.standard_normal(shape).astype(dtype)
        return backend.to_device(values)

    x, w, b = device(2, 4, 7, 6), device(6, 2, 3, 2), device(6)
    y = F.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    F.conv2d(x, w, None, padding="same", groups=2)                        # no bias; odd 'same' padding
    F.conv2d_backward(device(*y.shape), x, w, stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    F.conv2d_backward(device(2, 6, 7, 6), x, w, padding="same", groups=2, need_input_grad=False)
    wide_x, wide_w = device(1, 48, 3, 3), device(48, 48, 1, 1)  # 48 channels: the tall tile shape
    F.conv2d_backward(F.conv2d(wide_x, wide_w, device(48)), wide_x, wide_w)
    F.conv2d_backward(device(1, 48, 2, 2), wide_x, wide_w, stride=2, dilation=2)
    F.conv2d_backward(device(2, 6, 2, 2), x, w, stride=2, dilation=2, groups=2)  # stride and dilation on one axis
    depthwise_w = device(4, 1, 3, 3)                               # depthwise: the direct kernels
    F.conv2d_backward(F.conv2d(x, depthwise_w, b[:4], padding=1, groups=4), x, depthwise_w, padding=1, groups=4)
    signal = device(2, 3, 9)
    F.conv1d(signal, device(4, 3, 3), device(4), stride=2, padding=1)
    F.conv1d_backward(device(2, 4, 5), signal, device(4, 3, 3), stride=2, padding=1)

    pooled, indices = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, return_indices=True)
    F.max_pool2d(x, 2)
    F.max_pool2d_backward(device(*pooled.shape), x, 3, stride=2, padding=1, ceil_mode=True)
    F.max_pool2d_backward(device(*pooled.shape), x, 3, stride=2, padding=1, ceil_mode=True,
                          indices=backend.to_device(np.zeros(pooled.shape, np.int64)))
    for count_include_pad in (True, False):
        averaged = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=count_include_pad)
        F.avg_pool2d_backward(device(*averaged.shape), x, 3, stride=2, padding=1, count_include_pad=count_include_pad)
    F.global_avg_pool2d(x)
    F.global_avg_pool2d_backward(device(2, 4, 1, 1), x)

    for name in ("relu", "relu6", "sigmoid", "tanh"):
        getattr(F, name)(x)
        getattr(F, f"{name}_backward")(device(*x.shape), x)
    F.leaky_relu(x, 0.1)
    F.leaky_relu_backward(device(*x.shape), x, 0.1)

    features, weight = device(3, 5), device(4, 5)
    F.linear(features, weight, device(4))
    F.linear(features, weight)
    F.linear_backward(device(3, 4), features, weight)
    F.linear_backward(device(3, 4), features, weight, need_input_grad=False)
    rectified = F.linear_relu(features, weight, device(4))  # Linear then ReLU inside nn.Sequential
    F.linear_relu(features, weight)
    F.linear_relu_backward(device(3, 4), rectified, features, weight)

    local_weight = device(3, 2, 2, 4, 3, 3)  # (OH, OW, D, C, kh, kw) for 7x6 input, stride 2
    F.local_conv2d(x, local_weight, device(2, 3, 2), stride=2)
    F.local_conv2d(x, local_weight, stride=2)
    F.local_conv2d_backward(device(2, 2, 3, 2), x, local_weight, stride=2)

    for label_dtype in (np.int64, np.int32):  # labels of other integer types are converted to int64
        F.softmax_cross_entropy(device(3, 4), backend.to_device(np.array([0, 3, 1], label_dtype)))
    output, mask = F.dropout(x, 0.5, rng)
    F.dropout_backward(device(*x.shape), mask)

    if hasattr(F, "batch_norm"):  # the normalisation, adaptive pooling and combining layers, where present
        _workload_norms_and_combinations(F, device, x)

    for optimizer in (optim.SGD, optim.Adam):
        for options in ({}, {"momentum": 0.9, "nesterov": True}) if optimizer is optim.SGD else ({},):
            parameter, bias = Parameter(device(4, 3)), Parameter(device(4))
            parameter.grad, bias.grad = device(4, 3), device(4)
            optimizer([parameter, bias], lr=0.1, weight_decay=0.01, decay_on="weights", **options).step()  # flat
            frozen = Parameter(device(2))  # no gradient: one launch a parameter
            optimizer([parameter, frozen], lr=0.1, **options).step()

    # launchers that the functional API reaches only through their fused versions (kept for callers of the
    # kernel modules)
    kernels = backend.kernels("cuda")
    grad_y = device(*y.shape)
    kernels.conv2d_backward_weight(grad_y, x, device(*w.shape), 2, 1, 1, 1, 1, 2, 2)
    kernels.conv2d_backward_bias(grad_y, device(6))
    kernels.linear_backward_weight(device(3, 4), features, device(4, 5))
    kernels.linear_backward_bias(device(3, 4), device(4))


def _workload_norms_and_combinations(F, device, x):
    """Batch and local response norms, adaptive pooling, residual sums and concatenation on x (2, 4, 7, 6)."""
    from . import backend
    F.add(x, device(*x.shape))
    F.add_(device(*x.shape), x)
    F.cat([x, device(2, 3, 7, 6)], dim=1)
    F.cat_backward(device(2, 7, 7, 6), [4, 3], dim=1)
    running_mean, running_var, weight, bias = device(4), device(4), device(4), device(4)
    output, stats = F.batch_norm(x, running_mean, running_var, weight, bias, training=True, return_stats=True)
    F.batch_norm(x, running_mean, running_var, training=False)
    F.batch_norm_backward(device(*x.shape), x, running_mean, running_var, weight, bias, training=True, stats=stats)
    F.batch_norm_backward(device(*x.shape), x, running_mean, running_var, weight, bias, training=False)
    F.batch_norm_backward(device(*x.shape), x, running_mean, running_var, training=True)
    if hasattr(F, "batch_norm_relu"):  # batch norm, residual sum and ReLU in one pass (training)
        rectified, stats = F.batch_norm_relu(x, running_mean, running_var, weight, bias, training=True,
                                             residual=device(*x.shape), return_stats=True)
        F.batch_norm_relu(x, running_mean, running_var, training=False)
        F.batch_norm_relu_backward(device(*x.shape), rectified, x, running_mean, running_var, weight, bias,
                                   training=True, stats=stats)
        F.batch_norm_relu_backward(device(*x.shape), rectified, x, running_mean, running_var, training=False)
    if hasattr(F, "scale_shift"):  # eval batch norm + residual + ReLU in one pass (nn.infer)
        F.scale_shift(x, weight, bias, device(*x.shape), activation="relu")
        F.scale_shift(x, activation="relu6", out=x)
    for beta in (0.75, 0.6):
        F.local_response_norm(x, 3, beta=beta)
        F.local_response_norm_backward(device(*x.shape), x, 3, beta=beta)
    pooled = F.adaptive_avg_pool2d(x, (3, 2))
    F.adaptive_avg_pool2d_backward(device(*pooled.shape), x, (3, 2))
    pooled, indices = F.adaptive_max_pool2d(x, (3, 2), return_indices=True)
    F.adaptive_max_pool2d(x, (3, 2))
    F.adaptive_max_pool2d_backward(device(*pooled.shape), x, (3, 2))
    F.adaptive_max_pool2d_backward(device(*pooled.shape), x, (3, 2),
                                   indices=backend.to_device(np.zeros(pooled.shape, np.int64)))


class Recorder:
    """Notes each simulated kernel launch (and skips running it) while installed."""

    def __init__(self):
        self.launches = {}
        self.launchers_called = set()
        self._current = threading.local()

    def arguments(self, args):
        return [argument_type(value) for value in args]

    def record(self, kernel, args):
        function = kernel.fn
        entry = {
            "launcher": getattr(self._current, "name", None),
            "module": function.__module__,
            "qualname": function.__qualname__,
            "closure_types": closure_types(function),
            "block": [int(size) for size in _dim3(kernel.block_dim)],
            "args": self.arguments(args),
        }
        self.launches.setdefault(json.dumps(entry, sort_keys=True), entry)

    def wrap_launcher(self, name, launcher):
        recorder = self

        def recorded(*args, **kwargs):
            recorder.launchers_called.add(name)
            previous = getattr(recorder._current, "name", None)
            recorder._current.name = name
            try:
                return launcher(*args, **kwargs)
            finally:
                recorder._current.name = previous
        return recorded

    def install(self):
        from numba.cuda.simulator import kernel as simulator_kernel
        from numba.cuda.simulator.kernel import FakeCUDAKernel
        from .kernels.cuda import unchecked  # what backend.kernels('cuda') calls

        for name in unchecked.__all__:
            setattr(unchecked, name, self.wrap_launcher(name, getattr(unchecked, name)))
        original_call = FakeCUDAKernel.__call__
        recorder = self

        def launch(kernel, *args):
            if kernel._device or simulator_kernel._kernel_context:
                return original_call(kernel, *args)
            recorder.record(kernel, args)
        FakeCUDAKernel.__call__ = launch


def _dim3(dims):
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    return dims + (1,) * (3 - len(dims))


def closure_types(function):
    """The Numba types and integers a kernel built by a factory closes over (e.g. its shared tiles' element
    type and sizes), as strings: what tells apart two kernels made from one Python function."""
    from numba.core import types
    cells = function.__closure__ or ()
    found = []
    for cell in cells:
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, types.Type) or (isinstance(value, int) and not isinstance(value, bool)):
            found.append(str(value))  # element types, and tile sizes of kernels built per tile shape
    return found


def argument_type(value):
    """A JSON description of the Numba type a CUDA launch gives `value`.

    Arrays: {"dtype", "ndim", "layout"} with Numba's device-array rule (C, else F, else A; broadcast
    arrays are A); scalars: {"scalar": numba type name}.
    """
    array = getattr(value, "_ary", None)  # the simulator's device array wraps a numpy array
    if array is None and isinstance(value, np.ndarray):
        array = value
    if array is not None:
        broadcast = 0 in array.strides and array.size != 0
        if array.flags.c_contiguous and not broadcast:
            layout = "C"
        elif array.flags.f_contiguous and not broadcast:
            layout = "F"
        else:
            layout = "A"
        return {"dtype": str(array.dtype), "ndim": int(array.ndim), "layout": layout}
    if isinstance(value, (bool, np.bool_)):
        return {"scalar": "boolean"}
    if isinstance(value, int):
        return {"scalar": "int64"}
    if isinstance(value, float):
        return {"scalar": "float64"}
    if isinstance(value, np.generic):
        return {"scalar": str(value.dtype)}
    raise TypeError(f"cannot describe a kernel argument of type {type(value).__name__} for compilation")


def record(seed=0):
    """{"launches": [...], "launchers": [public launchers in __all__], "launchers_called": [...]} for the
    workload in every dtype. Must run under the simulator with GPU-sized blocks (see `main`)."""
    from . import backend
    if not backend.simulated():
        raise RuntimeError("nbconv.cuda_launches records under Numba's simulator: set NUMBA_ENABLE_CUDASIM=1")
    from .kernels import cuda as cuda_kernels
    recorder = Recorder()
    recorder.install()
    rng = np.random.default_rng(seed)
    for dtype in DTYPES:
        _workload(dtype, rng)
    return {"launches": sorted(recorder.launches.values(), key=lambda e: (e["module"], e["qualname"], str(e["args"]))),
            "launchers": list(cuda_kernels.__all__),
            "launchers_called": sorted(recorder.launchers_called)}


def environment(base=None):
    """The environment a recording process needs: the simulator on, GPU-sized blocks."""
    env = dict(os.environ if base is None else base)
    env["NUMBA_ENABLE_CUDASIM"] = "1"
    env[GPU_BLOCKS_VARIABLE] = "1"
    return env


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: NUMBA_ENABLE_CUDASIM=1 NBCONV_CUDASIM_GPU_BLOCKS=1 python -m nbconv.cuda_launches OUT.json",
              file=sys.stderr)
        return 2
    if os.environ.get(GPU_BLOCKS_VARIABLE) != "1" or os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        print("nbconv.cuda_launches: run with NUMBA_ENABLE_CUDASIM=1 NBCONV_CUDASIM_GPU_BLOCKS=1 "
              "(nbconv.cuda_launches.environment() gives that environment)", file=sys.stderr)
        return 2
    with open(argv[0], "w") as out:
        json.dump(record(), out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
