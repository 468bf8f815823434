"""The 1x1 layers' three passes, each alone, against the same products as single sgemm calls, PyTorch's pass and
(--tree) another source tree's, in alternating rounds.

Per pass and layer, the contenders are: this tree's plan choice ('this'; --algorithm picks another), the same
pass of the tree at --tree ('tree'), PyTorch's pass ('torch': F.conv2d, torch.nn.grad.conv2d_input /
conv2d_weight) and 'sgemm': numpy's own matmul of the pass's flops as one call on arrays of the right sizes
(forward (D x C) @ (C x N*P), input gradient (C x D) @ (D x N*P), weight gradient (D x N*P) @ (N*P x C)),
under nbconv's single-threaded region when --threads 1. GFLOP/s count 2*N*D*C*P per pass.

--clock thread: CPU time of the calling thread (use with --threads 1); --clock wall: wall time.

Usage: python benchmarks/pointwise_passes.py [--rounds 7] [--repeat 5] [--threads N] [--clock wall|thread]
       [--layers NAME,...] [--passes forward,...] [--tree PATH] [--algorithm NAME] [--no-torch]
"""
import argparse
import contextlib
import os
import statistics
import sys

import numba
import numpy as np

from nbconv.kernels.cpu.blas import single_threaded

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blocked_layers import tree_modules  # noqa: E402
from layer_timing import add_arguments, alternating_rounds, runner, set_up, torch_runner  # noqa: E402

LAYERS = {  # name: (input shape, output channels)
    "pointwise-1x1": ((16, 256, 28, 28), 64),
    "r50-64to256-56": ((8, 64, 56, 56), 256),
    "r50-256to64-56": ((8, 256, 56, 56), 64),
    "r50-256to1024-14": ((8, 256, 14, 14), 1024),
    "r50-1024to256-14": ((8, 1024, 14, 14), 256),
    "r50-512to2048-7": ((8, 512, 7, 7), 2048),
    "r50-2048to512-7": ((8, 2048, 7, 7), 512),
    "odd-1x1": ((5, 37, 13, 11), 29),
}
PASSES = ("forward", "backward_input", "backward_weight")


def sgemm_runner(pass_, input_shape, channels, threads):
    """numpy's matmul of the pass's flops as one product, as a function of no arguments."""
    N, C, H, W = input_shape
    columns = N * H * W
    rng = np.random.default_rng(1)
    shapes = {"forward": ((channels, C), (C, columns)), "backward_input": ((C, channels), (channels, columns)),
              "backward_weight": ((channels, columns), (columns, C))}
    a, b = (rng.standard_normal(shape).astype(np.float32) for shape in shapes[pass_])
    out = np.empty((a.shape[0], b.shape[1]), np.float32)
    region = single_threaded if threads == 1 else contextlib.nullcontext

    def run():
        with region():
            np.matmul(a, b, out=out)
    return run


def main():
    parser = argparse.ArgumentParser()
    add_arguments(parser, repeat=5, layers="pointwise-1x1", passes=",".join(PASSES))
    parser.add_argument("--tree", default=None, help="another source tree, timed in the same rounds")
    parser.add_argument("--algorithm", default=None, help="this tree's algorithm (default: the plan's choice)")
    args = parser.parse_args()
    tree = tree_modules(args.tree) if args.tree else None
    clock = set_up(args)
    threads = numba.get_num_threads()
    rng = np.random.default_rng(0)
    print(f"threads {threads}, clock {args.clock}, rounds {args.rounds}, repeat {args.repeat}, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'layer':16} {'pass':16} " + " ".join(f"{key + ' ms':>9} {'GF/s':>5}" for key in
                                                    ("this", "tree", "torch", "sgemm")) +
          f" {'tree/this':>16} {'torch/this':>16} {'sgemm/this':>10}")
    for name in args.layers.split(","):
        input_shape, channels = LAYERS[name]
        N, C, H, W = input_shape
        flops = 2.0 * N * C * channels * H * W
        x = rng.standard_normal(input_shape).astype(np.float32)
        w = rng.standard_normal((channels, C, 1, 1)).astype(np.float32)
        b = rng.standard_normal(channels).astype(np.float32)
        grad_y = rng.standard_normal((N, channels, H, W)).astype(np.float32)
        for pass_ in args.passes.split(","):
            contenders = {"this": runner(pass_, args.algorithm, x, w, b, grad_y, 1, 0)}
            if tree:
                contenders["tree"] = runner(pass_, None, x, w, b, grad_y, 1, 0, tree)
            if not args.no_torch:
                contenders["torch"] = torch_runner(pass_, x, w, b, grad_y, 1, 0)
            contenders["sgemm"] = sgemm_runner(pass_, input_shape, channels, threads)
            times = alternating_rounds(contenders, args.rounds, args.repeat, clock)
            median = {key: statistics.median(value) for key, value in times.items()}
            row = f"{name:16} {pass_:16} "
            for key in ("this", "tree", "torch", "sgemm"):
                row += (f"{median[key] * 1e3:9.3f} {flops / median[key] / 1e9:5.0f} " if key in median
                        else f"{'-':>9} {'-':>5} ")
            for key in ("tree", "torch"):
                if key in times:
                    ratios = [o / t for o, t in zip(times[key], times["this"])]
                    row += f"{statistics.median(ratios):5.2f} [{min(ratios):.2f}-{max(ratios):.2f}] "
                else:
                    row += f"{'-':>16} "
            row += f"{median['sgemm'] / median['this']:10.2f}"
            print(row, flush=True)
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
