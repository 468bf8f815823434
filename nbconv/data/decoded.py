"""Decoded copies of gzip-compressed IDX files, kept in nbconv's cache: a dataset is decompressed once, not at
every run (MNIST's training images: ~0.2 s of zlib, against ~15 ms to read the decoded file, on the path of
every `nbconv train` before its first step).

A copy is named after the compressed file's real path and its size and modification time, so that a file
replaced or edited gets a new copy (the older one is removed), and it is read with read_idx's full
validation, like any IDX file: a copy that fails it is decompressed and written again. Beside each copy a
`.source` file names the compressed file; whenever a copy is written, the copies of files that no longer
exist are removed. Copies are written atomically, so processes reading the same dataset at once (MPI ranks)
never see a part of one. Where the cache cannot be written, the file is simply decompressed.
"""
import glob
import hashlib
import os

from ..files import atomic_write_bytes
from .idx import IDXError, MAX_IDX_BYTES, read_idx, write_idx

SOURCE_SUFFIX = ".source"  # beside a copy: the real path of the file it was decoded from


def copy_path(path, directory):
    """Where the decoded copy of the gzip file `path`, as it is now, is kept in `directory`."""
    real = os.path.realpath(path)
    status = os.stat(real)
    stem = os.path.basename(real)[:-len(".gz")] if real.endswith(".gz") else os.path.basename(real)
    return os.path.join(directory, f"{stem}-{_digest(real)}-{_digest(f'{status.st_size}:{status.st_mtime_ns}')}")


def _digest(text):
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def read_idx_decoded_once(path, directory, max_bytes=MAX_IDX_BYTES):
    """read_idx(path); a file whose name ends in .gz is read from its decoded copy in `directory` when there
    is a valid one, else decompressed and its copy written there (best effort: a cache that cannot be
    written changes nothing but the time)."""
    path = os.fspath(path)
    if not path.endswith(".gz"):
        return read_idx(path, max_bytes)
    try:
        copy = copy_path(path, directory)
    except OSError:
        return read_idx(path, max_bytes)  # which says what is wrong with the path
    if os.path.isfile(copy):
        try:
            return read_idx(copy, max_bytes)
        except IDXError:
            pass  # damaged: decompressed again below, and replaced
    array = read_idx(path, max_bytes)
    try:
        write_idx(copy, array)
        atomic_write_bytes(copy + SOURCE_SUFFIX, os.fsencode(os.path.realpath(path)))
    except OSError:
        return array
    _remove_stale_copies(copy)
    return array


def _remove_stale_copies(copy):
    """Remove the copies of the same compressed file made before it changed, and those of files that are gone."""
    directory = os.path.dirname(copy)
    stem_and_source = copy[:copy.rindex("-")]
    for older in glob.glob(glob.escape(stem_and_source) + "-*"):
        if older not in (copy, copy + SOURCE_SUFFIX):
            _remove(older)
    for sidecar in glob.glob(os.path.join(glob.escape(directory), "*" + SOURCE_SUFFIX)):
        try:
            with open(sidecar, "rb") as handle:
                source = os.fsdecode(handle.read(1 << 16))
        except OSError:
            continue
        if source and not os.path.exists(source):
            _remove(sidecar[:-len(SOURCE_SUFFIX)])
            _remove(sidecar)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
