"""ResNet-50's convolution layers that nn.infer runs by one algorithm, timed with a module-level setting of
that algorithm's module at several values, in alternating rounds in one process (the layer as nn.infer runs
it: weight packed once, batch norm and ReLU in the epilogue); optionally with the weights cold.

    python benchmarks/resnet50_layer_settings.py --algorithm packed_windows --setting GROUP_IMAGE_BYTES \
        --values 1152921504606846976,1048576 [--batch 1] [--rounds 9] [--repeat 3] [--cold]

With one thread the clock is the thread's CPU time, else wall time. `--cold`: a 64 MB array is read between
calls, so that the weights come from memory as in a whole forward. Each value's median time and its ratio to
the first value's (the first value's time over this one's: above 1 is faster), median and range over rounds.
"""
import argparse
import importlib
import statistics
import time

import numba
import numpy as np

import nbconv.functional as F
from nbconv.kernels.cpu.conv.plan import prepared_plan
from resnet50_layers import LAYERS


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", default="packed_windows", help="the prepared plan's algorithm (a module)")
    parser.add_argument("--setting", required=True)
    parser.add_argument("--values", required=True, help="comma-separated integers, the first the reference")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="read 64 MB between calls")
    arguments = parser.parse_args()
    module = importlib.import_module(f"nbconv.kernels.cpu.conv.{arguments.algorithm}")
    values = [int(value) for value in arguments.values.split(",")]
    clock = time.thread_time if numba.get_num_threads() == 1 else time.perf_counter
    flush = np.ones(16 << 20, np.float32)
    rng = np.random.default_rng(0)
    for C, D, kernel, stride, size, count in LAYERS:
        padding = kernel // 2
        x = rng.standard_normal((arguments.batch, C, size, size)).astype(np.float32)
        w = (rng.standard_normal((D, C, kernel, kernel)) / np.sqrt(C * kernel * kernel)).astype(np.float32)
        if prepared_plan(x.shape, w.shape, stride, stride, padding, padding).algorithm != arguments.algorithm:
            continue
        scale, shift = np.ones(D, np.float32), np.zeros(D, np.float32)
        prepared = {}

        def run():
            return F._conv2d(x, w, None, (stride, stride), padding, (1, 1), 1, prepared=prepared,
                             epilogue=(scale, shift, None, "relu"))
        original = getattr(module, arguments.setting)
        expected = run()
        times = {value: [] for value in values}
        try:
            for _ in range(arguments.rounds):
                for value in values:
                    setattr(module, arguments.setting, value)
                    samples = []
                    for _ in range(arguments.repeat):
                        if arguments.cold:
                            flush += 1.0
                        start = clock()
                        got = run()
                        samples.append(clock() - start)
                    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
                    times[value].append(statistics.median(samples))
        finally:
            setattr(module, arguments.setting, original)
        line = f"{C} -> {D} {kernel}x{kernel} s{stride} on {size} (x{count}):"
        for value in values:
            ratios = [a / b for a, b in zip(times[values[0]], times[value])]
            line += (f" {arguments.setting}={value} {1e3 * statistics.median(times[value]):.2f} ms "
                     f"({statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}])")
        print(line, flush=True)


if __name__ == "__main__":
    main()
