"""What grows when a whole-process LeNet-5 epoch (`nbconv train lenet5 --epochs 1`) runs slow: every step of the
real command timed from inside, run after run.

Usage: python benchmarks/lenet_epoch_trace.py ROUNDS [--threads 2] [--tree DIR] [--tty] [--torch] [--mnist DIR]
       [--json FILE]

Each round starts `python -m nbconv train lenet5 --epochs 1` of this tree (and of --tree, another checkout with its
own .venv, in turn), unchanged but for a hook that wraps nbconv.train.train_epoch once the module is imported and
records, after every step (train_epoch's on_step): wall time, the main thread's CPU time, the process's CPU time
(its kernel threads' included), its minor page faults and its voluntary and involuntary context switches. With
--torch, benchmarks/torch_lenet5.py runs between them (OMP_NUM_THREADS = --threads), as the ratio's other side.
--tty gives the child a terminal (a pseudo-terminal the parent drains), where the progress bar draws itself at
every step; without it the child's output is a pipe, as in lenet_trees.py.

Per run it prints: the start (process start to the first step), the epoch's wall, process CPU and main-thread CPU,
the steps' wall p50 / p90 / p99 / max, the wall the steps spent off the main thread's CPU (sum of wall - thread
CPU: preempted, or waiting for a kernel thread), faults and context switches in the epoch, and the end (the
last step to the process's exit: the test pass, the checkpoint, exit). The slow runs' excess is then visible
as more CPU (work grew), more off-CPU wall (the process waited), or a few long steps (a tail).
"""
import argparse
import json
import os
import pty
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CHILD_HOOK = r"""
import importlib.abc, importlib.machinery, json, os, resource, sys, time
STARTED = (time.perf_counter(), time.process_time())
OUT = os.environ.pop("LENET_TRACE_OUT")
record = {"started": STARTED, "steps": [], "epoch_started": None, "gc": [[0, 0.0], [0, 0.0], [0, 0.0]]}
_collecting = []


def on_collection(phase, info):  # the cyclic collector's passes in the epoch: count and seconds per generation
    if record["epoch_started"] is None or record.get("epoch_ended"):
        return
    if phase == "start":
        _collecting.append(time.perf_counter())
    elif _collecting:
        entry = record["gc"][info["generation"]]
        entry[0] += 1
        entry[1] += time.perf_counter() - _collecting.pop()


import gc
gc.callbacks.append(on_collection)


def traced(train_epoch):
    def run(*args, **kwargs):
        steps = record["steps"]
        original = kwargs.get("on_step")

        def on_step(step, loss):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            steps.append((time.perf_counter(), time.thread_time(), time.process_time(), usage.ru_minflt,
                          usage.ru_nvcsw, usage.ru_nivcsw))
            if original is not None:
                original(step, loss)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        record["epoch_started"] = (time.perf_counter(), time.thread_time(), time.process_time(), usage.ru_minflt,
                                   usage.ru_nvcsw, usage.ru_nivcsw)
        kwargs["on_step"] = on_step
        try:
            return train_epoch(*args, **kwargs)
        finally:
            record["epoch_ended"] = True
    return run


class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "nbconv.train":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            module.train_epoch = traced(module.train_epoch)
        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, Hook())


def save():
    record["ended"] = (time.perf_counter(), time.process_time())
    threads = sys.modules.get("nbconv.kernels.cpu.threads")
    workers = getattr(threads, "_workers", None)
    record["parallel_calls"] = workers.calls if workers else 0  # calls handed to the kernel threads
    record["taken_over"] = workers.taken_over if workers else 0  # of them, run on the caller: the worker was late
    with open(OUT, "w") as file:
        json.dump(record, file)


import atexit
atexit.register(save)
sys.argv = ["nbconv"] + sys.argv[1:]
import runpy
runpy.run_module("nbconv", run_name="__main__", alter_sys=True)
"""


