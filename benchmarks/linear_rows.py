"""The fully connected forward at small batches: the rows kernel (each weight row read once for every input row,
linear.linear_forward_rows) against the BLAS product (linear.linear_forward_chunks), on ResNet-50's classifier
(2048 -> 1000) with the weight out of the cache (8 copies, 64 MB, taken in turn), in alternating rounds.

    python benchmarks/linear_rows.py [--batches 1,4,8,16,32] [--rounds 3] [--calls 40]
"""
import argparse
import time

import numpy as np

from nbconv.kernels.cpu import linear


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,4,8,16,32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=40)
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((1000, 2048)).astype(np.float32) for _ in range(8)]
    bias = rng.standard_normal(1000).astype(np.float32)
    limit = linear.ROWS_BATCH
    print("batch: rows kernel / BLAS, ms a call (best round)")
    for batch in (int(b) for b in arguments.batches.split(",")):
        x = rng.standard_normal((batch, 2048)).astype(np.float32)
        output = np.empty((batch, 1000), np.float32)
        best = {}
        for _ in range(arguments.rounds):
            for name, rows_batch in (("rows", batch), ("blas", 0)):
                linear.ROWS_BATCH = rows_batch
                linear.linear_forward(x, weights[0], bias, output)
                start = time.perf_counter()
                for call in range(arguments.calls):
                    linear.linear_forward(x, weights[call % len(weights)], bias, output)
                seconds = (time.perf_counter() - start) / arguments.calls
                best[name] = min(best.get(name, seconds), seconds)
        linear.ROWS_BATCH = limit
        print(f"{batch}: {1e3 * best['rows']:.3f} / {1e3 * best['blas']:.3f} ms "
              f"(BLAS / rows {best['blas'] / best['rows']:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
