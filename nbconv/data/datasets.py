"""The datasets nbconv trains on: MNIST and Fashion-MNIST (IDX files), CIFAR-10 and CIFAR-100 (the binary
version), and synthetic images. Finding the files, downloading them (md5-verified, atomic, with progress
and a deadline), validating them before any training starts, and falling back to the small MNIST sample
shipped inside the package when offline.

Search order for a dataset's files: the `data_dir` argument (--data-dir, which must exist), then the
NBCONV_DATA_DIR environment variable, then the per-user cache directory; in each, the files may sit
directly in the directory or in a sub-directory named after the dataset (IDX files compressed (.gz) or
not; CIFAR files also in the archive's own folder, e.g. cifar-10-batches-bin/, or as the archive itself,
which is then extracted beside it). Downloads go to --data-dir when given, else to the cache.

Every split is returned as uint8 images (N, C, H, W) and int64 labels (N,). Gzip-compressed IDX files are
decompressed once; the decoded copies stay in the cache's decoded/ folder (decoded.py).
"""
import os
from dataclasses import dataclass, field

import click
import numpy as np

from . import cifar, synthetic
from .download import DownloadError, download_file  # noqa: F401 - download_file is part of this module's API
from .errors import DataFileError, DataUnavailableError
from .decoded import read_idx_decoded_once

ENV_DATA_DIR = "NBCONV_DATA_DIR"
ENV_MIRRORS = "NBCONV_DATA_MIRRORS"
PARTS = ("train_images", "train_labels", "test_images", "test_labels")
SAMPLE_DIR = os.path.join(os.path.dirname(__file__), "sample")
DIGITS = tuple(str(k) for k in range(10))
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclass(frozen=True)
class DatasetInfo:
    """An IDX dataset (MNIST's format): four files, and what its images look like."""
    name: str
    files: dict                 # part -> file name (.gz) as published
    md5s: dict                  # part -> accepted md5 sums, of the .gz file or of its uncompressed contents
    mirrors: tuple = field(default=())
    credit: str = ""
    class_names: tuple = DIGITS
    mean: tuple = (0.1307,)     # per channel, of pixel / 255
    std: tuple = (0.3081,)
    shape: tuple = (1, 28, 28)  # (C, H, W)
    augment: int = 1            # default random shift (pixels) when training
    flip: bool = False          # default random horizontal flip when training

    @property
    def num_classes(self):
        return len(self.class_names)


@dataclass(frozen=True)
class CIFARInfo:
    """A CIFAR dataset in its binary version: one .tar.gz holding record files and a class-name file."""
    name: str
    archive: str
    md5: str
    mirrors: tuple
    folder: str                 # the folder the archive extracts to
    train_files: tuple
    test_files: tuple
    records_per_file: dict      # file -> official record count (an upper bound on what is accepted)
    label_bytes: int
    names_file: str
    num_classes: int
    mean: tuple
    std: tuple
    credit: str = ""
    shape: tuple = cifar.SHAPE
    augment: int = 4            # random crop of the image padded by 4 pixels (the same as a shift of up to 4)
    flip: bool = True

    @property
    def class_names(self):
        return tuple(str(k) for k in range(self.num_classes))

    def member_sizes(self):
        """{path in the archive: largest accepted size} of the files nbconv extracts."""
        record = self.label_bytes + cifar.PIXELS
        sizes = {f"{self.folder}/{name}": count * record for name, count in self.records_per_file.items()}
        sizes[f"{self.folder}/{self.names_file}"] = 1 << 16
        return sizes


@dataclass(frozen=True)
class SyntheticInfo:
    """Synthetic images (nbconv.data.synthetic), made on demand from the name."""
    name: str
    spec: synthetic.SyntheticSpec
    augment: int = 0
    flip: bool = False

    @property
    def shape(self):
        return self.spec.shape

    @property
    def num_classes(self):
        return self.spec.classes

    @property
    def class_names(self):
        return tuple(str(k) for k in range(self.spec.classes))

    @property
    def mean(self):
        return (0.5,) * self.spec.shape[0]

    @property
    def std(self):
        return (0.25,) * self.spec.shape[0]


