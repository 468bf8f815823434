"""A whole-process LeNet-5 epoch of this tree, another tree and PyTorch in alternating rounds: wall, user and
system seconds of each process (its threads and children included).

Usage: python benchmarks/lenet_trees.py OLD ROUNDS [--threads 2] [--no-torch] [--mnist DIR] [--bytecode WHICH]
OLD is another checkout with its own .venv (e.g. the tree before a change); PyTorch runs
benchmarks/torch_lenet5.py with OMP_NUM_THREADS = --threads.

--bytecode new|both: those nbconv runs read and write Python's bytecode under a fresh PYTHONPYCACHEPREFIX (filled
by one untimed run each), as an installed nbconv would; without it they run as the environment says (where
PYTHONDONTWRITEBYTECODE is set and the tree has no __pycache__, every start compiles nbconv's modules from
source: ~0.3 s CPU). OLD may be this tree itself: `lenet_trees.py . 3 --bytecode new` compares the two starts.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def timed_process(command, env, cwd):
    """(wall, user, system) seconds of one child process."""
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def spread(values):
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("rounds", type=int)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-torch", action="store_true", help="this tree and OLD only (a loaded machine: "
                        "PyTorch's OpenMP threads spin while descheduled, and a process can take minutes)")
    parser.add_argument("--mnist", default=os.environ.get("NBCONV_DATA_DIR", "/work/shared/data/mnist"))
    parser.add_argument("--bytecode", choices=("none", "new", "both"), default="none")
    options = parser.parse_args()
    old = os.path.abspath(options.old)
    out = os.path.join(tempfile.mkdtemp(), "lenet5.npz")
    train = ["-m", "nbconv", "train", "lenet5", "--epochs", "1", "--threads", str(options.threads), "--data-dir",
             options.mnist, "--out", out]
    runs = {"old": ([os.path.join(old, ".venv", "bin", "python")] + train, old),
            "new": ([sys.executable] + train, ROOT),
            "torch": ([sys.executable, os.path.join(HERE, "torch_lenet5.py"), options.mnist, "1"], ROOT)}
    if options.no_torch:
        del runs["torch"]
    env = {**os.environ, "OMP_NUM_THREADS": str(options.threads)}
    envs = {name: env for name in runs}
    prefix = tempfile.mkdtemp(prefix="pycache-")
    for name in {"none": (), "new": ("new",), "both": ("old", "new")}[options.bytecode]:
        envs[name] = {key: value for key, value in env.items() if key != "PYTHONDONTWRITEBYTECODE"}
        envs[name]["PYTHONPYCACHEPREFIX"] = prefix
        timed_process(runs[name][0][:1] + ["-m", "compileall", "-q", os.path.join(runs[name][1], "nbconv"),
                                           os.path.join(runs[name][1], "cli")], envs[name], runs[name][1])
        timed_process(runs[name][0], envs[name], runs[name][1])  # bytecode of numpy, Numba, click... as installed
    results = {name: [] for name in runs}
    for round_ in range(options.rounds):
        for name, (command, cwd) in runs.items():
            results[name].append(timed_process(command, envs[name], cwd))
            wall, user, system = results[name][-1]
            print(f"{round_} {name}: wall {wall:.2f} s, user {user:.2f} s, system {system:.2f} s", flush=True)
    for name, values in results.items():
        print(f"{name}: wall {spread([v[0] for v in values])}, user {spread([v[1] for v in values])}, "
              f"system {spread([v[2] for v in values])}")
    for name in ("old", "new") if "torch" in runs else ():
        ratios = [t[0] / o[0] for t, o in zip(results["torch"], results[name])]
        print(f"PyTorch / {name} wall, per round: {spread(ratios)}")
    ratios = [o[0] / n[0] for o, n in zip(results["old"], results["new"])]
    print(f"old / new wall, per round: {spread(ratios)}")


if __name__ == "__main__":
    main()
