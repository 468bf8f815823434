"""Peak and per-epoch resident memory of LeNet-5 training, with the allocator setting `nbconv train` uses.
Prints JSON: {"rss_mb_after_epoch": [...], "peak_mb": x}.

Usage: python benchmarks/memory.py MNIST_DIR [EPOCHS]
"""
import json
import sys

from nbconv import models
from nbconv.data import load
from nbconv.train import TrainConfig, fit, make_optimizer
from nbconv.host_memory import keep_freed_host_memory


def status_mb(field):
    """A memory figure of this process from /proc/self/status, in MB: VmRSS (now) or VmHWM (peak).

    VmHWM rather than getrusage's ru_maxrss, which Linux carries over from the parent through fork and exec:
    started from a big process (benchmarks/run.py with PyTorch loaded), it reported the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(directory, epochs):
    keep_freed_host_memory()
    splits = load("mnist", directory, download_missing=False, allow_sample=False)
    config = TrainConfig(epochs=epochs)
    model = models.build("lenet5")
    optimizer = make_optimizer(config, model.parameters())
    after = []
    fit(model, optimizer, splits, config, on_epoch_end=lambda history: after.append(round(status_mb("VmRSS"), 1)),
        echo=lambda *a, **k: None)
    print(json.dumps({"rss_mb_after_epoch": after, "peak_mb": round(status_mb("VmHWM"), 1)}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)