def run_child(command, env, cwd, tty):
    """(wall, user, system) of one child process; its output discarded (through a terminal with tty)."""
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    if tty:
        master, slave = pty.openpty()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)

        def drain():
            try:
                while os.read(master, 65536):
                    pass
            except OSError:
                pass
        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        code = process.wait()
        reader.join(5)
        os.close(master)
    else:
        code = subprocess.run(command, env=env, cwd=cwd, capture_output=True).returncode
    if code:
        raise RuntimeError(f"{command} exited with {code}")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def summarise(record, wall):
    """The run's figures from the child's record."""
    steps = record["steps"]
    first = record["epoch_started"]
    marks = [first] + [tuple(step) for step in steps]
    step_wall = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    off_cpu = [max(0.0, (b[0] - a[0]) - (b[1] - a[1])) for a, b in zip(marks, marks[1:])]
    ordered = sorted(step_wall)

    def quantile(q):
        return 1e3 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    last = marks[-1]
    return {"whole": wall, "start": first[0] - record["started"][0], "epoch": last[0] - first[0],
            "epoch_cpu": last[2] - first[2], "main_cpu": last[1] - first[1], "off_cpu": sum(off_cpu),
            "p50_ms": quantile(0.5), "p90_ms": quantile(0.9), "p99_ms": quantile(0.99), "max_ms": 1e3 * ordered[-1],
            "slow_steps_s": sum(t for t in step_wall if t > 3 * statistics.median(step_wall)),
            "faults": last[3] - first[3], "vcsw": last[4] - first[4], "ivcsw": last[5] - first[5],
            "end": record["ended"][0] - last[0], "parallel_calls": record.get("parallel_calls", 0),
            "taken_over": record.get("taken_over", 0), "gc_passes": sum(entry[0] for entry in record["gc"]),
            "gc_full": record["gc"][2][0], "gc_s": sum(entry[1] for entry in record["gc"])}


COLUMNS = ("whole", "start", "epoch", "epoch_cpu", "main_cpu", "off_cpu", "p50_ms", "p90_ms", "p99_ms", "max_ms",
           "slow_steps_s", "faults", "vcsw", "ivcsw", "end", "parallel_calls", "taken_over",
           "gc_passes", "gc_full", "gc_s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rounds", type=int)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tree", default=None, help="another checkout with its own .venv, run in turn")
    parser.add_argument("--tty", action="store_true")
    parser.add_argument("--torch", action="store_true")
    parser.add_argument("--mnist", default=os.environ.get("NBCONV_DATA_DIR", "/work/shared/data/mnist"))
    parser.add_argument("--json", default=None, help="write every run's figures here")
    options = parser.parse_args()
    out = os.path.join(tempfile.mkdtemp(), "lenet5.npz")
    train = ["train", "lenet5", "--epochs", "1", "--threads", str(options.threads), "--data-dir", options.mnist,
             "--out", out]
    trees = {"this": (sys.executable, ROOT)}
    if options.tree:
        other = os.path.abspath(options.tree)
        trees["tree"] = (os.path.join(other, ".venv", "bin", "python"), other)
    env = {**os.environ, "OMP_NUM_THREADS": str(options.threads)}
    results = {name: [] for name in trees}
    torch_walls = []
    for round_ in range(options.rounds):
        for name, (python, cwd) in trees.items():
            record_file = tempfile.mktemp(suffix=".json")
            wall, user, system = run_child([python, "-c", CHILD_HOOK] + train, {**env, "LENET_TRACE_OUT": record_file},
                                           cwd, options.tty)
            with open(record_file) as file:
                figures = summarise(json.load(file), wall)
            os.unlink(record_file)
            figures.update(user=user, system=system, load=os.getloadavg()[0])
            results[name].append(figures)
            print(f"{round_} {name}: " + ", ".join(f"{key} {figures[key]:.3f}" if isinstance(figures[key], float)
                                                   else f"{key} {figures[key]}" for key in
                                                   COLUMNS + ("user", "system", "load")), flush=True)
        if options.torch:
            wall, user, system = run_child([sys.executable, os.path.join(HERE, "torch_lenet5.py"), options.mnist, "1"],
                                           env, ROOT, False)
            torch_walls.append(wall)
            print(f"{round_} torch: whole {wall:.2f}, user {user:.2f}, system {system:.2f}", flush=True)
    for name, runs in results.items():
        print(f"\n{name}: median [min-max] over {len(runs)} runs")
        for key in COLUMNS + ("user", "system", "load"):
            values = [run[key] for run in runs]
            print(f"  {key:13s} {statistics.median(values):9.3f} [{min(values):.3f}-{max(values):.3f}]")
        if torch_walls:
            ratios = [t / run["whole"] for t, run in zip(torch_walls, runs)]
            print(f"  PyTorch / {name} whole process, per round: {statistics.median(ratios):.2f} "
                  f"[{min(ratios):.2f}-{max(ratios):.2f}]")
    if options.json:
        with open(options.json, "w") as file:
            json.dump({"runs": results, "torch": torch_walls}, file, indent=1)


if __name__ == "__main__":
    main()
