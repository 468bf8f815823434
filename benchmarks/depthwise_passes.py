"""Time the depthwise 3x3 layer's three passes (nbconv's plan, PyTorch's same passes) and a numpy copy of the
same bytes, in alternating rounds, in one process.

    NUMBA_NUM_THREADS=T python benchmarks/depthwise_passes.py [--threads T] [--rounds R] [--clock thread|wall]

Shape: the layer set's depthwise-3x3 (batch 16, 128 channels, 56x56, pad 1, groups 128), float32.
Prints, per pass, min/median/max milliseconds of nbconv, torch and the copy, and the median of per-round
ratios torch/nbconv. With --clock thread (1 thread) the times are the calling thread's CPU time.
"""
import argparse
import os
import time

import numpy as np
import torch

from nbconv.kernels.cpu.conv import dispatch
from nbconv.kernels.cpu.conv.plan import plan


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=int(os.environ.get("NUMBA_NUM_THREADS", "1")))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--clock", choices=("thread", "wall"), default="thread")
    parser.add_argument("--shape", default="16,128,56,56")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    N, C, H, W = map(int, args.shape.split(","))
    hyper = (1, 1, 1, 1, 1, 1, C)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    w = rng.standard_normal((C, 1, 3, 3), dtype=np.float32)
    b = rng.standard_normal(C, dtype=np.float32)
    g = rng.standard_normal((N, C, H, W), dtype=np.float32)
    y, gx, gw = np.empty_like(x), np.empty_like(x), np.empty_like(w)
    plans = {p: plan(p, x.shape, w.shape, *hyper, dtype=np.float32) for p in
             ("forward", "backward_input", "backward_weight")}
    tx, tw, tb, tg = map(torch.from_numpy, (x, w, b, g))
    copy_target = np.empty_like(x)

    ours = {"forward": lambda: dispatch.run_forward(plans["forward"], x, w, b, y),
            "backward_input": lambda: dispatch.run_backward_input(plans["backward_input"], g, w, gx),
            "backward_weight": lambda: dispatch.run_backward_weight(plans["backward_weight"], g, x, gw)}

    def torch_pass(mask):
        return lambda: torch.ops.aten.convolution_backward(tg, tx, tw, None, [1, 1], [1, 1], [1, 1], False, [0, 0],
                                                            C, mask)
    theirs = {"forward": lambda: torch.nn.functional.conv2d(tx, tw, tb, 1, 1, 1, C),
              "backward_input": torch_pass([True, False, False]),
              "backward_weight": torch_pass([False, True, False])}
    copy = lambda: np.copyto(copy_target, x)  # noqa: E731 - 26 MB read, 26 MB written

    def timed(function, repeats=3):
        best = float("inf")
        for _ in range(repeats):
            start = clock()
            function()
            best = min(best, clock() - start)
        return best * 1e3

    for function in list(ours.values()) + list(theirs.values()) + [copy]:
        function()
    times = {(who, p): [] for who in ("nbconv", "torch") for p in ours} | {("copy", ""): []}
    for _ in range(args.rounds):
        for p in ours:
            times["nbconv", p].append(timed(ours[p]))
            times["torch", p].append(timed(theirs[p]))
        times["copy", ""].append(timed(copy))
    print(f"algorithms: {[plans[p].algorithm for p in plans]}; threads {args.threads}; clock {args.clock}; "
          f"load {os.getloadavg()}")
    copy_times = np.array(times["copy", ""])
    print(f"copy of {x.nbytes / 1e6:.1f} MB: min/med/max {copy_times.min():.2f}/{np.median(copy_times):.2f}/"
          f"{copy_times.max():.2f} ms")
    for p in ours:
        a, t = np.array(times["nbconv", p]), np.array(times["torch", p])
        print(f"{p:16s} nbconv {a.min():6.2f}/{np.median(a):6.2f}/{a.max():6.2f}  torch {t.min():6.2f}/"
              f"{np.median(t):6.2f}/{t.max():6.2f}  ratio torch/nbconv med {np.median(t / a):.2f} "
              f"min {np.min(t / a):.2f}  nbconv/copy {np.median(a / copy_times):.2f}")


if __name__ == "__main__":
    main()
