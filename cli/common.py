"""Options and helpers shared by the sub-commands."""
import contextlib
import math
import threading

import click

from nbconv import backend
from nbconv.host_memory import keep_freed_host_memory

device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
                             help="Backend (default: $NBCONV_DEVICE, else auto: CUDA when usable, else CPU).")
data_dir_option = click.option("--data-dir", type=click.Path(exists=True, file_okay=False), default=None,
                               help="Existing directory holding the dataset's files (default: $NBCONV_DATA_DIR, "
                                    "then the per-user cache, downloading when missing).")
threads_option = click.option("--threads", type=click.IntRange(1), default=None,
                              help="CPU threads for the kernels (default: all cores).")


@contextlib.contextmanager
def usage_error_for(option):
    """Within: a ValueError naming `option` at its start ("--out: ...", as nbconv.files' checks write) is a
    usage error for that option."""
    try:
        yield
    except ValueError as error:
        raise click.BadParameter(str(error).removeprefix(f"{option}: "), param_hint=option) from None


def resolve_device(device):
    try:
        return backend.resolve(device)
    except (backend.CudaUnavailableError, ValueError) as error:
        raise click.ClickException(str(error))


def configure_cpu(threads):
    """For the long-running commands: apply --threads and keep freed host memory for reuse."""
    keep_freed_host_memory()
    if threads is None:
        return
    import numba
    if threads > numba.config.NUMBA_NUM_THREADS:
        raise click.BadParameter(f"at most {numba.config.NUMBA_NUM_THREADS} threads here", param_hint="--threads")
    numba.set_num_threads(threads)


class DatasetName(click.ParamType):
    """mnist, fashion-mnist, cifar10, cifar100 or synthetic:CxHxW:K[:TRAIN[:TEST]]."""
    name = "DATASET"

    def convert(self, value, param, ctx):
        from nbconv.data import describe
        try:
            return describe(value).name
        except ValueError as error:
            self.fail(str(error), param, ctx)


dataset_option = click.option(
    "--dataset", type=DatasetName(), default="mnist", show_default=True,
    help="mnist, fashion-mnist, cifar10, cifar100, or synthetic:CxHxW:CLASSES[:TRAIN[:TEST]] "
         "(e.g. synthetic:3x32x32:10).")


def load_data(dataset, data_dir, input_shape=None):
    """The dataset's Splits, or a one-line error: missing, damaged, or (input_shape (C, H, W) given) of
    images another size than a model's input."""
    from nbconv import data
    try:
        splits = data.load(dataset, data_dir, echo=click.echo)
    except (data.DataUnavailableError, data.DataFileError, ValueError) as error:
        raise click.ClickException(str(error))
    found = tuple(splits.train_images.shape[1:])
    if input_shape is not None and found != tuple(input_shape):
        raise click.ClickException(f"{dataset} images are {'x'.join(map(str, found))}, the model takes "
                                   f"{'x'.join(map(str, input_shape))}")
    return splits


def load_data_in_background(dataset, data_dir, input_shape=None):
    """Start load_data on a daemon thread (decompressing the IDX files releases the GIL, so it overlaps
    with building the model); returns a function that waits for the data and returns it, or raises."""
    outcome = {}

    def work():
        try:
            outcome["splits"] = load_data(dataset, data_dir, input_shape)
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = error

    thread = threading.Thread(target=work, name="nbconv-data", daemon=True)
    thread.start()

    def wait():
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["splits"]
    return wait


class FiniteFloat(click.FloatRange):
    """click.FloatRange that also rejects nan and inf (which pass a range check, comparing false)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


seed_option = click.option("--seed", type=click.IntRange(0, 2 ** 63 - 1), default=0, show_default=True,
                           help="Random seed (a non-negative integer).")
