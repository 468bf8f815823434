"""What the process-wide kernel lock (nbconv.kernels.serial) costs a single thread: each functional call
timed with backend.kernels('cpu') returning the bare kernel module and the serialized one, in
alternating rounds of one run. Usage: python benchmarks/launch_lock.py [rounds]"""
import sys
import time

import numpy as np

import nbconv.functional as F
from nbconv import backend
from nbconv.kernels import cpu
from nbconv.kernels.serial import Serialized

rng = np.random.default_rng(0)
small = rng.standard_normal((64,)).astype(np.float32)
lenet_x = rng.standard_normal((64, 6, 14, 14)).astype(np.float32)
lenet_w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
wide_x = rng.standard_normal((8, 32, 28, 28)).astype(np.float32)
wide_w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
CASES = {
    "relu, 64 values": (lambda: F.relu(small), 2000),
    "conv2d LeNet-5 conv2, batch 64": (lambda: F.conv2d(lenet_x, lenet_w), 50),
    "conv2d 32->32 3x3 28x28, batch 8": (lambda: F.conv2d(wide_x, wide_w, padding=1), 50),
}


def timed(call, repeats):
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats


def main(rounds=7):
    views = {"bare": cpu, "locked": Serialized(cpu)}
    best = {(case, view): float("inf") for case in CASES for view in views}
    for call, repeats in CASES.values():
        call()  # compile / load
    for _ in range(rounds):
        for view_name, view in views.items():
            backend._cpu_kernels = view
            for case, (call, repeats) in CASES.items():
                best[case, view_name] = min(best[case, view_name], timed(call, repeats))
    for case in CASES:
        bare, locked = best[case, "bare"], best[case, "locked"]
        print(f"{case:36s} bare {bare * 1e6:9.2f} us  locked {locked * 1e6:9.2f} us  "
              f"ratio {locked / bare:.3f}")
    # the wrapper alone, on a kernel that does nothing: what the lock adds to every call
    noop = cpu.relu_forward
    empty = np.empty(0, np.float32)
    locked_noop = Serialized(cpu).relu_forward
    bare = min(timed(lambda: noop(empty, empty), 20000) for _ in range(rounds))
    locked = min(timed(lambda: locked_noop(empty, empty), 20000) for _ in range(rounds))
    print(f"{'kernel call on empty arrays':36s} bare {bare * 1e6:9.2f} us  locked {locked * 1e6:9.2f} us  "
          f"added {(locked - bare) * 1e6:.2f} us")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
