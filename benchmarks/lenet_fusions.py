"""LeNet-5's training step with and without the layers' ReLU fusions (nn.Linear running the ReLU after it inside
its own kernel calls; nn.MaxPool2d too where a tree has that fusion), in one process, in alternating blocks (what a loaded machine disturbs
least), and the fixed part of a step: t(64) / (2 t(32)) for each arm.

    NUMBA_NUM_THREADS=1 python benchmarks/lenet_fusions.py [--batches 32,64] [--blocks 30] [--steps 10]

Each block runs `steps` timed steps (after two untimed ones) of one arm at one batch size; the arms and batch
sizes rotate block by block. Thread CPU ms per step: median [min-max] over the blocks, and the median over the
blocks of the ratio fused / unfused of neighbouring blocks. The step is forward, softmax cross-entropy, backward
(no input gradient) and the optimizer's update, on random MNIST-shaped data.
"""
import argparse
import statistics
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="32,64")
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    import nbconv.functional as F
    from nbconv import models, nn
    from nbconv.train import TrainConfig, make_optimizer

    batches = [int(b) for b in args.batches.split(",")]
    model = models.build("lenet5", input_shape=(1, 28, 28), seed=0)
    optimizer = make_optimizer(TrainConfig(model="lenet5"), model.parameters())
    rng = np.random.default_rng(0)
    data = {b: ([rng.standard_normal((b, 1, 28, 28)).astype(np.float32) for _ in range(4)],
                [rng.integers(0, 10, b) for _ in range(4)]) for b in batches}
    fuses = {layer: layer.fuses_with for layer in (nn.MaxPool2d, nn.Linear) if "fuses_with" in vars(layer)}

    def arm(fused):
        for layer, fuses_with in fuses.items():
            layer.fuses_with = fuses_with if fused else (lambda self, following, input: False)

    def step(batch, k):
        images, labels = data[batch]
        logits = model.forward(images[k % 4])
        _, grad = F.softmax_cross_entropy(logits, labels[k % 4])
        model.backward(grad, need_input_grad=False)
        optimizer.step()

    times = {(fused, b): [] for fused in (True, False) for b in batches}
    for fused in (True, False):  # every kernel loaded, every remembered call made
        arm(fused)
        for b in batches:
            for k in range(3):
                step(b, k)
    for block in range(args.blocks):
        order = [(fused, b) for b in batches for fused in ((True, False) if block % 2 == 0 else (False, True))]
        for fused, b in order[block % len(order):] + order[:block % len(order)]:
            arm(fused)
            step(b, 0)
            step(b, 1)
            started = time.thread_time()
            for k in range(args.steps):
                step(b, k)
            times[fused, b].append((time.thread_time() - started) / args.steps * 1e3)
    arm(True)
    print(f"thread CPU ms per step, {args.blocks} blocks of {args.steps} steps")
    print("| batch | fused | unfused | fused / unfused |")
    print("|---|---:|---:|---:|")
    for b in batches:
        ratios = [f / u for f, u in zip(times[True, b], times[False, b])]
        cells = [f"{statistics.median(times[fused, b]):.3f} [{min(times[fused, b]):.3f}-{max(times[fused, b]):.3f}]"
                 for fused in (True, False)]
        spread = f"{statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]"
        print(f"| {b} | {cells[0]} | {cells[1]} | {spread} |")
    if 32 in batches and 64 in batches:
        for fused in (True, False):
            shares = [t64 / (2 * t32) for t32, t64 in zip(times[fused, 32], times[fused, 64])]
            print(f"{'fused' if fused else 'unfused'}: t(64) / (2 t(32)) {statistics.median(shares):.3f} "
                  f"[{min(shares):.3f}-{max(shares):.3f}]")


if __name__ == "__main__":
    main()
