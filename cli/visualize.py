"""`nbconv visualize`: pictures of what a trained network has learned."""
import os

import click
import numpy as np

from nbconv import backend, checkpoint, files
from nbconv.nn import prefix_model
from nbconv.train import TrainConfig

from .common import FiniteFloat, device_option, resolve_device, seed_option, usage_error_for

MAX_SCALE = 32  # pixel magnification; the pictures stay a few thousand pixels wide
MAX_CHANNELS = 4096

EXAMPLES = """
\b
  nbconv visualize runs/lenet5.npz filters --out filters.png
  nbconv visualize runs/lenet5.npz maximize --layer conv2 --channels 0-15 --out conv2.png
  nbconv visualize runs/lenet5.npz class --out classes.png
  nbconv visualize runs/lenet5.npz history --out history.png
  nbconv visualize runs/vgg16.npz maximize --layer features.10 --channels 0-7 --out conv3_1.png
  nbconv visualize runs/vgg16.npz dream --image photo.jpg --layer features.22 --out dream.png
  nbconv visualize runs/vgg16.npz dream --image photo.jpg --layer features.22 --frames 30 --out dream.gif
"""
MAX_DREAM_SIDE = 1024  # a bigger image is shrunk to this on its long side before dreaming


def parse_channels(text):
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    channels = []
    for part in filter(None, (text or "").split(",")):
        try:
            if "-" in part:
                first, last = (int(v) for v in part.split("-", 1))
                if last < first:
                    raise click.BadParameter(f"the range {part!r} runs backwards; write it first-last, e.g. "
                                             f"'{last}-{first}'", param_hint="--channels")
                if last - first >= MAX_CHANNELS:
                    raise click.BadParameter(f"at most {MAX_CHANNELS} channels at once, got {part!r}",
                                             param_hint="--channels")
                channels.extend(range(first, last + 1))
            else:
                channels.append(int(part))
        except ValueError:
            raise click.BadParameter(f"expected channel numbers like '0-7,9', got {text!r}", param_hint="--channels")
    return channels


def conv_layers(model):
    """Dotted names of the model's 2-D convolutions, in the order they run."""
    from nbconv.nn import Conv2d
    return [path for path, layer in model.named_layers() if isinstance(layer, Conv2d)]


def first_conv_layer(model):
    names = conv_layers(model)
    if not names:
        raise ValueError(f"the model has no convolution layer; name one with --layer "
                         f"({', '.join(model.layer_names())})")
    return names[0]


def input_normalisation(state):
    """(mean, std) of the model's inputs: its dataset's, or for a model without one (an imported network)
    ImageNet's for colour inputs of 100 pixels or more, 0.5/0.5 otherwise."""
    from nbconv.classify import Preprocessing
    if state.config:
        config = TrainConfig(**state.config)
        return config.mean, config.std
    preprocessing = Preprocessing.for_model(state.input_shape)
    return preprocessing.mean, preprocessing.std


@click.command(epilog=EXAMPLES)
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(exists=True, dir_okay=False))
@click.argument("what", type=click.Choice(["filters", "maximize", "class", "history", "dream"]))
@click.option("--layer", default=None, help="Layer name for filters/maximize/dream, dotted inside blocks "
                                            "('features.10'; default: the first conv layer).")
@click.option("--channels", default=None, help="Channels (or classes) to show, e.g. '0-7,12' (default: all).")
@click.option("--steps", type=click.IntRange(1, 100_000), default=None,
              help="Gradient-ascent steps (default: 200; dream: 10 per octave).")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Ascent step size, relative to the mean gradient magnitude (default: 0.05; dream: 0.01).")
@click.option("--l2-decay", type=FiniteFloat(min=0, max=1, max_open=True), default=1e-4, show_default=True)
@click.option("--jitter", type=click.IntRange(0, 1000), default=None,
              help="Random shift in pixels (default: 1; dream: 16).")
