"""ResNet-50's 1x1 convolutions (3x224x224 input) as nn.infer runs them, one call each with a batch norm's
scale and shift and a ReLU in the epilogue: the weight packed once ('packed') against the plan's
BLAS path (pointwise / gemm) and onnxruntime (one Conv + Relu node), in alternating rounds in one process.

    python benchmarks/packed_layers.py [--batch 1] [--rounds 5] [--repeat 5] [--clock thread|wall]

--clock thread (the default with one thread) times the calling thread's CPU time; two threads need wall."""
import argparse
import os
import statistics
import sys
import time

import numba
import numpy as np

import nbconv.functional as F
from nbconv.kernels.cpu.conv import plan

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from resnet50_layers import ort_session  # noqa: E402  (one Conv + Relu node)

# (input channels, output channels, input size, stride): every 1x1 shape of ResNet-50, how many of each
LAYERS = [
    (64, 64, 56, 1, 1), (64, 256, 56, 1, 4), (256, 64, 56, 1, 2), (256, 128, 56, 1, 1), (256, 512, 56, 2, 1),
    (128, 512, 28, 1, 4), (512, 128, 28, 1, 3), (512, 256, 28, 1, 1), (512, 1024, 28, 2, 1),
    (256, 1024, 14, 1, 6), (1024, 256, 14, 1, 5), (1024, 512, 14, 1, 1), (1024, 2048, 14, 2, 1),
    (512, 2048, 7, 1, 3), (2048, 512, 7, 1, 2),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--clock", choices=("thread", "wall"), default=None)
    parser.add_argument("--no-ort", action="store_true")
    arguments = parser.parse_args()
    threads = numba.get_num_threads()
    clock = time.thread_time if (arguments.clock or ("thread" if threads == 1 else "wall")) == "thread" \
        else time.perf_counter
    rng = np.random.default_rng(0)
    print(f"batch {arguments.batch}, {threads} thread(s), clock {clock.__name__}, {arguments.rounds} alternating "
          f"rounds, median of {arguments.repeat} calls; ms a call")
    print("| C -> D, size, stride (count) | packed | BLAS | onnxruntime | BLAS / packed | ort / packed |")
    print("|---|---:|---:|---:|---:|---:|")
    totals = {"packed": 0.0, "blas": 0.0, "ort": 0.0}
    most = plan.PACKED_MOST_POSITIONS, plan.PACKED_MOST_INPUT_CHANNELS
    for C, D, size, stride, count in LAYERS:
        x = rng.standard_normal((arguments.batch, C, size, size)).astype(np.float32)
        w = (rng.standard_normal((D, C, 1, 1)) * 0.05).astype(np.float32)
        scale, shift = rng.uniform(0.5, 1.5, D).astype(np.float32), rng.standard_normal(D).astype(np.float32)
        prepared_packed, prepared_blas = {}, {}

        def ours(prepared, use_packed):
            plan.PREPARED_PACKED, plan.PACKED_MOST_POSITIONS, plan.PACKED_MOST_INPUT_CHANNELS = \
                use_packed, 1 << 30, 1 << 30
            return F._conv2d(x, w, None, (stride, stride), 0, (1, 1), 1, prepared=prepared,
                             epilogue=(scale, shift, None, "relu"))

        engines = {"packed": lambda: ours(prepared_packed, True), "blas": lambda: ours(prepared_blas, False)}
        if not arguments.no_ort:
            session = ort_session(w, stride, 0, threads)
            engines["ort"] = lambda: session.run(None, {"x": x})
        np.testing.assert_allclose(engines["packed"](), engines["blas"](), rtol=1e-3, atol=1e-3)
        times = {name: [] for name in engines}
        for _ in range(arguments.rounds):
            for name, run in engines.items():
                samples = []
                for _ in range(arguments.repeat):
                    start = clock()
                    run()
                    samples.append(clock() - start)
                times[name].append(statistics.median(samples))
        plan.PREPARED_PACKED, plan.PACKED_MOST_POSITIONS, plan.PACKED_MOST_INPUT_CHANNELS = True, *most
        median = {name: 1e3 * statistics.median(values) for name, values in times.items()}
        ratio = {name: statistics.median([a / b for a, b in zip(values, times["packed"])])
                 for name, values in times.items()}
        for name in median:
            totals[name] += count * median[name]
        ort = f"{median['ort']:.2f}" if "ort" in median else "-"
        ort_ratio = f"{ratio['ort']:.2f}x" if "ort" in ratio else "-"
        print(f"| {C} -> {D}, {size}x{size}, s{stride} ({count}) | {median['packed']:.2f} | {median['blas']:.2f} | "
              f"{ort} | {ratio['blas']:.2f}x | {ort_ratio} |", flush=True)
    print(f"| all 1x1 layers of a forward | {totals['packed']:.1f} | {totals['blas']:.1f} | "
          f"{totals['ort']:.1f} | {totals['blas'] / totals['packed']:.2f}x | "
          f"{totals['ort'] / totals['packed']:.2f}x |")


if __name__ == "__main__":
    main()
