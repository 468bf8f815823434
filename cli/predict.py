"""`nbconv predict`: the top classes of image files."""
import json
import os

import click

from nbconv import checkpoint

from .common import device_option, resolve_device


PREDICT_BATCH = 32  # images classified at once: a command naming thousands of files holds 32 in memory


def load_model(path):
    """(model, input shape, mean, std, class names) from a checkpoint (.npz) or an ONNX file (.onnx)."""
    if os.fspath(path).lower().endswith(".onnx"):
        try:
            from nbconv import onnx
            model = onnx.load(path)
        except ImportError as error:
            raise click.ClickException(str(error))
        preprocessing = model.preprocessing  # what nbconv's export kept of the checkpoint, else nothing
        return (model, model.input_shape, preprocessing.get("mean"), preprocessing.get("std"),
                preprocessing.get("class_names"))
    state = checkpoint.load(path)
    config = state.config or {}
    return state.model, state.input_shape, config.get("mean"), config.get("std"), config.get("class_names")


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False))
@click.argument("image_paths", metavar="IMAGE...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--top", type=click.IntRange(1, 1000), default=5, show_default=True, help="Classes shown per image.")
@click.option("--labels", "labels_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Text file of class names, one per line (default: the checkpoint's, else class numbers).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line, one per image.")
@device_option
def predict(model_path, image_paths, top, labels_path, as_json, device):
    """Classify IMAGE files with MODEL (a checkpoint, or an .onnx file): resize, centre crop and normalise
    as the model expects (ImageNet's preprocessing for colour models of 100+ pixels without their own), then
    print the top classes with their probabilities. Needs Pillow: pip install "nbconv[viz]"."""
    import numpy as np

    from nbconv import classify, images
    try:
        images.require_pillow()
        device = resolve_device(device)
        model, input_shape, mean, std, class_names = load_model(model_path)
        if len(input_shape) != 3:
            raise ValueError(f"{model_path}: the model takes {input_shape} inputs, not images")
        preprocessing = classify.Preprocessing.for_model(input_shape, mean, std)
        labels = class_names
        if labels_path:
            labels = classify.read_labels(labels_path, int(np.prod(model.output_shape(input_shape))))
        model.to(device)
        for path in image_paths:  # every file opens as an image before any line is printed
            images.check_image(path)
        for start in range(0, len(image_paths), PREDICT_BATCH):  # memory bounded however many files are named
            paths = image_paths[start:start + PREDICT_BATCH]
            inputs = np.stack([preprocessing.load(path, input_shape) for path in paths])
            classes, probabilities = classify.top_classes(model, inputs, top, device)
            for path, row, chances in zip(paths, classes, probabilities):
                _report(path, row, chances, labels, as_json)
    except (ValueError, ImportError, OSError) as error:
        raise click.ClickException(str(error))


def _report(path, row, chances, labels, as_json):
    named = [(int(k), labels[k] if labels and k < len(labels) else str(int(k)), float(p)) for k, p in zip(row, chances)]
    if as_json:
        click.echo(json.dumps({"image": path, "predictions": [
            {"class": k, "label": label, "probability": p} for k, label, p in named]}))
    else:
        click.echo(f"{path}: " + ", ".join(f"{label} {100 * p:.1f}%" for _, label, p in named))
