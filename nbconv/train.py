"""The training loop: batches, forward, fused loss, backward, optimizer step; evaluation; progress."""
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import backend
from . import functional as F
from . import nn
from .data.batch import channel_constants, shifted_batch
from .distributed import SINGLE, shard_bounds
from .optim import OPTIMIZERS, make_schedule

DEFAULT_LR = {"sgd": 0.02, "adam": 1e-3}


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite."""


class TrainingInterrupted(Exception):
    """Training stopped between two steps because stop_requested() said so. .position is where, for a
    checkpoint to resume from exactly (see train_epoch), or None when it stopped after a complete epoch."""

    def __init__(self, position):
        super().__init__("training interrupted")
        self.position = position


def non_finite_parameters(model):
    """The names of the model's parameters that hold a NaN or an infinity (one pass over each, on the host)."""
    return [name for name, parameter in model.named_parameters().items()
            if not np.isfinite(backend.to_host(parameter.value)).all()]


@dataclass
class TrainConfig:
    """What a run trains on and how. Fields left None take the dataset's defaults (nbconv.data.describe):
    mean/std (per channel, of pixel/255; a number for one-channel datasets), augment (random shift in
    pixels: MNIST 1, CIFAR 4, the standard random crop of the image padded by 4), flip (random horizontal
    flip: CIFAR), class_names."""
    model: str = "lenet5"
    dataset: str = "mnist"
    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    augment: int = None  # MNIST: shifts of up to 1 pixel: 99.17-99.23% on 3 seeds, against 98.98-99.11% without
    seed: int = 0
    mean: object = field(default=None)
    std: object = field(default=None)
    nesterov: bool = False
    flip: bool = None
    class_names: list = None
    decay_on: str = "all"  # weight decay on "all" parameters, or only on "weights" (not biases, batch-norm)

    def __post_init__(self):
        from .data import describe
        if self.lr is None:
            self.lr = DEFAULT_LR[self.optimizer]
        try:
            info = describe(self.dataset)
        except ValueError:
            info = None
        if info is None:
            defaults = (0.5, 0.5, 0, False, None)
        else:
            one = len(info.mean) == 1  # one channel: plain numbers, as checkpoints always held them
            defaults = (info.mean[0] if one else list(info.mean), info.std[0] if one else list(info.std),
                        info.augment, info.flip, list(info.class_names))
        for name, default in zip(("mean", "std", "augment", "flip", "class_names"), defaults):
            if getattr(self, name) is None:
                setattr(self, name, default)

    def as_dict(self):
        return asdict(self)


def make_optimizer(config, parameters):
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {config.optimizer!r}")
    if config.optimizer == "sgd":
        return OPTIMIZERS["sgd"](parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                                 nesterov=config.nesterov, decay_on=config.decay_on)
    return OPTIMIZERS["adam"](parameters, lr=config.lr, weight_decay=config.weight_decay, decay_on=config.decay_on)


def build_for_dataset(spec, info, seed=0):
    """models.build for a dataset (an nbconv.data.describe result): its input shape, and its class count
    for the named architectures that take one."""
    import inspect

    from . import models
    options = {"num_classes": info.num_classes} if "num_classes" in inspect.signature(models.build).parameters else {}
    return models.build(spec, input_shape=tuple(info.shape), seed=seed, **options)


def check_settings(config):
    """ValueError naming the field unless every TrainConfig field holds a value a run takes and its checkpoint
    may hold (nbconv.checkpoint_checks' rules: batch_size, epochs, augment, ... in their ranges)."""
    from .checkpoint_checks import CheckpointError, check_config
    try:
        check_config(config.as_dict(), "TrainConfig")
    except CheckpointError as error:
        raise ValueError(str(error).removeprefix("TrainConfig: ")) from None


def check_trainable(model):
    """ValueError unless the model has parameters to train (and a checkpoint to hold them)."""
    if not model.parameters():
        raise ValueError(f"the model {model.spec()!r} has no parameters, so there is nothing to train: add a layer "
                         "with weights (conv, local or fc)")


def check_outputs(model, input_shape, classes, dataset):
    """ValueError unless the model gives one score per class of the dataset for inputs of input_shape."""
    dtype = model.parameters()[0].value.dtype if model.parameters() else np.float32
    model.eval()
    outputs = backend.to_host(model.forward(np.zeros((1,) + tuple(input_shape), dtype))).shape
    if len(outputs) != 2 or outputs[1] != classes:
        raise ValueError(f"the model's output is {'x'.join(map(str, outputs[1:]))} per image, {dataset} has "
                         f"{classes} classes: end the model with fc{classes}")


