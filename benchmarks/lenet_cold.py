"""LeNet-5's cold start, source trees in alternating rounds: `python -m nbconv train lenet5 --limit 640 --epochs 1`
on an empty NUMBA_CACHE_DIR (the JIT helper included), wall, user and system seconds of the whole process tree,
and the load average.

    python benchmarks/lenet_cold.py /work/wt/base,. 3

Each tree runs with its own .venv. On a shared machine read the CPU seconds (user + system) and the ratios of
the same round; the wall seconds are the load's as much as the tree's.
"""
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def cold_run(tree):
    """(wall, user, system) seconds of one cold start of `tree`."""
    cache = tempfile.mkdtemp(prefix="lenet-cold-")
    try:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        out = subprocess.run([os.path.join(tree, ".venv", "bin", "python"), "-m", "nbconv", "train", "lenet5", "--limit",
                              "640", "--epochs", "1", "--out", os.path.join(cache, "l.npz")], cwd=tree, env=env,
                             capture_output=True, text=True)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode:
            sys.exit(f"{tree}: {out.stderr[-2000:]}")
        return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def spread(values):
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main():
    trees, rounds = [os.path.abspath(tree) for tree in sys.argv[1].split(",")], int(sys.argv[2])
    results = {tree: [] for tree in trees}
    for round_ in range(rounds):
        for tree in trees:
            wall, user, system = cold_run(tree)
            results[tree].append((wall, user + system))
            print(json.dumps({"round": round_, "tree": tree, "wall_s": round(wall, 2), "user_s": round(user, 2),
                              "system_s": round(system, 2), "load": round(os.getloadavg()[0], 2)}), flush=True)
    for tree in trees:
        print(f"{tree}: wall {spread([r[0] for r in results[tree]])} s, CPU {spread([r[1] for r in results[tree]])} s")
    for tree in trees[1:]:
        for index, what in ((0, "wall"), (1, "CPU")):
            ratios = [new[index] / old[index] for old, new in zip(results[trees[0]], results[tree])]
            print(f"{os.path.basename(tree)} / {os.path.basename(trees[0])} {what}, per round: {spread(ratios)}")


if __name__ == "__main__":
    main()
