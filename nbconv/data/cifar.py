"""The CIFAR-10 and CIFAR-100 binary format (no pickle): reading records with full validation, writing them
(for tests and tools), and extracting the published .tar.gz archive safely.

A record is `label_bytes` label bytes (CIFAR-10: the label; CIFAR-100: coarse then fine label) followed by
3072 pixel bytes: the 1024 red values of the 32x32 image row by row, then green, then blue. So the
pixels of N records are already (N, 3, 32, 32), channels first.
"""
import contextlib
import gzip
import io
import os
import tarfile
import zlib

import numpy as np

from ..files import atomic_write_bytes, create_temporary
from .errors import DataFileError

SHAPE = (3, 32, 32)
PIXELS = SHAPE[0] * SHAPE[1] * SHAPE[2]


def record_count(path, label_bytes, max_records=60000):
    """The number of records in a CIFAR binary file, from its size; DataFileError naming the file when the
    size is not a whole number of records, or it holds none or more than `max_records`."""
    record = label_bytes + PIXELS
    with _reading(path):
        size = os.path.getsize(path)
    if size == 0 or size % record:
        raise DataFileError(f"{path}: {size:,} bytes is not a whole number of {record}-byte CIFAR records "
                            f"({label_bytes} label byte{'s' if label_bytes > 1 else ''} + {PIXELS} pixels of a "
                            "3x32x32 image): truncated, or not this dataset's file")
    if size // record > max_records:
        raise DataFileError(f"{path}: {size // record:,} records, more than the {max_records:,} this dataset's "
                            "files hold")
    return size // record


def read_records(path, label_bytes, classes, max_records=60000, images=None, labels=None):
    """uint8 images (N, 3, 32, 32) and int64 labels (N,) of a CIFAR binary file; with 2 label bytes
    (CIFAR-100) the second, fine label. Written into `images` and `labels` when given (of N rows: several
    files then fill one array without a concatenated copy). Raises DataFileError naming the file when its
    size is not a whole number of records, it holds none or more than `max_records`, or a label is not
    below `classes`."""
    count = record_count(path, label_bytes, max_records)
    with _reading(path), open(path, "rb") as handle:
        records = np.fromfile(handle, np.uint8, count * (label_bytes + PIXELS))
    if records.size != count * (label_bytes + PIXELS):
        raise DataFileError(f"{path}: ended after {records.size:,} bytes while being read (changed meanwhile?)")
    records = records.reshape(count, label_bytes + PIXELS)
    labels = np.empty(count, np.int64) if labels is None else labels
    labels[:] = records[:, label_bytes - 1]
    check_labels(path, labels, classes)
    images = np.empty((count,) + SHAPE, np.uint8) if images is None else images
    images.reshape(count, PIXELS)[:] = records[:, label_bytes:]
    return images, labels


@contextlib.contextmanager
def _reading(path):
    """Within: an OSError (a file that cannot be opened or read) is a DataFileError naming the file."""
    try:
        yield
    except OSError as error:
        raise DataFileError(f"{path}: cannot be read ({error.strerror or error})") from None


def check_labels(path, labels, classes):
    """DataFileError naming `path` when a label is outside 0..classes-1."""
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if bad.size:
        raise DataFileError(f"{path}: labels must be 0..{classes - 1}, found {labels[bad[0]]} at record "
                            f"{bad[0]} ({bad.size:,} labels out of range)")


def write_records(path, images, labels, coarse_labels=None):
    """Write uint8 images (N, 3, 32, 32) and labels (N,) as CIFAR-10 records, or CIFAR-100 records when
    coarse_labels are given (coarse, then fine = labels), atomically."""
    images = np.asarray(images, np.uint8).reshape(len(images), PIXELS)
    columns = [np.asarray(labels, np.uint8).reshape(-1, 1)]
    if coarse_labels is not None:
        columns.insert(0, np.asarray(coarse_labels, np.uint8).reshape(-1, 1))
    atomic_write_bytes(path, np.concatenate(columns + [images], axis=1).tobytes())


def read_names(path, classes):
    """Class names from a meta file (one per line; blank lines ignored); DataFileError when the count is
    not `classes`."""
    with _reading(path), open(path, "rb") as handle:
        text = handle.read(1 << 16).decode("utf-8", errors="replace")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != classes or any(len(name) > 100 for name in names):
        raise DataFileError(f"{path}: expected {classes} class names, one per line, found {len(names)}")
    return names


class _BoundedReader(io.RawIOBase):
    """A read-only stream that fails once more than `limit` bytes have been read through it."""

    def __init__(self, stream, limit, path):
        self.stream, self.limit, self.path, self.count = stream, limit, path, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self.stream.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise DataFileError(f"{self.path}: decompresses to more than the {self.limit:,} bytes this "
                                "dataset's archive holds")
        buffer[:len(data)] = data
        return len(data)


def _copy_atomically(source, size, path, what):
    """Copy `size` bytes from a stream to `path` through a temporary file and a rename, 1 MiB at a time."""
    handle, temporary = create_temporary(os.path.dirname(path), os.path.basename(path))  # mode: 0666 less umask
    try:
        with os.fdopen(handle, "wb") as out:
            left = size
            while left:
                block = source.read(min(left, 1 << 20))
                if not block:
                    raise DataFileError(f"{what} is truncated")
                out.write(block)
                left -= len(block)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def extract(archive, directory, members, max_total):
    """Extract the regular files named in `members` ({path in the archive: largest accepted size}) from a
    .tar.gz into `directory`, under their base names, each atomically. Nothing else is written: no path
    from the archive is used as a destination, links and special files are refused, each member's size
    is checked against its bound before it is read, and the whole decompressed stream is bounded by
    `max_total` bytes (a decompression bomb fails early). DataFileError on any violation or when a
    member is missing."""
    found = set()
    try:
        with gzip.open(archive, "rb") as compressed, \
                tarfile.open(fileobj=io.BufferedReader(_BoundedReader(compressed, max_total, archive)),
                             mode="r|") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if name not in members:
                    continue
                if not member.isreg():
                    raise DataFileError(f"{archive}: {name} is not a regular file (a link or device); refused")
                if member.size > members[name]:
                    raise DataFileError(f"{archive}: {name} announces {member.size:,} bytes, more than the "
                                        f"{members[name]:,} it may hold")
                _copy_atomically(tar.extractfile(member), member.size,
                                 os.path.join(directory, os.path.basename(name)), f"{archive}: {name}")
                found.add(name)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DataFileError(f"{archive}: cannot be extracted as a .tar.gz archive ({error})") from None
    missing = sorted(set(members) - found)
    if missing:
        raise DataFileError(f"{archive}: the archive lacks {', '.join(missing)}")
