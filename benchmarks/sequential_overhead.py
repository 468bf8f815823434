"""nn.Sequential's own cost per training step: forward and backward over layers that do nothing, against
calling the same layers directly.

    python benchmarks/sequential_overhead.py [--layers 12] [--steps 20000] [--repeat 5]

Prints the best of `repeat` runs of `steps` steps, in microseconds per step (forward plus backward), for the
container and for the direct calls; the difference is what Sequential adds around its layers (the execution
order, the single-threaded-BLAS region, the fusion checks, the loops). LeNet-5 has 12 layers.
"""
import argparse
import time

import numpy as np

from nbconv.nn.module import Layer, Sequential


class DoNothing(Layer):
    def forward(self, input):
        return input

    def backward(self, grad_output, need_input_grad=True):
        return grad_output


def best_per_step(step, steps, repeat):
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - started) / steps)
    return 1e6 * best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    layers = []
    for index in range(args.layers):
        layer = DoNothing()
        layer.name = f"nothing{index}"
        layers.append(layer)
    model = Sequential(layers)
    x = np.zeros((4, 4), np.float32)

    def container():
        model.forward(x)
        model.backward(x, need_input_grad=False)

    def direct():
        for layer in layers:
            layer.forward(x)
        for layer in reversed(layers):
            layer.backward(x)

    print(f"{args.layers} layers, us per forward + backward: Sequential "
          f"{best_per_step(container, args.steps, args.repeat):.1f}, direct calls "
          f"{best_per_step(direct, args.steps, args.repeat):.1f}")


if __name__ == "__main__":
    main()
