"""ResNet-20's two 1x1 stride-2 shortcut layers (16 -> 32 on 32x32, 32 -> 64 on 16x16), each pass by
'subsampled' (numpy's strided copy and BLAS products) against 'gemm' (compiled im2col + BLAS) and PyTorch, in
alternating rounds.

--clock thread: CPU time of the calling thread (use with --threads 1); --clock wall: wall time.

Usage: python benchmarks/shortcut_layers.py [--rounds 5] [--repeat 20] [--threads N] [--clock wall|thread]
       [--batch 64] [--no-torch]
"""
import argparse
import os
import statistics
import sys

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from layer_timing import add_arguments, alternating_rounds, runner, set_up, torch_runner  # noqa: E402

LAYERS = {"shortcut-16-32": (16, 32, 32), "shortcut-32-64": (32, 64, 16)}  # (C, D, input width)
PASSES = ("forward", "backward_input", "backward_weight")


def main():
    parser = argparse.ArgumentParser()
    add_arguments(parser, repeat=20, layers=",".join(LAYERS))
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    clock = set_up(args)
    rng = np.random.default_rng(0)
    print(f"threads {numba.get_num_threads()}, clock {args.clock}, rounds {args.rounds}, repeat {args.repeat}, "
          f"batch {args.batch}, load {os.getloadavg()[0]:.1f}")
    for name in args.layers.split(","):
        C, D, size = LAYERS[name]
        x = rng.standard_normal((args.batch, C, size, size)).astype(np.float32)
        w = rng.standard_normal((D, C, 1, 1)).astype(np.float32)
        b = np.zeros(D, np.float32)
        grad_y = rng.standard_normal((args.batch, D, size // 2, size // 2)).astype(np.float32)
        for pass_ in PASSES:
            contenders = {algorithm: runner(pass_, algorithm, x, w, b, grad_y, 2, 0)
                          for algorithm in ("subsampled", "gemm")}
            if not args.no_torch:
                contenders["torch"] = torch_runner(pass_, x, w, b, grad_y, 2, 0)
            times = alternating_rounds(contenders, args.rounds, args.repeat, clock)
            cells = [f"{key} {1e3 * statistics.median(t):.3f} [{1e3 * min(t):.3f}-{1e3 * max(t):.3f}] ms"
                     for key, t in times.items()]
            ratios = [g / s for s, g in zip(times["subsampled"], times["gemm"])]
            print(f"{name} {pass_}: " + ", ".join(cells) + f"; gemm/subsampled per round {statistics.median(ratios):.2f}"
                  f" [{min(ratios):.2f}-{max(ratios):.2f}]", flush=True)


if __name__ == "__main__":
    main()
