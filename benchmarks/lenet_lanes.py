"""LeNet-5's training step with its second layer's forward and weight gradient on lanes (now) and on strips
(before: plan.LANES_LARGE_CHANNELS = 0), and PyTorch, in alternating rounds in one process.

With one thread, CPU milliseconds of this process (a loaded machine inflates them less than wall time); with
more, wall milliseconds. The median [min-max] over the rounds, each round the best of `--calls` calls.

Usage: python benchmarks/lenet_lanes.py ROUNDS [--threads T] [--calls K] [--no-torch]
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lenet_strips import step_functions  # noqa: E402


def spread(values):
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rounds", type=int)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    import numba
    numba.set_num_threads(args.threads)
    import torch
    torch.set_num_threads(args.threads)
    from nbconv.kernels.cpu.conv import plan
    clock = time.process_time if args.threads == 1 else time.perf_counter
    ours, theirs = step_functions(torch)
    now = plan.LANES_LARGE_CHANNELS
    cases = {"before": lambda: (setattr(plan, "LANES_LARGE_CHANNELS", 0), ours()),
             "now": lambda: (setattr(plan, "LANES_LARGE_CHANNELS", now), ours())}
    if not args.no_torch:
        cases["torch"] = theirs
    for function in cases.values():
        function(), function()  # compile, remember the plans, fill the caches
    times = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, function in cases.items():
            best = float("inf")
            for _ in range(args.calls):
                started = clock()
                function()
                best = min(best, clock() - started)
            times[name].append(best * 1e3)
    unit = "CPU ms" if args.threads == 1 else "wall ms"
    for name, values in times.items():
        print(f"{name}: {spread(values)} {unit}")
    print(f"before / now: {spread([b / n for b, n in zip(times['before'], times['now'])])}")
    if "torch" in times:
        for name in ("before", "now"):
            print(f"PyTorch / {name}: {spread([t / o for t, o in zip(times['torch'], times[name])])}")


if __name__ == "__main__":
    main()
