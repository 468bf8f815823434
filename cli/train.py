"""`nbconv train`: train a model on MNIST or Fashion-MNIST with a live progress bar and checkpoints."""
import gc
import os
import sys
import time

import click
from click.core import ParameterSource

from nbconv import checkpoint, distributed, files, jit_warmup, models, startup
from nbconv.checkpoint_checks import MAX_BATCH_SIZE, MAX_EPOCHS, check_config
from nbconv.data import describe
from nbconv.optim import DECAY_ON, SCHEDULES
from nbconv.train import (TrainConfig, TrainingDiverged, TrainingInterrupted, build_for_dataset,
                          check_batch_statistics, check_outputs, check_trainable, fit, make_optimizer)

from .common import (FiniteFloat, configure_cpu, data_dir_option, dataset_option, device_option, load_data,
                     load_data_in_background, resolve_device, seed_option, threads_option, usage_error_for)
from .evaluate import check_fits_data
from .interrupts import StopAtStepBoundary, one_line_on_interrupt
from .progress import EpochProgress

EXAMPLES = """
\b
MODEL is a name (lenet5, lenet1, lenet = lenet5), the lecture's pattern
INPUT -> [[CONV -> RELU]*n -> POOL]*m -> [FC -> RELU]*k -> FC as
'pattern:n=2,m=2,k=1[,width=16,fc=64]', or a spec string (see nbconv.models):
\b
  nbconv train lenet
  nbconv train lenet1 --epochs 3 --optimizer adam
  nbconv train pattern:n=2,m=2,k=1 --device cuda
  nbconv train "[[conv16k3p1,relu]*2,maxpool2]*2,[fc64,relu]*1,fc10"
  nbconv train "[conv32k3p1,relu,maxpool2]*3,fc10" --dataset cifar10 --nesterov
  nbconv train resnet20 --dataset cifar10
  nbconv train --resume runs/lenet5.npz --epochs 8
  mpiexec -n 4 nbconv train lenet       # 4 processes, one model; --batch-size stays the global batch
"""


def check_out(out):
    """An unwritable --out is reported before any work, not after the first epoch."""
    with usage_error_for("--out"):
        files.check_writable(out, "--out")


@click.command(epilog=EXAMPLES)
@click.argument("model", required=False)
@device_option
@click.option("--epochs", type=click.IntRange(1, MAX_EPOCHS), default=None, help="Total epochs (default 5).")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=64, show_default=True)
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Learning rate (default: 0.02 for sgd, 0.001 for adam).")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default="sgd", show_default=True)
@click.option("--momentum", type=FiniteFloat(0, 1), default=0.9, show_default=True, help="SGD momentum.")
@click.option("--weight-decay", type=FiniteFloat(min=0), default=5e-4, show_default=True)
@click.option("--decay-on", type=click.Choice(DECAY_ON), default="all", show_default=True,
              help="Weight decay on all parameters (as PyTorch), or only on weights: conv and fc weights, not "
                   "biases or batch-norm scales and shifts.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default="cosine", show_default=True,
              help="Learning-rate schedule over the epochs.")
@click.option("--nesterov", is_flag=True, help="Nesterov momentum (SGD).")
@click.option("--augment", type=click.IntRange(0, 8), default=None,
              help="Shift training images randomly by up to this many pixels, the same as a random crop of the "
                   "image padded by as many (0: none; default: MNIST 1, CIFAR 4, synthetic 0).")
@click.option("--flip/--no-flip", default=None,
              help="Mirror training images left to right at random (default: on for CIFAR).")
