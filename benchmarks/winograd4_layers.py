"""Winograd F(4x4, 3x3) (conv/winograd4.py, conv/winograd4_weight.py) against F(2x2, 3x3) (conv/winograd.py,
conv/winograd_weight.py) and PyTorch CPU, per layer and per pass (forward, input gradient, weight
gradient), in alternating rounds.

Layers: the layer set's two big 3x3 layers (vgg-3x3 8x64x56x56 -> 64, resnet-3x3 16x128x28x28 -> 128) and
ResNet-18's and VGG's 3x3 layers at 56, 28, 14 and 7 wide (3x3, padding 1). Each round times every contender
once per pass (the mean of --repeat calls); the table gives the median over rounds, the effective GFLOP/s
of F(4x4) (direct-convolution multiply-adds x 2 over its time), and the ratios' median (min-max) of the
per-round ratios: other time / F(4x4) time (above 1: F(4x4) is faster).

--clock thread: CPU time of the calling thread (use with --threads 1); --clock wall: wall time.

Usage: python benchmarks/winograd4_layers.py [--rounds 5] [--repeat 2] [--threads N] [--clock wall|thread]
       [--layers NAME,...] [--passes forward,backward_input,backward_weight] [--no-torch]
"""
import argparse
import os
import statistics
import sys

import numba
import numpy as np

from nbconv.bench import sgemm_rate
from nbconv.kernels.cpu.blas import single_threaded
from nbconv.kernels.cpu.conv.plan import Convolution

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from layer_timing import add_arguments, alternating_rounds, runner, set_up, torch_runner  # noqa: E402

LAYERS = {  # name: (input shape, weight shape); 3x3, stride 1, padding 1
    "vgg-3x3": ((8, 64, 56, 56), (64, 64, 3, 3)),
    "resnet-3x3": ((16, 128, 28, 28), (128, 128, 3, 3)),
    "r18-64x56": ((8, 64, 56, 56), (64, 64, 3, 3)),
    "r18-128x28": ((8, 128, 28, 28), (128, 128, 3, 3)),
    "r18-256x14": ((8, 256, 14, 14), (256, 256, 3, 3)),
    "r18-512x7": ((8, 512, 7, 7), (512, 512, 3, 3)),
    "vgg-256x56": ((2, 256, 56, 56), (256, 256, 3, 3)),
    "vgg-512x28": ((2, 512, 28, 28), (512, 512, 3, 3)),
    "vgg-512x14": ((8, 512, 14, 14), (512, 512, 3, 3)),
    "c32x28": ((16, 32, 28, 28), (32, 32, 3, 3)),
    "c48x28": ((16, 48, 28, 28), (48, 48, 3, 3)),
    "c64x28": ((16, 64, 28, 28), (64, 64, 3, 3)),
    "c64x14": ((16, 64, 14, 14), (64, 64, 3, 3)),
    "c128x14": ((16, 128, 14, 14), (128, 128, 3, 3)),
    "c128x7": ((16, 128, 7, 7), (128, 128, 3, 3)),
    "c32x21": ((16, 32, 21, 21), (32, 32, 3, 3)),
    "c64x11": ((16, 64, 11, 11), (64, 64, 3, 3)),
    "c128x6": ((16, 128, 6, 6), (128, 128, 3, 3)),
    "c256x5": ((8, 256, 5, 5), (256, 256, 3, 3)),
    "c512x4": ((8, 512, 4, 4), (512, 512, 3, 3)),
    "b1-256x14": ((1, 256, 14, 14), (256, 256, 3, 3)),
    "b1-512x7": ((1, 512, 7, 7), (512, 512, 3, 3)),
}


ALGORITHMS = {"forward": ("winograd4", "winograd"), "backward_input": ("winograd4", "winograd"),
              "backward_weight": ("winograd4_weight", "winograd_weight")}  # (F(4x4), F(2x2)) by pass


SGEMM_SIZE = 1024


def sgemm_runner(one_thread):
    """numpy's float32 product of two SGEMM_SIZE squares, on one BLAS thread or numpy's default."""
    a = np.random.default_rng(1).standard_normal((SGEMM_SIZE, SGEMM_SIZE)).astype(np.float32)
    if not one_thread:
        return lambda: a @ a
    def product():
        with single_threaded():
            a @ a
    return product


def ratio(times, numerator, denominator="F4"):
    values = [a / b for a, b in zip(times[numerator], times[denominator])]
    return f"{statistics.median(values):5.2f}x ({min(values):.2f}-{max(values):.2f})"


def main():
    parser = argparse.ArgumentParser()
    add_arguments(parser, repeat=2, layers="vgg-3x3,resnet-3x3,r18-128x28,r18-256x14,r18-512x7",
                  passes="forward,backward_input,backward_weight")
    args = parser.parse_args()
    clock = set_up(args)
    rng = np.random.default_rng(0)
    print(f"threads {numba.get_num_threads()}, clock {args.clock}, rounds {args.rounds}, repeat {args.repeat}, "
          f"sgemm {sgemm_rate():.0f} GFLOP/s (numpy, before)")
    print(f"{'layer':12} {'pass':15} {'F4 ms':>8} {'F2 ms':>8} {'torch ms':>9} {'F4 GF/s':>8} {'F4/sgemm':>8} {'F2/sgemm':>8} "
          f"{'sgemm GF':>8} "
          f"{'F2/F4':>17} {'torch/F4':>17} {'torch/F2':>17}")
    for name in args.layers.split(","):
        input_shape, weight_shape = LAYERS[name]
        x = rng.standard_normal(input_shape).astype(np.float32)
        w = rng.standard_normal(weight_shape).astype(np.float32)
        b = rng.standard_normal(weight_shape[0]).astype(np.float32)
        convolution = Convolution(input_shape, weight_shape, 1, 1, 1, 1)
        N, D, OH, OW = convolution.output_shape
        flops = 2 * N * D * OH * OW * input_shape[1] * 9
        grad_y = rng.standard_normal(convolution.output_shape).astype(np.float32)
        for pass_ in args.passes.split(","):
            contenders = {key: runner(pass_, algorithm, x, w, b, grad_y, 1, 1)
                          for key, algorithm in zip(("F4", "F2"), ALGORITHMS[pass_])}
            if not args.no_torch:
                contenders["torch"] = torch_runner(pass_, x, w, b, grad_y, 1, 1)
            contenders["sgemm"] = sgemm_runner(numba.get_num_threads() == 1)
            times = alternating_rounds(contenders, args.rounds, args.repeat, clock)
            median = {key: statistics.median(value) for key, value in times.items()}
            of_sgemm = {key: statistics.median(flops / mine / (2 * SGEMM_SIZE ** 3 / product)
                                               for mine, product in zip(times[key], times["sgemm"]))
                        for key in ("F4", "F2")}  # effective rate / sgemm's, round by round
            row = (f"{name:12} {pass_:15} {median['F4'] * 1e3:8.2f} {median['F2'] * 1e3:8.2f} "
                   f"{median.get('torch', float('nan')) * 1e3:9.2f} {flops / median['F4'] / 1e9:8.1f} "
                   f"{of_sgemm['F4']:8.0%} {of_sgemm['F2']:8.0%} {2 * SGEMM_SIZE ** 3 / median['sgemm'] / 1e9:8.1f} "
                   f"{ratio(times, 'F2'):>17}")
            if "torch" in times:
                row += f" {ratio(times, 'torch'):>17} {ratio(times, 'torch', 'F2'):>17}"
            print(row, flush=True)
    print(f"sgemm {sgemm_rate():.0f} GFLOP/s (numpy, after)")


if __name__ == "__main__":
    main()