def normalize(images, mean, std, dtype=np.float32):
    """uint8 images (N, C, H, W) (or (N, H, W): C = 1) -> (N, C, H, W) floats, (pixel/255 - mean) / std per
    channel (mean, std: numbers or one per channel)."""
    if images.ndim == 3:
        images = images.reshape(images.shape[0], 1, images.shape[1], images.shape[2])
    scale, shift = channel_constants(mean, std, images.shape[1], dtype)
    return images.astype(dtype) * scale[:, None, None] - shift[:, None, None]


def shift_augment(images, max_shift, rng):
    """Each uint8 image (N, H, W) or (N, C, H, W) moved by a random whole-pixel offset in [-max_shift,
    max_shift] per axis, zero-filled where it moves in from outside."""
    N, H, W = images.shape[0], images.shape[-2], images.shape[-1]
    padded = np.zeros(images.shape[:-2] + (H + 2 * max_shift, W + 2 * max_shift), images.dtype)
    padded[..., max_shift:max_shift + H, max_shift:max_shift + W] = images
    offsets = rng.integers(0, 2 * max_shift + 1, (N, 2))
    shifted = np.empty_like(images)
    for dy in range(2 * max_shift + 1):  # one slice copy per offset: 3x faster than a gather per pixel
        for dx in range(2 * max_shift + 1):
            chosen = (offsets[:, 0] == dy) & (offsets[:, 1] == dx)
            shifted[chosen] = padded[chosen, ..., dy:dy + H, dx:dx + W]
    return shifted


def predict(model, images, mean, std, device="cpu", batch_size=256):
    """Class predictions (N,) for uint8 images, in eval mode. Batches near the training batch size reuse the
    training step's workspaces, warm in cache (on LeNet-5 on the CPU, the test pass after an epoch took 1.8x
    as long in batches of 1000)."""
    model.eval()
    predictions = np.empty(len(images), dtype=np.int64)
    dtype = model.parameters()[0].value.dtype.type
    for start in range(0, len(images), batch_size):
        batch = backend.transfer(normalize(images[start:start + batch_size], mean, std, dtype), device)
        predictions[start:start + batch_size] = backend.to_host(nn.infer(model, batch)).argmax(axis=1)
    return predictions


def confusion_matrix(labels, predictions, classes=10):
    """matrix[true, predicted] counts."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


class StepLoss:
    """The training step's loss for one epoch's labels: (mean softmax cross-entropy, grad_logits, hits) of a
    batch of logits against the labels at positions `mine`. The labels are checked once (integers, their
    range), so that a step on host arrays only allocates and calls the fused kernel (about 30 us less a step
    than nbconv.functional's checks of every call); anything else (device arrays, labels outside the
    logits' classes) takes nbconv.functional.softmax_cross_entropy, with its checks and errors. Both paths
    give the same bits: the same kernel, and losses.sum() / N is numpy's mean."""

    def __init__(self, labels):
        self.labels = labels
        usable = type(labels) is np.ndarray and labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer)
        self.host_labels = np.ascontiguousarray(labels, np.int64) if usable else None
        self.low, self.high = (int(labels.min()), int(labels.max())) if usable and len(labels) else (0, -1)

    def __call__(self, logits, mine, device="cpu"):
        N = len(mine)
        if (self.host_labels is not None and type(logits) is np.ndarray and logits.ndim == 2
                and logits.dtype in (np.float32, np.float64) and logits.flags.c_contiguous
                and logits.shape[0] == N and self.low >= 0 and self.high < logits.shape[1]):
            batch_labels = self.host_labels[mine]
            losses = np.empty(N, logits.dtype)
            grad_logits = np.empty_like(logits)
            backend.kernels("cpu").softmax_cross_entropy(logits, batch_labels, losses, grad_logits)
            return float(losses.sum() / N), grad_logits, int(np.count_nonzero(logits.argmax(axis=1) == batch_labels))
        batch_labels = self.labels[mine]
        loss, grad_logits = F.softmax_cross_entropy(logits, backend.transfer(batch_labels, device))
        return loss, grad_logits, int((backend.to_host(logits).argmax(axis=1) == batch_labels).sum())


