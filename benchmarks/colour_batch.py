"""CIFAR training-batch assembly: nbconv's one compiled pass (gather, random crop of the image padded by
4, horizontal flip, per-channel normalisation) against the same steps in PyTorch (per image, as a
torchvision transform pipeline does them, and batched on whole tensors), in alternating rounds.

Usage: python benchmarks/colour_batch.py [BATCH] [ROUNDS]. Prints one JSON line (microseconds per batch).
"""
import json
import sys
import time

import numpy as np

from nbconv.data.batch import shifted_batch

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def main(batch=128, rounds=7, repeat=20):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50000, 3, 32, 32), dtype=np.uint8)
    draws = [(rng.permutation(50000)[:batch], rng.integers(0, 9, (batch, 2)), rng.integers(0, 2, batch).astype(bool))
             for _ in range(repeat)]

    def nbconv_batch():
        for chosen, offsets, flips in draws:
            shifted_batch(images, chosen, offsets, 4, MEAN, STD, np.float32, flips)

    runners = {"nbconv": nbconv_batch}
    try:
        import torch
        import torch.nn.functional as TF
        torch.set_num_threads(1)
        tensor = torch.from_numpy(images)
        mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)

        def torch_per_image():  # ToTensor, RandomCrop(32, padding=4), RandomHorizontalFlip, Normalize
            for chosen, offsets, flips in draws:
                out = []
                for k, index in enumerate(chosen):
                    image = TF.pad(tensor[int(index)].float().div(255), (4, 4, 4, 4))
                    dy, dx = int(offsets[k, 0]), int(offsets[k, 1])
                    image = image[:, dy:dy + 32, dx:dx + 32]
                    if flips[k]:
                        image = image.flip(2)
                    out.append((image - mean) / std)
                torch.stack(out)

        def torch_batched():  # the same on the whole batch: one pad, crops gathered by index, one flip
            rows, columns = torch.arange(32).view(1, 32, 1), torch.arange(32).view(1, 1, 32)
            for chosen, offsets, flips in draws:
                padded = TF.pad(tensor[torch.from_numpy(chosen)].float().div(255), (4, 4, 4, 4))
                dy, dx = torch.from_numpy(offsets[:, 0]).view(-1, 1, 1), torch.from_numpy(offsets[:, 1]).view(-1, 1, 1)
                flat = (dy + rows) * 40 + (dx + columns)
                crops = padded.flatten(2).gather(2, flat.flatten(1).unsqueeze(1).expand(-1, 3, -1)).view(-1, 3, 32, 32)
                mask = torch.from_numpy(flips)
                crops[mask] = crops[mask].flip(3)
                (crops - mean) / std

        runners.update({"torch_per_image": torch_per_image, "torch_batched": torch_batched})
    except ImportError:
        pass
    for run in runners.values():
        run()
    best = {name: float("inf") for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], (time.perf_counter() - started) / repeat * 1e6)
    result = {"batch": batch, **{f"{name}_us": round(value, 1) for name, value in best.items()}}
    for name in runners:
        if name != "nbconv":
            result[f"speedup_vs_{name}"] = round(best[name] / best["nbconv"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main(*(int(v) for v in sys.argv[1:3]))
