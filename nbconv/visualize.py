"""Looking inside a trained network: maximum-response inputs and class images by gradient ascent on the
input, with the model's own backward pass (on either backend).

Objective for channel d of layer l: L = ||h_{l,d}(x)||_2 over that channel's map (for a fully connected
layer, the unit's value); for class c: L = the class score (logit). Starting from x0 ~ U[0, 1]^{C x H x W}
(pixel space), each step x <- x + lr * g / mean|g| with g = dL/dx, then optional L2 decay, random jitter
(a shift of the image before the forward pass, undone on the gradient) and clipping to [0, 1].
"""
from dataclasses import dataclass

import numpy as np

from . import backend, checks
from .images import per_channel
from .nn import Dropout, Flatten, Sequential, input_gradients_only, prefix_model


@dataclass
class AscentResult:
    images: np.ndarray      # (K, C, H, W) in pixel space [0, 1], one per target
    objectives: np.ndarray  # (steps + 1, K): the objective before each step and after the last


def target_layers(model):
    """Dotted names of the layers whose outputs have channels (or units) to maximise: every layer reached
    through sequences of layers ('conv2', 'features.10', 'layer2.1'), but flattening and dropout."""
    names, inside = [], {""}
    for path, layer in model.named_layers():
        if path.rpartition(".")[0] not in inside:
            continue  # inside a residual block or a branch: no output of its own
        if isinstance(layer, Sequential):
            inside.add(path)
        if not isinstance(layer, (Flatten, Dropout)):
            names.append(path)
    return names


def _check_target(model, layer, channels, input_shape):
    names = target_layers(model)
    if layer not in names:
        raise ValueError(f"layer {layer!r} does not exist or has no channels; valid layers: {', '.join(names)}")
    count = prefix_model(model, layer).output_shape(tuple(input_shape))[0]
    bad = [c for c in channels if not 0 <= c < count]
    if bad:
        raise ValueError(f"channel(s) {bad} out of range: layer {layer!r} has {count} channels, valid 0..{count - 1}")
    return count


def _objective_and_grad(output, channels):
    """Per-sample objective and d objective / d output, sample k targeting channel channels[k]."""
    grad = np.zeros_like(output)
    values = np.empty(len(channels))
    for k, channel in enumerate(channels):
        activation = output[k, channel]
        if activation.ndim == 0:  # a fully connected unit: maximise its value
            values[k] = activation
            grad[k, channel] = 1.0
        else:
            norm = np.sqrt(np.sum(activation.astype(np.float64) ** 2))
            values[k] = norm
            grad[k, channel] = activation / max(norm, 1e-12)
    return values, grad


def check_ascent(steps, lr, jitter, l2_decay=0.0):
    """A ValueError or TypeError naming the first of the ascent's settings that cannot work."""
    checks.integer("steps", steps, 0)
    checks.integer("jitter", jitter, 0)
    for name, value, low, high in (("lr", lr, 0.0, np.inf), ("l2_decay", l2_decay, 0.0, 1.0)):
        value = checks.real(name, value)
        if not (np.isfinite(value) and low <= value < high):
            raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}), got {value!r}")


def maximize(model, layer, channels, input_shape=(1, 28, 28), mean=0.0, std=1.0, steps=100, lr=0.05,
             l2_decay=1e-4, jitter=1, clip=True, seed=0, device="cpu"):
    """Gradient ascent on the input for each channel in `channels` of layer `layer` (class scores when
    `layer` is the last layer). Returns an AscentResult. mean/std: the model's input normalisation, a
    number or one value per input channel (of pixel values in [0, 1])."""
    channels = [int(c) for c in channels]
    if isinstance(input_shape, (str, bytes)) or len(tuple(input_shape)) != 3:
        raise ValueError(f"input_shape must be an image's (C, H, W): the ascent draws images, got {input_shape!r}")
    mean, std = per_channel(mean, "mean", input_shape[0]), per_channel(std, "std", input_shape[0], positive=True)
    check_ascent(steps, lr, jitter, l2_decay)
    _check_target(model, layer, channels, input_shape)
    model.eval()
    truncated = prefix_model(model, layer)
    rng = np.random.default_rng(seed)
    dtype = model.parameters()[0].value.dtype
    x = rng.uniform(0.0, 1.0, (len(channels),) + tuple(input_shape))
    with input_gradients_only(truncated):
        objectives = []
        for step in range(steps + 1):
            shift = tuple(rng.integers(-jitter, jitter + 1, 2)) if jitter and step < steps else (0, 0)
            shifted = np.roll(x, shift, axis=(2, 3))
            normalized = backend.transfer(((shifted - mean) / std).astype(dtype), device)
            output = backend.to_host(truncated.forward(normalized))
            values, grad_output = _objective_and_grad(output, channels)
            objectives.append(values)
            if step == steps:
                break
            grad_input = backend.to_host(truncated.backward(backend.transfer(grad_output, device)))
            grad = np.roll(grad_input.astype(np.float64) / std, (-shift[0], -shift[1]), axis=(2, 3))
            scale = np.abs(grad).mean(axis=(1, 2, 3), keepdims=True) + 1e-12
            x = x + lr * grad / scale
            if l2_decay:
                x = x * (1.0 - l2_decay)
            if clip:
                x = np.clip(x, 0.0, 1.0)
    return AscentResult(x, np.array(objectives))


