"""Training steps with and without the direct convolution with channels in the vector lanes (conv/lanes.py),
and PyTorch CPU, in one process and in alternating rounds: ResNet-20 on 3x32x32 (batch 128) and LeNet-5 on
1x28x28 (batch 64).

"without" sets plan.LANES_WIDEST to 0, which gives every narrow convolution the plan's choice below lanes
(strips, shift, gemm); "with" is the plan as it stands. --setting NAME=VALUE,... runs "without" with those
settings instead. --tree PATH: "without" is instead the same model built by the nbconv of another source tree
(e.g. /work/wt/base), imported into this process beside this one. A step is forward, loss and backward, as
benchmarks/networks.py times it. --clock thread: CPU time of the calling thread (use with --threads 1).

Usage: python benchmarks/blocked_step.py [--rounds 5] [--threads N] [--clock wall|thread] [--models resnet20,lenet5]
       [--setting LANES_WIDEST|NAME=VALUE,... | --tree PATH]
"""
import argparse
import os
import statistics
import sys
import time

import numba
import numpy as np
import torch

from nbconv import functional as F
from nbconv import models
from nbconv.kernels.cpu.conv import plan as planning

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def torch_twin(name, model):
    import networks
    if name == "resnet20":
        twin = networks.ResNet((3, 3, 3), (16, 32, 64), 10, False)
        twin.load_state_dict({key: torch.from_numpy(value) for key, value in model.state_dict().items()})
        return twin
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall")
    parser.add_argument("--models", default="resnet20,lenet5")
    parser.add_argument("--setting", default="LANES_WIDEST",
                        help="the plan setting 'without' sets to 0, or NAME=VALUE[,NAME=VALUE...]: the plan settings "
                             "'without' runs with instead")
    parser.add_argument("--tree", default=None, help="another source tree, whose nbconv runs 'without' instead")
    args = parser.parse_args()
    if args.tree:
        from blocked_layers import import_tree
        tree = import_tree(args.tree)
        import importlib
        tree_models, tree_functional = (importlib.import_module(f"{tree.__name__}.{module}")
                                        for module in ("models", "functional"))
    if args.threads:
        numba.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    print(f"threads {numba.get_num_threads()}, clock {args.clock}, rounds {args.rounds}")
    if "=" in args.setting:
        other = {name: int(value) for name, value in (item.split("=") for item in args.setting.split(","))}
    else:
        other = {args.setting: 0}
    current = {name: getattr(planning, name) for name in other}
    for name in args.models.split(","):
        shape, batch, classes = ((3, 32, 32), 128, 10) if name == "resnet20" else ((1, 28, 28), 64, 10)
        model = models.build(name, input_shape=shape, num_classes=classes, seed=0)
        model.train()
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch,) + shape).astype(np.float32)
        labels = rng.integers(0, classes, batch)
        twin = torch_twin(name, model)

        def step(settings, model=model, functional=F):
            for setting_name, value in settings.items():
                setattr(planning, setting_name, value)
            logits = model.forward(x)
            _, grad = functional.softmax_cross_entropy(logits, labels)
            model.backward(grad, need_input_grad=False)

        contenders = {"with": lambda: step(current), "without": lambda: step(other)}
        if args.tree:
            tree_model = tree_models.build(name, input_shape=shape, num_classes=classes, seed=0)
            tree_model.train()
            contenders["without"] = lambda: step({}, tree_model, tree_functional)
        if twin is not None:
            twin.train()
            x_torch, labels_torch = torch.from_numpy(x), torch.from_numpy(labels)
            loss_function = torch.nn.CrossEntropyLoss()

            def torch_step():
                twin.zero_grad(set_to_none=True)
                loss_function(twin(x_torch), labels_torch).backward()
            contenders["torch"] = torch_step
        for once in contenders.values():
            once(), once()
        times = {key: [] for key in contenders}
        for round_number in range(args.rounds):
            order = list(contenders.items())
            for key, once in (order if round_number % 2 == 0 else order[::-1]):
                started = clock()
                once()
                times[key].append(clock() - started)
        for setting_name, value in current.items():
            setattr(planning, setting_name, value)
        median = {key: statistics.median(value) for key, value in times.items()}
        ratios = [b / a for a, b in zip(times["with"], times["without"])]
        line = (f"{name:9s} with {median['with'] * 1e3:8.1f} ms  without {median['without'] * 1e3:8.1f} ms  "
                f"without/with {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
        if "torch" in times:
            versus = [t / a for a, t in zip(times["with"], times["torch"])]
            before = [t / b for b, t in zip(times["without"], times["torch"])]
            line += (f"  torch {median['torch'] * 1e3:8.1f} ms  torch/with {statistics.median(versus):.2f}x "
                     f"({min(versus):.2f}-{max(versus):.2f})  torch/without {statistics.median(before):.2f}x")
        print(line, flush=True)


if __name__ == "__main__":
    main()
