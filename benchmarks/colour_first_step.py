"""First training steps of a ResNet-20-sized plain network (19 3x3 convolutions of 16, 32 and 64 channels,
global average pooling, fc10: 269,034 parameters) on 3x32x32 CIFAR-like batches of 128, with the CIFAR
batch pipeline (crop, flip, per-channel normalisation): seconds from process start to the end of the
first step (JIT compile included: run with an empty NUMBA_CACHE_DIR for the cold figure, again for the
warm one), the next steps, CPU seconds, and the peak resident memory (VmHWM).

Usage: python benchmarks/colour_first_step.py [STEPS]. Prints one JSON line.
"""
import time

STARTED, STARTED_CPU = time.perf_counter(), time.process_time()

import json  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

import nbconv.functional as F  # noqa: E402
from nbconv import models  # noqa: E402
from nbconv.data.batch import shifted_batch  # noqa: E402
from nbconv.train import TrainConfig, make_optimizer  # noqa: E402
from nbconv.host_memory import keep_freed_host_memory  # noqa: E402

SPEC = ("conv16k3p1,relu,[conv16k3p1,relu]*6,conv32k3s2p1,relu,[conv32k3p1,relu]*5,"
        "conv64k3s2p1,relu,[conv64k3p1,relu]*5,gap,fc10")


def status_mb(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(steps=3, batch=128):
    keep_freed_host_memory()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50000, 3, 32, 32), dtype=np.uint8)  # CIFAR-10's training set size
    labels = rng.integers(0, 10, 50000)
    config = TrainConfig(model=SPEC, dataset="cifar10", batch_size=batch)
    model = models.build(SPEC, input_shape=(3, 32, 32))
    optimizer = make_optimizer(config, model.parameters())
    model.train()
    ends = []
    for step in range(steps):
        chosen = rng.permutation(50000)[:batch]
        x = shifted_batch(images, chosen, rng.integers(0, 9, (batch, 2)), 4, config.mean, config.std, np.float32,
                          rng.integers(0, 2, batch).astype(bool))
        _, grad = F.softmax_cross_entropy(model.forward(x), labels[chosen])
        model.backward(grad, need_input_grad=False)
        optimizer.step()
        ends.append((time.perf_counter() - STARTED, time.process_time() - STARTED_CPU))
    print(json.dumps({"first_step_s": round(ends[0][0], 2), "first_step_cpu_s": round(ends[0][1], 2),
                      "later_step_s": [round(b[0] - a[0], 3) for a, b in zip(ends, ends[1:])],
                      "later_step_cpu_s": [round(b[1] - a[1], 3) for a, b in zip(ends, ends[1:])],
                      "peak_mb": round(status_mb("VmHWM"), 1)}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
