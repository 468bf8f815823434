"""Every kernel call of one nn.infer forward of the imported ResNet-50, timed in several nbconv trees in
alternating rounds in one process: which calls got slower or faster between two trees, and how many parts
(threads) each parallel call ran in.

    python benchmarks/infer_calls.py [--batch 1] [--rounds 7] [--top 25] NAME=TREE [NAME=TREE ...]
    python benchmarks/infer_calls.py --save FILE NAME=TREE        # one tree per process, rounds added to FILE
    python benchmarks/infer_calls.py --report FILE                # the table of every tree FILE holds

A tree whose kernels use `prange` (Numba's OpenMP threads) cannot share a process with a span-kernel tree
(their threads wait on each other's: every call took ~7 ms): run each in its own process with --save, in
turns, then --report.

TREE is a checkout's root (its nbconv/ is copied, afresh each run, under /tmp/nbconv_trees/NAME and imported as
nbconv_NAME; the modules import each other relatively); NAME=. is this checkout's nbconv itself. Per call:
what ran (a convolution's algorithm and epilogue, or the public kernel's name), its input shape, the parts
of each parallel call inside it (span-kernel trees: threads.parallel_parts; `prange` trees show none), and
the median time over the rounds. Then the sums per kind of call, and the whole forward; and, for trees
with kernel threads, how evenly each parallel call's parts share its work (each part's thread CPU time: the
largest part per call, summed over the forward, is the best that many threads can do; load-independent).
"""
import argparse
import collections
import importlib
import json
import os
import shutil
import statistics
import sys
import time

import numba
import numpy as np

from resnet50_model import resnet50_file

TREES_DIR = "/tmp/nbconv_trees"
clock = time.perf_counter


def import_tree(name, root):
    if root == ".":
        return importlib.import_module("nbconv")
    package = f"nbconv_{name}"
    target = os.path.join(TREES_DIR, name)
    # copied afresh every run: a copy kept from an earlier run of the same NAME would time that run's tree
    shutil.rmtree(os.path.join(target, package), ignore_errors=True)
    os.makedirs(target, exist_ok=True)
    shutil.copytree(os.path.join(root, "nbconv"), os.path.join(target, package),
                    ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, target)
    return importlib.import_module(package)


