"""LeNet-5's second layer (64 x 6 x 14 x 14 -> 16, 5x5) as the layer set times it, with every parallel call traced:
did the worker join, and how late. Runs the layer set's case (`nbconv bench --preset layers --compare torch`,
nbconv/bench.py conv_case: F.conv2d then F.conv2d_backward, rounds of a 50 ms pause, 2 untimed and --calls timed
calls) in alternating rounds of three kinds:

  after-torch   a round of PyTorch's forward + backward (2 threads), then this round: the layer set's order
  after-ours    a round of this layer, then this round (no PyTorch in between)
  block         --calls x 2 calls in one round (the second half traced), no pause

Each parallel call of the layer's passes (lanes' forward and weight gradient, row_lanes' input gradient, or both
gradients in one call, backward_pair's "both", where the tree has it) is traced
from Python by wrapping its span kernel: whether the worker was blocked (asleep) when the call was posted, when
the worker's part started after the post (its delay), whether the caller took the worker's part over (it had not
started by the end of the caller's own part), and the worker's share of the call's busy time (its part's
duration over both parts' durations: the images it took, near enough, since the threads claim them one at a
time). The wrapper adds a Python call (~1 us) on each thread; the product's calls are otherwise unchanged.

Also: the share of taken-over calls by their index in the round, and how often the worker had last run on the
caller's CPU (/proc) in calls taken over and in calls it joined.

Usage: NUMBA_NUM_THREADS=2 python benchmarks/lenet_conv2_joins.py [--rounds 10] [--calls 10] [--pause 0.05]
       [--tree PATH]   (--tree: trace that tree instead, e.g. /work/wt/base; --pause: seconds before each round)
"""
import argparse
import importlib
import importlib.util
import os
import statistics
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SETTLE_SECONDS = 0.05  # nbconv/bench.py's pause before each round
INPUT, WEIGHT, OUTPUT = (64, 6, 14, 14), (16, 6, 5, 5), (64, 16, 10, 10)
KINDS = ("after-torch", "after-ours", "block")


class Tracer:
    """Wraps the span kernels handed to parallel_parts in the given modules; records one dict per call into
    `records` while `on`."""

    def __init__(self, threads_module, kernel_modules):
        self.threads, self.records, self.on, self.index = threads_module, [], False, 0
        self.main = threading.get_ident()
        for module in kernel_modules:
            module.parallel_parts = self._traced(module.parallel_parts)

    def _traced(self, parallel_parts):
        def traced(span_kernel, parts, *args):
            if not self.on or parts < 2:
                return parallel_parts(span_kernel, parts, *args)
            workers = self.threads._workers
            record = {"kernel": span_kernel.__name__, "asleep": bool(workers and True in workers.asleep),
                      "parts": {}}
            taken = workers.taken_over if workers else 0
            main, perf_counter = self.main, time.perf_counter

            def wrapped(part, parts_, *args_):
                start = perf_counter()
                span_kernel(part, parts_, *args_)
                record["parts"][part] = (start, perf_counter(), threading.get_ident() == main)
                if part == 0:  # the CPU the caller ran its part on (the last it ran on, read at its end)
                    record["caller_cpu"] = _cpu(threading.get_native_id())
            record["post"] = perf_counter()
            parallel_parts(wrapped, parts, *args)
            record["end"] = perf_counter()
            record["taken_over"] = (self.threads._workers.taken_over - taken) > 0
            record["worker_cpu"] = _cpu(self.threads._workers.threads[0].native_id)
            record["index"] = self.index
            self.records.append(record)
        return traced


