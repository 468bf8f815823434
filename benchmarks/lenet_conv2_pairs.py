"""LeNet-5's second layer, forward + backward through nbconv.functional (the layer set's case), this tree against
another (--tree, e.g. /work/wt/base), call by call alternating (the order rotated every round): the medians of
the per-round ratios other / this (above 1: this tree is faster) and each contender's p10 / p50 / p90.

Usage: python benchmarks/lenet_conv2_pairs.py --tree /work/wt/base [--threads 1] [--rounds 1500]
"""
import argparse
import importlib
import os
import statistics
import sys
import time

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blocked_layers import import_tree  # noqa: E402

import nbconv.functional as F  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1500)
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    import_tree(args.tree)
    other = importlib.import_module("nbconv_tree.functional")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6, 14, 14)).astype(np.float32)
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    grad_y = rng.standard_normal((64, 16, 10, 10)).astype(np.float32)

    def layer(functional):
        def run():
            functional.conv2d(x, w, b)
            functional.conv2d_backward(grad_y, x, w)
        return run
    contenders = {"this": layer(F), "tree": layer(other)}
    names = list(contenders)
    for function in contenders.values():
        function()
        function()
    times = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = clock()
            contenders[name]()
            times[name].append(clock() - start)
    print(f"threads {args.threads}, clock {'thread' if args.threads == 1 else 'wall'}, rounds {args.rounds}, "
          f"load {os.getloadavg()[0]:.2f}")
    for name in names:
        p10, p50, p90 = np.percentile(times[name], [10, 50, 90]) * 1e3
        ratio = statistics.median(o / t for o, t in zip(times[name], times["this"]))
        print(f"{name:5} p10 {p10:.3f}  p50 {p50:.3f}  p90 {p90:.3f} ms   {name} / this, median of rounds {ratio:.3f}x")


if __name__ == "__main__":
    main()
