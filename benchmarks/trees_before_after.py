"""Training-step speed of two checkouts of nbconv, in alternating rounds (each round: one process per tree).

Each child process builds the model, runs warm-up steps (so the JIT cache, once warm, only loads), then
times STEPS training steps (forward, loss, backward, SGD step) and prints the median step in ms and the CPU
seconds per step. Used to compare the kernels before and after a change of how they are compiled or run,
on the same (possibly loaded) machine at the same moments.

Usage:
  python benchmarks/trees_before_after.py OLD_TREE NEW_TREE MODEL CxHxW BATCH THREADS ROUNDS [STEPS]
e.g. python benchmarks/trees_before_after.py /tmp/old . resnet20 3x32x32 128 2 5
MODEL:infer (e.g. resnet50:infer) times `nn.infer` in eval mode (1000 classes) instead of a training step.
OLD_TREE, NEW_TREE: directories holding an `nbconv` package (put first on PYTHONPATH for their child).
"""
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numba
import numpy as np
import nbconv.functional as F
from nbconv import models
from nbconv.train import TrainConfig, make_optimizer
name, infer = sys.argv[1].split(":")[0], sys.argv[1].endswith(":infer")
shape, batch, threads, steps = tuple(int(v) for v in sys.argv[2].split("x")), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
numba.set_num_threads(threads)
model = models.build(name, input_shape=shape, num_classes=1000 if infer else 10, seed=0)
model.train()
optimizer = make_optimizer(TrainConfig(), model.parameters())
rng = np.random.default_rng(0)
x = rng.standard_normal((batch,) + shape).astype(np.float32)
labels = rng.integers(0, 10, batch)
def step():
    _, grad = F.softmax_cross_entropy(model.forward(x), labels)
    model.backward(grad, need_input_grad=False)
    optimizer.step()
if infer:  # inference instead: nn.infer in eval mode
    from nbconv import nn
    model.eval()
    def step():
        nn.infer(model, x)
for _ in range(2):
    step()
walls, cpus = [], []
for _ in range(steps):
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    walls.append(time.perf_counter() - wall)
    cpus.append(time.process_time() - cpu)
print(json.dumps({"ms": 1000 * sorted(walls)[len(walls) // 2], "best_ms": 1000 * min(walls),
                  "cpu_ms": 1000 * sum(cpus) / len(cpus)}))
"""


def run(tree, arguments):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    # run from the tree itself: `python -c` puts the working directory first on sys.path
    out = subprocess.run([sys.executable, "-c", CHILD] + arguments, env=env, cwd=os.path.abspath(tree),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(old, new, model, shape, batch, threads, rounds, steps=5):
    arguments = [model, shape, batch, threads, str(steps)]
    results = {"old": [], "new": []}
    for round_ in range(int(rounds)):
        order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
        for which in order:
            results[which].append(run(old if which == "old" else new, arguments))
    summary = {which: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
               for which, rows in results.items()}
    summary["new/old ms (median of rounds)"] = summary["new"]["ms"] / summary["old"]["ms"]
    ratios = [n["ms"] / o["ms"] for o, n in zip(results["old"], results["new"])]
    summary["new/old ms per round"] = [round(r, 3) for r in ratios]
    print(json.dumps({"model": model, "shape": shape, "batch": int(batch), "threads": int(threads), **summary}))


if __name__ == "__main__":
    main(*sys.argv[1:])
