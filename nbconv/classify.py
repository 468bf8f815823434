"""Top-k classification of image files by a model, with the preprocessing that suits it."""
from dataclasses import dataclass

import numpy as np

from . import backend, images


@dataclass
class Preprocessing:
    """How image files become model inputs: shorter side resized to resize_ratio x the input size, centre
    crop, then (pixel/255 - mean) / std per channel."""
    resize_ratio: float
    mean: tuple
    std: tuple

    @classmethod
    def for_model(cls, input_shape, mean=None, std=None):
        """The dataset's own normalisation when known (an nbconv-trained model); otherwise ImageNet's for
        colour inputs of 100 pixels or more (torchvision's resize 256 / crop 224), and 0.5/0.5 for others."""
        channels, height = input_shape[0], input_shape[1]
        if mean is not None and std is not None:
            return cls(1.0, mean, std)
        if channels == 3 and height >= 100:
            return cls(images.IMAGENET_RESIZE, images.IMAGENET_MEAN, images.IMAGENET_STD)
        return cls(1.0, 0.5, 0.5)

    def load(self, path, input_shape):
        """The image file at `path` as a (C, H, W) float64 model input."""
        channels, height, width = input_shape
        pixels = images.read_image(path, channels).astype(np.float64)
        return images.normalize(images.fit(pixels, height, width, self.resize_ratio), self.mean, self.std)


def softmax(scores):
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def top_classes(model, inputs, top=5, device="cpu"):
    """(classes (N, top), probabilities (N, top)) for float inputs (N, C, H, W), best first, in eval mode."""
    model.eval()
    dtype = next((p.value.dtype for p in model.parameters()), np.float32)
    from .nn import infer
    scores = backend.to_host(infer(model, backend.transfer(np.ascontiguousarray(inputs, dtype), device)))
    scores = np.asarray(scores, np.float64).reshape(len(inputs), -1)
    probabilities = softmax(scores)
    top = min(top, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    return order, np.take_along_axis(probabilities, order, axis=1)


def read_labels(path, classes):
    """Class names from a text file, one per line; the count must match the model's `classes`."""
    try:
        with open(path, encoding="utf-8") as handle:
            labels = [line.strip() for line in handle.read(10_000_000).splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read labels ({error})") from None
    if len(labels) != classes:
        raise ValueError(f"{path}: {len(labels)} labels for a model with {classes} classes")
    return labels
