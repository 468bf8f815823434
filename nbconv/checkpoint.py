"""Checkpoints: one .npz holding the model spec, weights, optimizer state, config and per-epoch history,
written atomically, so `load` rebuilds any model without knowing its architecture."""
import io
import json
import os

import numpy as np

from . import models
from .data.idx import atomic_write_bytes

FORMAT_VERSION = 1


def save(path, model, input_shape, optimizer=None, config=None, history=None):
    """Write a checkpoint to `path` (temporary file + rename: an interrupted save leaves the old one intact)."""
    arrays = {"format_version": np.array(FORMAT_VERSION), "spec": np.array(model.spec()),
              "input_shape": np.array(input_shape, dtype=np.int64),
              "config": np.array(json.dumps(config or {})), "history": np.array(json.dumps(history or []))}
    for key, value in model.state_dict().items():
        arrays[f"param/{key}"] = value
    if optimizer is not None:
        scalars = {}
        for key, value in optimizer.state_dict().items():
            if isinstance(value, np.ndarray):
                arrays[f"optim/{key}"] = value
            else:
                scalars[key] = value
        arrays["optim_scalars"] = np.array(json.dumps(scalars))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


class Checkpoint:
    """A loaded checkpoint: .model (built, weights loaded, on the CPU), .config, .history, .optimizer_state."""

    def __init__(self, path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as data:
                contents = {key: data[key] for key in data.files}
        except (ValueError, OSError) as error:
            raise ValueError(f"{path} is not an nbconv checkpoint (.npz): {error}") from None
        if "spec" not in contents or "format_version" not in contents:
            raise ValueError(f"{path} is not an nbconv checkpoint: it has no model spec")
        self.path = path
        self.spec = str(contents["spec"])
        self.input_shape = tuple(int(v) for v in contents["input_shape"])
        self.config = json.loads(str(contents["config"]))
        self.history = json.loads(str(contents["history"]))
        dtype = next((value.dtype for key, value in contents.items()  # buffers such as counters are ints
                      if key.startswith("param/") and value.dtype.kind == "f"), np.float32)
        self.model = models.build(self.spec, self.input_shape, dtype=dtype)
        self.model.load_state_dict({key[len("param/"):]: value for key, value in contents.items()
                                    if key.startswith("param/")})
        self.optimizer_state = None
        if "optim_scalars" in contents:
            self.optimizer_state = json.loads(str(contents["optim_scalars"]))
            self.optimizer_state.update({key[len("optim/"):]: value for key, value in contents.items()
                                         if key.startswith("optim/")})


def load(path):
    return Checkpoint(path)
