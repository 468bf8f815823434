"""ResNet-20's training step with and without this round's changes, against PyTorch, in one process, in
alternating rounds: batch norm's fusions (bn + relu in one pass; a residual block's closing bn + sum + relu
in one pass) and the plan's 'strips' for narrow 3x3 layers (STRIPS_NARROW, STRIPS_NARROW_WEIGHT).

Cases: 'both' (the tree as it is), 'fusions' (the plan's narrow rule off), 'neither' (the layers and the plan
as before the changes), 'torch'. Prints the median step of each (forward, loss, backward, as
benchmarks/networks.py times it) and the medians of the per-round ratios.

Usage: python benchmarks/resnet20_changes.py [--rounds 9] [--batch 128] [--threads N] [--clock wall|thread]
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
from nbconv.nn.graph import Residual
from nbconv.nn.norm import _BatchNorm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from layer_timing import alternating_rounds  # noqa: E402
from networks import CASES  # noqa: E402


def fusions(on):
    """Turn batch norm's fusions on or off for the models that run next."""
    if on:
        for cls, name in ((_BatchNorm, "fuses_with"), (Residual, "_fused_tail")):
            if name in cls.__dict__ and getattr(cls, "_saved_" + name, None) is not None:
                setattr(cls, name, getattr(cls, "_saved_" + name))
    else:
        for cls, name, off in ((_BatchNorm, "fuses_with", lambda self, following, input: False),
                               (Residual, "_fused_tail", lambda self: None)):
            if getattr(cls, "_saved_" + name, None) is None:
                setattr(cls, "_saved_" + name, cls.__dict__[name])
            setattr(cls, name, off)


def parsed_arguments(description, default_batch):
    """The command line of the ResNet-20 step benchmarks, the thread count applied to both engines; with the
    clock it names (time.thread_time or time.perf_counter)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch", type=int, default=default_batch)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall")
    arguments = parser.parse_args()
    if arguments.threads:
        import numba
        numba.set_num_threads(arguments.threads)
        torch.set_num_threads(arguments.threads)
    return arguments, time.thread_time if arguments.clock == "thread" else time.perf_counter


def step_functions(batch):
    """ResNet-20's training step (forward, loss, backward) on one random batch of `batch` 3x32x32 images, in
    nbconv and in its PyTorch twin with the same weights: (nbconv_once, torch_once)."""
    architecture, make_twin, shape, _, classes, _ = CASES["resnet20-step"]
    model = models.build(architecture, input_shape=shape, num_classes=classes, seed=0)
    twin = make_twin()
    twin.load_state_dict({key: torch.from_numpy(value) for key, value in model.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    labels = rng.integers(0, classes, batch)
    x_torch, labels_torch = torch.from_numpy(x), torch.from_numpy(labels)
    loss_function = torch.nn.CrossEntropyLoss()

    def nbconv_once():
        logits = model.forward(x)
        loss, grad = F.softmax_cross_entropy(logits, labels)
        model.backward(grad, need_input_grad=False)

    def torch_once():
        twin.zero_grad(set_to_none=True)
        loss_function(twin(x_torch), labels_torch).backward()
    return nbconv_once, torch_once


def main():
    arguments, clock = parsed_arguments(__doc__.splitlines()[0], 128)
    nbconv_once, torch_once = step_functions(arguments.batch)
    narrow = planning.STRIPS_NARROW, planning.STRIPS_NARROW_WEIGHT

    def configured(fused, strips):
        def once():
            fusions(fused)
            planning.STRIPS_NARROW, planning.STRIPS_NARROW_WEIGHT = narrow if strips else (0, 0)
            nbconv_once()
        return once

    cases = (("both", configured(True, True)), ("fusions", configured(True, False)),
             ("neither", configured(False, False)), ("torch", torch_once))
    times = alternating_rounds(dict(cases), arguments.rounds, 1, clock)
    fusions(True)
    planning.STRIPS_NARROW, planning.STRIPS_NARROW_WEIGHT = narrow
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {arguments.clock} clock, batch "
          f"{arguments.batch}, {arguments.rounds} rounds")
    for label, _ in cases:
        print(f"  {label:8s} median {statistics.median(times[label]) * 1e3:8.1f} ms")
    for a, b in (("neither", "both"), ("neither", "fusions"), ("fusions", "both"), ("torch", "both"),
                 ("torch", "neither")):
        ratios = [x / y for x, y in zip(times[a], times[b])]
        print(f"  {a} / {b}: median {statistics.median(ratios):.3f}x [{min(ratios):.3f}-{max(ratios):.3f}]")


if __name__ == "__main__":
    main()
