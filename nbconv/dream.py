"""Deep Dream: amplify what a layer already sees in an image, by gradient ascent on the image itself.

For a layer l with activations a = h_l(x), the objective is L = 1/2 ||a||^2 (so dL/da = a). Each step
shifts the image by a random jitter, runs the model up to l, back-propagates a to the input, undoes the
shift and moves the image along the gradient normalised by its mean magnitude. The ascent runs at several
scales (octaves), smallest first; the detail gained at one scale is enlarged onto the next. For an
animation, each frame zooms into the centre of the last dream and dreams again.
"""
import numpy as np

from . import backend, checks
from .images import per_channel, resize
from .visualize import check_ascent
from .nn import input_gradients_only, prefix_model


def dream_octaves(model, layer, pixels, mean, std, octaves=4, octave_scale=1.4, steps=10, lr=0.01, jitter=16,
                  seed=0, device="cpu", progress=None):
    """Deep Dream of one image. pixels: (C, H, W) floats in [0, 1]; mean/std: the model's input
    normalisation (numbers or per channel). Returns the dreamed (C, H, W) pixels in [0, 1].

    Octaves too small for the layers up to `layer` are left out. progress(done, total) is called after each
    step. lr is the step size in pixel units, relative to the mean gradient magnitude."""
    check_ascent(steps, lr, jitter)
    checks.integer("octaves", octaves, 1)
    octave_scale = checks.finite("octave_scale", octave_scale, minimum=1.0)
    truncated = prefix_model(model, layer).eval()
    pixels = np.asarray(pixels, np.float64)
    channels, height, width = pixels.shape
    mean, std = per_channel(mean, "mean", channels), per_channel(std, "std", channels, positive=True)
    dtype = next((p.value.dtype for p in model.parameters()), np.float32)
    sizes = [(max(1, round(height / octave_scale ** k)), max(1, round(width / octave_scale ** k)))
             for k in range(octaves)][::-1]
    sizes = [size for size in sizes if _fits(truncated, (channels,) + size)]
    if not sizes:
        raise ValueError(f"a {height}x{width} image is too small for the layers up to {layer!r}")
    rng = np.random.default_rng(seed)
    with input_gradients_only(truncated):
        total, done = len(sizes) * steps, 0
        detail = np.zeros((channels,) + sizes[0])
        for size in sizes:
            base = resize(pixels, *size)
            image = base + resize(detail, *size)
            for _ in range(steps):
                shift = tuple(int(v) for v in rng.integers(-jitter, jitter + 1, 2)) if jitter else (0, 0)
                shifted = np.roll(image, shift, axis=(1, 2))
                normalized = backend.transfer((((shifted - mean) / std)[None]).astype(dtype), device)
                activations = truncated.forward(normalized)
                grad = backend.to_host(truncated.backward(activations))[0].astype(np.float64) / std
                grad = np.roll(grad, (-shift[0], -shift[1]), axis=(1, 2))
                image = np.clip(image + lr * grad / (np.abs(grad).mean() + 1e-12), 0.0, 1.0)
                done += 1
                if progress is not None:
                    progress(done, total)
            detail = image - base
    return image


def _fits(model, shape):
    try:
        model.output_shape(shape)
    except ValueError:
        return False
    return True


def zoom(pixels, factor):
    """Enlarge the centre of (C, H, W) pixels by `factor` (> 1) back to the same size."""
    _, height, width = pixels.shape
    crop_h, crop_w = max(1, round(height / factor)), max(1, round(width / factor))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return np.clip(resize(pixels[:, top:top + crop_h, left:left + crop_w], height, width), 0.0, 1.0)


def dream_frames(model, layer, pixels, mean, std, frames=1, zoom_factor=1.05, progress=None, **options):
    """A list of `frames` dreamed images: the first from `pixels`, each next one from the last zoomed in
    by zoom_factor. Options as dream_octaves."""
    results, current = [], pixels
    for frame in range(frames):
        def report(done, total, frame=frame):
            if progress is not None:
                progress(frame * total + done, frames * total)
        current = dream_octaves(model, layer, current, mean, std, progress=report, **options)
        results.append(current)
        current = zoom(current, zoom_factor)
    return results
