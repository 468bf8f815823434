"""Compile a training step's kernels in two processes at once when Numba's cache is cold.

On an empty JIT cache, a LeNet-5 training step compiles about 14 parallel kernels: ~15 s on a 2-core
machine, nearly all of it single-threaded (Numba's front end is Python). Numba's cache lives on disk and
is shared by processes, so `nbconv train` starts `python -m nbconv.jit_warmup KIND...`, a helper that runs
the costliest backward kernels (convolutions, pooling) once on tiny arrays, while the main process builds
the model (which compiles the forward kernels) and then compiles the cheaper rest of a step itself
(`finish`). Numba compiles per argument type, not per shape, so the tiny arrays give the training step's
own compilations; the main process then loads the helper's from the cache. If the helper fails, the main
process simply compiles those kernels itself, later.
"""
import os
import subprocess
import sys

import numpy as np

from . import models

WAIT_SECONDS = 300
HELPER_KINDS = ("conv", "conv-flat", "conv-shift", "conv-gemm", "local", "maxpool", "avgpool",
                "gap")  # ~half a step's compiling


def cache_is_cold():
    """True when the convolution's weight-gradient kernel has nothing in Numba's cache for its current source.

    Reads Numba's cache index through private attributes; if they ever move, this answers False (no helper)."""
    from .kernels.cpu.conv import wide
    try:
        return not wide.conv2d_backward_weight_wide._cache._cache_file._load_index()
    except Exception:  # noqa: BLE001 - any change in Numba's internals only disables the speed-up
        return False