class Recorder:
    """Wraps one tree's convolution entry, public kernels and parallel_parts; `calls` holds one forward's
    records: [label, shape, [(span kernel, parts, seconds)], seconds]."""

    def __init__(self, package):
        self.calls = None
        self.parts = None  # per parallel call, each part's thread CPU time (span-kernel trees)
        self.part_labels = []  # per parallel call, the label of the call it ran in
        self.stack = []
        pkg = package.__name__
        dispatch = importlib.import_module(pkg + ".kernels.cpu.conv.dispatch")
        plan_module = importlib.import_module(pkg + ".kernels.cpu.conv.plan")
        backend = importlib.import_module(pkg + ".backend")
        original_conv = dispatch.conv2d_forward_prepared

        def conv(input, weight, bias, output, prepared, *args, epilogue=None, run=None):
            chosen = plan_module.plan("forward", input.shape, weight.shape, *args, dtype=input.dtype)
            fused = "" if epilogue is None else "+" + "+".join(
                part for part, present in (("bn", epilogue[0].shape[0] > 0), ("res", epilogue[2].shape[0] > 0),
                                           ("relu", epilogue[3] != 0)) if present)
            label = f"conv {weight.shape[2]}x{weight.shape[3]}" + (f" s{args[0]}" if args[0] != 1 else "") + \
                f" {chosen.algorithm}{fused} -> {weight.shape[0]}"
            if run is not None:  # a bound convolution of a recorded program
                return self._timed(label, input.shape, run, input, output, epilogue)
            return self._timed(label, input.shape, original_conv, input, weight, bias, output, prepared, *args,
                               epilogue=epilogue)
        dispatch.conv2d_forward_prepared = conv
        original_bind = getattr(dispatch, "bind_forward_prepared", None)  # nn.infer's recorded programs

        def bind(input_shape, weight, bias, prepared, *rest, **settings):
            run = original_bind(input_shape, weight, bias, prepared, *rest, **settings)
            args = rest[:7]  # stride, padding, dilation (pairs), groups

            def timed(input, output, epilogue):
                return conv(input, weight, bias, output, prepared, *args, epilogue=epilogue, run=run)
            return timed
        if original_bind is not None:
            dispatch.bind_forward_prepared = bind
        original_finite = dispatch.all_finite

        def finite(*args):
            return self._timed_inner("all_finite", original_finite, *args)
        dispatch.all_finite = finite
        kernels = backend.kernels("cpu")
        for name in kernels.module.__all__:
            function = getattr(kernels, name)
            setattr(kernels, name, self._wrap_kernel(name, function))
        threads = sys.modules.get(pkg + ".kernels.cpu.threads")
        if threads is not None and hasattr(threads, "parallel_parts"):
            original_parts = threads.parallel_parts

            def parallel_parts(span_kernel, parts, *args):
                name = getattr(span_kernel, "__name__", None) or span_kernel.py_func.__name__
                return self._timed_inner((name, parts), original_parts, span_kernel, parts, *args)
            for module_name, module in list(sys.modules.items()):
                if module_name.startswith(pkg) and getattr(module, "parallel_parts", None) is original_parts:
                    module.parallel_parts = parallel_parts
            self._time_parts(threads.Workers)

    def _time_parts(self, workers_class):
        """Each part's thread CPU time, per parallel call run by the kernel threads: `parts` gets one list of
        them per call (a load-independent measure of how evenly a call's work is shared)."""
        original_run = workers_class.run
        recorder = self

        def run(self, span_kernel, parts, args):
            if recorder.parts is None:
                return original_run(self, span_kernel, parts, args)
            seconds = [0.0] * parts

            def timed(part, span_parts, *span_args):
                start = time.thread_time()
                try:
                    return span_kernel(part, span_parts, *span_args)
                finally:
                    seconds[part] = time.thread_time() - start
            try:
                return original_run(self, timed, parts, args)
            finally:
                recorder.parts.append(seconds)
                if recorder.calls is not None:
                    label = recorder.stack[-1][0] if recorder.stack else "?"
                    recorder.part_labels.append(label)
        workers_class.run = run

    def _wrap_kernel(self, name, function):
        def call(*args, **kwargs):
            shape = getattr(args[0], "shape", None) if args else None
            return self._timed(name, shape, function, *args, **kwargs)
        return call

    def _timed(self, label, shape, function, *args, **kwargs):
        if self.calls is None or self.stack:
            return function(*args, **kwargs)
        record = [label, tuple(shape) if shape is not None else None, [], 0.0]
        self.stack.append(record)
        start = clock()
        try:
            return function(*args, **kwargs)
        finally:
            record[3] = clock() - start
            self.stack.pop()
            self.calls.append(record)

    def _timed_inner(self, label, function, *args):
        if not self.stack:
            return function(*args)
        start = clock()
        try:
            return function(*args)
        finally:
            self.stack[-1][2].append((label, clock() - start))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", help="NAME=ROOT; ROOT '.' is this checkout")
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall",
                        help="thread: the calling thread's CPU time (meaningful with NUMBA_NUM_THREADS=1, where "
                             "every part runs on it; other jobs' load then bends it less)")
    parser.add_argument("--save", help="add this run's per-call times to this JSON file")
    parser.add_argument("--report", help="print the table of the runs saved in this JSON file")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--unbalanced", type=int, default=0,
                        help="list this many kinds of call whose parts' CPU times differ most")
    parser.add_argument("--top", type=int, default=25, help="calls listed, the largest differences first")
    arguments = parser.parse_args()
    if arguments.report:
        with open(arguments.report) as file:
            saved = json.load(file)
        report(saved["calls"], saved["totals"], saved["threads"], saved["batch"], arguments.top)
        return
    global clock
    clock = time.thread_time if arguments.clock == "thread" else time.perf_counter
    trees = {}
    for spec in arguments.trees:
        name, root = spec.split("=", 1)
        trees[name] = import_tree(name, root)
    rng = np.random.default_rng(0)
    first = next(iter(trees.values()))
    models, recorders, infers = {}, {}, {}
    with resnet50_file(rng, first.__name__) as path:
        x = rng.standard_normal((arguments.batch, 3, 224, 224)).astype(np.float32)
        for name, package in trees.items():
            models[name] = importlib.import_module(package.__name__ + ".onnx").load(path).eval()
            infers[name] = importlib.import_module(package.__name__ + ".nn").infer
            recorders[name] = Recorder(package)
    outputs = {name: infers[name](models[name], x) for name in trees}  # compiles, plans, caches
    reference = next(iter(outputs.values()))
    for name, output in outputs.items():
        print(f"{name}: output differs by {np.abs(output - reference).max() / np.abs(reference).max():.1e}")
    per_call = {name: [] for name in trees}
    totals = {name: [] for name in trees}
    balance = {name: [] for name in trees}
    labels = {}
    for _ in range(arguments.rounds):
        for name in trees:
            recorders[name].calls, recorders[name].parts, recorders[name].part_labels = [], [], []
            start = clock()
            infers[name](models[name], x)
            totals[name].append(clock() - start)
            per_call[name].append(recorders[name].calls)
            balance[name].append(recorders[name].parts)
            labels[name] = recorders[name].part_labels
            recorders[name].calls = recorders[name].parts = None
    if arguments.save:
        saved = {"calls": {}, "totals": {}, "threads": numba.get_num_threads(), "batch": arguments.batch}
        if os.path.exists(arguments.save):
            with open(arguments.save) as file:
                saved = json.load(file)
        for name in trees:
            saved["calls"].setdefault(name, []).extend(
                [[label, shape, [[key if isinstance(key, str) else list(key), seconds] for key, seconds in inner],
                  seconds_total] for label, shape, inner, seconds_total in calls] for calls in per_call[name])
            saved["totals"].setdefault(name, []).extend(totals[name])
        with open(arguments.save, "w") as file:
            json.dump(saved, file)
    report(per_call, totals, numba.get_num_threads(), arguments.batch, arguments.top)
    print("\nbalance: each part's thread CPU time, per parallel call (load-independent)")
    for name, forwards in balance.items():
        if not forwards or not forwards[0]:
            continue
        largest = statistics.median(sum(max(call) for call in calls) for calls in forwards) * 1e3
        total = statistics.median(sum(sum(call) for call in calls) for calls in forwards) * 1e3
        threads = max(len(call) for call in forwards[0])
        print(f"{name}: {len(forwards[0])} parallel calls, parts' CPU {total:.1f} ms, the largest part of each "
              f"call summed {largest:.1f} ms: at best {total / largest:.2f}x one thread "
              f"({total / threads / largest:.0%} of {threads} threads)")
        if arguments.unbalanced:
            waits = collections.defaultdict(float)
            for index, label in enumerate(labels[name]):
                waits[label] += statistics.median(
                    max(calls[index]) - sum(calls[index]) / len(calls[index]) for calls in forwards) * 1e3
            print("  the calls whose parts differ most (largest part minus the mean part, ms, summed per kind):")
            for label, wait in sorted(waits.items(), key=lambda item: -item[1])[:arguments.unbalanced]:
                print(f"    {wait:6.2f}  {label}")


