"""Checkpoints: one .npz holding the model spec, weights, optimizer state, config, per-epoch history and,
after an interrupted epoch, the position inside it; written atomically, so `load` rebuilds any model
without knowing its architecture.

A checkpoint is read as untrusted input: never unpickled, every entry's size bounded before it is
decompressed, and every array's shape, dtype and values checked against the model it describes before
any kernel sees it. Anything else raises CheckpointError naming the file and the entry.
"""
import io
import json
import os
import zipfile

import numpy as np

from . import models
from .checkpoint_checks import (CheckpointError, check_config, check_history, check_optimizer_scalars,
                                check_position)
from .files import atomic_write_bytes
from .zip_methods import unread_method

FORMAT_VERSION = 1
PARAMETER_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
METADATA_KEYS = ("format_version", "spec", "input_shape", "config", "history", "optim_scalars", "position",
                 "rng_state")
MAX_METADATA_BYTES = 16 << 20  # a history of a million epochs would still fit
HEADER_ALLOWANCE = 1 << 16  # room for an .npy header beside an array's data

__all__ = ["CheckpointError", "NonFiniteWeights", "Checkpoint", "load", "save"]


class NonFiniteWeights(ValueError):
    """Parameters or optimizer state holding NaN or infinity, which nbconv never saves."""


def non_finite_arrays(arrays):
    """The names of the arrays in {name: array} that hold a NaN or an infinity."""
    return [name for name, array in arrays.items() if not np.isfinite(array).all()]


def save(path, model, input_shape, optimizer=None, config=None, history=None, position=None):
    """Write a checkpoint to `path` (temporary file + rename: an interrupted save leaves the old one intact).

    position: where an interrupted epoch stopped (see train.fit), so that a resumed run continues exactly.
    Raises NonFiniteWeights, writing nothing, when a parameter or optimizer state holds NaN or infinity,
    and CheckpointError for a config or position that load would refuse, or a model without parameters.
    """
    check_config(dict(config or {}), path)  # what load would refuse is never written
    if not model.named_parameters():
        raise CheckpointError(f"{path}: the model {model.spec()!r} has no parameters, so there is nothing to "
                              "checkpoint; checkpoint not written")
    if position is not None:
        check_position(position, history or [], (config or {}).get("batch_size", 64), path)
    arrays = {"format_version": np.array(FORMAT_VERSION), "spec": np.array(model.spec()),
              "input_shape": np.array(input_shape, dtype=np.int64),
              "config": np.array(json.dumps(config or {})), "history": np.array(json.dumps(history or []))}
    if position is not None:
        arrays["position"] = np.array(json.dumps(position))
    generators = random_layers(model)
    if generators:  # dropout masks continue where they were, so a resumed run matches an uninterrupted one
        arrays["rng_state"] = np.array(json.dumps({name: layer.rng.bit_generator.state
                                                   for name, layer in generators.items()}))
    state = {f"param/{key}": value for key, value in model.state_dict().items()}
    if optimizer is not None:
        scalars = {}
        for key, value in optimizer.state_dict().items():
            if isinstance(value, np.ndarray):
                state[f"optim/{key}"] = value
            else:
                scalars[key] = value
        arrays["optim_scalars"] = np.array(json.dumps(scalars))
    bad = non_finite_arrays(state)
    if bad:
        raise NonFiniteWeights(f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} hold NaN or infinity; "
                               f"checkpoint {path} not written")
    arrays.update(state)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def random_layers(model):
    """{name: layer} of the model's layers that draw random numbers in training (their .rng)."""
    return {layer.name: layer for layer in getattr(model, "layers", ())
            if isinstance(getattr(layer, "rng", None), np.random.Generator)}


def _restore_generators(model, states, path):
    layers = random_layers(model)
    if not isinstance(states, dict) or set(states) != set(layers):
        raise CheckpointError(f"{path}: 'rng_state' must hold one generator state for each of the layers "
                              f"{', '.join(layers) or '(none)'}")
    for name, state in states.items():
        generator = layers[name].rng.bit_generator
        try:
            if not isinstance(state, dict) or state.get("bit_generator") != type(generator).__name__:
                raise ValueError(f"not a {type(generator).__name__} state")
            generator.state = state
        except (ValueError, TypeError, OverflowError, KeyError) as error:
            raise CheckpointError(f"{path}: 'rng_state' of layer {name!r} is invalid ({_reason(error)})") from None


