"""One LeNet-5 convolution pass compiled on an empty JIT cache, source trees in alternating rounds: the CPU seconds
of the pass's first call in a fresh process (one thread, thread CPU time), the part of them spent in LLVM (Numba's
'numba:llvm_lock' events), and each overload's exclusive seconds (Numba's compile events).

    python3 benchmarks/lenet_pass_compile.py ROUNDS LAYER PASS TREE[,TREE...]
    python3 benchmarks/lenet_pass_compile.py 5 conv2 forward /tmp/base,/work/wt/cold6

LAYER: conv1 (1 -> 6, 5x5, padding 2, 28x28: flat) or conv2 (6 -> 16, 5x5, 14x14: lanes, row_lanes for the input
gradient). PASS: forward, backward_weight or backward_input. A TREE is a directory holding `nbconv` (e.g. `git
archive REV nbconv | tar -x -C DIR`), put first on PYTHONPATH; the interpreter is this one. The forward pass's
figure includes what a forward call compiles besides the convolution (the finiteness check); a backward pass's
is its own first call after a forward and a bias-gradient call.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SHAPES = {"conv1": ((8, 1, 28, 28), (6, 1, 5, 5), 2), "conv2": ((8, 6, 14, 14), (16, 6, 5, 5), 0)}


def child(layer, pass_):
    """In this process: compile the pass, print one JSON line."""
    from numba.core import event

    class Overloads(event.Listener):
        def __init__(self):
            self.stack, self.spent = [], {}

        def on_start(self, ev):
            self.stack.append([time.thread_time(), 0.0])

        def on_end(self, ev):
            start, nested = self.stack.pop()
            spent = time.thread_time() - start
            if self.stack:
                self.stack[-1][1] += spent
            name = ev.data["dispatcher"].py_func.__qualname__
            self.spent[name] = self.spent.get(name, 0.0) + spent - nested

    class Llvm(event.Listener):
        def __init__(self):
            self.depth, self.started, self.cpu = 0, 0.0, 0.0

        def on_start(self, ev):
            if self.depth == 0:
                self.started = time.thread_time()
            self.depth += 1

        def on_end(self, ev):
            self.depth -= 1
            if self.depth == 0:
                self.cpu += time.thread_time() - self.started

    overloads, llvm = Overloads(), Llvm()
    event.register("numba:compile", overloads)
    event.register("numba:llvm_lock", llvm)
    import numpy as np
    import nbconv.functional as F
    rng = np.random.default_rng(0)
    input_shape, weight_shape, padding = SHAPES[layer]
    x = rng.standard_normal(input_shape).astype(np.float32)
    w = rng.standard_normal(weight_shape).astype(np.float32)
    b = np.zeros(weight_shape[0], np.float32)
    started = time.thread_time()
    y = F.conv2d(x, w, b, padding=padding)
    cpu = time.thread_time() - started
    if pass_ != "forward":
        g = np.ones_like(y)
        F.conv2d_backward(g, x, w, padding=padding, need_input_grad=False, need_weight_grad=False)
        overloads.spent.clear()
        llvm.cpu = 0.0
        started = time.thread_time()
        F.conv2d_backward(g, x, w, padding=padding, need_input_grad=pass_ == "backward_input",
                          need_weight_grad=pass_ == "backward_weight", need_bias_grad=False)
        cpu = time.thread_time() - started
    print(json.dumps({"cpu": cpu, "llvm": llvm.cpu, "overloads": overloads.spent}))


def spread(values):
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main():
    if sys.argv[1] == "--child":
        return child(sys.argv[2], sys.argv[3])
    rounds, layer, pass_, trees = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].split(",")
    runs = {tree: [] for tree in trees}
    for _ in range(rounds):
        for tree in trees:
            cache = tempfile.mkdtemp(prefix="pass-compile-")
            env = {**os.environ, "NUMBA_CACHE_DIR": cache, "NUMBA_NUM_THREADS": "1",
                   "PYTHONPATH": os.path.abspath(tree)}
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", layer, pass_], env=env,
                                 capture_output=True, text=True, cwd=tempfile.gettempdir())
            if out.returncode:
                raise RuntimeError(out.stderr[-2000:])
            runs[tree].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for tree in trees:
        names = {name for run in runs[tree] for name in run["overloads"]}
        medians = {name: round(statistics.median(run["overloads"].get(name, 0.0) for run in runs[tree]), 2)
                   for name in names}
        print(f"{tree}: CPU {spread([run['cpu'] for run in runs[tree]])} s, LLVM {spread([run['llvm'] for run in runs[tree]])}"
              f" s; {json.dumps(dict(sorted(medians.items(), key=lambda item: -item[1])))}")
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