@seed_option
@data_dir_option
@dataset_option
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint file (default: runs/MODEL.npz, or the --resume file).")
@threads_option
@click.option("--resume", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Continue training from this checkpoint (its model, optimizer and history).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use only the first N training images.")
@click.option("--distributed", is_flag=True, default=False,
              help="Train data-parallel over MPI (implied when started by mpiexec with several processes).")
@one_line_on_interrupt("interrupted before training started; nothing saved")
def train(model, device, epochs, batch_size, lr, optimizer, momentum, weight_decay, decay_on, schedule, nesterov,
          augment, flip, seed, data_dir, dataset, out, threads, resume, limit, distributed):
    """Train MODEL, print a progress bar per epoch and a summary line, and save a checkpoint."""
    context, values = click.get_current_context(), locals()
    given = {name: values[name] for name in RUN_SETTINGS
             if context.get_parameter_source(name) not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)}
    world = connect_world(distributed)
    with world.guard():
        train_in(world, model, device, epochs, batch_size, lr, optimizer, momentum, weight_decay, decay_on, schedule,
                 nesterov, augment, flip, seed, data_dir, dataset, out, threads, resume, limit, given)


# The options that set up a run (TrainConfig's fields of the same names): a checkpoint's run keeps its own.
RUN_SETTINGS = ("batch_size", "lr", "optimizer", "momentum", "weight_decay", "decay_on", "schedule", "nesterov",
                "augment", "flip", "seed", "dataset")
# Defaults that TrainConfig derives from the dataset or the optimizer, dropped when those change
DERIVED = {"dataset": ("mean", "std", "augment", "flip", "class_names"), "optimizer": ("lr",)}


def _option_name(name):
    return "--" + name.replace("_", "-")


def resumed_config(resume, state, given):
    """The TrainConfig of `train --resume`: the checkpoint's own when it holds a run (epochs or a position
    inside one), where options given on the command line that differ from it are an error rather than
    ignored; for a checkpoint of a network nothing has trained yet (`nbconv import` writes them), the
    checkpoint's settings updated by the options given, which set up its first run."""
    config = TrainConfig(**state.config)
    if state.history or state.position:
        changed = {name: value for name, value in given.items() if value != getattr(config, name)}
        if changed:
            raise click.UsageError(
                f"{resume} continues a run with its own settings, which "
                + ", ".join(f"{_option_name(name)} {value!r}" for name, value in changed.items())
                + " would change (it has " + ", ".join(f"{name} {getattr(config, name)!r}" for name in changed)
                + "); start a new run to change them, or to go on from these weights with other settings: "
                "nbconv export CHECKPOINT NET.onnx, nbconv import NET.onnx --out NEW.npz, then "
                "nbconv train --resume NEW.npz with those options")
        return config
    settings = dict(state.config)
    for name, derived in DERIVED.items():
        if name in given and given[name] != getattr(config, name):
            for field in derived:
                if field not in given:
                    settings.pop(field, None)
    settings.update(given)
    config = TrainConfig(**settings)
    if config.nesterov and (config.optimizer != "sgd" or config.momentum <= 0):
        raise click.BadParameter("Nesterov momentum needs --optimizer sgd and --momentum > 0", param_hint="--nesterov")
    return config


def _same_model(model, state):
    """Whether the MODEL argument names the model a checkpoint holds: its name (or an alias of it) as trained,
    or its spec string."""
    def name(text):
        return models.ALIASES.get(str(text).lower(), str(text).lower())
    return name(model) == name(state.config.get("model", "")) or model.replace(" ", "") == \
        state.model.spec().replace(" ", "")


def connect_world(forced):
    """This process's nbconv.distributed world; under mpiexec, only rank 0 writes to stdout."""
    try:
        world = distributed.connect(force=forced)
    except (distributed.DistributedUnavailableError, ValueError) as error:  # ValueError: NBCONV_MPI_BALANCE, _OVERLAP
        raise click.ClickException(str(error))
    if not world.is_root:
        sys.stdout = open(os.devnull, "w")
    return world


