"""MNIST and Fashion-MNIST: finding the files, downloading them (md5-verified, atomic, with progress),
and falling back to the small MNIST sample shipped inside the package when offline.

Search order for a dataset's four files: the `data_dir` argument (--data-dir), then the
NBCONV_DATA_DIR environment variable, then the per-user cache directory; in each, the files may sit
directly in the directory or in a sub-directory named after the dataset, compressed (.gz) or not.
"""
import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import click
import numpy as np

from .idx import IDXError, read_idx

ENV_DATA_DIR = "NBCONV_DATA_DIR"
ENV_MIRRORS = "NBCONV_DATA_MIRRORS"
PARTS = ("train_images", "train_labels", "test_images", "test_labels")
SAMPLE_DIR = os.path.join(os.path.dirname(__file__), "sample")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    files: dict                 # part -> file name (.gz) as published
    md5s: dict                  # part -> accepted md5 sums, of the .gz file or of its uncompressed contents
    mirrors: tuple = field(default=())
    credit: str = ""


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
        "Fashion-MNIST by Zalando Research, MIT licence"),
}


class DataUnavailableError(RuntimeError):
    """The dataset is neither on disk nor downloadable, and no fallback applies."""


@dataclass
class Splits:
    """uint8 images (N, 28, 28) and int64 labels (N,) for training and test, and where they came from."""
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    is_sample: bool = False


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


def _md5s(payload):
    sums = {hashlib.md5(payload).hexdigest()}
    if payload[:2] == b"\x1f\x8b":
        try:
            sums.add(hashlib.md5(gzip.decompress(payload)).hexdigest())
        except (OSError, EOFError):
            pass
    return sums


def download_file(url, destination, accepted_md5s, timeout=30, label=None):
    """Fetch `url` to `destination` with a progress bar; verify the md5 and rename into place.

    On any failure (network, md5 mismatch, interruption) nothing is left at `destination` and no
    partial file remains beside it.
    """
    directory = os.path.dirname(os.path.abspath(destination))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".download-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with click.progressbar(length=total, label=label or os.path.basename(destination),
                                   file=click.get_text_stream("stderr")) as bar:
                while True:
                    chunk = response.read(1 << 16)
                    if not chunk:
                        break
                    out.write(chunk)
                    bar.update(len(chunk))
        with open(temporary, "rb") as downloaded:
            payload = downloaded.read()
        if total is not None and len(payload) != total:
            raise IOError(f"{url}: download ended after {len(payload)} of {total} bytes")
        if not _md5s(payload) & set(accepted_md5s):
            raise IOError(f"{url}: md5 {hashlib.md5(payload).hexdigest()} does not match the published checksum")
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def download(info, directory, mirrors=None, echo=click.echo):
    """Download the dataset's missing files into `directory`, trying each mirror in turn."""
    mirrors = mirrors or _env_mirrors() or info.mirrors
    for part, name in info.files.items():
        destination = os.path.join(directory, name)
        if _find(directory, name):
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                echo(f"downloading {url}", err=True)
                download_file(url, destination, info.md5s[part], label=name)
                break
            except (urllib.error.URLError, OSError, ValueError) as error:
                errors.append(f"{url}: {error}")
        else:
            raise DataUnavailableError(f"could not download {name} from any mirror:\n  " + "\n  ".join(errors))


def _env_mirrors():
    value = os.environ.get(ENV_MIRRORS, "")
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _read(paths, source, is_sample=False):
    arrays = {}
    for part, path in paths.items():
        arrays[part] = read_idx(path)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise IDXError(f"{paths[split + '_images']}: {split} images {images.shape} and labels {labels.shape} "
                           "do not pair up as (N, H, W) images with (N,) labels")
    return Splits(arrays["train_images"], arrays["train_labels"].astype(np.int64),
                  arrays["test_images"], arrays["test_labels"].astype(np.int64), source, is_sample)


def sample_paths():
    return {part: os.path.join(SAMPLE_DIR, name) for part, name in DATASETS["mnist"].files.items()}


def load(dataset="mnist", data_dir=None, download_missing=True, mirrors=None, allow_sample=True, echo=click.echo):
    """Find, or download, and read a dataset. Offline with nothing on disk, MNIST falls back to the
    shipped sample (a few thousand images), announced loudly."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    info = DATASETS[dataset]
    directory, paths = _locate(info, data_dir)
    if paths:
        return _read(paths, directory)
    target = data_dir or os.path.join(default_cache_dir(), dataset)
    problem = f"{dataset} was not found in: {', '.join(search_dirs(dataset, data_dir))}"
    if download_missing:
        try:
            download(info, target, mirrors, echo)
            directory, paths = _locate(info, target)
            return _read(paths, directory)
        except DataUnavailableError as error:
            problem += f"\nand the download failed: {error}"
    if dataset == "mnist" and allow_sample:
        echo("=" * 78 + f"\nWARNING: {problem}\nFalling back to the small MNIST SAMPLE shipped with nbconv "
             "(3,000 training and 1,000 test images).\nAccuracy will be far below full-MNIST figures. "
             f"Put the four MNIST files in a directory and pass --data-dir or set {ENV_DATA_DIR}.\n" + "=" * 78,
             err=True)
        return _read(sample_paths(), "the shipped MNIST sample", is_sample=True)
    raise DataUnavailableError(problem)
