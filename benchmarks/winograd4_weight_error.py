"""Float32 error of the weight gradient by Winograd F(2x2, 3x3) (winograd_weight.py) and F(4x4, 3x3)
(winograd4_weight.py) against the float64 definition: max |error| / max |gradient|, on standard normal data
and on an input with a large mean (input + 1, as after a ReLU), for a few layer sizes (3x3, padding 1),
the layer set's two big layers among them. The sums run over images x tiles, so the batch matters here.

Usage: python benchmarks/winograd4_weight_error.py [--layers all|small]
"""
import argparse

import numpy as np

from nbconv.kernels.cpu.conv import dispatch
from nbconv.kernels.cpu.conv.plan import plan

LAYERS = [((3, 32, 15, 14), 24), ((2, 64, 30, 30), 64), ((1, 128, 30, 30), 128), ((1, 256, 14, 14), 256),
          ((8, 64, 56, 56), 64), ((16, 128, 28, 28), 128)]


def weight_gradient(algorithm, x, D, grad_y):
    chosen = plan("backward_weight", x.shape, (D, x.shape[1], 3, 3), 1, 1, 1, 1, dtype=x.dtype, algorithm=algorithm)
    grad_w = np.empty((D, x.shape[1], 3, 3), x.dtype)
    dispatch.run_backward_weight(chosen, grad_y, x, grad_w)
    return grad_w


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", choices=("all", "small"), default="all")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'layer':28} {'mean':>4} {'F(2x2)':>9} {'F(4x4)':>9}")
    for input_shape, D in LAYERS[:4] if args.layers == "small" else LAYERS:
        for mean in (0.0, 1.0):
            x = rng.standard_normal(input_shape) + mean
            grad_y = rng.standard_normal((input_shape[0], D) + input_shape[2:])
            exact = weight_gradient("winograd_weight", x, D, grad_y)  # float64: exact to ~1e-15
            errors = {}
            for algorithm in ("winograd_weight", "winograd4_weight"):
                got = weight_gradient(algorithm, x.astype(np.float32), D, grad_y.astype(np.float32))
                errors[algorithm] = np.abs(got - exact).max() / np.abs(exact).max()
            print(f"{str(input_shape) + ' -> ' + str(D):28} {mean:4.0f} {errors['winograd_weight']:9.2e} "
                  f"{errors['winograd4_weight']:9.2e}", flush=True)


if __name__ == "__main__":
    main()
