"""nn.infer of this checkout against an older nbconv's, and both against onnxruntime, on the imported
ResNet-50 (3x224x224), in alternating rounds in one process: a before/after ratio that a loaded machine
does not bend, since both sides share every round's load.

    git worktree add /tmp/before COMMIT && mkdir /tmp/old && cp -r /tmp/before/nbconv /tmp/old/nbconv_before
    python benchmarks/infer_before_after.py /tmp/old ROUNDS REPEAT BATCHES     # e.g. /tmp/old 3 2 1,8

The older package is imported under the name nbconv_before (its modules import each other relatively).
"""
import statistics
import sys
import time

import numba
import numpy as np

sys.path.insert(0, sys.argv[1])
import nbconv_before  # noqa: E402,F401
from nbconv import nn  # noqa: E402
from nbconv import onnx as nbonnx  # noqa: E402
from resnet50_model import onnxruntime_session, resnet50_file  # noqa: E402

rounds, repeat, batches = int(sys.argv[2]), int(sys.argv[3]), [int(b) for b in sys.argv[4].split(",")]
rng = np.random.default_rng(0)
threads = numba.get_num_threads()
with resnet50_file(rng) as path:
    model = nbonnx.load(path).eval()
    from nbconv_before import onnx as old_onnx, nn as old_nn
    old_model = old_onnx.load(path).eval()
    session = onnxruntime_session(path, threads)
# one thread: the thread's CPU time (onnxruntime's one-thread session runs on the calling thread), which a loaded
# machine bends less than wall time
clock = time.thread_time if threads == 1 else time.perf_counter
print(f"{threads} threads; {rounds} rounds of {repeat} calls, alternating; clock {clock.__name__}", flush=True)
for batch in batches:
    x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
    engines = {"after": lambda: nn.infer(model, x), "before": lambda: old_nn.infer(old_model, x),
               "onnxruntime": lambda: session.run(None, {"input": x})}
    results = {name: run() for name, run in engines.items()}
    a, b = results["after"], results["before"]
    print(f"batch {batch}: outputs agree to {np.abs(a - b).max() / np.abs(b).max():.1e} (relative)", flush=True)
    times = {name: [] for name in engines}
    order = list(engines)
    for round_ in range(rounds):  # each engine in turn goes first: onnxruntime's threads spin after its run,
        for name in order[round_ % 3:] + order[:round_ % 3]:  # which slows whichever engine comes next
            run = engines[name]
            ts = []
            for _ in range(repeat):
                start = clock()
                run()
                ts.append(clock() - start)
            times[name].append(statistics.median(ts))
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}

    def ratio(other):
        r = [o / n for o, n in zip(times[other], times["after"])]
        return f"{statistics.median(r):.2f}x (rounds {min(r):.2f}-{max(r):.2f})"
    print(f"batch {batch}: after {med['after']:.0f} ms, before {med['before']:.0f} ms -> after is {ratio('before')} "
          f"faster; onnxruntime {med['onnxruntime']:.0f} ms: after {ratio('onnxruntime')}, before "
          f"{statistics.median([o / n for o, n in zip(times['onnxruntime'], times['before'])]):.2f}x", flush=True)
