"""A corpus of damaged and crafted checkpoints, made from one valid checkpoint of a small trained model."""
import io
import json
import warnings
import zipfile

import numpy as np

from nbconv import checkpoint, models, optim

SPEC = "conv4k5s2,relu,maxpool2,fc10"  # takes (1, 28, 28): the tiny MNIST of tests.data
INPUT_SHAPE = (1, 28, 28)


def valid_arrays(optimizer="sgd"):
    """The entries of a valid checkpoint {key: array} of SPEC after one optimizer step."""
    model = models.build(SPEC, INPUT_SHAPE, seed=1)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if optimizer == "sgd" else \
        optim.Adam(model.parameters(), lr=1e-3)
    for parameter in model.parameters():
        parameter.grad = np.full(parameter.shape, 0.01, np.float32)
    opt.step()
    config = {"model": SPEC, "epochs": 3, "batch_size": 32, "optimizer": optimizer, "lr": 0.1, "seed": 1}
    history = [{"epoch": 1, "lr": 0.1, "loss": 2.1, "accuracy": 0.3, "test_accuracy": 0.25, "seconds": 0.5,
                "images_per_s": 256.0}]
    arrays = {"format_version": np.array(checkpoint.FORMAT_VERSION), "spec": np.array(model.spec()),
              "input_shape": np.array(INPUT_SHAPE, np.int64), "config": np.array(json.dumps(config)),
              "history": np.array(json.dumps(history))}
    arrays.update({f"param/{key}": value for key, value in model.state_dict().items()})
    scalars = {}
    for key, value in opt.state_dict().items():
        if isinstance(value, np.ndarray):
            arrays[f"optim/{key}"] = value
        else:
            scalars[key] = value
    arrays["optim_scalars"] = np.array(json.dumps(scalars))
    return arrays


