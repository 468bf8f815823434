"""The direct convolution with channels in the vector lanes (conv/lanes.py) against other algorithms and PyTorch
CPU, per layer and per pass, in alternating rounds. (It timed 'blocked', lanes' predecessor, until that was
removed: the first column is now lanes.)

Layers: ResNet-20's convolutions (batch 128: 16, 32, 64 channels at 32, 16, 8 wide, and its two stride-2
layers) and LeNet-5's second (batch 64, 6 -> 16, 5x5 on 14x14). Each round times every contender once per
pass (the mean of --repeat calls); the table gives the median over rounds, and min-max of the ratio.

--clock thread: CPU time of the calling thread (use with --threads 1: the other threads' time is not seen);
--clock wall: wall time.

--against A,B: the algorithms to compare with (default: the plan's choice, or strips / gemm where that is
lanes; 'none' for no other); --extra A,B: timed besides those. A pass skips those that do not apply to it. One row per contender, each in the same
rounds; the last column is PyTorch's time over that contender's (above 1: the contender is faster).
--tree PATH: also lanes as another source tree has it (e.g. /work/wt/base), imported into this process as
a second package, in the same rounds (its row is named 'tree').

Usage: python benchmarks/blocked_layers.py [--rounds 5] [--repeat 3] [--threads N] [--clock wall|thread]
       [--against ALGORITHM,...] [--extra ALGORITHM,...] [--layers NAME,...] [--tree PATH]
"""
import argparse
import hashlib
import importlib.util
import os
import shutil
import statistics
import sys

import numba
import numpy as np

from nbconv.kernels.cpu.conv.plan import applicable, choose, Convolution

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from layer_timing import add_arguments, alternating_rounds, runner, set_up, torch_runner  # noqa: E402

TREES_DIR = "/tmp/nbconv_trees"  # copies of other trees' nbconv (import_tree)

LAYERS = {  # name: (input shape, weight shape, stride, padding)
    "r20-16x32": ((128, 16, 32, 32), (16, 16, 3, 3), 1, 1),
    "r20-32x16": ((128, 32, 16, 16), (32, 32, 3, 3), 1, 1),
    "r20-64x8": ((128, 64, 8, 8), (64, 64, 3, 3), 1, 1),
    "r20-s2-16to32": ((128, 16, 32, 32), (32, 16, 3, 3), 2, 1),
    "r20-s2-32to64": ((128, 32, 16, 16), (64, 32, 3, 3), 2, 1),
    "lenet-conv2": ((64, 6, 14, 14), (16, 6, 5, 5), 1, 0),
    "r20-first": ((128, 3, 32, 32), (16, 3, 3, 3), 1, 1),
    "r20-down-16to32": ((128, 16, 32, 32), (32, 16, 1, 1), 2, 0),
    "r20-down-32to64": ((128, 32, 16, 16), (64, 32, 1, 1), 2, 0),
}
PASSES = ("forward", "backward_input", "backward_weight")


