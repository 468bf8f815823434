"""The vector kernels written as Python loops over vectors.py against the same kernels of another tree (the
LLVM-IR loops they replace), one thread, in alternating rounds: CPU time per call and cold compile time.

Usage (from this tree; OLD is another checkout with its own .venv):
  python benchmarks/vector_rewrite.py warm OLD ROUNDS   # CPU ms a call, best of 7 x 50 calls, each round
  python benchmarks/vector_rewrite.py cold OLD ROUNDS   # CPU s of each kernel's first call, empty JIT cache
The cases are LeNet-5's at batch 64: conv1 (1 -> 6, 5x5, padding 2, 28x28: plan "flat") forward and weight
gradient, 2x2 max pooling of conv1's output forward (with positions) and backward, conv2 (6 -> 16, 5x5 on
14x14) forward and all gradients (its block copies, vector_blocks.py).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)
NEW = os.path.dirname(os.path.dirname(HERE))


def cases():
    import numpy as np

    import nbconv.functional as F
    rng = np.random.default_rng(0)  # inputs made by numpy alone: no kernel runs before the timings
    image = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    weight1 = rng.standard_normal((6, 1, 5, 5)).astype(np.float32)
    out1 = rng.standard_normal((64, 6, 28, 28)).astype(np.float32)
    grad1 = rng.standard_normal(out1.shape).astype(np.float32)
    pooled = rng.standard_normal((64, 6, 14, 14)).astype(np.float32)
    rows, columns = np.meshgrid(np.arange(14), np.arange(14), indexing="ij")
    where = np.broadcast_to(2 * rows * 28 + 2 * columns, pooled.shape).astype(np.int64)  # each window's corner
    grad_pooled = rng.standard_normal(pooled.shape).astype(np.float32)
    weight2 = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    grad2 = rng.standard_normal((64, 16, 10, 10)).astype(np.float32)
    return {
        "conv1 forward": lambda: F.conv2d(image, weight1, None, padding=2),
        "conv1 weight grad": lambda: F.conv2d_backward(grad1, image, weight1, padding=2, need_input_grad=False),
        "maxpool 2x2 forward": lambda: F.max_pool2d(out1, 2, return_indices=True),
        "maxpool 2x2 backward": lambda: F.max_pool2d_backward(grad_pooled, out1, 2, indices=where,
                                                              check_indices=False),
        "conv2 forward": lambda: F.conv2d(pooled, weight2),
        "conv2 backward": lambda: F.conv2d_backward(grad2, pooled, weight2),
    }


def child(mode):
    results = {}
    if mode == "cold":
        calls = cases()
        for name in ["conv1 forward", "conv1 weight grad", "maxpool 2x2 forward", "maxpool 2x2 backward",
                     "conv2 forward", "conv2 backward"]:
            started = time.process_time()
            calls[name]()
            results[name] = time.process_time() - started
    else:
        for name, call in cases().items():
            call()
            best = float("inf")
            for _ in range(7):
                started = time.process_time()
                for _ in range(50):
                    call()
                best = min(best, (time.process_time() - started) / 50 * 1e3)
            results[name] = best
    print(json.dumps(results))


def run_tree(tree, mode, cache):
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "NUMBA_CACHE_DIR": cache}
    out = subprocess.run([os.path.join(tree, ".venv", "bin", "python"), HERE, "child", mode], check=True,
                         capture_output=True, text=True, env=env, cwd=tree).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(mode, old, rounds):
    trees = {"old": os.path.abspath(old), "new": NEW}
    caches = {name: tempfile.mkdtemp(prefix=f"vector_rewrite_{name}_") for name in trees}
    results = {name: [] for name in trees}
    for round_ in range(rounds):
        for name, tree in trees.items():
            if mode == "cold":
                shutil.rmtree(caches[name])
                os.mkdir(caches[name])
            results[name].append(run_tree(tree, mode, caches[name]))
            print(round_, name, json.dumps({k: round(v, 4) for k, v in results[name][-1].items()}), flush=True)
    unit = "CPU s (first call, cold)" if mode == "cold" else "CPU ms a call"
    for case in results["new"][0]:
        old_values = [r[case] for r in results["old"]]
        new_values = [r[case] for r in results["new"]]
        ratios = [o / n for o, n in zip(old_values, new_values)]
        print(f"{case}: {unit} old {statistics.median(old_values):.3f} [{min(old_values):.3f}-{max(old_values):.3f}]"
              f", new {statistics.median(new_values):.3f} [{min(new_values):.3f}-{max(new_values):.3f}]; old/new "
              f"per round {statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]")
    for cache in caches.values():
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1] == "child":
        child(sys.argv[2])
    else:
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