class _Archive:
    """The .npy entries of a zip file, each read only after its declared size is checked, never unpickled."""

    def __init__(self, path):
        self.path = path
        try:
            if os.path.getsize(path) == 0:
                raise CheckpointError(f"{path}: the file is empty, not an nbconv checkpoint")
            self.zip = zipfile.ZipFile(path)
            names = self.zip.namelist()
        except CheckpointError:
            raise
        except Exception as error:  # noqa: BLE001 - whatever parsing these bytes raises means a damaged file
            raise CheckpointError(f"{path}: not an nbconv checkpoint (not a readable .npz archive: "
                                  f"{_reason(error)})") from None
        bad = [name for name in names if not name.endswith(".npy")]
        if bad or len(set(names)) != len(names):
            self.zip.close()
            raise CheckpointError(f"{path}: " + (f"unexpected entry {bad[0]!r} (a checkpoint holds only .npy arrays)"
                                                 if bad else "the archive names an entry twice"))
        unread = unread_method(self.zip)  # bzip2 and LZMA inflate without a bound (zip_methods)
        if unread is not None:
            self.zip.close()
            raise CheckpointError(f"{path}: {unread}")
        self.keys = [name[:-len(".npy")] for name in names]

    def close(self):
        self.zip.close()

    def read(self, key, max_bytes):
        """The array stored under `key`, whose entry may not exceed max_bytes once decompressed."""
        info = self.zip.getinfo(key + ".npy")
        if info.file_size > max_bytes:
            raise CheckpointError(f"{self.path}: entry {key!r} declares {info.file_size:,} bytes, more than the "
                                  f"{max_bytes:,} it can need")
        try:
            data = self.zip.read(info)  # checks the CRC, never yields more than file_size bytes
            return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
        except ValueError as error:
            if "pickle" in str(error).lower():
                raise CheckpointError(f"{self.path}: entry {key!r} holds Python objects; checkpoints hold only "
                                      f"numbers and text and are never unpickled") from None
            raise CheckpointError(f"{self.path}: entry {key!r} is damaged ({_reason(error)})") from None
        except Exception as error:  # noqa: BLE001 - bad CRC, truncated or undecodable data, encryption, ...
            raise CheckpointError(f"{self.path}: entry {key!r} is damaged ({_reason(error)})") from None

    def text(self, key):
        """A JSON or plain string entry (a 0-d unicode array)."""
        value = self.read(key, MAX_METADATA_BYTES)
        if value.dtype.kind != "U" or value.ndim != 0:
            raise CheckpointError(f"{self.path}: entry {key!r} must be a string, got a {value.dtype} array of "
                                  f"shape {value.shape}")
        # UCS-4 holds numbers no character has; Python strings made of them fail later (SystemError in .lower())
        codes = np.frombuffer(value.astype(value.dtype.newbyteorder("<")).tobytes(), "<u4")
        if ((codes > 0x10FFFF) | ((codes >= 0xD800) & (codes <= 0xDFFF))).any():
            raise CheckpointError(f"{self.path}: entry {key!r} is damaged (its text holds code points that are not "
                                  "Unicode characters)")
        return str(value)

    def json(self, key):
        text = self.text(key)
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as error:
            raise CheckpointError(f"{self.path}: entry {key!r} is not valid JSON ({_reason(error)})") from None


def _reason(error):
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


