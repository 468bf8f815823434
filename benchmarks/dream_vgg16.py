"""Deep Dream on VGG-16 at 224x224, 3 octaves x 10 steps (the lecture's setting), timed as one call.

    python benchmarks/dream_vgg16.py [--layer features.22]
"""
import argparse
import time

import numpy as np

from nbconv import dream, images, models


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="features.22")  # conv4_3's ReLU
    parser.add_argument("--octaves", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    arguments = parser.parse_args()
    model = models.build("vgg16", (3, 224, 224), seed=0).eval()
    pixels = np.random.default_rng(0).uniform(0.3, 0.7, (3, 224, 224))
    warm = time.perf_counter()
    dream.dream_octaves(model, arguments.layer, pixels[:, :64, :64], images.IMAGENET_MEAN, images.IMAGENET_STD,
                        octaves=1, steps=1)
    start = time.perf_counter()
    dream.dream_octaves(model, arguments.layer, pixels, images.IMAGENET_MEAN, images.IMAGENET_STD,
                        octaves=arguments.octaves, steps=arguments.steps)
    end = time.perf_counter()
    print(f"Deep Dream, VGG-16 up to {arguments.layer}, 224x224, {arguments.octaves} octaves x {arguments.steps} "
          f"steps: {end - start:.1f} s (compilation and warm-up before it: {start - warm:.1f} s)")


if __name__ == "__main__":
    main()
