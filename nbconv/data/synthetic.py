"""A synthetic image dataset for tests and benchmarks, named `synthetic:CxHxW:K[:TRAIN[:TEST]]`
(e.g. `synthetic:3x32x32:10`, 5,000 training and 1,000 test images by default).

Each class has its own pattern: a random 4x4 grid of per-channel intensities, magnified to H x W. An
image is its class's pattern, moved by up to H/8 pixels, plus Gaussian noise, as uint8. A network has
to see through noise and position to tell the classes apart, so accuracy rises over a few hundred steps
rather than at once. Everything is a function of the name and the seed: the same name gives the same
images on every machine.
"""
import re
from dataclasses import dataclass

import numpy as np

PREFIX = "synthetic:"
DEFAULT_TRAIN, DEFAULT_TEST = 5000, 1000
MAX_CHANNELS = 64  # the most channels a synthetic dataset has (a checkpoint holds a mean and std for each)
MAX_PIXELS = 1 << 31          # per split: 2 GiB of uint8 images at most
_NAME = re.compile(r"^synthetic:(\d+)x(\d+)x(\d+):(\d+)(?::(\d+))?(?::(\d+))?$")


@dataclass(frozen=True)
class SyntheticSpec:
    shape: tuple        # (C, H, W)
    classes: int
    train: int
    test: int


def parse(name):
    """The SyntheticSpec a `synthetic:CxHxW:K[:TRAIN[:TEST]]` name stands for; ValueError when malformed."""
    match = _NAME.match(str(name).strip().lower())
    if not match:
        raise ValueError(f"dataset: a synthetic dataset is named synthetic:CxHxW:CLASSES[:TRAIN[:TEST]] "
                         f"(e.g. synthetic:3x32x32:10), got {name!r}")
    channels, height, width, classes = (int(match.group(k)) for k in range(1, 5))
    train = int(match.group(5)) if match.group(5) else DEFAULT_TRAIN
    test = int(match.group(6)) if match.group(6) else DEFAULT_TEST
    for what, value, low, high in (("channels", channels, 1, MAX_CHANNELS), ("height", height, 1, 4096),
                                   ("width", width, 1, 4096), ("classes", classes, 2, 1000),
                                   ("training images", train, 1, None), ("test images", test, 1, None)):
        if value < low or (high and value > high):
            raise ValueError(f"dataset {name!r}: {what} must be in {low}..{high or 'any'}, got {value}")
    for what, count in (("training", train), ("test", test)):
        if count * channels * height * width > MAX_PIXELS:
            raise ValueError(f"dataset {name!r}: {count:,} {what} images of {channels}x{height}x{width} exceed "
                             f"{MAX_PIXELS >> 30} GiB")
    return SyntheticSpec((channels, height, width), classes, train, test)


def patterns(spec, seed=0):
    """float (K, C, H, W) class patterns in [-1, 1]: a 4x4 grid per class and channel, magnified."""
    channels, height, width = spec.shape
    grid = np.random.default_rng([seed, 1]).uniform(-1.0, 1.0, (spec.classes, channels, 4, 4))
    rows, columns = np.arange(height) * 4 // height, np.arange(width) * 4 // width
    return grid[:, :, rows][:, :, :, columns]


def generate(spec, count, seed=0, split=0):
    """uint8 images (count, C, H, W) and int64 labels (count,) of split `split` (0 train, 1 test)."""
    rng = np.random.default_rng([seed, 2, split])
    channels, height, width = spec.shape
    labels = rng.integers(0, spec.classes, count)
    base = patterns(spec, seed)
    reach_h, reach_w = height // 8, width // 8
    moves = np.stack([rng.integers(-reach_h, reach_h + 1, count), rng.integers(-reach_w, reach_w + 1, count)], 1)
    images = np.empty((count, channels, height, width), np.uint8)
    chunk = 1024
    for start in range(0, count, chunk):  # a chunk at a time: float intermediates stay small
        stop = min(start + chunk, count)
        noisy = 128.0 + 64.0 * base[labels[start:stop]] + rng.normal(0.0, 48.0, (stop - start,) + spec.shape)
        for k in range(start, stop):
            noisy[k - start] = np.roll(noisy[k - start], tuple(moves[k]), axis=(1, 2))
        images[start:stop] = np.clip(np.rint(noisy), 0, 255)
    return images, labels.astype(np.int64)
