"""What a parallel kernel call costs beyond its work: microseconds per call of a tiny kernel on 2 threads.

Compares, in alternating rounds in one process, a span kernel over a few values run on the calling thread
alone (`direct`: Numba's dispatch only), the same span kernel cut into parts by
nbconv.kernels.cpu.threads.parallel_parts (`kernel threads`), the same loop as an `@njit(parallel=True)`
prange kernel (`prange`: Numba's threading layer, what the kernels were before), and, with --executor PATH,
parallel_parts of another threads.py (e.g. an older one, loaded from PATH). Also: the work at which two
threads start to beat one for a ReLU, and the process's CPU use while idle after a call.

Usage: python benchmarks/handoff.py [--threads 2] [--calls 2000] [--rounds 5] [--executor PATH]
                                   [--variants direct,prange,...] [--no-relu]
"""
import argparse
import importlib.util
import statistics
import time

import numba
import numpy as np
from numba import njit, prange

from nbconv.kernels.cpu import threads
from nbconv.kernels.cpu.activation import relu_forward_span
from nbconv.kernels.cpu.shared import chunk_bounds


@njit(nogil=True, cache=True, error_model="numpy")
def add_one_span(span_part, span_parts, values):
    first, last = chunk_bounds(span_part, span_parts, values.shape[0])
    for i in range(first, last):
        values[i] += 1


@njit(parallel=True, cache=True)
def add_one_prange(values):
    for i in prange(values.shape[0]):
        values[i] += 1


def per_call_us(call, calls):
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return 1e6 * (time.perf_counter() - start) / calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--executor", help="another threads.py to compare (its parallel_parts)")
    parser.add_argument("--variants", help="comma-separated names to time (default: all); one per process keeps "
                        "one engine's spinning threads from slowing another's")
    parser.add_argument("--no-relu", action="store_true", help="skip the ReLU sizes")
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    values = np.zeros(16, np.int64)
    variants = {
        "direct": lambda: add_one_span(0, 1, values),
        "kernel threads": lambda: threads.parallel_parts(add_one_span, args.threads, values),
        "prange": lambda: add_one_prange(values),
    }
    if args.executor:
        spec = importlib.util.spec_from_file_location("other_threads", args.executor)
        other = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(other)
        variants["other threads.py"] = lambda: other.parallel_parts(add_one_span, args.threads, values)
    if args.variants:
        variants = {name: call for name, call in variants.items() if name in args.variants.split(",")}
    for call in variants.values():  # compile, start the threads
        per_call_us(call, 50)
    results = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, call in variants.items():
            results[name].append(per_call_us(call, args.calls))
    print(f"tiny kernel (16 values), {args.threads} threads, {args.rounds} rounds of {args.calls} calls: "
          "median us per call [range]")
    for name, times in results.items():
        print(f"  {name:16s} {statistics.median(times):7.1f} [{min(times):.1f}-{max(times):.1f}]")

    print("ReLU through parallel_parts, 1 part against all threads: median us per call")
    for size in () if args.no_relu else (4096, 16384, 32768, 65536, 131072, 524288):
        x = np.random.default_rng(0).standard_normal(size).astype(np.float32)
        y = np.empty_like(x)
        one, many = [], []
        for _ in range(args.rounds):
            one.append(per_call_us(lambda: threads.parallel_parts(relu_forward_span, 1, x, y), 200))
            many.append(per_call_us(lambda: threads.parallel_parts(relu_forward_span, args.threads, x, y), 200))
        print(f"  {size:7d} values: 1 part {statistics.median(one):7.1f}   {args.threads} parts "
              f"{statistics.median(many):7.1f}")

    threads.parallel_parts(add_one_span, args.threads, values)
    time.sleep(0.05)
    cpu, wall = time.process_time(), time.perf_counter()
    time.sleep(0.5)
    print(f"idle after a call: {100 * (time.process_time() - cpu) / (time.perf_counter() - wall):.1f}% of one core")


if __name__ == "__main__":
    main()