def class_images(model, classes=None, input_shape=(1, 28, 28), **options):
    """One input per class maximising that class's score (the last layer's output)."""
    last = model.layers[-1].name
    if classes is None:
        classes = range(_check_target(model, last, [], input_shape))
    return maximize(model, last, list(classes), input_shape, **options)


# ----------------------------------------------------------------------------- pictures (Pillow)

def _pillow():
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise ImportError("pictures need Pillow: pip install 'nbconv[viz]'") from None
    return Image, ImageDraw


def grid_image(tiles, columns=None, scale=4, padding=2, labels=None, normalize_each=True):
    """A PIL image of tiles (K, H, W) or (K, C, H, W) in a grid, each tile scaled to [0, 255], magnified
    `scale` times, with an optional caption above each. Three channels are drawn in colour (red, green,
    blue, scaled together), one in grey; other counts as the grey mean of their channels."""
    Image, ImageDraw = _pillow()
    tiles = np.asarray(tiles, dtype=np.float64)
    if tiles.ndim == 4:
        tiles = tiles.transpose(0, 2, 3, 1) if tiles.shape[1] == 3 else \
            tiles.mean(axis=1) if tiles.shape[1] != 1 else tiles[:, 0]
    colour = tiles.ndim == 4
    mode, background, ink = ("RGB", (40, 40, 40), (255, 255, 255)) if colour else ("L", 40, 255)
    count, height, width = tiles.shape[:3]
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    caption = 12 if labels else 0
    cell_h, cell_w = height * scale + padding + caption, width * scale + padding
    canvas = Image.new(mode, (columns * cell_w + padding, rows * cell_h + padding), color=background)
    draw = ImageDraw.Draw(canvas)
    low_all, high_all = tiles.min(), tiles.max()
    for k in range(count):
        low, high = (tiles[k].min(), tiles[k].max()) if normalize_each else (low_all, high_all)
        pixels = np.uint8(np.round(255 * (tiles[k] - low) / max(high - low, 1e-12)))
        tile = Image.fromarray(pixels, mode).resize((width * scale, height * scale), Image.NEAREST)
        row, column = divmod(k, columns)
        x0, y0 = padding + column * cell_w, padding + row * cell_h
        if labels:
            draw.text((x0, y0), str(labels[k]), fill=ink)
        canvas.paste(tile, (x0, y0 + caption))
    return canvas


def history_image(history, size=(720, 320)):
    """A PIL image of the training curves in a checkpoint's history: loss (left), accuracy (right)."""
    Image, ImageDraw = _pillow()
    if not history:
        raise ValueError("the checkpoint holds no training history")
    epochs = [entry["epoch"] for entry in history]
    panels = [("loss", [("train loss", [e["loss"] for e in history], (220, 80, 60))]),
              ("accuracy (%)", [("train", [100 * e["accuracy"] for e in history], (220, 80, 60)),
                                ("test", [100 * e["test_accuracy"] for e in history], (60, 120, 220))])]
    width, height = size
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    panel_w = width // 2
    for index, (title, series) in enumerate(panels):
        left, top, right, bottom = index * panel_w + 50, 30, (index + 1) * panel_w - 15, height - 40
        draw.rectangle((left, top, right, bottom), outline=(0, 0, 0))
        draw.text((left, 10), title, fill=(0, 0, 0))
        values = [v for _, ys, _ in series for v in ys]
        low, high = min(values), max(values)
        if high - low < 1e-9:
            low, high = low - 1, high + 1
        span_x = max(epochs[-1] - epochs[0], 1)

        def point(epoch, value):
            return (left + (right - left) * (epoch - epochs[0]) / span_x,
                    bottom - (bottom - top) * (value - low) / (high - low))

        for fraction in (0.0, 0.5, 1.0):
            value = low + fraction * (high - low)
            draw.text((index * panel_w + 2, point(epochs[0], value)[1] - 5), f"{value:.3g}", fill=(0, 0, 0))
        for epoch in epochs:
            draw.text((point(epoch, low)[0] - 3, bottom + 5), str(epoch), fill=(0, 0, 0))
        draw.text(((left + right) // 2 - 15, bottom + 22), "epoch", fill=(0, 0, 0))
        for k, (label, ys, color) in enumerate(series):
            points = [point(e, v) for e, v in zip(epochs, ys)]
            if len(points) > 1:
                draw.line(points, fill=color, width=2)
            for px, py in points:
                draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=color)
            draw.text((right - 80, top + 8 + 14 * k), label, fill=color)
    return canvas


def save_image(image, path):
    """Write a PIL image atomically, in the format the file's extension names (PNG where it has none)."""
    from .images import save
    save(image, path)
