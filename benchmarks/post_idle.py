"""Kernel calls right after the process rested: LeNet-5's second convolution (forward, input and weight gradients)
in rounds of ROUND calls, each round after a rest of REST seconds (what a benchmark round, or a server between two
requests, meets), against the ROUND calls that follow them.

    python benchmarks/post_idle.py [--rounds 50] [--round 12] [--rest 0.05] [--cpus]

Prints the per-call time's p50/p75/p90/p99 of the first ROUND calls after a rest and of the ROUND after those.
--cpus also counts the parallel calls whose two parts started on one CPU (each part's CPU read by a Python
wrapper around the span kernel, which itself takes the GIL at the part's start: use it to count, not to time).
To compare trees, run it with another checkout first on PYTHONPATH.
"""
import argparse
import ctypes
import time

import numpy as np

import nbconv
import nbconv.functional as F
from nbconv.kernels.cpu import threads


def lenet_conv2_layer():
    """A function running LeNet-5's second layer (64 x 6 x 14 x 14 -> 16, 5x5) forward and backward on fixed
    random arrays."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((64, 6, 14, 14)).astype(np.float32)
    weight = (rng.standard_normal((16, 6, 5, 5)) * 0.1).astype(np.float32)
    bias = np.zeros(16, np.float32)
    grad_output = rng.standard_normal((64, 16, 10, 10)).astype(np.float32)

    def layer():
        F.conv2d(images, weight, bias)
        F.conv2d_backward(grad_output, images, weight)
    return layer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--round", type=int, default=12)
    parser.add_argument("--rest", type=float, default=0.05)
    parser.add_argument("--cpus", action="store_true")
    arguments = parser.parse_args()
    layer = lenet_conv2_layer()
    for _ in range(50):
        layer()
    shared = [0, 0]
    if arguments.cpus:
        current_cpu = ctypes.CDLL(None).sched_getcpu
        run = threads.Workers.run

        def run_noting_cpus(self, span_kernel, parts, args):
            cpus = {}

            def noted(part, span_parts, *rest):
                cpus[part] = current_cpu()
                span_kernel(part, span_parts, *rest)
            run(self, noted, parts, args)
            shared[0] += len(cpus) > 1 and len(set(cpus.values())) == 1
            shared[1] += 1
        threads.Workers.run = run_noting_cpus
    after_rest, following = [], []
    for _ in range(arguments.rounds):
        time.sleep(arguments.rest)
        for times in (after_rest, following):
            for _ in range(arguments.round):
                started = time.perf_counter()
                layer()
                times.append(time.perf_counter() - started)
    print(f"nbconv from {nbconv.__file__}; rounds of {arguments.round} calls (forward + both gradients), "
          f"{arguments.rounds} rounds")
    for name, times in (("after a rest", after_rest), ("the next ones", following)):
        times.sort()
        marks = " ".join(f"p{q} {1e3 * times[len(times) * q // 100]:.2f}" for q in (50, 75, 90, 99))
        print(f"{name:13s} {marks} ms")
    if arguments.cpus:
        print(f"parallel calls with both parts started on one CPU: {shared[0]} of {shared[1]}")


if __name__ == "__main__":
    main()