def train_in(world, model, device, epochs, batch_size, lr, optimizer, momentum, weight_decay, decay_on, schedule,
             nesterov, augment, flip, seed, data_dir, dataset, out, threads, resume, limit, given=None):
    device = resolve_device(device)
    if device != "cpu":
        startup.resume_garbage_collector()  # for CUDA's compiles, which nbconv.startup's listener does not hear of
    if device == "cuda" and world.distributed:
        distributed.select_local_device(world)
    if threads is None and world.distributed and device == "cpu":
        import numba
        threads = max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 1) // world.local_size))  # shared
    configure_cpu(threads)
    helper, data = None, None
    if resume:
        try:
            state = checkpoint.load(resume)
        except checkpoint.CheckpointError as error:
            raise click.ClickException(str(error))
        if model is not None and not _same_model(model, state):
            raise click.UsageError(f"MODEL {model!r} is not the model {resume} holds "
                                   f"({state.config.get('model')!r}, {state.model.spec()}): leave MODEL out to "
                                   "resume it, or train a new run without --resume")
        config = resumed_config(resume, state, given or {})
        config.epochs = epochs or config.epochs
        net, history = state.model, state.history
        input_shape = state.input_shape
        out = out or resume
        if world.is_root:
            check_out(out)
        if len(history) >= config.epochs:
            raise click.ClickException(f"{resume} already holds {len(history)} epochs; ask for more with --epochs")
    else:
        if model is None:
            raise click.UsageError("give a MODEL to train (e.g. lenet) or --resume CHECKPOINT")
        if nesterov and (optimizer != "sgd" or momentum <= 0):
            raise click.BadParameter("Nesterov momentum needs --optimizer sgd and --momentum > 0",
                                     param_hint="--nesterov")
        config = TrainConfig(model=model, dataset=dataset, epochs=epochs or 5, batch_size=batch_size,
                             optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay,
                             schedule=schedule, augment=augment, seed=seed, nesterov=nesterov, flip=flip,
                             decay_on=decay_on)
        info = describe(config.dataset)
        input_shape = info.shape
        name = models.ALIASES.get(model.lower(), model.lower())
        out = out or os.path.join("runs", f"{name if name in models.MODELS else 'model'}.npz")
        if world.is_root:
            check_out(out)
            # the JIT helper (jit_warmup), forked before any thread starts when the cache is empty; else the data
            # first, and the exact check of the cache (its imports) while they load
            helper = jit_warmup.start(model, device, input_shape) if jit_warmup.cache_is_empty() else None
            data = load_data_in_background(config.dataset, data_dir, input_shape)  # the others load after rank 0,
            # which may have to download the data
            helper = helper or jit_warmup.start(model, device, input_shape)
        try:
            net = build_for_dataset(model, info, seed)
            check_trainable(net)
        except ValueError as error:
            jit_warmup.stop(helper)
            raise click.BadParameter(str(error), param_hint="MODEL")
        history = []
    try:
        if world.is_root:
            splits = data() if data else load_data(config.dataset, data_dir, input_shape)
        world.barrier()
        if not world.is_root:
            splits = load_data(config.dataset, data_dir, input_shape)
        if not resume:
            check_outputs(net, input_shape, len(config.class_names or splits.class_names), config.dataset)
    except ValueError as error:
        jit_warmup.stop(helper)
        raise click.ClickException(str(error))
    except BaseException:
        jit_warmup.stop(helper)
        raise
    if splits.class_names and not resume:
        config.class_names = list(splits.class_names)
    try:  # what the first checkpoint would refuse to hold fails now, not after an epoch
        check_config(config.as_dict(), out)
    except checkpoint.CheckpointError as error:
        jit_warmup.stop(helper)
        raise click.ClickException(f"{error}; nothing trained")
    jit_warmup.finish(helper, config, net)
    if limit:
        splits.train_images, splits.train_labels = splits.train_images[:limit], splits.train_labels[:limit]
    if resume:
        check_fits_data(state, splits, len(config.class_names or splits.class_names))
    position = state.position if resume else None
    if position and position["train_images"] != len(splits.train_images):
        raise click.ClickException(f"{resume} stopped inside epoch {position['epoch'] + 1} of a run over "
                                   f"{position['train_images']:,} training images; resume it with the same data "
                                   f"(here {len(splits.train_images):,}; see --limit)")
    try:
        check_batch_statistics(net, input_shape, len(splits.train_images), config.batch_size, world)
    except ValueError as error:
        raise click.ClickException(str(error))
    net.to(device)
    world.broadcast_parameters(net)
    opt = make_optimizer(config, net.parameters())
    if resume and state.optimizer_state and (history or state.position or
                                             state.optimizer_state.get("type") == type(opt).__name__):
        opt.load_state_dict(state.optimizer_state)  # (of another type only where nothing has trained yet)
    click.echo(f"training {config.model} ({net.spec()}) on {device}: {len(splits.train_images):,} training and "
               f"{len(splits.test_images):,} test images from {splits.source}; {config.optimizer} lr {config.lr:g}, "
               f"batch {config.batch_size}, {config.schedule} schedule, {config.epochs} epochs"
               + (f"; {world.describe()}" if world.distributed else ""))
    if world.distributed:
        roster = world.roster()  # every process takes part
        click.echo(f"processes: {roster}" if world.size <= 32 else f"processes: {roster[:2000]}...")

    finished = {"history": list(history)}  # the complete epochs, for the messages on Ctrl-C or divergence

    def save(history_so_far, position=None):
        finished["history"] = list(history_so_far)
        if world.is_root:
            checkpoint.save(out, net, input_shape, opt, config.as_dict(), finished["history"], position)

    def kept():
        if finished["history"] and os.path.exists(out):
            return f"{out} keeps the last good checkpoint ({len(finished['history'])} complete epochs)"
        return "no checkpoint written" + (f" ({out} left as it was)" if os.path.exists(out) else "")

    # Everything alive now (Numba's compiled-function objects, the dataset) lives to the end: kept out of the
    # garbage collector's full passes during training, and out of the final one at exit (0.2 s).
    gc.freeze()
    startup.resume_garbage_collector()  # paused since the process started, when run as `nbconv train`
    started = time.perf_counter()
    progress = EpochProgress(config.epochs) if world.is_root else None
    try:
        # Ctrl-C: finish the step, save, exit (under MPI every process stops after the same step)
        with StopAtStepBoundary() as local_stop, world.interrupt_flag():
            stop_requested = world.stop_requested if world.distributed else local_stop
            try:
                history = fit(net, opt, splits, config, device, history, on_epoch_end=save, echo=click.echo,
                              progress=progress, world=world, position=position, stop_requested=stop_requested)
            finally:
                if progress is not None:
                    progress.close()  # an interrupted epoch's bar, before the messages below
    except TrainingInterrupted as interruption:
        where = interruption.position
        try:
            save(finished["history"], where)
        except checkpoint.NonFiniteWeights as error:
            raise click.ClickException(f"interrupted, and the weights are not finite: {error}; {kept()}")
        except KeyboardInterrupt:  # another Ctrl-C while saving: the write is abandoned whole
            click.echo(f"\ninterrupted again while saving: nothing saved; {kept()}", err=True)
            sys.exit(130)
        if world.is_root:
            inside = f"step {where['step']} of epoch {where['epoch'] + 1}, " if where else ""
            click.echo(f"\ninterrupted: checkpoint saved to {out} ({inside}{len(finished['history'])} complete "
                       f"epochs); continue with: nbconv train --resume {out}", err=True)
        sys.exit(local_stop.exit_status)
    except KeyboardInterrupt:  # a second Ctrl-C: the state may be mid-step, so nothing is saved
        click.echo(f"\ninterrupted mid-step: nothing saved; {kept()}", err=True)
        sys.exit(130)
    except (TrainingDiverged, checkpoint.NonFiniteWeights) as error:
        raise click.ClickException(f"{error}; {kept()}")
    final = history[-1]
    click.echo(f"done in {time.perf_counter() - started:.1f} s: test accuracy {100 * final['test_accuracy']:.2f}% "
               f"after {final['epoch']} epochs; checkpoint {out}")
