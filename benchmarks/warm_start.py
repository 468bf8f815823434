"""Warm-cache start of `nbconv train`, two source trees in alternating rounds: seconds from the process's start
to the start of training (`training`: the model built and checked, the data loaded), to the end of its first
training step (`first_step`: the first optimizer step), and to the end of the process, in wall and CPU seconds
(CPU: user + system of the whole process, interpreter start included).

Each tree is a directory holding the packages `nbconv` and `nbconv_cli` (a checkout with a link
`nbconv_cli -> cli` beside `nbconv`, e.g. `git archive OLD | tar -x -C /tmp/old && ln -s cli
/tmp/old/nbconv_cli`); it goes first on PYTHONPATH. Run each tree's command once beforehand so that its
JIT cache is warm (the cache lives beside each tree's kernels).

Usage:
  python benchmarks/warm_start.py ROUNDS TREE [TREE ...] -- train resnet20 --dataset synthetic:3x32x32:10:64:64 \
      --epochs 1 --batch-size 64 --out /tmp/r20.npz
Prints one line per run, then per tree the median [min-max] of each figure, and per round the ratios of the
first tree's figures to each other tree's.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# Runs `python -m nbconv ARGS` in this process after installing an import hook that wraps
# nbconv.optim.Optimizer.step once the module is loaded (importing it here first would change what is timed).
PROBE = r"""
import gc, importlib.abc, importlib.machinery, json, os, resource, runpy, sys, time

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

LAUNCHED = float(os.environ.pop("NBCONV_PROBE_LAUNCHED"))
REPORT = os.environ.pop("NBCONV_PROBE_REPORT")
marks = {}

def wrap_step(module):
    step = module.Optimizer.step
    def first_step(self, *args, **kwargs):
        result = step(self, *args, **kwargs)
        if "first_step" not in marks:
            marks["first_step"] = (time.time() - LAUNCHED, cpu())
        return result
    module.Optimizer.step = first_step

class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "nbconv.optim":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            return None
        execute = spec.loader.exec_module
        def exec_module(module):
            execute(module)
            wrap_step(module)
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Hook())
freeze = gc.freeze

def training_starts():  # nbconv train freezes the objects alive just before its first epoch
    marks.setdefault("training", (time.time() - LAUNCHED, cpu()))
    freeze()
gc.freeze = training_starts
sys.argv = ["nbconv"] + sys.argv[1:]
try:
    runpy.run_module("nbconv", run_name="__main__", alter_sys=True)
except SystemExit as end:
    if end.code not in (None, 0):
        raise
finally:
    marks["end"] = (time.time() - LAUNCHED, cpu())
    with open(REPORT, "w") as out:
        json.dump(marks, out)
"""


def run_once(tree, args):
    """{'first_step': (wall, cpu), 'end': (wall, cpu)} of one process running `nbconv ARGS` from `tree`."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as report:
        path = report.name
    env = {**os.environ, "PYTHONPATH": os.path.abspath(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "NBCONV_PROBE_REPORT": path, "NBCONV_PROBE_LAUNCHED": repr(time.time())}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-c", PROBE] + args, env=env, capture_output=True, text=True,
                          cwd=tempfile.gettempdir())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: exit status {done.returncode}\n{done.stderr[-2000:]}")
    with open(path) as report:
        marks = {name: tuple(values) for name, values in json.load(report).items()}
    os.unlink(path)
    # the children's rusage: the whole process, a JIT warm-up helper included if one ran
    marks["end"] = (marks["end"][0], after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return marks


def spread(values):
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main(argv):
    split = argv.index("--")
    rounds, trees, args = int(argv[0]), argv[1:split], argv[split + 1:]
    results = {tree: [] for tree in trees}
    for round_ in range(rounds):
        for tree in (trees if round_ % 2 == 0 else trees[::-1]):
            marks = run_once(tree, args)
            results[tree].append(marks)
            print(f"{round_} {tree}: " + ", ".join(f"{name} {wall:.2f} s wall {cpu:.2f} s CPU"
                                                   for name, (wall, cpu) in marks.items()), flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    for tree, runs in results.items():
        figures = [f"{name} {kind} {spread([run[name][index] for run in runs if name in run])}"
                   for name in ("training", "first_step", "end") for index, kind in ((0, "wall"), (1, "CPU"))
                   if any(name in run for run in runs)]
        print(f"{tree}: " + "; ".join(figures))
    first = trees[0]
    for other in trees[1:]:
        pairs = list(zip(results[first], results[other]))
        ratios = [f"{name} {kind} {spread([a[name][index] / b[name][index] for a, b in pairs if name in a])}"
                  for name in ("training", "first_step", "end") for index, kind in ((0, "wall"), (1, "CPU"))
                  if all(name in a for a, _ in pairs)]
        print(f"{first} / {other}: " + "; ".join(ratios))


if __name__ == "__main__":
    main(sys.argv[1:])
