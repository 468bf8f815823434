"""Cold compile CPU seconds of flat's forward and weight-gradient kernels for LeNet-5's first layer (float32),
trees alternating, a fresh process and an empty Numba cache per measurement (the thread runtime compiled first).

    python benchmarks/flat_compile.py /work/wt/base,. 2
"""
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import time
import numpy as np
import nbconv.functional as F
x = np.random.rand(4, 1, 28, 28).astype(np.float32)
w, b = np.random.rand(6, 1, 5, 5).astype(np.float32), np.random.rand(6).astype(np.float32)
F.relu(x)
started = time.process_time()
y = F.conv2d(x, w, b, padding=2)
forward = time.process_time() - started
grad_y = np.random.rand(*y.shape).astype(np.float32)
started = time.process_time()
F.conv2d_backward(grad_y, x, w, padding=2, need_input_grad=False)
print(f"{forward:.2f} {time.process_time() - started:.2f}")
"""


def main():
    trees, rounds = sys.argv[1].split(","), int(sys.argv[2]) if len(sys.argv) > 2 else 2
    for _ in range(rounds):
        for tree in trees:
            with tempfile.TemporaryDirectory() as cache:
                out = subprocess.run([sys.executable, "-c", CHILD], cwd=tree, capture_output=True, text=True,
                                     env={**os.environ, "NUMBA_CACHE_DIR": cache})
            forward, weight = out.stdout.split() if out.returncode == 0 else ("failed", out.stderr[-200:])
            print(f"{tree}: forward {forward} s, weight gradient {weight} s")


if __name__ == "__main__":
    main()