def report(per_call, totals, threads, batch, top):
    names = list(per_call)
    rounds = len(totals[names[0]])
    print(f"\n{threads} threads, batch {batch}, {rounds} rounds, medians in ms")
    layout = [call[:2] for call in per_call[names[0]][0]]
    table = []
    for index, (label, shape) in enumerate(layout):
        times = {name: statistics.median(calls[index][3] for calls in per_call[name]) * 1e3 for name in names}
        inner = {}
        for name in names:
            spans = collections.defaultdict(list)
            for calls in per_call[name]:
                sums = collections.defaultdict(float)
                for inner_label, seconds in calls[index][2]:
                    sums[inner_label if isinstance(inner_label, str) else tuple(inner_label)] += seconds
                for inner_label, seconds in sums.items():
                    spans[inner_label].append(seconds * 1e3)
            inner[name] = {key: statistics.median(value) for key, value in spans.items()}
        table.append((index, label, shape, times, inner))
    header = "  ".join(f"{name:>8}" for name in names)
    print(f"{'#':>3} {'call':44} {'input':22} {header}  inside (ms; span kernel/parts)")
    spread = sorted(table, key=lambda row: -abs(row[3][names[-1]] - row[3][names[0]]))[:top]
    for index, label, shape, times, inner in sorted(spread):
        cells = "  ".join(f"{times[name]:8.3f}" for name in names)
        details = " | ".join(f"{name}: " + ", ".join(
            f"{key if isinstance(key, str) else key[0].replace('_span', '') + '/' + str(key[1])} {value:.3f}"
            for key, value in inner[name].items()) for name in names if inner[name])
        print(f"{index:3d} {label[:44]:44} {str(shape):22} {cells}  {details}")
    print("\nsums per kind of call (ms)")
    kinds = collections.defaultdict(lambda: collections.defaultdict(float))
    counts = collections.Counter()
    for index, label, shape, times, inner in table:
        kind = label + (f" on {shape[2]}x{shape[3]}" if label.startswith("conv") and shape else "")
        counts[kind] += 1
        for name in names:
            kinds[kind][name] += times[name]
    for kind, sums in sorted(kinds.items(), key=lambda item: -item[1][names[0]]):
        cells = "  ".join(f"{sums[name]:8.2f}" for name in names)
        print(f"{counts[kind]:3d} x {kind[:58]:58} {cells}")
    calls_sum = {name: sum(row[3][name] for row in table) for name in names}
    print(f"{'':64} " + "  ".join(f"{calls_sum[name]:8.2f}" for name in names) + "   (calls)")
    print(f"{'whole forward':64} " + "  ".join(f"{statistics.median(totals[name]) * 1e3:8.2f}" for name in names))


if __name__ == "__main__":
    main()
