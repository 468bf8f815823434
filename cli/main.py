"""Entry point of the `nbconv` command: a click group that gathers the sub-commands."""
import click

from nbconv import __version__

from .bench import bench
from .evaluate import evaluate
from .info import info
from .onnx_io import export, import_
from .plan import plan_command
from .predict import predict
from .summary import summary_command
from .train import train
from .visualize import visualize


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nbconv")
def app():
    """nbconv: convolutional networks with kernels compiled by Numba, for the CPU and NVIDIA GPUs."""


app.add_command(info)
app.add_command(bench)
app.add_command(train)
app.add_command(evaluate)
app.add_command(visualize)
app.add_command(summary_command)
app.add_command(export)
app.add_command(import_)
app.add_command(predict)
app.add_command(plan_command)


def main():
    from nbconv.startup import skip_numba_scipy_blas
    skip_numba_scipy_blas()  # the app runs only nbconv's kernels: 0.3 s less at start
    app()
