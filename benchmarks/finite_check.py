"""What the non-finite check of the CPU convolution kernels costs on finite data: each public kernel
(fast path + one all_finite pass) against its fast path alone, in alternating rounds of one run.
Usage: python benchmarks/finite_check.py [rounds]"""
import sys
import time

import numpy as np

from nbconv.kernels.cpu import conv
from nbconv.kernels.cpu.conv import dispatch
from nbconv.kernels.cpu.conv.plan import plan
from nbconv.kernels.cpu.finite import all_finite

rng = np.random.default_rng(0)
LAYERS = {  # (input, weight, padding): LeNet-5's conv2 (wide), a 16-channel layer (shift), a 64-channel one (Winograd)
    "lenet5 conv2 6->16 5x5 14x14, batch 64": ((64, 6, 14, 14), (16, 6, 5, 5), 0),
    "shift 16->16 3x3 28x28, batch 32": ((32, 16, 28, 28), (16, 16, 3, 3), 1),
    "winograd 64->64 3x3 28x28, batch 8": ((8, 64, 28, 28), (64, 64, 3, 3), 1),
}


def _cases():
    for name, (input_shape, weight_shape, padding) in LAYERS.items():
        x = rng.standard_normal(input_shape).astype(np.float32)
        w = rng.standard_normal(weight_shape).astype(np.float32)
        out_shape = (input_shape[0], weight_shape[0], input_shape[2] + 2 * padding - weight_shape[2] + 1,
                     input_shape[3] + 2 * padding - weight_shape[3] + 1)
        y, grad_y = np.empty(out_shape, np.float32), rng.standard_normal(out_shape).astype(np.float32)
        grad_x, grad_w, bias = np.empty_like(x), np.empty_like(w), np.empty(0, np.float32)
        args = (1, 1, padding, padding, 1, 1, 1)
        yield name, {
            "checked": lambda: (conv.conv2d_forward(x, w, bias, y, *args),
                                conv.conv2d_backward_input(grad_y, w, grad_x, *args),
                                conv.conv2d_backward_weight(grad_y, x, grad_w, *args)),
            "fast only": lambda: (dispatch.run_forward(plan("forward", x.shape, w.shape, *args, dtype=x.dtype),
                                                       x, w, bias, y),
                                  dispatch.run_backward_input(plan("backward_input", x.shape, w.shape, *args,
                                                                   dtype=x.dtype), grad_y, w, grad_x),
                                  dispatch.run_backward_weight(plan("backward_weight", x.shape, w.shape, *args,
                                                                    dtype=x.dtype), grad_y, x, grad_w)),
            "the checks alone": lambda: (all_finite(y, w), all_finite(grad_x, w), all_finite(grad_w, grad_y)),
        }


def main(rounds=9, repeats=5):
    cases = dict(_cases())
    best = {}
    for name, variants in cases.items():
        for call in variants.values():
            call()
    for _ in range(rounds):
        for name, variants in cases.items():
            for variant, call in variants.items():
                start = time.perf_counter()
                for _ in range(repeats):
                    call()
                elapsed = (time.perf_counter() - start) / repeats
                best[name, variant] = min(best.get((name, variant), float("inf")), elapsed)
    for name in cases:
        fast, checked, alone = best[name, "fast only"], best[name, "checked"], best[name, "the checks alone"]
        print(f"{name:42s} fast only {fast * 1e3:8.2f} ms  checked {checked * 1e3:8.2f} ms  ratio {checked / fast:.3f}"
              f"  (the three checks alone {alone * 1e6:.0f} us, {alone / fast:.2%})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 9)
