"""The lecture's networks in nbconv against the same networks in PyTorch (CPU), in one run, in alternating
rounds: ResNet-20 training steps on 3x32x32 (batch 128), ResNet-18 inference and training steps and VGG-16
inference on 3x224x224 (batch 8). The PyTorch twins are written here in plain torch.nn and get nbconv's
weights through the state dict (torchvision's names), so both compute the same thing. Prints one line per case:
median seconds for nbconv and PyTorch and their ratio (PyTorch time / nbconv time: > 1 means nbconv is faster).

Usage: python benchmarks/networks.py [CASE ...] [--rounds N]    (cases: resnet20-step resnet18-infer
resnet18-step vgg16-infer; default all)
"""
import argparse
import statistics
import time

import numpy as np
import torch

from nbconv import functional as F
from nbconv import models

tnn = torch.nn


class BasicBlock(tnn.Module):
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.relu = tnn.ReLU()
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = tnn.Sequential(tnn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                             tnn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(tnn.Module):
    """torchvision's ResNet with basic blocks (imagenet=True) or the CIFAR ResNet of nbconv.architectures."""

    def __init__(self, counts, widths, classes, imagenet):
        super().__init__()
        first = widths[0]
        self.conv1 = tnn.Conv2d(3, first, 7 if imagenet else 3, 2 if imagenet else 1, 3 if imagenet else 1,
                                bias=False)
        self.bn1 = tnn.BatchNorm2d(first)
        self.relu = tnn.ReLU()
        self.maxpool = tnn.MaxPool2d(3, 2, 1) if imagenet else tnn.Identity()
        inplanes = first
        for index, (planes, count) in enumerate(zip(widths, counts)):
            blocks = [BasicBlock(inplanes, planes, 1 if index == 0 else 2)]
            blocks += [BasicBlock(planes, planes, 1) for _ in range(count - 1)]
            setattr(self, f"layer{index + 1}", tnn.Sequential(*blocks))
            inplanes = planes
        self.stages = len(widths)
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(inplanes, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for index in range(self.stages):
            x = getattr(self, f"layer{index + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class VGG16(tnn.Module):
    def __init__(self, classes):
        super().__init__()
        layers, channels = [], 3
        for item in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
            if item == "M":
                layers.append(tnn.MaxPool2d(2, 2))
            else:
                layers += [tnn.Conv2d(channels, item, 3, padding=1), tnn.ReLU()]
                channels = item
        self.features = tnn.Sequential(*layers)
        self.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
        self.classifier = tnn.Sequential(tnn.Linear(25088, 4096), tnn.ReLU(), tnn.Dropout(), tnn.Linear(4096, 4096),
                                         tnn.ReLU(), tnn.Dropout(), tnn.Linear(4096, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


CASES = {  # name: (architecture, torch twin, input shape, batch, classes, training step?)
    "resnet20-step": ("resnet20", lambda: ResNet((3, 3, 3), (16, 32, 64), 10, False), (3, 32, 32), 128, 10, True),
    "resnet18-infer": ("resnet18", lambda: ResNet((2, 2, 2, 2), (64, 128, 256, 512), 1000, True), (3, 224, 224), 8,
                       1000, False),
    "resnet18-step": ("resnet18", lambda: ResNet((2, 2, 2, 2), (64, 128, 256, 512), 1000, True), (3, 224, 224), 8,
                      1000, True),
    "vgg16-infer": ("vgg16", lambda: VGG16(1000), (3, 224, 224), 8, 1000, False),
}


def run_case(name, rounds):
    architecture, twin, shape, batch, classes, training = CASES[name]
    model = models.build(architecture, input_shape=shape, num_classes=classes, seed=0)
    reference = twin()
    reference.load_state_dict({key: torch.from_numpy(value) for key, value in model.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    labels = rng.integers(0, classes, batch)
    x_torch, labels_torch = torch.from_numpy(x), torch.from_numpy(labels)
    loss_function = tnn.CrossEntropyLoss()

    def nbconv_once():
        model.train(training)
        logits = model.forward(x)
        if training:
            loss, grad = F.softmax_cross_entropy(logits, labels)
            model.backward(grad, need_input_grad=False)

    def torch_once():
        reference.train(training)
        if training:
            reference.zero_grad(set_to_none=True)
            loss_function(reference(x_torch), labels_torch).backward()
        else:
            with torch.no_grad():
                reference(x_torch)

    nbconv_once(), torch_once()  # compile and warm up
    times = {"nbconv": [], "torch": []}
    for _ in range(rounds):
        for label, once in (("nbconv", nbconv_once), ("torch", torch_once)):
            started = time.perf_counter()
            once()
            times[label].append(time.perf_counter() - started)
    ours, theirs = statistics.median(times["nbconv"]), statistics.median(times["torch"])
    print(f"{name:15s} batch {batch:3d}  nbconv {ours * 1e3:8.1f} ms  torch {theirs * 1e3:8.1f} ms  "
          f"ratio {theirs / ours:.2f}x", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help=f"any of {', '.join(CASES)} (default: all)")
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    unknown = [name for name in arguments.cases if name not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    for name in arguments.cases or list(CASES):
        run_case(name, arguments.rounds)


if __name__ == "__main__":
    main()