def layer_kinds(spec, in_channels=1):
    """The backward-kernel families a model spec needs: 'conv' (stride 1, unrolled), 'conv-flat' (stride 1,
    one group, few output channels and taps: flat.py's weight gradient, the unrolled input gradient),
    'conv-shift' (stride 1 with 16+ channels a group, see kernels/cpu/conv/plan.py), 'conv-gemm' (strided or
    1x1), 'local', 'maxpool', 'avgpool', 'gap', 'relu', 'tanh', 'sigmoid', 'lrelu', 'dropout', 'fc'."""
    from .kernels.cpu.conv import plan as conv
    kinds, channels = set(), in_channels
    for token in models.expand(models.resolve_spec(spec)):
        for kind, pattern in models._PATTERNS.items():
            match = pattern.match(token)
            if match and kind in ("conv", "conv1d"):
                size, stride = match.group(2), match.group(3)
                out, groups = int(match.group(1)), int(match.group(6) or 1)
                per_group = min(channels // groups, out // groups)
                sides = [int(side) for side in size.split("x")]
                area = sides[0] if kind == "conv1d" else sides[0] * sides[-1]  # taps of a filter channel
                if stride not in (None, "1", "1x1") or size in ("1", "1x1"):
                    kinds.add("conv-gemm")
                elif groups == 1 and out <= conv.FLAT_CHANNELS and channels * area <= conv.FLAT_TAPS:
                    kinds.add("conv-flat")
                elif kind == "conv" and per_group >= conv.SHIFT_CHANNELS:
                    kinds.add("conv-shift")
                    if per_group > conv.SHIFT_WEIGHT_CHANNELS:
                        kinds.add("conv")  # its weight gradient unrolls
                else:
                    kinds.add("conv")
                channels = out
            elif match:
                kinds.add(kind)
                if kind == "local":
                    channels = int(match.group(1))
            if match:
                break
        else:
            if token not in models._SIMPLE:
                raise ValueError(f"unknown layer token {token!r}")
            kinds.add(token)  # relu, tanh, sigmoid, gap, flatten
    return sorted(kinds)


def start(spec, device="cpu"):
    """Start the helper for a model spec when it can help (CPU, cold cache); returns it or None."""
    if device != "cpu" or not cache_is_cold():
        return None
    try:
        kinds = [kind for kind in layer_kinds(spec) if kind in HELPER_KINDS]
    except ValueError:
        return None  # a bad spec: the main process reports it
    return subprocess.Popen([sys.executable, "-m", "nbconv.jit_warmup", *kinds], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())


def finish(helper, config):
    """With a helper running: compile the rest of a training step here (the layer kinds the helper leaves,
    the loss, the optimizer), then wait for the helper. Without one, nothing to do."""
    if helper is None:
        return
    compile_backward([kind for kind in layer_kinds(config.model) if kind not in HELPER_KINDS])
    compile_step(config)
    wait(helper)


def wait(helper):
    """Wait for a helper from start() (None is fine); a helper that overstays is stopped."""
    if helper is None:
        return
    try:
        helper.wait(timeout=WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        stop(helper)


def stop(helper):
    """Stop a helper whose work is no longer wanted (None is fine)."""
    if helper is not None and helper.poll() is None:
        helper.kill()
        helper.wait()


def compile_backward(kinds, dtype=np.float32):
    """Run the backward kernels of these layer kinds once, on tiny arrays of `dtype` (no forward kernels:
    those are the main process's share)."""
    from . import functional as F
    from .kernels.cpu.conv import plan as conv
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 6, 6)).astype(dtype)
    w = rng.standard_normal((2, 2, 3, 3)).astype(dtype)
    for kind, stride, side in (("conv-flat", 1, 4), ("conv-gemm", 2, 2)):
        if kind in kinds:
            F.conv2d_backward(np.ones((2, 2, side, side), dtype), x, w, stride=stride)
    if "conv" in kinds:  # more output channels than flat.py takes: the unrolled weight gradient
        wide = rng.standard_normal((conv.FLAT_CHANNELS + 1, 2, 3, 3)).astype(dtype)
        F.conv2d_backward(np.ones((2, conv.FLAT_CHANNELS + 1, 4, 4), dtype), x, wide)
    if "conv-shift" in kinds:  # 16 channels: conv_shift's input and weight gradients
        F.conv2d_backward(np.ones((2, 16, 4, 4), dtype), rng.standard_normal((2, 16, 6, 6)).astype(dtype),
                          rng.standard_normal((16, 16, 3, 3)).astype(dtype))
    if "local" in kinds:
        F.local_conv2d_backward(np.ones((2, 2, 4, 4), dtype), x, np.ones((4, 4, 2, 2, 3, 3), dtype))
    if "maxpool" in kinds:
        F.max_pool2d_backward(np.ones((2, 2, 3, 3), dtype), x, 2, indices=np.zeros((2, 2, 3, 3), np.int64))
    if "avgpool" in kinds:
        F.avg_pool2d_backward(np.ones((2, 2, 3, 3), dtype), x, 2)
    if "gap" in kinds:
        F.global_avg_pool2d_backward(np.ones((2, 2, 1, 1), dtype), x)
    for kind, backward in (("relu", F.relu_backward), ("tanh", F.tanh_backward), ("sigmoid", F.sigmoid_backward),
                           ("lrelu", F.leaky_relu_backward), ("dropout", F.dropout_backward)):
        if kind in kinds:
            backward(x, x)
    if "fc" in kinds:
        F.linear_backward(np.ones((2, 3), dtype), x.reshape(2, -1), rng.standard_normal((3, 72)).astype(dtype))


def compile_step(config, dtype=np.float32):
    """Run the batch assembly, the loss and the optimizer update of `config` once, on tiny arrays."""
    from . import functional as F
    from .data.batch import shifted_batch
    from .nn.module import Parameter
    from .train import make_optimizer
    shifted_batch(np.zeros((1, 2, 2), np.uint8), np.zeros(1, np.int64), np.zeros((1, 2), np.int64), 0, 0.0, 1.0,
                  dtype)
    F.softmax_cross_entropy(np.zeros((2, 3), dtype), np.zeros(2, np.int64))
    parameter = Parameter(np.zeros(4, dtype))
    parameter.grad = np.zeros(4, dtype)
    make_optimizer(config, [parameter]).step()


if __name__ == "__main__":
    compile_backward(set(sys.argv[1:]))