def train_epoch(model, optimizer, images, labels, config, epoch, device="cpu", progress=None, schedule=None,
                world=SINGLE, on_step=None, position=None, stop_requested=None):
    """One pass over the shuffled training set. Returns {'loss', 'accuracy', 'images_per_s', 'seconds'}.

    With a schedule, the learning rate is set before every step from the fractional epoch. The data order
    and augmentation come from a generator seeded by (config.seed, epoch). With a distributed world
    (nbconv.distributed), this process trains on its shard of every global batch of config.batch_size and
    the gradients, loss and accuracy are summed over the processes. on_step(step, loss) sees each step's
    global-batch loss. position: this epoch's state when an earlier run was interrupted in it ({'epoch',
    'step', 'train_images', 'loss_sum', 'correct', 'seen', 'seconds'}): its first `step` steps are skipped
    (their random draws replayed), so the epoch ends as it would have without the interruption.
    stop_requested(), when given, is asked after every step but the last; when it answers true,
    TrainingInterrupted carries this epoch's position. progress(epoch, steps_done, steps, status), when
    given, hears where the epoch stands: once before the first step it runs, then after every step, with
    a status line of the running loss, accuracy and speed (the CLI draws its progress bar from it).
    """
    model.train()
    rng = np.random.default_rng([config.seed, epoch])
    order = rng.permutation(len(images))
    batches = range(0, len(images), config.batch_size)
    dtype = model.parameters()[0].value.dtype.type
    done = position or {"step": 0, "loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
    if position is not None and (position["epoch"] != epoch or position["train_images"] != len(images)):
        raise ValueError(f"the interrupted epoch {position['epoch'] + 1} ran over {position['train_images']:,} "
                         f"training images; resuming it needs the same ones, got epoch {epoch + 1} over "
                         f"{len(images):,}")
    total_loss, correct, seen = done["loss_sum"], done["correct"], done["seen"]
    started = time.perf_counter() - done["seconds"]
    step_loss = StepLoss(labels)
    if progress is not None:
        progress(epoch, done["step"], len(batches), "")
    for step, start in enumerate(batches):
        chosen = order[start:start + config.batch_size]
        shifts = (rng.integers(0, 2 * config.augment + 1, (len(chosen), 2)) if config.augment
                  else np.zeros((len(chosen), 2), np.int64))  # the draws shift_augment would make
        flips = rng.integers(0, 2, len(chosen)).astype(bool) if config.flip else None
        if step < done["step"]:
            continue  # done before an interruption (its random draws replayed above)
        if schedule is not None:
            schedule.set_epoch(epoch + start / len(images))
        mine, shifts = world.shard(chosen), world.shard(shifts)  # this process's part of the global batch
        flips = None if flips is None else world.shard(flips)
        loss, grad_logits, hits = 0.0, None, 0
        if len(mine):
            batch = backend.transfer(shifted_batch(images, mine, shifts, config.augment, config.mean, config.std,
                                                   dtype, flips), device)
            loss, grad_logits, hits = step_loss(model.forward(batch), mine, device)
        world.backward(model, grad_logits, len(mine), len(chosen), totals=(loss * len(mine), hits))
        loss_sum, hits = world.step_totals(loss * len(mine), hits)  # reduced with the gradients
        loss = loss_sum / len(chosen)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"the loss became {loss} at epoch {epoch + 1}, step {step + 1}; "
                                   f"training stopped (try a lower --lr than {config.lr:g})")
        optimizer.step()
        if on_step is not None:
            on_step(step, loss)
        total_loss += loss_sum
        correct += hits
        seen += len(chosen)
        rate = seen / max(time.perf_counter() - started, 1e-9)
        if progress is not None:
            progress(epoch, step + 1, len(batches),
                     f"loss {total_loss / seen:.4f} acc {100 * correct / seen:.2f}% {rate:,.0f} img/s")
        if stop_requested is not None and step + 1 < len(batches) and stop_requested():
            raise TrainingInterrupted({"epoch": epoch, "step": step + 1, "train_images": len(images),
                                       "loss_sum": float(total_loss), "correct": int(correct), "seen": seen,
                                       "seconds": time.perf_counter() - started})
    seconds = time.perf_counter() - started
    return {"loss": total_loss / seen, "accuracy": correct / seen, "images_per_s": seen / seconds,
            "seconds": seconds}


