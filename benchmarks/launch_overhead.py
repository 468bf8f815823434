"""Host-side cost of nbconv's CUDA path, measured without a GPU: everything nbconv's Python does around its
kernel launches (validation, shapes, grids, allocations), with the launches themselves stubbed out.

Under Numba's simulator each kernel launch is replaced by a counter (as nbconv.cuda_launches does), so what
is timed is nbconv's own per-call overhead; allocations are counted (the simulator's are numpy's, far
cheaper than a GPU's). What this cannot see, and benchmarks/gpu.py measures on a GPU: Numba's dispatch
(typing and marshalling the arguments), the driver's launch, cuMemAlloc.

    NUMBA_ENABLE_CUDASIM=1 python benchmarks/launch_overhead.py [--write]
"""
import os
import statistics
import sys
import time

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
os.environ.setdefault("NBCONV_CUDASIM_GPU_BLOCKS", "1")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sections import replace_section  # noqa: E402

NOTE = """Allocations are new device arrays (`numba.cuda.device_array` calls) in a call made after two
warm-up calls. Before the changes below (commit 0c5a7cc, same command) the LeNet-5 step made 44 kernel
launches and 36 device allocations; now 26 and 0: the bias gradients ride in the weight gradients' launches
(`conv2d_backward_weight_bias`, `linear_backward_weight_bias`: 5 launches fewer), a fully connected layer
followed by a ReLU runs as one layer on the CUDA backend (`linear_relu_forward`, `linear_relu_backward_input`,
`linear_relu_backward_weight_bias`: the ReLU's two launches go, twice in LeNet-5), the optimizer updates
every parameter in one launch over flat parameter, gradient and state buffers that Conv2d and Linear write
their gradients into (`sgd_update_flat`, `adam_update_flat`: 10 launches become 1, and no gradient arrays
are allocated), and the CUDA backend's arrays come from a pool (`nbconv.device_pool`) that hands a block out
again once no array or view of it is alive, so a steady step allocates nothing, the last smaller batch of an
epoch adds one set of blocks. The host time column is nbconv's own Python around the launches on this shared
2-core machine, with the simulator's kernel configuration and array wrappers in it (Numba memoises the first
on a GPU). It is noisy: in three alternating runs of this script on the code before and after the changes,
taken while the machine's load average was about 15, the LeNet-5 step's host time ranged 9-35 ms before and
7-35 ms after, so those times compare nothing; the counts are exact. Under the simulator a pooled array costs
more host time than a fresh one (the simulator's allocation is a numpy `empty`); on a GPU `gpu.py` measures both.

On a GPU each launch also costs Numba's dispatch (typing and marshalling the arguments, the driver call):
at the ~100-200 us a Numba launch is reported to cost, the 26 launches of a LeNet-5 step are still 3-5 ms of
host time against tens of microseconds of arithmetic, so the step stays launch-bound, with 41% fewer launches
than before; without the pool each of the 36 allocations was a cuMemAlloc and the deferred frees a synchronising
cuMemFree every few steps. `python benchmarks/gpu.py` measures on a GPU, in one command: host microseconds per
launch through nbconv's launcher, through Numba's configured kernel, straight from the compiled overload,
and CuPy's and PyTorch's launches of the same relu when importable; an allocation from Numba and from the
pool; and the LeNet-5 step's launches, allocations, time to issue and time to run, with the pool and without.
Launch-bound shows as issue time close to run time."""


class Counter:
    def __init__(self):
        self.launches = 0
        self.allocations = 0

    def install(self):
        from numba import cuda
        from numba.cuda.simulator import kernel as simulator_kernel
        from numba.cuda.simulator.kernel import FakeCUDAKernel
        original_call, original_alloc = FakeCUDAKernel.__call__, cuda.device_array
        counter = self

        def launch(kernel, *args):
            if kernel._device or simulator_kernel._kernel_context:
                return original_call(kernel, *args)
            counter.launches += 1

        def device_array(*args, **kwargs):
            counter.allocations += 1
            return original_alloc(*args, **kwargs)
        FakeCUDAKernel.__call__ = launch
        cuda.device_array = device_array


def per_call(function, repeat):
    function()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main():
    from nbconv import backend
    if not backend.simulated():
        print("run under the simulator: NUMBA_ENABLE_CUDASIM=1 python benchmarks/launch_overhead.py")
        return 2
    import nbconv.functional as F
    from nbconv import models
    from nbconv.train import TrainConfig, make_optimizer
    counter = Counter()
    counter.install()
    rng = np.random.default_rng(0)
    x = backend.to_device(rng.standard_normal((64, 1, 28, 28)).astype(np.float32))
    w = backend.to_device(rng.standard_normal((6, 1, 5, 5)).astype(np.float32))
    b = backend.to_device(np.zeros(6, np.float32))
    small = backend.to_device(np.ones(256, np.float32))
    model = models.build("lenet5", seed=0).to("cuda")
    optimizer = make_optimizer(TrainConfig(lr=0.01), model.parameters())
    labels = backend.to_device(rng.integers(0, 10, 64))

    def step():
        model.train()
        _, grad = F.softmax_cross_entropy(model.forward(x), labels)
        model.backward(grad, need_input_grad=False)
        optimizer.step()

    rows = []
    for name, function, repeat in (("F.relu, 256 elements", lambda: F.relu(small), 2000),
                                   ("F.conv2d, LeNet-5 conv1 (64x1x28x28 -> 6, 5x5, p2)",
                                    lambda: F.conv2d(x, w, b, padding=2), 500),
                                   ("F.conv2d + F.conv2d_backward, LeNet-5 conv1",
                                    lambda: F.conv2d_backward(F.conv2d(x, w, b, padding=2), x, w, padding=2), 300),
                                   ("LeNet-5 training step (batch 64)", step, 100)):
        function()  # warm: the device pool holds what a call needs once the arrays of the call before it
        function()  # (which layers keep for their backward) are released by the next one
        counter.launches = counter.allocations = 0
        function()
        launches, allocations = counter.launches, counter.allocations
        seconds = per_call(function, repeat)
        rows.append((name, seconds * 1e6, launches, allocations))
    lines = ["## CUDA launch overhead, host side (no GPU)", "",
             "Command: `NUMBA_ENABLE_CUDASIM=1 python benchmarks/launch_overhead.py --write` (kernel launches "
             "stubbed out under the simulator: nbconv's own Python around them).", "",
             "| call | nbconv host time per call (us) | kernel launches | device allocations |",
             "|---|---:|---:|---:|"]
    for name, microseconds, launches, allocations in rows:
        lines.append(f"| {name} | {microseconds:.1f} | {launches} | {allocations} |")
    text = "\n".join(lines + ["", NOTE]) + "\n"
    print(text)
    if "--write" in sys.argv[1:]:
        replace_section(os.path.join(HERE, "RESULTS.md"), "benchmarks/launch_overhead.py", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
