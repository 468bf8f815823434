"""Imported ResNet-50 inference at 3x224x224 against onnxruntime (the engine ONNX users run) and PyTorch,
in alternating rounds in one process, all engines with the same number of threads.

    python benchmarks/onnx_resnet50.py [--rounds 5] [--repeat 3]

The ONNX file is nbconv's own resnet50 (random weights, running statistics spread out) exported and
imported back, so the model nbconv runs is an imported one, run by `nbconv.nn.infer` (eval mode, batch
norm and activations applied in place; `--forward` also times `model.forward`); PyTorch runs the same
topology built with torch.nn (random weights: only the time is compared here, the outputs are compared in
the tests)."""
import argparse
import statistics
import time

import numba
import numpy as np

from nbconv import nn
from resnet50_model import imported_resnet50


def torch_resnet50(torch):
    nn = torch.nn

    class Bottleneck(nn.Module):
        def __init__(self, c, planes, stride):
            super().__init__()
            out = planes * 4
            self.body = nn.Sequential(nn.Conv2d(c, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(),
                                      nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes),
                                      nn.ReLU(), nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out))
            self.shortcut = (nn.Sequential(nn.Conv2d(c, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                             if stride != 1 or c != out else nn.Identity())

        def forward(self, x):
            return torch.relu(self.body(x) + self.shortcut(x))

    layers, c = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)], 64
    for planes, count, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for index in range(count):
            layers.append(Bottleneck(c, planes, stride if index == 0 else 1))
            c = planes * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000)]
    return nn.Sequential(*layers).eval()


def _without_packed(function):
    from nbconv.kernels.cpu.conv import plan
    plan.PREPARED_PACKED = False
    try:
        return function()
    finally:
        plan.PREPARED_PACKED = True


def median_time(function, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--forward", action="store_true", help="also time model.forward (against nn.infer)")
    parser.add_argument("--without-packed", action="store_true",
                        help="also time nn.infer with every 1x1 layer on the BLAS path (kernels/cpu/conv/packed.py off)")
    arguments = parser.parse_args()
    threads = numba.get_num_threads()
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    model, session = imported_resnet50(rng, threads)
    twin = torch_resnet50(torch) if torch is not None else None
    print(f"ResNet-50, 3x224x224, float32, {threads} threads each; {arguments.rounds} alternating rounds, "
          f"median of {arguments.repeat} calls per round")
    for batch in (int(b) for b in arguments.batches.split(",")):
        x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
        engines = {"nbconv": lambda: nn.infer(model, x), "onnxruntime": lambda: session.run(None, {"input": x})}
        if arguments.forward:  # the same model through forward, which keeps what a backward pass needs
            engines["nbconv forward"] = lambda: model.forward(x)
        if arguments.without_packed:
            engines["nbconv without packed"] = lambda: _without_packed(lambda: nn.infer(model, x))
        if twin is not None:
            tx = torch.from_numpy(x)
            engines["pytorch"] = lambda: twin(tx)
        for run in engines.values():  # warm up (JIT compilation, allocations)
            run()
        rounds = {name: [] for name in engines}
        context = torch.no_grad() if torch is not None else None
        if context is not None:
            context.__enter__()
        for _ in range(arguments.rounds):
            for name, run in engines.items():
                rounds[name].append(median_time(run, arguments.repeat))
        if context is not None:
            context.__exit__(None, None, None)
        ours = rounds["nbconv"]
        line = [f"batch {batch}: nbconv {1e3 * statistics.median(ours):.0f} ms"]
        for name in engines:
            if name != "nbconv":
                ratios = [theirs / mine for theirs, mine in zip(rounds[name], ours)]
                line.append(f"{name} {1e3 * statistics.median(rounds[name]):.0f} ms (nbconv {statistics.median(ratios):.2f}x, "
                            f"rounds {min(ratios):.2f}-{max(ratios):.2f})")
        print("; ".join(line), flush=True)


if __name__ == "__main__":
    main()
