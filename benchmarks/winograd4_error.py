"""Float32 error of Winograd F(2x2, 3x3) and F(4x4, 3x3) against the float64 definition: max |error| / max
|result| of the forward pass and the input gradient, on standard normal data and on data with a large mean
(input + 1), for a few layer sizes (3x3, padding 1).

Usage: python benchmarks/winograd4_error.py
"""
import numpy as np

from nbconv.kernels.cpu.conv import dispatch
from nbconv.kernels.cpu.conv.plan import plan

LAYERS = [((2, 32, 15, 14), 24), ((2, 64, 30, 30), 64), ((1, 128, 30, 30), 128), ((1, 256, 14, 14), 256)]


def passes(algorithm, x, w, grad_y):
    hyper = (1, 1, 1, 1, 1, 1, 1)
    forward = plan("forward", x.shape, w.shape, *hyper, dtype=x.dtype, algorithm=algorithm)
    out = np.empty(forward.convolution.output_shape, x.dtype)
    dispatch.run_forward(forward, x, w, np.zeros(w.shape[0], x.dtype), out)
    backward = plan("backward_input", x.shape, w.shape, *hyper, dtype=x.dtype, algorithm=algorithm)
    grad_x = np.empty(x.shape, x.dtype)
    dispatch.run_backward_input(backward, grad_y, w, grad_x)
    return out, grad_x


def main():
    rng = np.random.default_rng(0)
    print(f"{'layer':24} {'mean':>4} {'pass':15} {'F(2x2)':>9} {'F(4x4)':>9}")
    for input_shape, D in LAYERS:
        for mean in (0.0, 1.0):
            x = rng.standard_normal(input_shape) + mean
            w = rng.standard_normal((D, input_shape[1], 3, 3))
            grad_y = rng.standard_normal((input_shape[0], D) + input_shape[2:])
            exact = passes("winograd", x, w, grad_y)  # float64: exact to ~1e-15
            errors = {}
            for algorithm in ("winograd", "winograd4"):
                got = passes(algorithm, x.astype(np.float32), w.astype(np.float32), grad_y.astype(np.float32))
                errors[algorithm] = [np.abs(g - e).max() / np.abs(e).max() for g, e in zip(got, exact)]
            for index, pass_ in enumerate(("forward", "backward_input")):
                print(f"{str(input_shape) + ' -> ' + str(D):24} {mean:4.0f} {pass_:15} "
                      f"{errors['winograd'][index]:9.2e} {errors['winograd4'][index]:9.2e}")


if __name__ == "__main__":
    main()
