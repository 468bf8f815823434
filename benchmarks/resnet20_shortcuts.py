"""ResNet-20's training step with its 1x1 stride-2 shortcuts by 'subsampled' (plan.SUBSAMPLED on) and by
'gemm' (off), against PyTorch, in one process, in alternating rounds: the median step (forward, loss,
backward) of each and the medians of the per-round ratios.

Usage: python benchmarks/resnet20_shortcuts.py [--rounds 9] [--batch 64] [--threads N] [--clock wall|thread]
"""
import os
import statistics
import sys

import torch

from nbconv.kernels.cpu.conv import plan as planning

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from layer_timing import alternating_rounds  # noqa: E402
from resnet20_changes import parsed_arguments, step_functions  # noqa: E402


def main():
    arguments, clock = parsed_arguments(__doc__.splitlines()[0], 64)
    nbconv_once, torch_once = step_functions(arguments.batch)

    def configured(on):
        def once():
            planning.SUBSAMPLED = on
            nbconv_once()
        return once

    cases = (("subsampled", configured(True)), ("gemm", configured(False)), ("torch", torch_once))
    times = alternating_rounds(dict(cases), arguments.rounds, 1, clock, warm_up=2)
    planning.SUBSAMPLED = True
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {arguments.clock} clock, batch "
          f"{arguments.batch}, {arguments.rounds} rounds, load {os.getloadavg()[0]:.1f}")
    for label, _ in cases:
        t = times[label]
        print(f"  {label:10s} median {statistics.median(t) * 1e3:8.1f} ms [{min(t) * 1e3:.1f}-{max(t) * 1e3:.1f}]")
    for a, b in (("gemm", "subsampled"), ("torch", "subsampled"), ("torch", "gemm")):
        ratios = [p / q for p, q in zip(times[a], times[b])]
        print(f"  {a} / {b}: median {statistics.median(ratios):.3f}x [{min(ratios):.3f}-{max(ratios):.3f}]")


if __name__ == "__main__":
    main()
