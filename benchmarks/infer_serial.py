"""The serial time of one nn.infer forward of the imported ResNet-50: everything but the span kernels' work
(validation, plan look-ups, allocations, dispatch, the batch norms' scale-and-shift checks, the Winograd
layers' finiteness checks), in several nbconv trees in alternating rounds in one process.

    python benchmarks/infer_serial.py [--batch 1] [--rounds 7] [--repeat 20] NAME=TREE [NAME=TREE ...]

Every tree's threads.parallel_parts is replaced by a function that returns at once, after one real forward
per tree (which compiles and prepares what the layers keep), so what is timed (the thread's CPU time) is what
a forward runs on the calling thread between and around its kernels, on any number of threads, and what a
loaded machine bends least: no kernel reads memory. TREE as in infer_calls.py ('.' is this checkout).
"""
import argparse
import importlib
import statistics
import sys
import time

import numpy as np

from infer_calls import import_tree
from resnet50_model import resnet50_file


def without_kernels(package):
    """Replace the tree's parallel_parts, wherever its modules imported it, by a no-op; returns the count of
    calls it received (a list, one entry a call)."""
    calls = []

    def parallel_parts(span_kernel, parts, *args):
        calls.append(parts)
    prefix = package.__name__
    threads = importlib.import_module(prefix + ".kernels.cpu.threads")
    original = threads.parallel_parts
    for name, module in list(sys.modules.items()):
        if (name == prefix or name.startswith(prefix + ".")) and getattr(module, "parallel_parts", None) is original:
            module.parallel_parts = parallel_parts
    return calls


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="NAME=ROOT; ROOT '.' is this checkout")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=20)
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((arguments.batch, 3, 224, 224)).astype(np.float32)
    runs, counts = {}, {}
    for name, root in (tree.split("=", 1) for tree in arguments.trees):
        package = import_tree(name, root)
        onnx = importlib.import_module(package.__name__ + ".onnx")
        nn = importlib.import_module(package.__name__ + ".nn")
        with resnet50_file(np.random.default_rng(0), package.__name__) as path:
            model = onnx.load(path).eval()
        nn.infer(model, x)
        nn.infer(model, x)
        counts[name] = without_kernels(package)
        runs[name] = (lambda nn=nn, model=model: nn.infer(model, x))
    times = {name: [] for name in runs}
    for _ in range(arguments.rounds):
        for name, run in runs.items():
            samples = []
            for _ in range(arguments.repeat):
                start = time.thread_time()
                run()
                samples.append(time.thread_time() - start)
            times[name].append(statistics.median(samples))
    calls = arguments.rounds * arguments.repeat
    print(f"batch {arguments.batch}, {arguments.rounds} rounds, median of {arguments.repeat} forwards a round; "
          f"thread CPU time of a forward with every span kernel a no-op")
    first = next(iter(runs))
    for name in runs:
        ratios = [a / b for a, b in zip(times[first], times[name])]
        print(f"  {name}: {1e3 * statistics.median(times[name]):.2f} ms [{1e3 * min(times[name]):.2f}-"
              f"{1e3 * max(times[name]):.2f}], {len(counts[name]) / calls:.0f} parallel calls a forward; "
              f"{first} / {name} {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]")


if __name__ == "__main__":
    main()
