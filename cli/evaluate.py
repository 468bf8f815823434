"""`nbconv eval`: test accuracy and confusion matrix of a checkpoint."""
import json

import click

from nbconv import checkpoint
from nbconv.train import TrainConfig, check_outputs, confusion_matrix, predict

from .common import data_dir_option, device_option, load_data, resolve_device


def check_fits_data(state, splits, classes):
    """A clear error unless the checkpoint's model takes the dataset's images and gives one score for each of
    its `classes` classes."""
    image_shape = tuple(splits.test_images.shape[1:])
    if tuple(state.input_shape) != image_shape:
        raise click.ClickException(f"{state.path}: the model takes inputs of shape {tuple(state.input_shape)}, "
                                   f"but the dataset's images are {image_shape}")
    try:
        check_outputs(state.model, state.input_shape, classes, state.config.get("dataset", "the dataset"))
    except ValueError as error:
        raise click.ClickException(f"{state.path}: {error}")


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
    splits = load_data(config.dataset, data_dir, state.input_shape)
    names = list(config.class_names or splits.class_names)
    check_fits_data(state, splits, len(names))
    model = state.model.to(device)
    predictions = predict(model, splits.test_images, config.mean, config.std, device)
    matrix = confusion_matrix(splits.test_labels, predictions, classes=len(names))
    correct = int((predictions == splits.test_labels).sum())
    n = len(predictions)
    if as_json:
        click.echo(json.dumps({"accuracy": correct / n, "n": n, "correct": correct, "dataset": config.dataset,
                               "source": splits.source, "checkpoint": checkpoint_path, "device": device,
                               "classes": [str(name) for name in names], "confusion_matrix": matrix.tolist()}))
        return
    click.echo(f"{checkpoint_path}: test accuracy {100 * correct / n:.2f}% ({correct:,}/{n:,}) on {config.dataset} "
               f"from {splits.source}")
    if [str(name) for name in names] != [str(k) for k in range(len(names))]:
        click.echo("classes: " + ", ".join(f"{k} {name}" for k, name in enumerate(names)))
    click.echo("confusion matrix (rows: true class, columns: predicted)")
    click.echo("      " + "".join(f"{k:>6}" for k in range(matrix.shape[1])))
    for k, row in enumerate(matrix):
        click.echo(f"{k:>6}" + "".join(f"{v:>6}" for v in row))
