"""LeNet-5's second layer (64 x 6 x 14 x 14 -> 16, 5x5) pass by pass, call by call: where the two-thread spread
comes from. Alternating rounds; each round makes --calls calls of every contender and pass (this tree at 2
threads and at 1, another tree at 2 with --tree, PyTorch at 2), wall time per call. The table gives per pass and
contender the percentiles over all calls (p10, p50, p90, p99, max) and the median over rounds of each round's
median; for this tree at 2 threads it also splits each call into the calling thread's own part and its wait for
the other thread after it (the spin-wait in threads.Workers.run, timed from Python), and counts the calls whose
wait was over 50 us.

Usage: NUMBA_NUM_THREADS=2 python benchmarks/lenet_conv2_spread.py [--rounds 20] [--calls 50] [--tree PATH]
       [--passes forward,backward_input,backward_weight] [--no-torch]
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

from nbconv.kernels.cpu import threads  # noqa: E402

INPUT, WEIGHT, OUTPUT = (64, 6, 14, 14), (16, 6, 5, 5), (64, 16, 10, 10)
PASSES = ("forward", "backward_input", "backward_weight")


class TimedSpin:
    """threads.spin with its `reached` timed when called by the calling thread with a spin (its wait after its
    own part): the last wait's seconds in `waited`."""

    def __init__(self, spin):
        self.spin, self.waited = spin, 0.0

    def __getattr__(self, name):
        return getattr(self.spin, name)

    def reached(self, counters, first, last, column, target, spin_ns, *rest):
        start = time.perf_counter()
        result = self.spin.reached(counters, first, last, column, target, spin_ns, *rest)
        self.waited += time.perf_counter() - start
        return result


def percentiles(samples):
    ordered = sorted(samples)
    pick = [ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.1, 0.5, 0.9, 0.99)]
    return pick + [ordered[-1]]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--tree", default=None)
    parser.add_argument("--passes", default=",".join(PASSES))
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(INPUT).astype(np.float32)
    w = rng.standard_normal(WEIGHT).astype(np.float32)
    b = rng.standard_normal(WEIGHT[0]).astype(np.float32)
    grad_y = rng.standard_normal(OUTPUT).astype(np.float32)
    modules = None
    if args.tree:
        import importlib
        import_tree(args.tree)
        modules = (importlib.import_module("nbconv_tree.kernels.cpu.conv.plan").plan,
                   importlib.import_module("nbconv_tree.kernels.cpu.conv.dispatch"))
    if not args.no_torch:
        import torch
        torch.set_num_threads(2)
    passes = args.passes.split(",")
    contenders = {}  # (pass, name) -> (threads, function)
    for pass_ in passes:
        contenders[pass_, "this@2"] = (2, runner(pass_, None, x, w, b, grad_y, 1, 0))
        contenders[pass_, "this@1"] = (1, runner(pass_, None, x, w, b, grad_y, 1, 0))
        if modules:
            contenders[pass_, "tree@2"] = (2, runner(pass_, None, x, w, b, grad_y, 1, 0, modules))
        if not args.no_torch:
            contenders[pass_, "torch@2"] = (2, torch_runner(pass_, x, w, b, grad_y, 1, 0))
    for count, function in contenders.values():
        numba.set_num_threads(count)
        function()
        function()
    timed_spin = TimedSpin(threads.spin)
    threads.spin = timed_spin  # the workers bound the real one when they started
    calls = {key: [] for key in contenders}
    medians = {key: [] for key in contenders}
    own, waits = {p: [] for p in passes}, {p: [] for p in passes}
    taken_over, this_calls = {p: 0 for p in passes}, {p: 0 for p in passes}
    print(f"rounds {args.rounds}, calls {args.calls}, load {os.getloadavg()[0]:.2f}", flush=True)
    for _ in range(args.rounds):
        for (pass_, name), (count, function) in contenders.items():
            numba.set_num_threads(count)
            samples = []
            workers = threads._workers
            before = getattr(workers, "taken_over", 0)
            for _ in range(args.calls):
                timed_spin.waited = 0.0
                start = time.perf_counter()
                function()
                elapsed = time.perf_counter() - start
                samples.append(elapsed)
                if name == "this@2":
                    waits[pass_].append(timed_spin.waited)
                    own[pass_].append(elapsed - timed_spin.waited)
            if name == "this@2":
                taken_over[pass_] += getattr(workers, "taken_over", 0) - before
                this_calls[pass_] += args.calls
            calls[pass_, name] += samples
            medians[pass_, name].append(statistics.median(samples))
    print(f"{'pass':16} {'contender':8} {'p10':>7} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}  median of "
          f"rounds' medians [min-max] (ms)")
    for (pass_, name), samples in calls.items():
        p = percentiles(samples)
        m = medians[pass_, name]
        print(f"{pass_:16} {name:8} " + " ".join(f"{v * 1e3:7.3f}" for v in p)
              + f"  {statistics.median(m) * 1e3:.3f} [{min(m) * 1e3:.3f}-{max(m) * 1e3:.3f}]")
    print("this@2 split: the caller's own part (and the Python around it) / its wait for the other thread (ms)")
    for pass_ in passes:
        o, wt = percentiles(own[pass_]), percentiles(waits[pass_])
        late = sum(1 for v in waits[pass_] if v > 50e-6) / len(waits[pass_])
        print(f"{pass_:16} own  " + " ".join(f"{v * 1e3:7.3f}" for v in o))
        print(f"{pass_:16} wait " + " ".join(f"{v * 1e3:7.3f}" for v in wt) + f"  calls waiting > 50 us: {late:.0%}"
              + f", worker's part run by the caller: {taken_over[pass_] / this_calls[pass_]:.0%}")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
