"""Many small two-thread calls (F.conv2d on 3 x 6 x 14 x 14 float64 -> 16, 5x5: a finite-difference test's
size), this tree against another (argument, e.g. /work/wt/base) in alternating rounds of 200 calls: wall us a
call, and how many calls' worker parts the caller ran itself (threads.Workers.taken_over).

Usage: python benchmarks/handoff_small_calls.py /work/wt/base
"""
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
from nbconv.kernels.cpu import threads  # noqa: E402


def main(other, rounds=15, calls=200):
    import_tree(other)
    G = importlib.import_module("nbconv_tree.functional")
    numba.set_num_threads(2)
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((3, 6, 14, 14)), rng.standard_normal((16, 6, 5, 5)), rng.standard_normal(16)
    for functional in (F, G):
        functional.conv2d(x, w, b)
        functional.conv2d(x, w, b)
    times = {"this": [], "other": []}
    before = threads._workers.taken_over
    for _ in range(rounds):
        for name, functional in (("this", F), ("other", G)):
            start = time.perf_counter()
            for _ in range(calls):
                functional.conv2d(x, w, b)
            times[name].append((time.perf_counter() - start) / calls * 1e6)
    for name, values in times.items():
        print(f"{name}: us a call, median {statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]")
    ratios = [o / t for t, o in zip(times["this"], times["other"])]
    print(f"other / this per round {statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]; "
          f"worker parts run by the caller in {threads._workers.taken_over - before} of {rounds * calls} calls; "
          f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