class Checkpoint:
    """A loaded checkpoint: .model (built, weights loaded, on the CPU), .config, .history, .optimizer_state,
    .position (None unless saved in the middle of an epoch), .spec, .input_shape.

    Raises CheckpointError (a ValueError) for a file that is not a valid checkpoint, naming the entry.
    """

    def __init__(self, path):
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise CheckpointError(f"checkpoint {path} {'is not a file' if os.path.exists(path) else 'does not exist'}")
        archive = _Archive(path)
        try:
            self._read(archive, path)
        finally:
            archive.close()

    def _read(self, archive, path):
        keys = set(archive.keys)
        for key in keys:
            if key not in METADATA_KEYS and not key.startswith(("param/", "optim/")):
                raise CheckpointError(f"{path}: unexpected entry {key!r}")
        missing = [key for key in ("format_version", "spec", "input_shape", "config", "history") if key not in keys]
        if missing:
            raise CheckpointError(f"{path}: not an nbconv checkpoint: entry {missing[0]!r} is missing")
        version = archive.read("format_version", HEADER_ALLOWANCE)
        if version.shape != () or version.dtype.kind not in "iu" or int(version) != FORMAT_VERSION:
            raise CheckpointError(f"{path}: format_version must be {FORMAT_VERSION}, got {version.tolist()!r:.60}")
        self.path = path
        self.spec = archive.text("spec")
        input_shape = archive.read("input_shape", HEADER_ALLOWANCE)
        if input_shape.dtype.kind not in "iu" or input_shape.ndim != 1 or len(input_shape) not in (1, 2, 3) or \
                (input_shape < 1).any():
            raise CheckpointError(f"{path}: input_shape must be 1 to 3 positive integers ((C, H, W), (C, W) or "
                                  "(features,), as models.build takes), "
                                  f"got {input_shape.tolist()!r:.80}")
        self.input_shape = tuple(int(v) for v in input_shape)
        self.config = check_config(archive.json("config"), path)
        self.history = check_history(archive.json("history"), path)
        self.optimizer_state = None
        if "optim_scalars" in keys:
            self.optimizer_state = check_optimizer_scalars(archive.json("optim_scalars"),
                                                           self.config.get("optimizer", "sgd"), path)
        self.position = None
        if "position" in keys:
            self.position = check_position(archive.json("position"), self.history,
                                           self.config.get("batch_size", 64), path)

        parameter_keys = sorted(key for key in keys if key.startswith("param/"))
        dtypes = {key: archive_dtype(archive, key) for key in parameter_keys}
        floating = [key for key, found in dtypes.items() if found in PARAMETER_DTYPES]
        if not floating:
            raise CheckpointError(f"{path}: {parameter_keys[0]!r} is {dtypes[parameter_keys[0]]}; parameters must be "
                                  f"float32 or float64" if parameter_keys else f"{path}: it holds no parameters")
        mixed = next((key for key in floating if dtypes[key] != dtypes[floating[0]]), None)
        if mixed:
            raise CheckpointError(f"{path}: {mixed!r} is {dtypes[mixed]} but {floating[0]!r} is "
                                  f"{dtypes[floating[0]]}; parameters must all have one dtype")
        dtype = dtypes[floating[0]]
        try:
            self.model = models.build(self.spec, self.input_shape, dtype=dtype)
        except (ValueError, TypeError, OverflowError, MemoryError, RecursionError) as error:
            raise CheckpointError(f"{path}: its model spec cannot be built: {_reason(error)}") from None
        parameters = [parameter.value for parameter in self.model.named_parameters().values()]
        if not parameters:
            raise CheckpointError(f"{path}: its model {self.spec!r} has no parameters")
        expected = self.model.state_dict()  # the parameters, and any state a layer saves beside them
        if set(parameter_keys) != {f"param/{key}" for key in expected}:
            missing = sorted(set(expected) - {key[len("param/"):] for key in parameter_keys})
            unexpected = sorted({key[len("param/"):] for key in parameter_keys} - set(expected))
            what = f"entry 'param/{missing[0]}' is missing" if missing else f"unexpected entry 'param/{unexpected[0]}'"
            raise CheckpointError(f"{path}: {what} (model {self.spec!r})")
        state = {key: self._array(archive, f"param/{key}", value.shape, value.dtype) for key, value in expected.items()}
        self.model.load_state_dict(state)
        if "rng_state" in keys:
            _restore_generators(self.model, archive.json("rng_state"), path)
        if self.optimizer_state is not None:
            self.optimizer_state.update(self._optimizer_arrays(archive, keys, parameters, dtype))
        elif any(key.startswith("optim/") for key in keys):
            raise CheckpointError(f"{path}: optimizer arrays without 'optim_scalars'")

    def _array(self, archive, key, shape, dtype):
        """An array entry that must have this shape and dtype and finite values."""
        value = archive.read(key, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize + HEADER_ALLOWANCE)
        if value.shape != tuple(shape) or value.dtype != dtype:
            raise CheckpointError(f"{self.path}: {key!r} must be {dtype} of shape {tuple(shape)}, got "
                                  f"{value.dtype} of shape {value.shape}")
        if not np.isfinite(value).all():
            raise CheckpointError(f"{self.path}: {key!r} holds NaN or infinity")
        return value

    def _optimizer_arrays(self, archive, keys, parameters, dtype):
        """optim/<index>.<slot> arrays: one per slot of the optimizer, each the size of parameter <index>."""
        from .optim import OPTIMIZERS
        slots = OPTIMIZERS[self.config.get("optimizer", "sgd")].slots
        arrays = {}
        for key in sorted(key for key in keys if key.startswith("optim/")):
            index, _, slot = key[len("optim/"):].partition(".")
            if not index.isdigit() or int(index) >= len(parameters) or str(int(index)) != index or slot not in slots:
                raise CheckpointError(f"{self.path}: unexpected entry {key!r} (the model has {len(parameters)} "
                                      f"parameters; the optimizer's state arrays are {', '.join(slots)})")
            arrays[key[len("optim/"):]] = self._array(archive, key, (parameters[int(index)].size,), dtype)
        for index in {key.partition(".")[0] for key in arrays}:
            absent = [slot for slot in slots if f"{index}.{slot}" not in arrays]
            if absent:
                raise CheckpointError(f"{self.path}: entry 'optim/{index}.{absent[0]}' is missing")
        return arrays


def archive_dtype(archive, key):
    """The dtype an .npy entry declares, read from its header alone."""
    try:
        with archive.zip.open(key + ".npy") as entry:
            version = np.lib.format.read_magic(entry)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            return np.dtype(header(entry)[2])
    except Exception as error:  # noqa: BLE001 - a header numpy cannot parse
        raise CheckpointError(f"{archive.path}: entry {key!r} is damaged ({_reason(error)})") from None


def load(path):
    """The Checkpoint at `path` (see Checkpoint); raises CheckpointError for anything but a valid one."""
    return Checkpoint(path)
