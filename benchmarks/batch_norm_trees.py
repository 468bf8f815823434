"""Batch norm's forward and backward kernels (plain, and fused with a ReLU) of this tree against another
checkout's, in one process, old and new calls alternating, on the shapes of ResNet-20 or ResNet-18.

The other checkout's nbconv/kernels/cpu/batch_norm.py and batch_norm_relu.py are loaded as a package of
their own (their helpers, the thread runtime included, are this tree's), so both run on the same threads at
the same moments of a loaded machine. Each repeat times old then new (or new then old, alternately) for one
shape's forward+backward pair, and separately its backward; printed: per kind (plain, relu), the sum over
the shapes of the median ms (wall, and CPU time of the process) and new/old. The shapes are every distinct
batch norm input of one training step (ResNet-20: batch 128 at 32x32; ResNet-18: batch 16 at 224x224).

Usage:
  python benchmarks/batch_norm_trees.py OLD_TREE NETWORK THREADS [REPEATS]
e.g. NUMBA_NUM_THREADS=2 python benchmarks/batch_norm_trees.py /work/wt/base2 resnet20 2 41
"""
import importlib
import os
import statistics
import sys
import tempfile
import time
import types

import numba
import numpy as np

from nbconv.kernels import cpu as new_kernels

SHAPES = {  # (N, C, H * W) of each distinct batch norm input
    "resnet20": [(128, 16, 1024), (128, 32, 256), (128, 64, 64)],
    "resnet18": [(16, 64, 12544), (16, 64, 3136), (16, 128, 784), (16, 256, 196), (16, 512, 49)],
}


def load_old(tree):
    """The old tree's batch norm kernel modules, as a package whose other modules are this tree's."""
    folder = tempfile.mkdtemp(prefix="old_batch_norm_")
    for name in ("batch_norm", "batch_norm_relu"):
        with open(os.path.join(tree, "nbconv", "kernels", "cpu", name + ".py")) as source, \
                open(os.path.join(folder, name + ".py"), "w") as copy:
            copy.write(source.read())
    for name in ("fastmath", "shared", "threads"):
        with open(os.path.join(folder, name + ".py"), "w") as stub:
            stub.write(f"from nbconv.kernels.cpu import {name} as _module\nglobals().update(vars(_module))\n")
    package = types.ModuleType("old_batch_norm")
    package.__path__ = [folder]
    sys.modules["old_batch_norm"] = package
    old = types.SimpleNamespace()
    for name in ("batch_norm", "batch_norm_relu"):
        vars(old).update({key: value for key, value in vars(importlib.import_module("old_batch_norm." + name)).items()
                          if key.startswith("batch_norm")})
    return old


def make_case(rng, N, C, S):
    x = rng.standard_normal((N, C, S)).astype(np.float32)
    return dict(x=x, grad=rng.standard_normal((N, C, S)).astype(np.float32),
                weight=rng.standard_normal(C).astype(np.float32), bias=rng.standard_normal(C).astype(np.float32),
                running_mean=np.zeros(C, np.float32), running_var=np.ones(C, np.float32), out=np.empty_like(x),
                grad_input=np.empty_like(x), mean=np.empty(C, np.float32), invstd=np.empty(C, np.float32),
                grad_weight=np.empty(C, np.float32), grad_bias=np.empty(C, np.float32))


def forward(kernels, case, relu):
    c = case
    if relu:
        kernels.batch_norm_relu_forward(c["x"], c["weight"], c["bias"], c["running_mean"], c["running_var"],
                                        np.empty((0, 0, 0), np.float32), c["out"], c["mean"], c["invstd"], 0.1, 1e-5, 1)
    else:
        kernels.batch_norm_forward(c["x"], c["weight"], c["bias"], c["running_mean"], c["running_var"], c["out"],
                                   c["mean"], c["invstd"], 0.1, 1e-5, 1)


def backward(kernels, case, relu):
    c = case
    if relu:
        kernels.batch_norm_relu_backward(c["grad"], c["out"], c["x"], c["weight"], c["mean"], c["invstd"],
                                         c["grad_input"], c["grad_weight"], c["grad_bias"], 1)
    else:
        kernels.batch_norm_backward(c["grad"], c["x"], c["weight"], c["mean"], c["invstd"], c["grad_input"],
                                    c["grad_weight"], c["grad_bias"], 1)


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return 1000 * (time.perf_counter() - wall), 1000 * (time.process_time() - cpu)


def main():
    old_tree, network, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 21
    numba.set_num_threads(threads)
    old_kernels = load_old(old_tree)
    rng = np.random.default_rng(0)
    cases = [make_case(rng, *shape) for shape in SHAPES[network]]
    print(f"{network}, {threads} thread(s), {repeats} alternating repeats per shape; old: {old_tree}")
    for relu in (0, 1):
        sums = {}
        for case in cases:
            for kernels in (old_kernels, new_kernels):  # compile or load, and touch the memory
                forward(kernels, case, relu), backward(kernels, case, relu)
            times = {("old", "pair"): [], ("new", "pair"): [], ("old", "backward"): [], ("new", "backward"): []}
            for repeat in range(repeats):
                order = (("old", old_kernels), ("new", new_kernels))
                for tag, kernels in (order if repeat % 2 == 0 else order[::-1]):
                    times[tag, "pair"].append(timed(lambda: (forward(kernels, case, relu),
                                                             backward(kernels, case, relu))))
                    times[tag, "backward"].append(timed(lambda: backward(kernels, case, relu)))
            for (tag, what), values in times.items():
                for index, clock in enumerate(("wall", "cpu")):
                    key = (what, clock, tag)
                    sums[key] = sums.get(key, 0.0) + statistics.median(value[index] for value in values)
        for what in ("pair", "backward"):
            for clock in ("wall", "cpu"):
                before, after = sums[what, clock, "old"], sums[what, clock, "new"]
                print(f"  {'relu' if relu else 'plain':5s} {what:8s} {clock:4s} ms: old {before:8.2f}  new {after:8.2f}"
                      f"  new/old {after / before:.3f}")


if __name__ == "__main__":
    main()