def check_batch_statistics(model, input_shape, train_count, batch_size, world=SINGLE):
    """ValueError, before any step, when a batch normalization that sees one value per channel of each
    sample (BatchNorm1d on (N, C), or on 1x1 maps) would get a batch of one sample in training: the last
    batch of an epoch (train_count % batch_size), or this process's share of a batch, holding one image."""
    from .nn.norm import _BatchNorm
    single = []
    try:
        model.trace(tuple(input_shape), lambda path, layer, shape, _: single.append(path) if isinstance(
            layer, _BatchNorm) and int(np.prod(shape[1:], dtype=np.int64)) == 1 else None)
    except ValueError:
        return  # a model its shapes alone cannot describe: the step itself will say what does not fit
    if not single:
        return
    sizes = {min(batch_size, train_count), train_count % batch_size} - {0}
    for size in sorted(sizes):  # every process's share, so that every process decides alike
        if any(stop - start == 1 for start, stop in (shard_bounds(size, rank, world.size)
                                                     for rank in range(world.size))):
            where = f"the last batch of each epoch holds 1 of the {train_count:,} training images" if size == 1 \
                else f"a process's share of a batch of {size} holds 1 image"
            raise ValueError(f"layer {single[0]} normalises one value per channel of each image, and its batch "
                             f"statistics need two, but {where} (batch size {batch_size}): choose another batch "
                             "size or number of training images")


def fit(model, optimizer, splits, config, device="cpu", history=None, on_epoch_end=None, echo=print,
        progress=None, world=SINGLE, position=None, stop_requested=None):
    """Train for config.epochs epochs (continuing after len(history) finished ones); return the history.
    With a distributed world, training and the test pass are sharded over its processes.

    Each history entry: epoch, lr, loss, accuracy (train), test_accuracy, seconds, images_per_s.
    on_epoch_end(history) runs after each epoch (the CLI saves a checkpoint there), once the parameters
    are checked to be finite (TrainingDiverged otherwise). position: where an interrupted epoch stopped
    (see train_epoch). stop_requested(): asked after every step and epoch; when true, training stops with
    TrainingInterrupted, between two steps, where model and optimizer are consistent. echo(line) prints each
    epoch's summary; progress: see train_epoch.
    """
    history = list(history or [])
    check_trainable(model)
    check_settings(config)
    image_shape = tuple(splits.train_images.shape[1:])  # (C, H, W), or (H, W) for one channel
    check_batch_statistics(model, image_shape if len(image_shape) == 3 else (1,) + image_shape,
                           len(splits.train_images), config.batch_size, world)
    schedule = make_schedule(config.schedule, optimizer, config.epochs)
    schedule.base_lr = config.lr
    for epoch in range(len(history), config.epochs):
        lr = schedule.set_epoch(epoch)
        stats = train_epoch(model, optimizer, splits.train_images, splits.train_labels, config, epoch, device,
                            progress, schedule, world=world, position=position, stop_requested=stop_requested)
        position = None  # only the first epoch run here can be an interrupted one
        bad = non_finite_parameters(model)
        if bad:  # relu(NaN) is 0: a finite loss does not prove finite weights
            raise TrainingDiverged(f"the weights became NaN or infinite during epoch {epoch + 1} "
                                   f"({', '.join(bad[:3])}); training stopped (try a lower --lr than {config.lr:g})")
        world.average_running_statistics(model)
        predictions = predict(model, world.shard(splits.test_images), config.mean, config.std, device)
        test_accuracy = world.sum(int((predictions == world.shard(splits.test_labels)).sum())) / len(splits.test_labels)
        entry = {"epoch": epoch + 1, "lr": lr, **stats, "test_accuracy": test_accuracy}
        history.append(entry)
        echo(f"epoch {epoch + 1}/{config.epochs}  loss {stats['loss']:.4f}  train acc {100 * stats['accuracy']:.2f}%  "
             f"test acc {100 * test_accuracy:.2f}%  lr {lr:.4g}  {stats['seconds']:.1f} s "
             f"({stats['images_per_s']:,.0f} img/s)")
        if on_epoch_end is not None:
            on_epoch_end(history)
        if stop_requested is not None and epoch + 1 < config.epochs and stop_requested():
            raise TrainingInterrupted(None)
    return history
