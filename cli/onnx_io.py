"""`nbconv export` and `nbconv import`: checkpoints to and from ONNX files."""
import click

from nbconv import checkpoint, files

from .common import usage_error_for


def _onnx():
    try:
        from nbconv import onnx
        onnx.export.require_onnx()
    except ImportError as error:
        raise click.ClickException(str(error))
    return onnx


def _check_out(out, description, source, what):
    """A usage error when the file to write is the one read."""
    with usage_error_for(what):
        files.check_not_read(out, [(description, source)], what)


@click.command(name="export")
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", metavar="OUT.onnx", type=click.Path(dir_okay=False, writable=True))
@click.option("--opset", type=click.IntRange(17), default=17, show_default=True, help="ONNX opset version.")
def export(checkpoint_path, out, opset):
    """Write the model of CHECKPOINT as an ONNX graph (needs the onnx extra: pip install "nbconv[onnx]")."""
    _check_out(out, "checkpoint", checkpoint_path, "OUT.onnx")
    onnx = _onnx()
    try:
        state = checkpoint.load(checkpoint_path)
        config = state.config or {}  # so that predict on the file normalises as on the checkpoint
        onnx.save(state.model, out, state.input_shape, opset=opset,
                  preprocessing={key: config.get(key) for key in onnx.PREPROCESSING_KEYS})
    except (ValueError, OSError) as error:
        raise click.ClickException(str(error))
    click.echo(f"{out}: {state.model.spec()} for input {'x'.join(map(str, state.input_shape))}, opset {opset}")


@click.command(name="import")
@click.argument("onnx_path", metavar="IN.onnx", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False, writable=True),
              help="Checkpoint (.npz) to write.")
def import_(onnx_path, out):
    """Turn the convolutional network in IN.onnx into an nbconv checkpoint (needs the onnx extra)."""
    _check_out(out, "ONNX file", onnx_path, "--out")
    onnx = _onnx()
    try:
        model = onnx.load(onnx_path)
        checkpoint.save(out, model, model.input_shape, config=dict(model.preprocessing))
    except (ValueError, OSError) as error:
        raise click.ClickException(str(error))
    click.echo(f"{out}: {model.spec()} for input {'x'.join(map(str, model.input_shape))}")