def _cpu(tid):
    """The CPU a thread of this process last ran on (/proc, field 39 of its stat)."""
    with open(f"/proc/self/task/{tid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[36])


def summarise(records):
    """Per kernel: calls, % posted to an asleep worker, % the worker joined (started before the caller's part
    ended), % taken over, the worker's start delay p50/p90 (us, calls it ran), its share of the busy time."""
    rows = {}
    for r in records:
        rows.setdefault(r["kernel"], []).append(r)
    out = []
    for kernel, rs in rows.items():
        joined, delays, shares = 0, [], []
        for r in rs:
            caller = r["parts"].get(0)
            worker = r["parts"].get(1)
            if worker is None or caller is None:
                continue
            if not worker[2]:  # run by the worker thread
                delays.append(worker[0] - r["post"])
                if worker[0] < caller[1]:
                    joined += 1
                busy_w, busy_c = worker[1] - worker[0], caller[1] - caller[0]
                shares.append(busy_w / (busy_w + busy_c))
            else:
                shares.append(0.0)
        delays.sort()
        pick = (lambda q: delays[min(len(delays) - 1, int(q * len(delays)))] * 1e6) if delays else (lambda q: 0.0)
        out.append((kernel, len(rs), 100 * sum(r["asleep"] for r in rs) / len(rs), 100 * joined / len(rs),
                    100 * sum(r["taken_over"] for r in rs) / len(rs), pick(0.5), pick(0.9),
                    statistics.median(shares) if shares else 0.0))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--tree", default=None)
    parser.add_argument("--pause", type=float, default=SETTLE_SECONDS, help="seconds before each round")
    args = parser.parse_args()
    import numba
    import torch
    torch.set_num_threads(numba.get_num_threads())
    if args.tree:
        from blocked_layers import import_tree
        import_tree(args.tree)
        name = "nbconv_tree"
    else:
        name = "nbconv"
    F = importlib.import_module(f"{name}.functional")
    threads_module = importlib.import_module(f"{name}.kernels.cpu.threads")
    traced = ("lanes", "row_lanes", "backward_pair")  # backward_pair: where the tree has it (its call is "both")
    kernel_modules = [importlib.import_module(f"{name}.kernels.cpu.conv.{m}") for m in traced
                      if importlib.util.find_spec(f"{name}.kernels.cpu.conv.{m}")]
    tracer = Tracer(threads_module, kernel_modules)

    rng = np.random.default_rng(0)
    x = rng.standard_normal(INPUT).astype(np.float32)
    w = (rng.standard_normal(WEIGHT) * 0.1).astype(np.float32)
    b = np.zeros(WEIGHT[0], np.float32)
    grad_y = rng.standard_normal(OUTPUT).astype(np.float32)

    def ours():
        F.conv2d(x, w, b)
        F.conv2d_backward(grad_y, x, w)

    tx, tw, tb = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))
    tg = torch.from_numpy(grad_y)

    def theirs():
        torch.nn.functional.conv2d(tx, tw, tb).backward(tg)

    def timed_round(function, calls, trace, pause=True):
        if pause:
            time.sleep(args.pause)
        for _ in range(2):
            function()
        samples = []
        for index in range(calls):
            tracer.on, tracer.index = trace, index
            start = time.perf_counter()
            function()
            samples.append(time.perf_counter() - start)
            tracer.on = False
        return samples

    for _ in range(3):
        ours()
        theirs()
    results = {kind: {"ours": [], "torch": [], "records": []} for kind in KINDS}
    print(f"{name}: rounds {args.rounds}, calls {args.calls}, threads {numba.get_num_threads()}, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    for _ in range(args.rounds):
        for kind in KINDS:
            tracer.records = []
            if kind == "after-torch":
                torch_samples = timed_round(theirs, args.calls, False)
                results[kind]["torch"].append(statistics.median(torch_samples))
                samples = timed_round(ours, args.calls, True)
            elif kind == "after-ours":
                timed_round(ours, args.calls, False)
                samples = timed_round(ours, args.calls, True)
            else:
                time.sleep(args.pause)
                timed_round(ours, args.calls, False, pause=False)
                samples = timed_round(ours, args.calls, True, pause=False)
            results[kind]["ours"].append(statistics.median(samples))
            results[kind]["records"] += tracer.records
    torch_median = statistics.median(results["after-torch"]["torch"])
    print(f"PyTorch (2 threads) median of round medians {torch_median * 1e3:.3f} ms")
    for kind in KINDS:
        medians = results[kind]["ours"]
        line = (f"{kind:12} layer median of round medians {statistics.median(medians) * 1e3:.3f} ms "
                f"[{min(medians) * 1e3:.3f}-{max(medians) * 1e3:.3f}]")
        if kind == "after-torch":
            ratios = [t / o for t, o in zip(results[kind]["torch"], medians)]
            line += f"  PyTorch / this per round {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"
        print(line)
        print(f"  {'kernel':42} {'calls':>5} {'asleep':>6} {'joined':>6} {'taken':>6} {'delay p50':>9} "
              f"{'p90 us':>7} {'worker share':>12}")
        for kernel, calls, asleep, joined, taken, p50, p90, share in summarise(results[kind]["records"]):
            print(f"  {kernel:42} {calls:5d} {asleep:5.0f}% {joined:5.0f}% {taken:5.0f}% {p50:9.0f} {p90:7.0f} "
                  f"{share:12.2f}")
    print("calls taken over by their index in the round (all kernels), per kind:")
    for kind in KINDS:
        by_index = {}
        for r in results[kind]["records"]:
            by_index.setdefault(r["index"], []).append(r["taken_over"])
        print(f"  {kind:12} " + " ".join(f"{100 * sum(v) / len(v):3.0f}" for _, v in sorted(by_index.items())))
    print("worker on the caller's CPU after the call (%): taken over / run by the worker, per kind:")
    for kind in KINDS:
        rs = results[kind]["records"]
        for taken in (True, False):
            sel = [r for r in rs if r["taken_over"] == taken]
            same = sum(r.get("caller_cpu") == r["worker_cpu"] for r in sel)
            print(f"  {kind:12} taken={taken!s:5} calls {len(sel):4d} same CPU {100 * same / max(1, len(sel)):3.0f}%")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
