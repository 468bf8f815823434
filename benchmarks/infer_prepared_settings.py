"""The imported ResNet-50's nn.infer with the prepared passes' latest plan settings on and off, in alternating
rounds in one process (the plans are remembered per settings, so each configuration keeps its own):
`gemm.FORWARD_COLUMNS` (forward blocks at least 196 positions wide) and `plan.PREPARED_NARROW_WIDEST` (no Winograd
for the 7-wide 3x3 layers at batch 1), each alone and both, against both off; with --windows instead
`plan.PREPARED_PACKED_WINDOWS` ('packed_windows' for the strided layers with windows) on against off ('gemm');
with --winograd4 `plan.PREPARED_WINOGRAD4` (F(4x4) for the 3x3 stride-1 layers choose() gives it) on against off
(F(2x2), and packed_windows for every 7-wide one); with --tiles `plan.POINTWISE_TILES` off ('pointwise': BLAS),
on (the 1x1 layers on 56x56 and 28x28 by 'pointwise_tiles') and on with the 14x14 ones too
(`plan.POINTWISE_TILES_MOST_OVERLAP` 0.1: their last vector of 16 positions sums 12 again).

    python benchmarks/infer_prepared_settings.py [--batches 8,1] [--rounds 6] [--windows | --winograd4 | --tiles]

With one thread (NUMBA_NUM_THREADS=1) the clock is the thread's CPU time, else wall time.
"""
import argparse
import statistics
import time

import numba
import numpy as np

from nbconv import nn
from nbconv.kernels.cpu.conv import gemm
from nbconv.kernels.cpu.conv import plan as planning
from resnet50_model import imported_resnet50

CONFIGURATIONS = {"both off": {(gemm, "FORWARD_COLUMNS"): 0, (planning, "PREPARED_NARROW_WIDEST"): 0},
                  "strips only": {(gemm, "FORWARD_COLUMNS"): 0, (planning, "PREPARED_NARROW_WIDEST"): 7},
                  "columns only": {(gemm, "FORWARD_COLUMNS"): 196, (planning, "PREPARED_NARROW_WIDEST"): 0},
                  "both on": {(gemm, "FORWARD_COLUMNS"): 196, (planning, "PREPARED_NARROW_WIDEST"): 7}}
WINDOWS = {"gemm": {(planning, "PREPARED_PACKED_WINDOWS"): False},
           "packed_windows": {(planning, "PREPARED_PACKED_WINDOWS"): True}}
WINOGRAD4 = {"F(2x2)": {(planning, "PREPARED_WINOGRAD4"): False},
             "F(4x4)": {(planning, "PREPARED_WINOGRAD4"): True}}
TILES = {"BLAS": {(planning, "POINTWISE_TILES"): False, (planning, "POINTWISE_TILES_MOST_OVERLAP"): 1 / 64},
         "tiles": {(planning, "POINTWISE_TILES"): True, (planning, "POINTWISE_TILES_MOST_OVERLAP"): 1 / 64},
         "tiles, 14x14 too": {(planning, "POINTWISE_TILES"): True, (planning, "POINTWISE_TILES_MOST_OVERLAP"): 0.1}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="8,1")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--windows", action="store_true", help="packed_windows on against off")
    parser.add_argument("--winograd4", action="store_true", help="F(4x4) on against off")
    parser.add_argument("--tiles", action="store_true", help="pointwise_tiles off, on, and on for 14x14 maps too")
    arguments = parser.parse_args()
    configurations = (WINDOWS if arguments.windows else WINOGRAD4 if arguments.winograd4
                      else TILES if arguments.tiles else CONFIGURATIONS)
    clock = time.thread_time if numba.get_num_threads() == 1 else time.perf_counter
    rng = np.random.default_rng(0)
    model, _ = imported_resnet50(rng)
    saved = {setting: getattr(*setting) for values in configurations.values() for setting in values}
    for batch in (int(b) for b in arguments.batches.split(",")):
        x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)

        def run(configuration):
            for (module, name), value in configurations[configuration].items():
                setattr(module, name, value)
            return nn.infer(model, x)

        for configuration in configurations:  # warm up: compile, plan, keep the weight-only work
            run(configuration)
        times = {configuration: [] for configuration in configurations}
        order = list(configurations)
        for round_ in range(arguments.rounds):
            for configuration in order[round_ % len(order):] + order[:round_ % len(order)]:
                samples = []
                for _ in range(2):
                    start = clock()
                    run(configuration)
                    samples.append(clock() - start)
                times[configuration].append(statistics.median(samples))
        base = times[order[0]]
        parts = []
        for configuration, values in times.items():
            ratios = [b / a for a, b in zip(values, base)]
            parts.append(f"{configuration} {1e3 * statistics.median(values):.0f} ms ({statistics.median(ratios):.3f}x "
                         f"[{min(ratios):.2f}-{max(ratios):.2f}])")
        print(f"batch {batch}, {numba.get_num_threads()} thread(s), clock {clock.__name__}: " + "; ".join(parts),
              flush=True)
    for (module, name), value in saved.items():
        setattr(module, name, value)


if __name__ == "__main__":
    main()
