"""What LeNet-5's training compiles on an empty JIT cache, in one process, source trees in alternating rounds:
each overload's exclusive CPU seconds (Numba's compile events), their sum, and the CPU seconds to the end of
the first optimizer step.

Each run is `benchmarks/jit_profile.py train lenet5 --epochs 1 --limit 64` of that tree (with that tree's
.venv), on a fresh NUMBA_CACHE_DIR and with the JIT helper off, so that every compile of a cold start, the
main process's and the helper's, happens in the one process measured: the sum is the CPU that a cold start's
two processes share. CPU seconds, not wall: on a shared machine they are the figure that load moves least.

    python benchmarks/lenet_compile.py /work/wt/base,. 3 [--threads 2] [--top 25]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile

LINE = re.compile(r"^\s+(\d+\.\d+)\s+(\S+) (.*)$")


def run(tree, threads):
    """(summary dict, {overload: CPU s}) of one cold run of `tree`."""
    cache = tempfile.mkdtemp(prefix="lenet-compile-")
    try:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "NUMBA_NUM_THREADS": str(threads)}
        env.pop("JIT_PROFILE_HELPER", None)
        python = os.path.join(tree, ".venv", "bin", "python")
        out = subprocess.run([python, os.path.join(tree, "benchmarks", "jit_profile.py"), "train", "lenet5",
                              "--epochs", "1", "--limit", "64", "--threads", str(threads), "--out",
                              os.path.join(cache, "l.npz")], cwd=tree, env=env, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"{tree}: {out.stderr[-2000:]}")
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        overloads, section = {}, None
        for line in out.stderr.splitlines():
            if line.startswith("compiled overloads"):
                section = "compiled"
            elif not line.startswith(" "):
                section = None if line.strip() else section
            elif section == "compiled":
                match = LINE.match(line)
                if match:
                    name = match.group(2).replace("nbconv.kernels.cpu.", "")
                    key = name if not name.startswith("numba.") else "numba internals"
                    overloads[key] = overloads.get(key, 0.0) + float(match.group(1))
        return summary, overloads
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def spread(values):
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("trees", help="comma-separated source trees, each with its own .venv")
    parser.add_argument("rounds", type=int)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=30, help="overloads listed, largest first")
    options = parser.parse_args()
    trees = [os.path.abspath(tree) for tree in options.trees.split(",")]
    totals = {tree: [] for tree in trees}
    first_steps = {tree: [] for tree in trees}
    per_overload = {tree: {} for tree in trees}
    for round_ in range(options.rounds):
        for tree in trees:
            summary, overloads = run(tree, options.threads)
            totals[tree].append(summary["compile_cpu_s"])
            first_steps[tree].append(summary["first_step_cpu_s"])
            for name, spent in overloads.items():
                per_overload[tree].setdefault(name, []).append(spent)
            print(json.dumps({"round": round_, "tree": tree, "compile_cpu_s": summary["compile_cpu_s"],
                              "compiled": summary["compiled"], "first_step_cpu_s": summary["first_step_cpu_s"],
                              "load": round(os.getloadavg()[0], 2)}), flush=True)
    names = sorted({name for tree in trees for name in per_overload[tree]},
                   key=lambda name: -max(statistics.median(per_overload[tree].get(name, [0])) for tree in trees))
    print("\noverload, median exclusive CPU s per tree:", " | ".join(os.path.basename(tree) for tree in trees))
    for name in names[:options.top]:
        cells = [f"{statistics.median(per_overload[tree][name]):5.2f}" if name in per_overload[tree] else "    -"
                 for tree in trees]
        print(f"  {' | '.join(cells)}  {name}")
    for tree in trees:
        print(f"{tree}: compiling {spread(totals[tree])} CPU s, first step {spread(first_steps[tree])} CPU s")
    for tree in trees[1:]:
        ratios = [new / old for old, new in zip(totals[trees[0]], totals[tree])]
        print(f"{os.path.basename(tree)} / {os.path.basename(trees[0])} compiling, per round: {spread(ratios)}")


if __name__ == "__main__":
    main()
