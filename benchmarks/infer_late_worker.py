"""How many of an nn.infer forward's parallel calls (imported ResNet-50, 3x224x224) ran the worker's part on
the calling thread because the worker had not started it by the time the caller finished its own
(threads.Workers.taken_over): a call taken over runs on one thread. Calls whose chunks are claimed (gemm) do
not count here when the caller claimed them all: benchmarks/infer_calls.py --unbalanced shows those.

    NUMBA_NUM_THREADS=2 python benchmarks/infer_late_worker.py [--batch 1] [--forwards 8]
"""
import argparse
import time

import numpy as np

import nbconv.onnx
from nbconv import nn
from nbconv.kernels.cpu import threads
from resnet50_model import resnet50_file


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--forwards", type=int, default=8)
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    with resnet50_file(rng) as path:
        model = nbconv.onnx.load(path).eval()
    x = rng.standard_normal((arguments.batch, 3, 224, 224)).astype(np.float32)
    for _ in range(2):  # compiles, plans, records the program
        nn.infer(model, x)
    workers = threads._get_workers()
    for _ in range(arguments.forwards):
        calls, taken = workers.calls, workers.taken_over
        start = time.perf_counter()
        nn.infer(model, x)
        seconds = time.perf_counter() - start
        print(f"forward {1e3 * seconds:.1f} ms: {workers.calls - calls} parallel calls, "
              f"{workers.taken_over - taken} taken over by the caller", flush=True)


if __name__ == "__main__":
    main()
