"""A 1x1 layer's forward + backward through nbconv.functional (F.conv2d, then F.conv2d_backward: every gradient
and check included), against another source tree's (--tree, imported beside this one) and PyTorch's conv2d +
backward, in alternating rounds. The layers are pointwise_passes.py's.

--clock thread: CPU time of the calling thread (use with --threads 1); --clock wall: wall time.

Usage: python benchmarks/pointwise_layer.py [--rounds 9] [--repeat 5] [--threads N] [--clock wall|thread]
       [--layers NAME,...] [--tree PATH] [--no-torch]
"""
import argparse
import importlib
import os
import statistics
import sys

import numba
import numpy as np

import nbconv.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blocked_layers import import_tree  # noqa: E402
from layer_timing import add_arguments, alternating_rounds, set_up  # noqa: E402
from pointwise_passes import LAYERS  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    add_arguments(parser, repeat=5, layers="pointwise-1x1")
    parser.add_argument("--tree", default=None, help="another source tree, timed in the same rounds")
    args = parser.parse_args()
    tree_functional = None
    if args.tree:
        import_tree(args.tree)
        tree_functional = importlib.import_module("nbconv_tree.functional")
    clock = set_up(args)
    rng = np.random.default_rng(0)
    print(f"threads {numba.get_num_threads()}, clock {args.clock}, rounds {args.rounds}, repeat {args.repeat}, "
          f"load {os.getloadavg()[0]:.1f}")
    for name in args.layers.split(","):
        input_shape, channels = LAYERS[name]
        x = rng.standard_normal(input_shape).astype(np.float32)
        w = (rng.standard_normal((channels, input_shape[1], 1, 1)) * 0.1).astype(np.float32)
        b = np.zeros(channels, np.float32)
        grad_y = rng.standard_normal((input_shape[0], channels) + input_shape[2:]).astype(np.float32)
        contenders = {"this": lambda: (F.conv2d(x, w, b), F.conv2d_backward(grad_y, x, w))}
        if tree_functional:
            contenders["tree"] = lambda: (tree_functional.conv2d(x, w, b), tree_functional.conv2d_backward(grad_y, x, w))
        if not args.no_torch:
            import torch
            tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
            tg = torch.from_numpy(grad_y)
            contenders["torch"] = lambda: torch.nn.functional.conv2d(tx, tw, tb).backward(tg)
        times = alternating_rounds(contenders, args.rounds, args.repeat, clock)
        row = f"{name:16} " + " ".join(f"{key} {statistics.median(value) * 1e3:.2f} ms" for key, value in times.items())
        for key in ("tree", "torch"):
            if key in times:
                ratios = [o / t for o, t in zip(times[key], times["this"])]
                row += f"; {key}/this {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"
        print(row, flush=True)
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
