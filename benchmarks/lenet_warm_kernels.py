"""The warm speed of the kernels a LeNet-5 training step runs, source trees in alternating rounds: each tree's
process (its own .venv, its own persistent NUMBA_CACHE_DIR, so that only the first round compiles) times every
call below on one thread (thread CPU time, the best of --calls calls), and the rounds alternate the trees.

    python benchmarks/lenet_warm_kernels.py /work/wt/base,. 5 [--calls 30] [--only "conv1 forward,loss"]

Calls (batch 64): conv1 forward and weight gradient (flat), conv2 forward, weight and input gradient (lanes,
row_lanes), conv2's bias gradient, max pooling's forward (2x2, positions recorded), the finiteness check of
conv2's output, the loss, the batch assembly with 1-pixel shifts. Prints per call the median [min-max] over the
rounds in microseconds, and each tree's ratio to the first tree's median.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r'''
import json, sys, time
import numpy as np
import numba
numba.set_num_threads(1)
import nbconv.functional as F
from nbconv.kernels.cpu import finite, loss, pool
from nbconv.kernels.cpu.conv import dispatch
from nbconv.data import batch
calls = int(sys.argv[1])
rng = np.random.default_rng(0)
x1 = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
w1 = rng.standard_normal((6, 1, 5, 5)).astype(np.float32)
b1 = np.zeros(6, np.float32)
x2 = rng.standard_normal((64, 6, 14, 14)).astype(np.float32)
w2 = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
b2 = np.zeros(16, np.float32)
y1 = F.conv2d(x1, w1, b1, padding=2)
y2 = F.conv2d(x2, w2, b2)
g1, g2 = np.ones_like(y1), rng.standard_normal(y2.shape).astype(np.float32)
p_out, p_idx = np.empty((64, 6, 14, 14), np.float32), np.empty((64, 6, 14, 14), np.int64)
logits = rng.standard_normal((64, 10)).astype(np.float32)
labels = rng.integers(0, 10, 64).astype(np.int64)
losses, grad_logits = np.empty(64, np.float32), np.empty((64, 10), np.float32)
images = rng.integers(0, 255, (640, 28, 28)).astype(np.uint8)
chosen = rng.integers(0, 640, 64)
offsets = rng.integers(0, 3, (64, 2))
grad_bias = np.empty(16, np.float32)
cases = {
    "conv1 forward": lambda: F.conv2d(x1, w1, b1, padding=2),
    "conv1 weight grad": lambda: F.conv2d_backward(g1, x1, w1, padding=2, need_input_grad=False, need_bias_grad=False),
    "conv2 forward": lambda: F.conv2d(x2, w2, b2),
    "conv2 weight grad": lambda: F.conv2d_backward(g2, x2, w2, need_input_grad=False, need_bias_grad=False),
    "conv2 input grad": lambda: F.conv2d_backward(g2, x2, w2, need_weight_grad=False, need_bias_grad=False),
    "conv2 bias grad": lambda: dispatch.conv2d_backward_bias(g2, grad_bias),
    "maxpool 2x2 forward": lambda: pool.max_pool2d_forward_2x2(y1, p_out, p_idx),
    "finite check": lambda: finite.all_finite(y2, w2),
    "loss": lambda: loss.softmax_cross_entropy(logits, labels, losses, grad_logits),
    "batch assembly": lambda: batch.shifted_batch(images, chosen, offsets, 1, 0.1307, 0.3081),
}
only = sys.argv[2].split(",") if len(sys.argv) > 2 and sys.argv[2] else None
best = {}
for name, call in cases.items():
    if only and name not in only:
        continue
    call()
    times = []
    for _ in range(calls):
        started = time.thread_time()
        call()
        times.append(time.thread_time() - started)
    best[name] = min(times) * 1e6
print(json.dumps(best))
'''


def main():
    trees, rounds = sys.argv[1].split(","), int(sys.argv[2])
    calls = int(sys.argv[sys.argv.index("--calls") + 1]) if "--calls" in sys.argv else 30
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else ""
    caches = {tree: tempfile.mkdtemp(prefix="warm-kernels-") for tree in trees}
    results = {tree: {} for tree in trees}
    for r in range(rounds):
        for tree in (trees if r % 2 == 0 else trees[::-1]):
            env = {**os.environ, "NUMBA_CACHE_DIR": caches[tree], "NUMBA_NUM_THREADS": "1"}
            out = subprocess.run([os.path.join(tree, ".venv", "bin", "python"), "-c", CHILD, str(calls), only], cwd=tree,
                                 env=env, capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(out.stderr[-2000:])
            if r == 0:
                continue  # the first round compiles: not timed
            for name, us in json.loads(out.stdout.strip().splitlines()[-1]).items():
                results[tree].setdefault(name, []).append(us)
    first = trees[0]
    print(f"load {os.getloadavg()[0]:.2f}; us, median [min-max] over {rounds - 1} rounds, best of {calls} calls")
    for name in results[first]:
        line = f"{name:22s}"
        base = statistics.median(results[first][name])
        for tree in trees:
            values = results[tree][name]
            median = statistics.median(values)
            line += f" | {os.path.basename(os.path.abspath(tree))}: {median:8.1f} [{min(values):.1f}-{max(values):.1f}]"
            if tree != first:
                line += f" {median / base:.3f}x"
        print(line)


if __name__ == "__main__":
    main()