def npz_bytes(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _changed(arrays, **changes):
    """A copy with entries replaced (a value of None removes the entry)."""
    result = dict(arrays)
    for key, value in changes.items():
        if value is None:
            result.pop(key)
        else:
            result[key] = value
    return result


def _json_changed(arrays, key, **updates):
    value = json.loads(str(arrays[key]))
    value.update(updates)
    return _changed(arrays, **{key: np.array(json.dumps(value))})


def _zip_with(entries):
    """A zip file of raw {name: bytes} entries, deflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _zip_with_duplicate(entries, name):
    """A zip file of the entries with entry `name` stored twice (the second copy holding zeros)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name it is asked to write
        for key, data in entries.items():
            archive.writestr(key, data)
        archive.writestr(name, bytes(len(entries[name])))
    return buffer.getvalue()


def _zip_with_method(entries, name, method):
    """A zip file of the entries with entry `name` compressed by `method` (zipfile.ZIP_BZIP2 or ZIP_LZMA): formats
    whose decompressors zipfile runs without an output bound (a few KiB of bzip2 inflate to gigabytes at once)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, data in entries.items():
            archive.writestr(key, data, compress_type=method if key == name else zipfile.ZIP_STORED)
    return buffer.getvalue()


def _npy(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _text_with_code_point(text, code_point):
    """A 0-d unicode .npy of `text` whose last character is replaced by `code_point` (UCS-4 allows values no
    Unicode character has)."""
    data = bytearray(_npy(np.array(text)))
    data[-4:] = code_point.to_bytes(4, "little")
    return bytes(data)


def corpus(seed=0):
    """{name: bytes} of files that are not valid checkpoints, each with the word its error names."""
    rng = np.random.default_rng(seed)
    arrays = valid_arrays("sgd")
    adam = valid_arrays("adam")
    good = npz_bytes(arrays)
    velocity = "optim/0.velocity"
    bad_crc = bytearray(good)
    bad_crc[len(good) // 2] ^= 0xFF
    weight = arrays["param/fc1.weight"]
    entries = {f"{key}.npy": _npy(value) for key, value in arrays.items()}
    return {
        "empty": (b"", "empty"),
        "random-bytes": (rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not an nbconv checkpoint"),
        "npy-not-npz": (_npy(weight), "not an nbconv checkpoint"),
        "truncated-half": (good[:len(good) // 2], "not an nbconv checkpoint"),
        "truncated-tail": (good[:-7], "not an nbconv checkpoint"),
        "bad-crc": (bytes(bad_crc), "damaged"),
        "missing-spec": (npz_bytes(_changed(arrays, spec=None)), "'spec' is missing"),
        "missing-parameter": (npz_bytes(_changed(arrays, **{"param/fc1.bias": None})),
                              "param/fc1.bias"),
        "unexpected-parameter": (npz_bytes(_changed(arrays, **{"param/fc9.weight": weight})), "param/fc9.weight"),
        "unknown-entry": (npz_bytes(_changed(arrays, extra=np.zeros(2))), "'extra'"),
        "non-npy-entry": (_zip_with({**entries, "notes.txt": b"hello"}), "notes.txt"),
        "unknown-config-key": (npz_bytes(_json_changed(arrays, "config", colour="blue")), "'colour'"),
        "config-lr-nan": (npz_bytes(_json_changed(arrays, "config", lr=float("nan"))), "'lr'"),
        "config-lr-huge-integer": (npz_bytes(_json_changed(arrays, "config", lr=10 ** 400)), "'lr'"),
        "config-epochs-negative": (npz_bytes(_json_changed(arrays, "config", epochs=-1)), "'epochs'"),
        "config-optimizer-unknown": (npz_bytes(_json_changed(arrays, "config", optimizer="rmsprop")), "'optimizer'"),
        "config-not-json": (npz_bytes(_changed(arrays, config=np.array("{lr: 1"))), "not valid JSON"),
        "config-not-text": (npz_bytes(_changed(arrays, config=np.zeros(3))), "must be a string"),
        "spec-code-point-past-unicode": (_zip_with({**entries, "spec.npy": _text_with_code_point(
            str(arrays["spec"]), 0x7F000000)}), "'spec'"),
        "spec-lone-surrogate": (_zip_with({**entries, "spec.npy": _text_with_code_point(
            str(arrays["spec"]), 0xD800)}), "'spec'"),
        "history-not-list": (npz_bytes(_changed(arrays, history=np.array('{"epoch": 1}'))), "history"),
        "history-epochs-out-of-order": (npz_bytes(_changed(arrays, history=np.array('[{"epoch": 2}]'))), "history"),
        "format-version-2": (npz_bytes(_changed(arrays, format_version=np.array(2))), "format_version"),
        "input-shape-negative": (npz_bytes(_changed(arrays, input_shape=np.array([1, -28, 28]))), "input_shape"),
        "spec-unknown-token": (npz_bytes(_changed(arrays, spec=np.array("conv4k5,wat"))), "spec"),
        "spec-other-model": (npz_bytes(_changed(arrays, spec=np.array("fc10"))), "param/"),
        "float16-parameters": (npz_bytes({**arrays, **{k: v.astype(np.float16) for k, v in arrays.items()
                                                       if k.startswith("param/")}}), "float16"),
        "parameter-wrong-shape": (npz_bytes(_changed(arrays, **{"param/fc1.weight": weight[:, :5]})),
                                  "param/fc1.weight"),
        "parameter-nan": (npz_bytes(_changed(arrays, **{"param/fc1.weight": np.full_like(weight, np.nan)})),
                          "NaN"),
        "parameter-int": (npz_bytes(_changed(arrays, **{"param/fc1.weight": weight.astype(np.int32)})), "int32"),
        "optimizer-state-too-short": (npz_bytes(_changed(arrays, **{velocity: np.zeros(1, np.float32)})),
                                      velocity),
        "optimizer-state-too-long": (npz_bytes(_changed(arrays, **{velocity: np.zeros(10 ** 6, np.float32)})),
                                     velocity),
        "optimizer-state-float64": (npz_bytes(_changed(arrays, **{velocity: arrays[velocity].astype(np.float64)})),
                                    velocity),
        "optimizer-state-bad-index": (npz_bytes(_changed(arrays, **{"optim/99.velocity": arrays[velocity]})),
                                      "optim/99.velocity"),
        "optimizer-state-adam-slot-missing": (npz_bytes(_changed(adam, **{"optim/0.exp_avg_sq": None})),
                                              "optim/0.exp_avg_sq"),
        "optimizer-type-mismatch": (npz_bytes(_json_changed(arrays, "optim_scalars", type="Adam")), "'type'"),
        "optimizer-step-count-huge": (npz_bytes(_json_changed(arrays, "optim_scalars", step_count=2 ** 70)),
                                      "step_count"),
        "optimizer-step-count-negative": (npz_bytes(_json_changed(arrays, "optim_scalars", step_count=-1)),
                                          "step_count"),
        "position-outside-epoch": (npz_bytes(_changed(arrays, position=np.array(json.dumps(
            {"epoch": 1, "step": 99, "train_images": 128, "loss_sum": 1.0, "correct": 1, "seen": 3168,
             "seconds": 1.0})))), "position"),
        "rng-state-for-no-layer": (npz_bytes(_changed(arrays, rng_state=np.array('{"dropout1": {}}'))),
                                   "rng_state"),
        "bzip2-entry": (_zip_with_method(entries, "param/fc1.weight.npy", zipfile.ZIP_BZIP2), "compression method"),
        "lzma-entry": (_zip_with_method(entries, "spec.npy", zipfile.ZIP_LZMA), "compression method"),
        "duplicate-entry": (_zip_with_duplicate(entries, "param/fc1.weight.npy"), "twice"),
        "pickled-object": (_zip_with({**entries, "config.npy": _npy(np.array([{"a": 1}], dtype=object),
                                                                    allow_pickle=True)}), "never unpickled"),
        "decompression-bomb": (_zip_with({**entries, "param/fc1.weight.npy": _npy(np.zeros((1, 10 ** 7),
                                                                                           np.float32))}),
                               "param/fc1.weight"),
    }
