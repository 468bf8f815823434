"""Checks of a checkpoint's JSON parts (training config, history, optimizer scalars, position inside an
epoch), which come from a file and so are untrusted: each returns the value when it is what nbconv writes,
and otherwise raises CheckpointError naming the key and what was expected."""
import dataclasses
import math
import numbers

MAX_EPOCHS = 1_000_000
MAX_BATCH_SIZE = 1 << 20
MAX_STEPS = 2 ** 53  # optimizer step counts stay exact in a float64 and fit the kernels' int64


class CheckpointError(ValueError):
    """A file that is not a valid nbconv checkpoint, or one that does not fit its own model."""


def is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value):
    """A finite real number (JSON integers too large for a float are not)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    if isinstance(value, numbers.Integral):
        return abs(value) < 2 ** 1023
    return math.isfinite(value)


def _int_in(low, high):
    def check(value):
        return is_int(value) and low <= value <= high, f"an integer in [{low}, {high}]"
    return check


def _number(low=-math.inf, high=math.inf, low_open=False):
    def check(value):
        ok = is_number(value) and (value > low if low_open else value >= low) and value <= high
        bounds = f"{'>' if low_open else '>='} {low:g}" if low != -math.inf else ""
        bounds += (" and " if bounds else "") + f"<= {high:g}" if high != math.inf else ""
        return ok, f"a finite number {bounds}".strip()
    return check


def _one_of(choices):
    def check(value):
        return isinstance(value, str) and value in choices, f"one of {', '.join(sorted(choices))}"
    return check


def _numbers(low=-math.inf, low_open=False, most=16):
    """A finite number, or a list of 1 to `most` of them (per-channel values)."""
    one = _number(low, low_open=low_open)

    def check(value):
        items = value if isinstance(value, list) and 0 < len(value) <= most else [value]
        ok = all(one(item)[0] for item in items)
        return ok, one(0)[1] + f" (or a list of 1 to {most} such numbers)"
    return check


def _dataset(value):
    """A dataset name nbconv.data knows (its describe() accepts also parameterised names, where it has one)."""
    from . import data
    describe = getattr(data, "describe", None)
    ok = isinstance(value, str) and len(value) <= 1024
    if ok and describe is not None:
        try:
            describe(value)
        except (ValueError, TypeError):
            ok = False
    elif ok:
        ok = value in data.DATASETS
    return ok, f"a dataset nbconv knows ({', '.join(data.DATASETS)}, ...)"


def _text(max_length=1 << 16):
    def check(value):
        return isinstance(value, str) and 0 < len(value) <= max_length, f"a string of 1 to {max_length} characters"
    return check


def config_rules():
    """The rule for each training setting nbconv knows; settings added later are checked by their type."""
    from .data.synthetic import MAX_CHANNELS
    from .optim import OPTIMIZERS, SCHEDULES
    return {"model": _text(), "dataset": _dataset, "epochs": _int_in(1, MAX_EPOCHS),
            "batch_size": _int_in(1, MAX_BATCH_SIZE), "optimizer": _one_of(set(OPTIMIZERS)),
            "lr": _number(0, low_open=True), "momentum": _number(0, 1), "weight_decay": _number(0),
            "schedule": _one_of(set(SCHEDULES)), "augment": _int_in(0, 8), "seed": _int_in(0, 2 ** 63 - 1),
            "mean": _numbers(most=MAX_CHANNELS), "std": _numbers(0, low_open=True, most=MAX_CHANNELS)}


_BY_TYPE = {int: _int_in(-(2 ** 63), 2 ** 63 - 1), float: _number(), str: _text(), bool: lambda v: (
    isinstance(v, bool), "true or false")}


def check_config(config, path):
    """A checkpoint's training config: a JSON object whose keys are TrainConfig fields with valid values."""
    from .train import TrainConfig
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: 'config' must be a JSON object, got {type(config).__name__}")
    fields = {field.name: field.type for field in dataclasses.fields(TrainConfig)}
    rules = config_rules()
    for key, value in config.items():
        if key not in fields:
            raise CheckpointError(f"{path}: unknown config key {key!r}; known keys: {', '.join(fields)}")
        rule = rules.get(key) or _BY_TYPE.get(fields[key])
        if rule is None:
            items = value if isinstance(value, list) and len(value) <= 1000 else [value]
            ok, expected = all(_is_scalar(item) for item in items), "a JSON scalar or a short list of them"
        else:
            ok, expected = rule(value)
        if not ok:
            raise CheckpointError(f"{path}: config {key!r} must be {expected}, got {value!r:.80}")
    return config


