"""`nbconv visualize`: pictures of what a trained network has learned."""
import click
import numpy as np

from nbconv import backend, checkpoint, files
from nbconv.train import TrainConfig

from .common import FiniteFloat, device_option, resolve_device, seed_option

MAX_SCALE = 32  # pixel magnification; the pictures stay a few thousand pixels wide
MAX_CHANNELS = 4096

EXAMPLES = """
\b
  nbconv visualize runs/lenet5.npz filters --out filters.png
  nbconv visualize runs/lenet5.npz maximize --layer conv2 --channels 0-15 --out conv2.png
  nbconv visualize runs/lenet5.npz class --out classes.png
  nbconv visualize runs/lenet5.npz history --out history.png
"""


def parse_channels(text):
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    channels = []
    for part in filter(None, (text or "").split(",")):
        try:
            if "-" in part:
                first, last = (int(v) for v in part.split("-", 1))
                if last - first >= MAX_CHANNELS:
                    raise click.BadParameter(f"at most {MAX_CHANNELS} channels at once, got {part!r}",
                                             param_hint="--channels")
                channels.extend(range(first, last + 1))
            else:
                channels.append(int(part))
        except ValueError:
            raise click.BadParameter(f"expected channel numbers like '0-7,9', got {text!r}", param_hint="--channels")
    return channels


def first_conv_layer(model):
    name = next((layer.name for layer in model.layers if layer.name.startswith("conv")), None)
    if name is None:
        raise ValueError(f"the model has no convolution layer; name one with --layer "
                         f"({', '.join(model.layer_names())})")
    return name


@click.command(epilog=EXAMPLES)
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(exists=True, dir_okay=False))
@click.argument("what", type=click.Choice(["filters", "maximize", "class", "history"]))
@click.option("--layer", default=None, help="Layer name for filters/maximize (default: the first conv layer).")
@click.option("--channels", default=None, help="Channels (or classes) to show, e.g. '0-7,12' (default: all).")
@click.option("--steps", type=click.IntRange(1), default=200, show_default=True, help="Gradient-ascent steps.")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=0.05, show_default=True,
              help="Ascent step size, relative to the mean gradient magnitude.")
@click.option("--l2-decay", type=FiniteFloat(min=0), default=1e-4, show_default=True)
@click.option("--jitter", type=click.IntRange(0), default=1, show_default=True, help="Random shift in pixels.")
@seed_option
@click.option("--scale", type=click.IntRange(1, MAX_SCALE), default=4, show_default=True, help="Pixel magnification.")
@device_option
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="PNG file to write.")
def visualize(checkpoint_path, what, layer, channels, steps, lr, l2_decay, jitter, seed, scale, device, out):
    """Draw a CHECKPOINT's first-layer filters, maximum-response inputs of a layer's channels, one
    image per class, or its training history, as a PNG."""
    from nbconv import visualize as viz
    try:
        viz._pillow()
    except ImportError as error:
        raise click.ClickException(str(error))
    device = resolve_device(device)
    try:
        files.check_writable(out, "--out")
    except ValueError as error:
        raise click.BadParameter(str(error).removeprefix("--out: "), param_hint="--out")
    try:
        state = checkpoint.load(checkpoint_path)
    except ValueError as error:
        raise click.ClickException(str(error))
    model = state.model
    config = TrainConfig(**state.config) if state.config else TrainConfig()
    chosen = parse_channels(channels)
    try:
        if what == "history":
            image = viz.history_image(state.history)
        elif what == "filters":
            layer = layer or first_conv_layer(model)
            weight = backend.to_host(model[layer].weight.value) if hasattr(model[layer], "weight") else None
            if weight is None or weight.ndim != 4:
                raise ValueError(f"layer {layer!r} has no 2-D convolution filters; conv layers: "
                                 f"{', '.join(n for n in model.layer_names() if n.startswith('conv'))}")
            chosen = chosen or list(range(weight.shape[0]))
            bad = [c for c in chosen if not 0 <= c < weight.shape[0]]
            if bad:
                raise ValueError(f"channel(s) {bad} out of range: {layer!r} has {weight.shape[0]} filters, "
                                 f"valid 0..{weight.shape[0] - 1}")
            image = viz.grid_image(weight[chosen], scale=scale * 4, labels=[str(c) for c in chosen])
        else:
            model.to(device)
            options = dict(input_shape=state.input_shape, mean=config.mean, std=config.std, steps=steps, lr=lr,
                           l2_decay=l2_decay, jitter=jitter, seed=seed, device=device)
            if what == "class":
                result = viz.class_images(model, chosen or None, **options)
                labels = chosen or list(range(len(result.images)))
                names = config.class_names or []
                labels = [names[c] if c < len(names) else c for c in labels]
            else:
                layer = layer or first_conv_layer(model)
                if not chosen:
                    probe = model.forward(backend.transfer(np.zeros((1,) + state.input_shape, np.float32), device),
                                          until=layer) if layer in viz.target_layers(model) else None
                    chosen = list(range(probe.shape[1])) if probe is not None else [0]
                result = viz.maximize(model, layer, chosen, **options)
                labels = chosen
            gain = result.objectives[-1] - result.objectives[0]
            click.echo(f"{steps} ascent steps: objective rose by {np.mean(gain):.3g} on average "
                       f"({np.mean(result.objectives[0]):.3g} -> {np.mean(result.objectives[-1]):.3g})")
            image = viz.grid_image(result.images, scale=scale, labels=[str(c) for c in labels])
    except (ValueError, KeyError) as error:
        raise click.ClickException(str(error).strip('"'))
    viz.save_png(image, out)
    click.echo(f"wrote {out} ({image.size[0]}x{image.size[1]})")