@click.option("--image", "image_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="dream: the picture to start from.")
@click.option("--octaves", type=click.IntRange(1, 12), default=4, show_default=True, help="dream: scales.")
@click.option("--octave-scale", type=FiniteFloat(min=1, min_open=True, max=4), default=1.4, show_default=True,
              help="dream: size ratio between successive scales.")
@click.option("--frames", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="dream: frames, each zoomed into the last (several: numbered PNGs, or one animated .gif).")
@click.option("--zoom", type=FiniteFloat(min=1, max=2), default=1.05, show_default=True,
              help="dream: zoom between frames.")
@seed_option
@click.option("--scale", type=click.IntRange(1, MAX_SCALE), default=4, show_default=True, help="Pixel magnification.")
@device_option
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Image file to write, in the format its extension names (.png, .jpg, ...).")
def visualize(checkpoint_path, what, layer, channels, steps, lr, l2_decay, jitter, image_path, octaves, octave_scale,
              frames, zoom, seed, scale, device, out):
    """Draw a CHECKPOINT's first-layer filters, maximum-response inputs of a layer's channels, one
    image per class, its training history, or a Deep Dream of an --image, as a PNG (or a GIF of frames)."""
    from nbconv import visualize as viz
    try:
        viz._pillow()
    except ImportError as error:
        raise click.ClickException(str(error))
    device = resolve_device(device)
    from nbconv import images
    with usage_error_for("--out"):
        for target in written_paths(out, frames if what == "dream" else 1):
            files.check_not_read(target, [("checkpoint", checkpoint_path), ("--image", image_path)])
            images.image_format(target)  # before the work: a name whose format Pillow cannot write
        files.check_writable(out, "--out")
    try:
        state = checkpoint.load(checkpoint_path)
    except ValueError as error:
        raise click.ClickException(str(error))
    model = state.model
    if what != "history" and len(state.input_shape) != 3:
        raise click.ClickException(f"{checkpoint_path}: the model takes inputs of shape {state.input_shape}, not "
                                   f"images (C, H, W), so there are no {what} pictures to draw; 'history' works")
    config = TrainConfig(**state.config) if state.config else TrainConfig()
    mean, std = input_normalisation(state)
    chosen = parse_channels(channels)
    if what == "dream":
        return dream(model, state, layer, image_path, mean, std, steps or 10, lr or 0.01,
                     16 if jitter is None else jitter, octaves, octave_scale, frames, zoom, seed, device, out)
    steps, lr, jitter = steps or 200, lr or 0.05, 1 if jitter is None else jitter
    try:
        if what == "history":
            image = viz.history_image(state.history)
        elif what == "filters":
            layer = layer or first_conv_layer(model)
            weight = backend.to_host(model[layer].weight.value) if hasattr(model[layer], "weight") else None
            if weight is None or weight.ndim != 4:
                raise ValueError(f"layer {layer!r} has no 2-D convolution filters; conv layers: "
                                 f"{', '.join(conv_layers(model))}")
            chosen = chosen or list(range(weight.shape[0]))
            bad = [c for c in chosen if not 0 <= c < weight.shape[0]]
            if bad:
                raise ValueError(f"channel(s) {bad} out of range: {layer!r} has {weight.shape[0]} filters, "
                                 f"valid 0..{weight.shape[0] - 1}")
            image = viz.grid_image(weight[chosen], scale=scale * 4, labels=[str(c) for c in chosen])
        else:
            model.to(device)
            options = dict(input_shape=state.input_shape, mean=mean, std=std, steps=steps, lr=lr,
                           l2_decay=l2_decay, jitter=jitter, seed=seed, device=device)
            if what == "class":
                result = viz.class_images(model, chosen or None, **options)
                labels = chosen or list(range(len(result.images)))
                names = config.class_names or []
                labels = [names[c] if c < len(names) else c for c in labels]
            else:
                layer = layer or first_conv_layer(model)
                if not chosen and layer in viz.target_layers(model):
                    chosen = list(range(prefix_model(model, layer).output_shape(state.input_shape)[0]))
                result = viz.maximize(model, layer, chosen, **options)
                labels = chosen
            gain = result.objectives[-1] - result.objectives[0]
            click.echo(f"{steps} ascent steps: objective rose by {np.mean(gain):.3g} on average "
                       f"({np.mean(result.objectives[0]):.3g} -> {np.mean(result.objectives[-1]):.3g})")
            image = viz.grid_image(result.images, scale=scale, labels=[str(c) for c in labels])
    except (ValueError, KeyError) as error:
        raise click.ClickException(str(error).strip('"'))
    try:
        viz.save_image(image, out)
    except ValueError as error:
        raise click.ClickException(str(error))
    click.echo(f"wrote {out} ({image.size[0]}x{image.size[1]})")


def dream(model, state, layer, image_path, mean, std, steps, lr, jitter, octaves, octave_scale, frames, zoom, seed,
          device, out):
    """The `dream` picture(s): --image dreamed at layer --layer, one PNG, numbered PNGs, or an animated GIF."""
    from nbconv import dream as deep_dream, images
    if image_path is None:
        raise click.UsageError("dream needs --image: the picture to start from")
    channels = state.input_shape[0]
    try:
        layer = layer or first_conv_layer(model)
        pixels = images.read_image(image_path, channels).astype(np.float64) / 255.0
        longest = max(pixels.shape[1:])
        if longest > MAX_DREAM_SIDE:
            pixels = images.resize(pixels, round(pixels.shape[1] * MAX_DREAM_SIDE / longest),
                                   round(pixels.shape[2] * MAX_DREAM_SIDE / longest))
        model.to(device)
        with click.progressbar(length=frames * octaves * steps, label="dreaming", file=click.get_text_stream("stderr"),
                               show_eta=True, width=24) as bar:
            def progress(done, total):
                bar.length = total
                bar.update(done - bar.pos)
            results = deep_dream.dream_frames(model, layer, pixels, mean, std, frames=frames, zoom_factor=zoom,
                                              progress=progress, octaves=octaves, octave_scale=octave_scale,
                                              steps=steps, lr=lr, jitter=jitter, seed=seed, device=device)
        written = write_frames(results, out)
    except (ValueError, KeyError) as error:
        raise click.ClickException(str(error).strip('"'))
    click.echo(f"wrote {written}")


def written_paths(out, count):
    """The files write_frames writes for `count` frames: `out` for one frame or a .gif, else out-000.png,
    out-001.png, ... (out's own extension, .png where it has none)."""
    stem, extension = os.path.splitext(out)
    if count == 1 or extension.lower() == ".gif":
        return [out]
    return [f"{stem}-{index:03d}{extension or '.png'}" for index in range(count)]


def write_frames(frames, out):
    """One image to `out`; several as an animated GIF when `out` ends in .gif, else out-000.png, out-001.png, ..."""
    import io

    from nbconv import images
    if len(frames) == 1:
        images.write_image(frames[0], out)
        return out
    stem, extension = os.path.splitext(out)
    if extension.lower() == ".gif":
        pictures = [images.to_pil(frame) for frame in frames]
        buffer = io.BytesIO()
        pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=80, loop=0)
        files.atomic_write_bytes(out, buffer.getvalue())
        return f"{out} ({len(frames)} frames)"
    names = written_paths(out, len(frames))
    for frame, name in zip(frames, names):
        images.write_image(frame, name)
    return f"{names[0]} ... {names[-1]}"
