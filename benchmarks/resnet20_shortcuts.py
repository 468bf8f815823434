"""ResNet-20's training step with its 1x1 stride-2 shortcuts by 'subsampled' (plan.SUBSAMPLED on) and by
'gemm' (off), against PyTorch, in one process, in alternating rounds: the median step (forward, loss,
backward) of each and the medians of the per-round ratios.

Usage: python benchmarks/resnet20_shortcuts.py [--rounds 9] [--batch 64] [--threads N] [--clock wall|thread]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

from nbconv import functional as F
from nbconv import models
from nbconv.kernels.cpu.conv import plan as planning

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from networks import CASES  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall")
    arguments = parser.parse_args()
    if arguments.threads:
        import numba
        numba.set_num_threads(arguments.threads)
        torch.set_num_threads(arguments.threads)
    clock = time.thread_time if arguments.clock == "thread" else time.perf_counter
    architecture, make_twin, shape, _, classes, _ = CASES["resnet20-step"]
    model = models.build(architecture, input_shape=shape, num_classes=classes, seed=0)
    twin = make_twin()
    twin.load_state_dict({key: torch.from_numpy(value) for key, value in model.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((arguments.batch,) + shape).astype(np.float32)
    labels = rng.integers(0, classes, arguments.batch)
    x_torch, labels_torch = torch.from_numpy(x), torch.from_numpy(labels)
    loss_function = torch.nn.CrossEntropyLoss()

    def configured(on):
        def once():
            planning.SUBSAMPLED = on
            logits = model.forward(x)
            _, grad = F.softmax_cross_entropy(logits, labels)
            model.backward(grad, need_input_grad=False)
        return once

    def torch_once():
        twin.zero_grad(set_to_none=True)
        loss_function(twin(x_torch), labels_torch).backward()

    cases = (("subsampled", configured(True)), ("gemm", configured(False)), ("torch", torch_once))
    for _, once in cases:
        once()
        once()
    times = {label: [] for label, _ in cases}
    for _ in range(arguments.rounds):
        for label, once in cases:
            started = clock()
            once()
            times[label].append(clock() - started)
    planning.SUBSAMPLED = True
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {arguments.clock} clock, batch "
          f"{arguments.batch}, {arguments.rounds} rounds, load {os.getloadavg()[0]:.1f}")
    for label, _ in cases:
        t = times[label]
        print(f"  {label:10s} median {statistics.median(t) * 1e3:8.1f} ms [{min(t) * 1e3:.1f}-{max(t) * 1e3:.1f}]")
    for a, b in (("gemm", "subsampled"), ("torch", "subsampled"), ("torch", "gemm")):
        ratios = [p / q for p, q in zip(times[a], times[b])]
        print(f"  {a} / {b}: median {statistics.median(ratios):.3f}x [{min(ratios):.3f}-{max(ratios):.3f}]")


if __name__ == "__main__":
    main()