def _is_scalar(value):
    return isinstance(value, (str, bool)) or is_number(value) or value is None


HISTORY_NUMBERS = ("lr", "loss", "accuracy", "test_accuracy", "seconds", "images_per_s")


def check_history(history, path):
    """A list of per-epoch entries {epoch: 1, 2, ..., lr, loss, accuracy, ...}: the numbers nbconv records
    finite; other keys (which nbconv only displays) are left as they are."""
    if not isinstance(history, list) or len(history) > MAX_EPOCHS:
        raise CheckpointError(f"{path}: 'history' must be a JSON list of at most {MAX_EPOCHS} epochs")
    for index, entry in enumerate(history):
        where = f"{path}: history entry {index + 1}"
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where} must be a JSON object, got {type(entry).__name__}")
        if entry.get("epoch") != index + 1 or not is_int(entry.get("epoch")):
            raise CheckpointError(f"{where} must have 'epoch': {index + 1}, got {entry.get('epoch')!r:.40}")
        for key in HISTORY_NUMBERS:
            if key in entry and not is_number(entry[key]):
                raise CheckpointError(f"{where}: {key!r} must be a finite number, got {entry.get(key)!r:.40}")
    return history


def check_optimizer_scalars(scalars, optimizer_name, path):
    """{'type': 'SGD' or 'Adam' (the config's optimizer), 'lr': > 0, 'step_count': >= 0}."""
    from .optim import OPTIMIZERS
    if not isinstance(scalars, dict):
        raise CheckpointError(f"{path}: 'optim_scalars' must be a JSON object")
    expected_type = OPTIMIZERS[optimizer_name].__name__
    unknown = sorted(set(scalars) - {"type", "lr", "step_count"})
    if unknown:
        raise CheckpointError(f"{path}: unknown optimizer state key {unknown[0]!r}")
    if scalars.get("type") != expected_type:
        raise CheckpointError(f"{path}: optimizer state 'type' must be {expected_type!r} (the config's optimizer "
                              f"{optimizer_name!r}), got {scalars.get('type')!r:.40}")
    for key, rule in (("lr", _number(0, low_open=True)), ("step_count", _int_in(0, MAX_STEPS))):
        ok, expected = rule(scalars.get(key))
        if not ok:
            raise CheckpointError(f"{path}: optimizer state {key!r} must be {expected}, got {scalars.get(key)!r:.40}")
    return scalars


POSITION_KEYS = ("epoch", "step", "train_images", "loss_sum", "correct", "seen", "seconds")


def check_position(position, history, batch_size, path):
    """Where an interrupted epoch stopped: {epoch: len(history) (0-based), step: steps done (>= 1, fewer
    than the epoch has), train_images: the training set's size, loss_sum, correct, seen: the epoch's running
    totals, seconds: time spent on it}."""
    if not isinstance(position, dict) or sorted(position) != sorted(POSITION_KEYS):
        raise CheckpointError(f"{path}: 'position' must be a JSON object with keys {', '.join(POSITION_KEYS)}")
    for key in POSITION_KEYS:
        number = is_number(position[key]) and position[key] >= 0
        if not (number and (is_int(position[key]) or key in ("loss_sum", "seconds"))):
            raise CheckpointError(f"{path}: position {key!r} must be a non-negative "
                                  f"{'number' if key in ('loss_sum', 'seconds') else 'integer'}")
    if position["epoch"] != len(history):
        raise CheckpointError(f"{path}: position 'epoch' must be {len(history)} (the epoch after the history's), "
                              f"got {position['epoch']}")
    steps = -(-position["train_images"] // batch_size)
    seen = min(position["step"] * batch_size, position["train_images"])
    if not 1 <= position["step"] < steps or position["seen"] != seen or position["correct"] > seen:
        raise CheckpointError(f"{path}: position step {position['step']} / seen {position['seen']} do not fit an "
                              f"epoch of {position['train_images']} images in batches of {batch_size}")
    return position
