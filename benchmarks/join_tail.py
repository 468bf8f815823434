"""Where a parallel call's time goes beyond its parts, call by call: how long after the call's entry each
thread's part starts, and how long the call takes to return after its last part ends (the join's tail), split by
which thread finished last. Two cases: LeNet-5's second layer as the layer set times it (forward and backward,
rounds of 12 calls after a 50 ms pause) and the imported ResNet-50's batch-1 inference (nn.infer, rounds of one
forward after a 20 ms pause).

    NUMBA_NUM_THREADS=2 python benchmarks/join_tail.py [--case lenet5-conv2|resnet50] [--rounds 10]

Each call's span kernel is wrapped in a Python function that reads the clock before and after the part (~1 us
more on each thread); nothing else of the product's calls changes. A tail of tens of microseconds where the
worker finished last is the caller asking for a GIL the worker still holds (it sleeps, and wakes tens of
microseconds after the GIL is let go).
"""
import argparse
import collections
import os
import statistics
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def traced_runs(threads):
    """Wraps threads.Workers.run so that every call appends {kernel, entry, exit, parts: {part: (on caller,
    start, end)}} to the returned list (ns)."""
    records, clock, caller = [], time.perf_counter_ns, threading.get_ident()
    run = threads.Workers.run

    def traced(self, span_kernel, parts, args):
        record = {"kernel": span_kernel.__name__, "parts": {}, "entry": clock()}

        def wrapped(part, parts_, *args_):
            start = clock()
            span_kernel(part, parts_, *args_)
            record["parts"][part] = (threading.get_ident() == caller, start, clock())
        try:
            return run(self, wrapped, parts, args)
        finally:
            record["exit"] = clock()
            records.append(record)
    threads.Workers.run = traced
    return records


def lenet5_conv2(rng):
    import nbconv.functional as F
    x = rng.standard_normal((64, 6, 14, 14)).astype(np.float32)
    w = (rng.standard_normal((16, 6, 5, 5)) * 0.1).astype(np.float32)
    b, g = np.zeros(16, np.float32), rng.standard_normal((64, 16, 10, 10)).astype(np.float32)

    def calls():
        F.conv2d(x, w, b)
        F.conv2d_backward(g, x, w)
    return calls, 12, 0.05


def resnet50(rng):
    import nbconv.onnx
    from nbconv import nn
    from resnet50_model import resnet50_file
    with resnet50_file(rng) as path:
        model = nbconv.onnx.load(path).eval()
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    return (lambda: nn.infer(model, x)), 1, 0.02


def quantile(values, q):
    return values[int(q * (len(values) - 1))] if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("lenet5-conv2", "resnet50"), default="lenet5-conv2")
    parser.add_argument("--rounds", type=int, default=10)
    arguments = parser.parse_args()
    from nbconv.kernels.cpu import threads
    calls, per_round, pause = {"lenet5-conv2": lenet5_conv2, "resnet50": resnet50}[arguments.case](
        np.random.default_rng(0))
    for _ in range(3):
        calls()
    records = traced_runs(threads)
    for _ in range(arguments.rounds):
        time.sleep(pause)
        for _ in range(per_round):
            calls()
    print(f"{arguments.case}, {threads.num_threads()} threads, {arguments.rounds} rounds; microseconds")
    by_kernel = collections.defaultdict(list)
    for record in records:
        by_kernel[record["kernel"]].append(record)
    for kernel, group in by_kernel.items():
        worker_start, tails = [], {True: [], False: []}
        for record in group:
            parts = record["parts"].values()
            worker_starts = [start for on_caller, start, _ in parts if not on_caller]
            if worker_starts:
                worker_start.append((min(worker_starts) - record["entry"]) / 1e3)
            last = max(parts, key=lambda part: part[2])
            tails[last[0]].append((record["exit"] - last[2]) / 1e3)
        for values in [worker_start, *tails.values()]:
            values.sort()
        wall = sorted((record["exit"] - record["entry"]) / 1e3 for record in group)
        beyond = sum((record["exit"] - record["entry"]) - max(end - start for _, start, end in
                                                              record["parts"].values()) for record in group) / 1e3
        print(f"{kernel}: {len(group)} calls, wall p50 {statistics.median(wall):.0f}; worker's part starts p50 "
              f"{quantile(worker_start, .5):.0f} p90 {quantile(worker_start, .9):.0f} after the entry "
              f"({len(group) - len(worker_start)} calls without it); tail p50/p90 where the worker ended last "
              f"({len(tails[False])}) {quantile(tails[False], .5):.1f}/{quantile(tails[False], .9):.1f}, the caller "
              f"({len(tails[True])}) {quantile(tails[True], .5):.1f}/{quantile(tails[True], .9):.1f}; "
              f"wall beyond the longest part, summed: {beyond:.0f}")


if __name__ == "__main__":
    main()
