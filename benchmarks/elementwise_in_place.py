"""Element-wise CPU kernels apart and in place (the output is an input), sigmoid and tanh, and the convolutions'
epilogue with and without a residual: nanoseconds a value on rows that stay in L2, one thread, thread CPU time,
best of several batches of calls (NOTES.md, sections 90 and 91).

    NUMBA_NUM_THREADS=1 python benchmarks/elementwise_in_place.py [--values 100000]

"in place" times the call on a copy of the input made just before it; the copy's own time is printed and
subtracted.
"""
import argparse
import time

import numpy as np
from numba import njit

from nbconv.kernels.cpu import activation, combine, scale_shift


def best_ns(function, values, calls=50, batches=7):
    function()
    best = float("inf")
    for _ in range(batches):
        start = time.thread_time()
        for _ in range(calls):
            function()
        best = min(best, (time.thread_time() - start) / calls / values * 1e9)
    return best


@njit(nogil=True, error_model="numpy")
def _epilogue_rows(output, scale, shift, residual, activation_code):
    for d in range(output.shape[1]):
        scale_shift.epilogue_span(output, 0, d, 0, output.shape[2], scale, shift, residual, activation_code)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=100000)
    count = parser.parse_args().values
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(count) * 4).astype(np.float32)
    y = rng.standard_normal(count).astype(np.float32)
    out, scratch = np.empty_like(x), x.copy()
    copy = best_ns(lambda: np.copyto(scratch, x), count)
    print(f"copy alone: {copy:.3f} ns a value")
    print("| kernel | apart | in place |")
    print("|---|---:|---:|")
    for name in ("relu", "relu6"):
        kernel = getattr(activation, f"{name}_forward")
        apart = best_ns(lambda: kernel(x, out), count)
        in_place = best_ns(lambda: (np.copyto(scratch, x), kernel(scratch, scratch)), count) - copy
        print(f"| {name}_forward | {apart:.3f} | {in_place:.3f} |")
    for name in ("sigmoid", "tanh"):
        forward, backward = getattr(activation, f"{name}_forward"), getattr(activation, f"{name}_backward")
        apart = best_ns(lambda: forward(x, out), count)
        gradient = best_ns(lambda: backward(y, x, out), count)
        print(f"| {name}_forward (backward: {gradient:.3f}) | {apart:.3f} | - |")
    apart = best_ns(lambda: combine.add_forward(x, y, out), count)
    in_place = best_ns(lambda: (np.copyto(scratch, x), combine.add_forward(scratch, y, scratch)), count) - copy
    print(f"| add_forward | {apart:.3f} | {in_place:.3f} |")
    rows = x.reshape(1, -1, 1000) if count % 1000 == 0 else x.reshape(1, 1, -1)
    channels = rows.shape[1]
    factors = rng.uniform(0.5, 1.5, channels).astype(np.float32)
    offsets = rng.standard_normal(channels).astype(np.float32)
    residual = y.reshape(rows.shape)
    none = np.empty((0, 0, 0), np.float32)
    row_out, row_scratch = np.empty_like(rows), rows.copy()
    for label, added in (("with the residual", residual), ("without", none)):
        apart = best_ns(lambda: scale_shift.scale_shift_forward(rows, factors, offsets, added, row_out, 1), count)
        in_place = best_ns(lambda: (np.copyto(row_scratch, rows), scale_shift.scale_shift_forward(
            row_scratch, factors, offsets, added, row_scratch, 1)), count) - copy
        epilogue = best_ns(lambda: (np.copyto(row_scratch, rows), _epilogue_rows(
            row_scratch, factors, offsets, added, 1)), count) - copy
        print(f"| scale_shift_forward, ReLU, {label} | {apart:.3f} | {in_place:.3f} (epilogue_span {epilogue:.3f}) |")


if __name__ == "__main__":
    main()
