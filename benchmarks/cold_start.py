"""Cold-cache runs of `nbconv train resnet20` (one epoch of 64 synthetic 3x32x32 images, batch 64) from source
trees in alternating rounds, each with an empty NUMBA_CACHE_DIR: wall seconds and CPU seconds of the whole
process, the JIT helper it waits for included.

    python3 benchmarks/cold_start.py /tmp/before,/tmp/after 3

A tree is a directory holding `nbconv` and `nbconv_cli` (e.g. `git archive REV | tar -x -C DIR` and
`ln -s cli DIR/nbconv_cli`); run it with an interpreter that has numpy, numba and click but not nbconv.
"""
import json, os, resource, subprocess, sys, tempfile, time
trees, rounds = sys.argv[1].split(","), int(sys.argv[2])
for r in range(rounds):
    for tree in trees:
        cache = tempfile.mkdtemp(prefix="cold", dir="/tmp")
        env = {**os.environ, "PYTHONPATH": tree, "NUMBA_CACHE_DIR": cache}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "nbconv", "train", "resnet20", "--dataset",
                              "synthetic:3x32x32:10:64:64", "--epochs", "1", "--batch-size", "64", "--out",
                              cache + "/r.npz"], cwd=tree, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(json.dumps({"round": r, "tree": tree, "rc": out.returncode, "wall_s": round(wall, 1),
                          "cpu_s": round(cpu, 1), "load": os.getloadavg()[0]}), flush=True)
        if out.returncode:
            print(out.stderr[-1500:])