_TORONTO = ("https://www.cs.toronto.edu/~kriz/",)
DATASETS = {
    "mnist": DatasetInfo(
        "mnist",
        {"train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
         "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"},
        {"train_images": {"f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"},
         "train_labels": {"d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"},
         "test_images": {"9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"},
         "test_labels": {"ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"}},
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/",
         "http://yann.lecun.com/exdb/mnist/"),
        "MNIST by Y. LeCun, C. Cortes and C. J. C. Burges, CC BY-SA 3.0"),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        {"train_images": "train-images-idx3-ubyte.gz", "train_labels": "train-labels-idx1-ubyte.gz",
         "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"},
        {"train_images": {"8d4fb7e6c68d591d4c3dfef9ec88bf0d"}, "train_labels": {"25c81989df183df01b3e8a0aad5dffbe"},
         "test_images": {"bef4ecab320f06d8554ea6380940ec79"}, "test_labels": {"bb300cfdad3c16e7a12a480ee83cd310"}},
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
         "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        "Fashion-MNIST by Zalando Research, MIT licence", FASHION, (0.2860,), (0.3530,)),
    "cifar10": CIFARInfo(
        "cifar10", "cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", _TORONTO, "cifar-10-batches-bin",
        tuple(f"data_batch_{k}.bin" for k in range(1, 6)), ("test_batch.bin",),
        {**{f"data_batch_{k}.bin": 10000 for k in range(1, 6)}, "test_batch.bin": 10000}, 1, "batches.meta.txt",
        10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
        "CIFAR-10 by A. Krizhevsky, V. Nair and G. Hinton"),
    "cifar100": CIFARInfo(
        "cifar100", "cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8", _TORONTO, "cifar-100-binary",
        ("train.bin",), ("test.bin",), {"train.bin": 50000, "test.bin": 10000}, 2, "fine_label_names.txt",
        100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
        "CIFAR-100 by A. Krizhevsky, V. Nair and G. Hinton"),
}
NAMES = tuple(DATASETS) + ("synthetic:CxHxW:K[:TRAIN[:TEST]]",)


@dataclass
class Splits:
    """uint8 images (N, C, H, W) and int64 labels (N,) for training and test, where they came from, and
    the class names."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    is_sample: bool = False
    class_names: tuple = ()


def describe(dataset):
    """The DatasetInfo, CIFARInfo or SyntheticInfo of a dataset name: .shape (C, H, W), .num_classes,
    .class_names, per-channel .mean and .std, default .augment and .flip. ValueError for unknown names."""
    if isinstance(dataset, str) and dataset.strip().lower().startswith(synthetic.PREFIX):
        return SyntheticInfo(dataset.strip().lower(), synthetic.parse(dataset))
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(NAMES)}, got {dataset!r}")
    return DATASETS[dataset]


def default_cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nbconv")


def search_dirs(dataset, data_dir=None):
    """Directories searched for `dataset`'s files, in order."""
    roots = [root for root in (data_dir, os.environ.get(ENV_DATA_DIR), default_cache_dir()) if root]
    dirs = []
    for root in roots:
        for candidate in (root, os.path.join(root, dataset)):
            if candidate not in dirs:
                dirs.append(candidate)
    return dirs


