"""Cold-cache runs of `nbconv train resnet20` (one epoch of 64 synthetic 3x32x32 images, batch 64) from source
trees in alternating rounds, each with an empty NUMBA_CACHE_DIR: wall seconds and CPU seconds of the whole
process, the JIT helper it waits for included.

    python3 benchmarks/cold_start.py /tmp/before,/tmp/after 3

A tree is a directory holding `nbconv` and `nbconv_cli` (e.g. `git archive REV | tar -x -C DIR` and
`ln -s cli DIR/nbconv_cli`); run it with an interpreter that has numpy, numba and click but not nbconv. A tree
that has its own `.venv` (a git worktree with nbconv installed in it) runs with that environment instead.

With `--first-step` each run goes through the tree's benchmarks/jit_profile.py (the helper profiled too), which
adds the wall and CPU seconds from the start to the end of the first optimizer step, and the helper's CPU
seconds:

    python3 benchmarks/cold_start.py /work/wt/base2,/work/wt/cold 3 --first-step
"""
import json, os, resource, subprocess, sys, tempfile, time
arguments = [argument for argument in sys.argv[1:] if argument != "--first-step"]
first_step = "--first-step" in sys.argv
trees, rounds = arguments[0].split(","), int(arguments[1])
for r in range(rounds):
    for tree in trees:
        cache = tempfile.mkdtemp(prefix="cold", dir="/tmp")
        venv_python = os.path.join(tree, ".venv", "bin", "python")
        if os.path.exists(venv_python):
            python, env = venv_python, {**os.environ, "NUMBA_CACHE_DIR": cache}
        else:
            python, env = sys.executable, {**os.environ, "PYTHONPATH": tree, "NUMBA_CACHE_DIR": cache}
        command = ["-m", "nbconv"]
        if first_step:
            command = [os.path.join(tree, "benchmarks", "jit_profile.py")]
            env["JIT_PROFILE_HELPER"] = os.path.join(cache, "helper.txt")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        out = subprocess.run([python, *command, "train", "resnet20", "--dataset", "synthetic:3x32x32:10:64:64",
                              "--epochs", "1", "--batch-size", "64", "--out", cache + "/r.npz"], cwd=tree, env=env,
                             capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        row = {"round": r, "tree": tree, "rc": out.returncode, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
               "load": os.getloadavg()[0]}
        if first_step and not out.returncode:
            main = json.loads(out.stdout.strip().splitlines()[-1])
            with open(env["JIT_PROFILE_HELPER"]) as report:
                helper = [json.loads(line) for line in report if line.startswith("{")]
            row.update(first_step_s=main.get("first_step_s"), first_step_cpu_s=main.get("first_step_cpu_s"),
                       main_compile_cpu_s=main["compile_cpu_s"], helper_wait_s=main.get("helper_wait_s"),
                       helper_cpu_s=helper[-1]["cpu_s"] if helper else None)
        print(json.dumps(row), flush=True)
        if out.returncode:
            print(out.stderr[-1500:])
