"""Make the MNIST sample shipped in nbconv/data/sample/ from the full MNIST files, reproducibly.

Stratified by class: 300 training and 100 test images per digit, chosen with a fixed seed.
Usage: python scripts/make_mnist_sample.py [MNIST_DIR]   (default ../shared/data/mnist)
"""
import os
import sys

import numpy as np

from nbconv.data import datasets
from nbconv.data.idx import write_idx

PER_CLASS = {"train": 300, "test": 100}


def stratified(labels, per_class, rng):
    chosen = [rng.choice(np.flatnonzero(labels == digit), per_class, replace=False) for digit in range(10)]
    return np.sort(np.concatenate(chosen))


def main(source):
    splits = datasets.load("mnist", data_dir=source, download_missing=False, allow_sample=False)
    rng = np.random.default_rng(0)
    files = datasets.DATASETS["mnist"].files
    for split in ("train", "test"):
        images, labels = getattr(splits, f"{split}_images"), getattr(splits, f"{split}_labels")
        keep = stratified(labels, PER_CLASS[split], rng)
        write_idx(os.path.join(datasets.SAMPLE_DIR, files[f"{split}_images"]), images[keep])
        write_idx(os.path.join(datasets.SAMPLE_DIR, files[f"{split}_labels"]), labels[keep].astype(np.uint8))
    for name in files.values():
        path = os.path.join(datasets.SAMPLE_DIR, name)
        print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                            "mnist"))
