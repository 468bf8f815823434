"""The same LeNet-5 recipe as `nbconv train lenet5` in PyTorch (CPU): one epoch over full MNIST, batch 64,
random shifts of up to 1 pixel, SGD momentum 0.9, weight decay 5e-4, then test accuracy. The learning rate
stays at 0.02 here (nbconv's per-step cosine schedule changes accuracy a little, not speed). Prints
'seconds accuracy' for the whole process.

Usage: python benchmarks/torch_lenet5.py MNIST_DIR [EPOCHS]
"""
import time

STARTED = time.perf_counter()

import sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from nbconv.bench import torch_lenet5  # noqa: E402
from nbconv.data import load  # noqa: E402
from nbconv.train import normalize, shift_augment  # noqa: E402


def main(directory, epochs):
    torch.manual_seed(0)
    splits = load("mnist", directory, download_missing=False, allow_sample=False)
    train_y = torch.from_numpy(splits.train_labels)
    model = torch_lenet5(torch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    loss_function = torch.nn.CrossEntropyLoss()
    for epoch in range(epochs):
        rng = np.random.default_rng([0, epoch])  # the same shuffle and shifts as nbconv's training loop
        order = rng.permutation(len(splits.train_images))
        for start in range(0, len(order), 64):
            chosen = order[start:start + 64]
            pixels = shift_augment(splits.train_images[chosen], 1, rng)
            optimizer.zero_grad()
            loss_function(model(torch.from_numpy(normalize(pixels, 0.1307, 0.3081))), train_y[chosen]).backward()
            optimizer.step()
    with torch.no_grad():
        logits = model(torch.from_numpy(normalize(splits.test_images, 0.1307, 0.3081)))
    accuracy = float((logits.argmax(1).numpy() == splits.test_labels).mean())
    print(f"{time.perf_counter() - STARTED:.2f} {accuracy:.4f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)
