"""Time depthwise3x3 against direct for M filters a channel (forward and weight gradient), forced through the
plan, in alternating rounds, thread CPU time: `NUMBA_NUM_THREADS=1 python benchmarks/depthwise_multiplier.py`.
Shape: 16x64x56x56 -> 128 (M = 2), 3x3, pad 1, groups 64, float32; the two algorithms' results checked first."""
import os
import time

import numpy as np

from nbconv.kernels.cpu.conv import dispatch
from nbconv.kernels.cpu.conv.plan import plan

ALGORITHMS = ("depthwise3x3", "direct")


def passes(algorithm, x, w, b, g):
    """(forward, weight gradient) callables of `algorithm` and the arrays they write."""
    hyper = (1, 1, 1, 1, 1, 1, x.shape[1])
    forward_plan = plan("forward", x.shape, w.shape, *hyper, dtype=x.dtype, algorithm=algorithm)
    weight_plan = plan("backward_weight", x.shape, w.shape, *hyper, dtype=x.dtype, algorithm=algorithm)
    y, gw = np.empty(g.shape, x.dtype), np.empty_like(w)
    return ((lambda: dispatch.run_forward(forward_plan, x, w, b, y)),
            (lambda: dispatch.run_backward_weight(weight_plan, g, x, gw))), (y, gw)


def main(N=16, C=64, H=56, W=56, M=2, rounds=5):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    w = rng.standard_normal((M * C, 1, 3, 3), dtype=np.float32)
    b = rng.standard_normal(M * C, dtype=np.float32)
    g = rng.standard_normal((N, M * C, H, W), dtype=np.float32)
    calls, written = {}, {}
    for algorithm in ALGORITHMS:
        calls[algorithm], written[algorithm] = passes(algorithm, x, w, b, g)
        for call in calls[algorithm]:
            call()
    np.testing.assert_allclose(written["depthwise3x3"][0], written["direct"][0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(written["depthwise3x3"][1], written["direct"][1], rtol=1e-3, atol=1e-2)
    times = {(algorithm, k): [] for algorithm in ALGORITHMS for k in (0, 1)}
    for _ in range(rounds):
        for algorithm in ALGORITHMS:
            for k, call in enumerate(calls[algorithm]):
                best = float("inf")
                for _ in range(2):
                    start = time.thread_time()
                    call()
                    best = min(best, time.thread_time() - start)
                times[algorithm, k].append(best * 1e3)
    for k, name in enumerate(("forward", "weight gradient")):
        ours, theirs = np.array(times["depthwise3x3", k]), np.array(times["direct", k])
        print(f"{name}: depthwise3x3 {np.round(ours, 2)} ms, direct {np.round(theirs, 2)} ms, direct/depthwise3x3 "
              f"median {np.median(theirs / ours):.2f} min {np.min(theirs / ours):.2f}; load {os.getloadavg()}")


if __name__ == "__main__":
    main()
