"""LeNet-5's second layer (64 x 6 x 14 x 14 -> 16, 5x5, no padding) by pass and whole (forward + backward, as
`nbconv bench --preset layers` times it: nbconv.functional's conv2d and conv2d_backward), this tree against
another tree (--tree, e.g. /work/wt/base) and PyTorch, in alternating rounds.

Each round times every contender once per case (the median of --repeat calls); the table gives the median over
rounds and, per round, the ratios other / this (above 1: this tree is faster) with their min-max.

--clock thread: CPU time of the calling thread (with --threads 1); --clock wall: wall time (any thread count).
--algorithm PASS=NAME,...: run a pass of this tree by another algorithm (e.g. backward_input=strips).

Usage: python benchmarks/lenet_conv2.py [--rounds 7] [--repeat 20] [--threads N] [--clock wall|thread]
       [--tree PATH] [--algorithm PASS=NAME,...] [--cases forward,backward_input,backward_weight,both]
"""
import argparse
import os
import statistics
import sys
import time

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blocked_layers import import_tree  # noqa: E402
from layer_timing import runner, torch_runner  # noqa: E402

import nbconv.functional as F  # noqa: E402
from nbconv.kernels.cpu.conv.plan import plan  # noqa: E402

INPUT, WEIGHT = (64, 6, 14, 14), (16, 6, 5, 5)
CASES = ("forward", "backward_input", "backward_weight", "both")


def whole(functional):
    """The layer set's case: forward and backward through a functional module."""
    def run(x, w, b, grad_y):
        functional.conv2d(x, w, b)
        functional.conv2d_backward(grad_y, x, w)
    return run


def torch_whole(x, w, b, grad_y):
    import torch
    tx, tw, tb = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))
    tg = torch.from_numpy(grad_y)

    def run():
        y = torch.nn.functional.conv2d(tx, tw, tb)
        y.backward(tg)
        tx.grad = tw.grad = tb.grad = None
    return run


def timed(function, repeat, clock):
    samples = []
    for _ in range(repeat):
        start = clock()
        function()
        samples.append(clock() - start)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall")
    parser.add_argument("--tree", default=None)
    parser.add_argument("--algorithm", default="")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    if args.threads:
        numba.set_num_threads(args.threads)
        if not args.no_torch:
            import torch
            torch.set_num_threads(args.threads)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    forced = dict(item.split("=") for item in args.algorithm.split(",") if item)
    tree = import_tree(args.tree) if args.tree else None
    tree_modules = None
    if tree:
        import importlib
        tree_modules = (importlib.import_module("nbconv_tree.kernels.cpu.conv.plan").plan,
                        importlib.import_module("nbconv_tree.kernels.cpu.conv.dispatch"))
        tree_functional = importlib.import_module("nbconv_tree.functional")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(INPUT).astype(np.float32)
    w = rng.standard_normal(WEIGHT).astype(np.float32)
    b = rng.standard_normal(WEIGHT[0]).astype(np.float32)
    grad_y = rng.standard_normal((64, 16, 10, 10)).astype(np.float32)
    print(f"threads {numba.get_num_threads()}, clock {args.clock}, rounds {args.rounds}, repeat {args.repeat}, "
          f"load {os.getloadavg()[0]:.2f}")
    for case in args.cases.split(","):
        contenders = {}
        if case == "both":
            contenders["this"] = lambda: whole(F)(x, w, b, grad_y)
            if tree:
                contenders["tree"] = lambda: whole(tree_functional)(x, w, b, grad_y)
            if not args.no_torch:
                contenders["torch"] = torch_whole(x, w, b, grad_y)
        else:
            algorithm = forced.get(case) or plan(case, INPUT, WEIGHT).algorithm
            contenders[f"this:{algorithm}"] = runner(case, algorithm, x, w, b, grad_y, 1, 0)
            if tree:
                contenders["tree:" + tree_modules[0](case, INPUT, WEIGHT).algorithm] = runner(
                    case, None, x, w, b, grad_y, 1, 0, tree_modules)
            if not args.no_torch:
                contenders["torch"] = torch_runner(case, x, w, b, grad_y, 1, 0)
        for function in contenders.values():
            function()
            function()
        times = {key: [] for key in contenders}
        for _ in range(args.rounds):
            for key, function in contenders.items():
                times[key].append(timed(function, args.repeat, clock))
        names = list(contenders)
        first = names[0]
        row = f"{case:16} {first:>22} {statistics.median(times[first]) * 1e3:7.3f} ms"
        for other in names[1:]:
            ratios = [o / t for o, t in zip(times[other], times[first])]
            row += (f" | {other:>16} {statistics.median(times[other]) * 1e3:7.3f} ms, other/this "
                    f"{statistics.median(ratios):4.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
        print(row, flush=True)
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