def _find(directory, file_name):
    for name in (file_name, file_name[:-3] if file_name.endswith(".gz") else file_name + ".gz"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def _locate(info, data_dir):
    for directory in search_dirs(info.name, data_dir):
        paths = {part: _find(directory, name) for part, name in info.files.items()}
        if all(paths.values()):
            return directory, paths
    return None, None


def _env_mirrors():
    value = os.environ.get(ENV_MIRRORS, "")
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _fetch(names_and_md5s, directory, mirrors, echo):
    """Download each (file name, accepted md5s) missing from `directory`, trying each mirror in turn."""
    for name, md5s in names_and_md5s:
        if _find(directory, name):
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                echo(f"downloading {url}", err=True)
                download_file(url, os.path.join(directory, name), md5s, label=name)
                break
            except DownloadError as error:
                errors.append(str(error))
        else:
            raise DataUnavailableError(f"could not download {name} from any mirror:\n  " + "\n  ".join(errors))


def make_folder(directory, purpose="for the download"):
    """Create a folder nbconv writes data into (the cache's for downloads, one to extract an archive into);
    DataUnavailableError naming it and `purpose` when it cannot be made (a read-only home, a file where the
    folder should be)."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise DataUnavailableError(f"cannot create {directory} {purpose}: {error.strerror or error}") from None


def download(info, directory, mirrors=None, echo=click.echo):
    """Download an IDX dataset's missing files into `directory`, trying each mirror in turn."""
    _fetch([(name, info.md5s[part]) for part, name in info.files.items()], directory,
           mirrors or _env_mirrors() or info.mirrors, echo)


# ----------------------------------------------------------------------------- reading and validating

def _read(paths, source, is_sample=False, info=None):
    """Read and validate an IDX dataset's four files (info: the dataset's DatasetInfo, default MNIST)."""
    info = info or DATASETS["mnist"]
    decoded = os.path.join(default_cache_dir(), "decoded")  # gzip files decompressed once, kept there
    arrays = {part: read_idx_decoded_once(path, decoded) for part, path in paths.items()}
    height, width = info.shape[1:]
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        image_path, label_path = paths[f"{split}_images"], paths[f"{split}_labels"]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataFileError(f"{image_path}: {split} images must be uint8 (N, H, W), found {images.dtype} "
                                f"{images.shape}")
        if images.shape[1:] != (height, width):
            raise DataFileError(f"{image_path}: {split} images are {images.shape[1]}x{images.shape[2]}, "
                                f"{info.name} images are {height}x{width}: is this directory another dataset's?")
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise DataFileError(f"{label_path}: {split} labels must be integers (N,), found {labels.dtype} "
                                f"{labels.shape}")
        if len(images) != len(labels):
            raise DataFileError(f"{image_path}: {len(images):,} {split} images but {len(labels):,} labels in "
                                f"{label_path}")
        if len(images) == 0:
            raise DataFileError(f"{image_path}: holds no {split} images")
        cifar.check_labels(label_path, labels, info.num_classes)
    return Splits(arrays["train_images"][:, None], arrays["train_labels"].astype(np.int64),
                  arrays["test_images"][:, None], arrays["test_labels"].astype(np.int64), source, is_sample,
                  info.class_names)


def sample_paths():
    return {part: os.path.join(SAMPLE_DIR, name) for part, name in DATASETS["mnist"].files.items()}


def _load_idx(info, data_dir, download_missing, mirrors, allow_sample, echo):
    directory, paths = _locate(info, data_dir)
    if paths:
        return _read(paths, directory, info=info)
    target = data_dir or os.path.join(default_cache_dir(), info.name)
    problem = f"{info.name} was not found in: {', '.join(search_dirs(info.name, data_dir))}"
    if download_missing:
        try:
            make_folder(target)
            download(info, target, mirrors, echo)
            directory, paths = _locate(info, target)
            return _read(paths, directory, info=info)
        except DataUnavailableError as error:
            problem += f"\nand the download failed: {error}"
    if info.name == "mnist" and allow_sample:
        echo("=" * 78 + f"\nWARNING: {problem}\nFalling back to the small MNIST SAMPLE shipped with nbconv "
             "(3,000 training and 1,000 test images).\nAccuracy will be far below full-MNIST figures. "
             f"Put the four MNIST files in a directory and pass --data-dir or set {ENV_DATA_DIR}.\n" + "=" * 78,
             err=True)
        return _read(sample_paths(), "the shipped MNIST sample", is_sample=True)
    raise DataUnavailableError(problem)


def _cifar_folder(info, directory):
    """The folder holding the CIFAR record files under `directory` (itself, or the archive's folder), or
    None; extracts the archive when only it is there."""
    needed = info.train_files + info.test_files
    for candidate in (directory, os.path.join(directory, info.folder)):
        if all(os.path.isfile(os.path.join(candidate, name)) for name in needed):
            return candidate
    archive = os.path.join(directory, info.archive)
    if os.path.isfile(archive):
        folder = os.path.join(directory, info.folder)
        make_folder(folder, f"to extract {archive} into")
        cifar.extract(archive, folder, info.member_sizes(), sum(info.member_sizes().values()) + (4 << 20))
        return folder
    return None


def _read_cifar(info, folder):
    def split(names):
        paths = [os.path.join(folder, name) for name in names]
        counts = [cifar.record_count(path, info.label_bytes, info.records_per_file[name])
                  for path, name in zip(paths, names)]
        images, labels = np.empty((sum(counts),) + cifar.SHAPE, np.uint8), np.empty(sum(counts), np.int64)
        start = 0
        for path, name, count in zip(paths, names, counts):
            cifar.read_records(path, info.label_bytes, info.num_classes, info.records_per_file[name],
                               images[start:start + count], labels[start:start + count])
            start += count
        return images, labels

    train_images, train_labels = split(info.train_files)
    test_images, test_labels = split(info.test_files)
    names_path = os.path.join(folder, info.names_file)
    names = cifar.read_names(names_path, info.num_classes) if os.path.isfile(names_path) else info.class_names
    return Splits(train_images, train_labels, test_images, test_labels, folder, class_names=names)


def _load_cifar(info, data_dir, download_missing, mirrors, echo):
    for directory in search_dirs(info.name, data_dir):
        if os.path.isdir(directory):
            folder = _cifar_folder(info, directory)
            if folder:
                return _read_cifar(info, folder)
    problem = f"{info.name} was not found in: {', '.join(search_dirs(info.name, data_dir))}"
    if not download_missing:
        raise DataUnavailableError(problem)
    target = data_dir or os.path.join(default_cache_dir(), info.name)
    try:
        make_folder(target)
        _fetch([(info.archive, {info.md5})], target, mirrors or _env_mirrors() or info.mirrors, echo)
    except DataUnavailableError as error:
        raise DataUnavailableError(f"{problem}\nand the download failed: {error}") from None
    return _read_cifar(info, _cifar_folder(info, target))


def load(dataset="mnist", data_dir=None, download_missing=True, mirrors=None, allow_sample=True, echo=click.echo,
         seed=0):
    """Find, or download, read and validate a dataset (see the module's docstring); Splits.

    Offline with nothing on disk, MNIST falls back to the shipped sample (a few thousand images),
    announced loudly. Synthetic datasets are made from the name and `seed`. Raises DataFileError for a
    file that is damaged or does not belong to the dataset, DataUnavailableError when there is no data
    (a `data_dir` that does not exist included: nbconv never creates it), ValueError for an unknown name.
    """
    info = describe(dataset)
    if data_dir is not None and not os.path.isdir(data_dir):
        raise DataUnavailableError(f"data directory {data_dir} does not exist (nbconv does not create it)")
    if isinstance(info, SyntheticInfo):
        train_images, train_labels = synthetic.generate(info.spec, info.spec.train, seed, split=0)
        test_images, test_labels = synthetic.generate(info.spec, info.spec.test, seed, split=1)
        return Splits(train_images, train_labels, test_images, test_labels, f"{info.name} (made by nbconv)",
                      class_names=info.class_names)
    if isinstance(info, CIFARInfo):
        return _load_cifar(info, data_dir, download_missing, mirrors, echo)
    return _load_idx(info, data_dir, download_missing, mirrors, allow_sample, echo)
