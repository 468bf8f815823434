"""LeNet-5's second layer (64 x 6 x 14 x 14 -> 16, 5x5) forward + backward at the process's thread count, in
rounds of 12 calls after a 50 ms pause (the layer set's round shape): per round, the median call and how many of
its parallel calls the caller ran alone because the worker had not started them (threads.Workers.taken_over).

Usage: NUMBA_NUM_THREADS=2 python benchmarks/lenet_conv2_takeovers.py [ROUNDS]
"""
import statistics
import sys
import time

from nbconv.kernels.cpu import threads
from post_idle import lenet_conv2_layer


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    layer = lenet_conv2_layer()
    for _ in range(20):
        layer()
    medians, taken = [], []
    for _ in range(rounds):
        time.sleep(0.05)
        workers = threads._workers
        before = workers.taken_over if workers else 0
        samples = []
        for _ in range(12):
            start = time.perf_counter()
            layer()
            samples.append(time.perf_counter() - start)
        medians.append(statistics.median(samples[2:]))
        taken.append((threads._workers.taken_over if threads._workers else 0) - before)
    calls = 12 * 3  # forward, weight gradient, input gradient
    print(f"layer median {statistics.median(medians) * 1e3:.3f} ms [{min(medians) * 1e3:.3f}-"
          f"{max(medians) * 1e3:.3f}]; taken over per round of {calls} parallel calls: {taken}")


if __name__ == "__main__":
    main()
