"""`nbconv eval`: test accuracy and confusion matrix of a checkpoint."""
import json

import click

import numpy as np

from nbconv import backend, checkpoint
from nbconv.train import TrainConfig, confusion_matrix, predict

from .common import data_dir_option, device_option, load_data, resolve_device


def check_fits_data(state, splits):
    """A clear error unless the checkpoint's model takes the dataset's images and scores all its classes."""
    image_shape = splits.test_images.shape[1:]
    image_shape = tuple(image_shape) if len(image_shape) == 3 else (1,) + tuple(image_shape)
    if tuple(state.input_shape) != image_shape:
        raise click.ClickException(f"{state.path}: the model takes inputs of shape {tuple(state.input_shape)}, "
                                   f"but the dataset's images are {image_shape}")
    classes = int(max(splits.train_labels.max(initial=0), splits.test_labels.max(initial=0))) + 1
    state.model.eval()
    scores = state.model.forward(np.zeros((1,) + image_shape, state.model.parameters()[0].value.dtype))
    if scores.ndim != 2 or scores.shape[1] < classes:
        raise click.ClickException(f"{state.path}: the model's output has shape {scores.shape[1:]} per image; "
                                   f"scoring {classes} classes needs ({classes},)")


@click.command(name="eval")
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(exists=True, dir_okay=False))
@data_dir_option
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (accuracy, n, confusion_matrix, ...).")
def evaluate(checkpoint_path, data_dir, device, as_json):
    """Evaluate CHECKPOINT on its dataset's test set: accuracy and confusion matrix."""
    device = resolve_device(device)
    try:
        state = checkpoint.load(checkpoint_path)
    except ValueError as error:
        raise click.ClickException(str(error))
    config = TrainConfig(**state.config) if state.config else TrainConfig()
    splits = load_data(config.dataset, data_dir)
    check_fits_data(state, splits)
    model = state.model.to(device)
    predictions = predict(model, splits.test_images, config.mean, config.std, device)
    matrix = confusion_matrix(splits.test_labels, predictions, classes=int(backend.to_host(
        model.parameters()[-1].value).shape[0]))
    correct = int((predictions == splits.test_labels).sum())
    n = len(predictions)
    if as_json:
        click.echo(json.dumps({"accuracy": correct / n, "n": n, "correct": correct, "dataset": config.dataset,
                               "source": splits.source, "checkpoint": checkpoint_path, "device": device,
                               "confusion_matrix": matrix.tolist()}))
        return
    click.echo(f"{checkpoint_path}: test accuracy {100 * correct / n:.2f}% ({correct:,}/{n:,}) on {config.dataset} "
               f"from {splits.source}")
    click.echo("confusion matrix (rows: true class, columns: predicted)")
    click.echo("      " + "".join(f"{k:>6}" for k in range(matrix.shape[1])))
    for k, row in enumerate(matrix):
        click.echo(f"{k:>6}" + "".join(f"{v:>6}" for v in row))