def import_tree(path, name="nbconv_tree"):
    """The nbconv package under `path` (another worktree), imported as package `name` beside this one: its
    modules import one another relatively, so every module under it is that tree's. It runs from a copy,
    /tmp/nbconv_trees/<name>-<path's hash>/<name>, refreshed at each import (timestamps kept, so Numba's cache
    there stays valid until a source changes): Numba's cache records the module's name, and entries written
    under `name` into the tree itself would fail to load when that tree later runs as `nbconv`."""
    if name in sys.modules:
        return sys.modules[name]
    source = os.path.abspath(os.path.join(path, "nbconv"))
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    target = os.path.join(TREES_DIR, f"{name}-{digest}")
    shutil.copytree(source, os.path.join(target, name), dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    spec = importlib.util.spec_from_file_location(name, f"{target}/{name}/__init__.py",
                                                  submodule_search_locations=[f"{target}/{name}"])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return package


def tree_modules(path, name="nbconv_tree"):
    """(plan, dispatch) of the nbconv package under `path` (import_tree)."""
    import_tree(path, name)
    tree_dispatch = importlib.import_module(f"{name}.kernels.cpu.conv.dispatch")
    return importlib.import_module(f"{name}.kernels.cpu.conv.plan").plan, tree_dispatch


def main():
    parser = argparse.ArgumentParser()
    add_arguments(parser, repeat=3, layers=",".join(LAYERS))
    parser.add_argument("--against", default=None, help="an algorithm to compare with (default: the plan's choice"
                                                        " without lanes)")
    parser.add_argument("--extra", default=None, help="algorithms timed besides the plan's choice, e.g. wide")
    parser.add_argument("--tree", default=None, help="another source tree whose lanes is timed too")
    args = parser.parse_args()
    tree = tree_modules(args.tree) if args.tree else None
    clock = set_up(args)
    rng = np.random.default_rng(0)
    print(f"threads {numba.get_num_threads()}, clock {args.clock}, rounds {args.rounds}, repeat {args.repeat}")
    print(f"{'layer':16} {'pass':16} {'other':>8} {'lanes ms':>11} {'other ms':>9} {'torch ms':>9} "
          f"{'vs other':>16} {'vs torch':>16} {'torch/other':>11}")
    for name in args.layers.split(","):
        input_shape, weight_shape, stride, padding = LAYERS[name]
        x = rng.standard_normal(input_shape).astype(np.float32)
        w = rng.standard_normal(weight_shape).astype(np.float32)
        b = rng.standard_normal(weight_shape[0]).astype(np.float32)
        convolution = Convolution(input_shape, weight_shape, stride, stride, padding, padding)
        grad_y = rng.standard_normal(convolution.output_shape).astype(np.float32)
        for pass_ in PASSES:
            others = ([] if args.against == "none" else args.against.split(",")) if args.against else \
                [choose(pass_, convolution)]
            others = [("strips" if stride == 1 else "gemm") if other == "lanes" else other for other in others]
            if args.extra:
                others += [name for name in args.extra.split(",") if name not in others]
            others = [other for other in others if other in applicable(pass_, convolution)]  # e.g. a weight-only one
            contenders = {"lanes": runner(pass_, "lanes", x, w, b, grad_y, stride, padding)}
            for other in others:
                contenders[other] = runner(pass_, other, x, w, b, grad_y, stride, padding)
            if tree:
                others.append("tree")
                contenders["tree"] = runner(pass_, "lanes", x, w, b, grad_y, stride, padding, tree)
            if not args.no_torch:
                contenders["torch"] = torch_runner(pass_, x, w, b, grad_y, stride, padding)
            times = alternating_rounds(contenders, args.rounds, args.repeat, clock)
            median = {key: statistics.median(value) for key, value in times.items()}
            for other in others:
                versus_other = [o / bl for o, bl in zip(times[other], times["lanes"])]
                row = (f"{name:16} {pass_:16} {other:>8} {median['lanes'] * 1e3:11.2f} {median[other] * 1e3:9.2f} ")
                if "torch" in times:
                    versus_torch = [t / bl for t, bl in zip(times["torch"], times["lanes"])]
                    torch_other = [t / o for t, o in zip(times["torch"], times[other])]
                    row += (f"{median['torch'] * 1e3:9.2f} {statistics.median(versus_other):5.2f}x "
                            f"({min(versus_other):.2f}-{max(versus_other):.2f}) {statistics.median(versus_torch):5.2f}x "
                            f"({min(versus_torch):.2f}-{max(versus_torch):.2f}) {statistics.median(torch_other):5.2f}x")
                else:
                    row += f"{'':9} {statistics.median(versus_other):5.2f}x ({min(versus_other):.2f}-{max(versus_other):.2f})"
                print(row, flush=True)


if __name__ == "__main__":
    main()
