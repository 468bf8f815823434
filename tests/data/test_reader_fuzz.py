"""Seeded mutation fuzzing of the dataset readers: IDX files (plain and .gz), the CIFAR-10 archive and downloads.
Each mutant is read sanely or refused with the reader's own error naming the file (DataFileError, or
DownloadError naming the URL), never another exception, a hang or a file left behind."""
import gzip
import hashlib
import os

import numpy as np
import pytest

from nbconv.data import DataFileError, datasets, download, idx
from tests import fuzzing
from tests.data.test_cifar import _archive_of, make_tiny_cifar
from tests.data.test_datasets import _Server

IMAGES = np.random.default_rng(0).integers(0, 256, (20, 28, 28)).astype(np.uint8)


def _sane_idx(array):
    return None if isinstance(array, np.ndarray) and array.dtype.isnative and array.ndim >= 1 else "not an array"


def _run(mutants, read, tmp_path, own, sane=None, name="mutant", names=None):
    """Defects (list of text) of read() on each (label, bytes) mutant, written to tmp_path/<index>/name."""
    defects, outcomes = [], {"ok": 0, "own": 0, "defect": 0}
    for index, (label, data) in enumerate(mutants):
        folder = tmp_path / str(index)
        folder.mkdir()
        path = folder / name
        path.write_bytes(data)
        kind, detail = fuzzing.outcome(read, str(path), own, sane, names=names and str(folder))
        outcomes[kind] += 1
        if kind == "defect":
            defects.append(f"#{index} {label}: {detail}")
    return defects, outcomes


@pytest.mark.parametrize("compressed", [False, True])
def test_mutated_idx_files_read_sanely_or_are_one_idx_error(compressed, tmp_path):
    seed_path = tmp_path / ("seed.gz" if compressed else "seed")
    idx.write_idx(str(seed_path), IMAGES)
    seed = seed_path.read_bytes()
    plain = gzip.decompress(seed) if compressed else seed
    rng = np.random.default_rng(20261127 + compressed)
    mutants = []
    for index in range(40):
        if index % 3 == 0:
            label, data = fuzzing.idx_header_mutant(rng, plain)
            mutants.append((label, gzip.compress(data, mtime=0) if compressed else data))
        elif index % 3 == 1 and compressed:
            mutants.append(fuzzing.gzip_inner_mutant(rng, seed))
        else:
            mutants.append(fuzzing.mutate_bytes(rng, seed))
    defects, outcomes = _run(mutants, idx.read_idx, tmp_path, (idx.IDXError,), _sane_idx,
                             name="mutant.gz" if compressed else "mutant")
    assert not defects, "\n".join(defects)
    assert outcomes["own"] >= 20, outcomes


def test_mutated_cifar_archives_load_sanely_or_are_one_data_file_error(tmp_path, monkeypatch):
    """Damaged .tar.gz bytes, a damaged tar stream compressed again, and members made hostile: names with '..' or
    absolute, symbolic and hard links, devices, FIFOs, directories, short or duplicated members."""
    monkeypatch.delenv(datasets.ENV_DATA_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    make_tiny_cifar(str(tmp_path / "source"), per_file=2)
    seed = _archive_of(str(tmp_path / "source"))
    rng = np.random.default_rng(20261127)
    mutants = [fuzzing.tar_member_mutant(rng, seed) if index % 3 == 0 else
               fuzzing.tar_inner_mutant(rng, seed) if index % 3 == 1 else fuzzing.mutate_bytes(rng, seed)
               for index in range(30)]

    def read(path):
        return datasets.load("cifar10", data_dir=os.path.dirname(path), download_missing=False)

    def sane(splits):
        ok = splits.train_images.shape[1:] == (3, 32, 32) and 0 <= splits.train_labels.min() and \
            splits.train_labels.max() < 10 and len(splits.train_images) == len(splits.train_labels)
        return None if ok else "splits of the wrong shape or labels out of range"

    runs = tmp_path / "runs"
    runs.mkdir()
    defects, outcomes = _run(mutants, read, runs, (DataFileError,), sane, name="cifar-10-binary.tar.gz", names=True)
    assert not defects, "\n".join(defects)
    assert outcomes["own"] >= 10, outcomes
    for folder in runs.iterdir():  # nothing but the archive and the folder it extracts to
        assert set(os.listdir(folder)) <= {"cifar-10-binary.tar.gz", "cifar-10-batches-bin"}, os.listdir(folder)


ANNOUNCED = (True, False, "12abc", "-5", "", "99999999999999999999999")


def test_mutated_downloads_are_one_download_error_and_leave_nothing(tmp_path):
    """Damaged bodies behind true, missing and malformed Content-Length headers: never accepted, never another
    exception, no partial file left."""
    seed_path = tmp_path / "seed.gz"
    idx.write_idx(str(seed_path), IMAGES)
    seed = seed_path.read_bytes()
    md5 = hashlib.md5(seed).hexdigest()
    rng = np.random.default_rng(20261127)
    bodies = {f"{index}.gz": (fuzzing.mutate_bytes(rng, seed) if index % 2 else fuzzing.gzip_inner_mutant(rng, seed))
              for index in range(24)}
    defects = []
    for mode, announced in enumerate(ANNOUNCED):  # one server per kind of header (stopping one takes 0.5 s)
        served = {name: body for name, (_, body) in bodies.items() if int(name[:-3]) % len(ANNOUNCED) == mode}
        with _Server(served, announce_length=announced) as server:
            for name in served:
                folder = tmp_path / name[:-3]
                folder.mkdir()
                kind, detail = fuzzing.outcome(
                    lambda destination: download.download_file(server.url + name, destination, {md5},
                                                               connect_timeout=5, deadline=20, max_bytes=1 << 20),
                    str(folder / "x.gz"), (download.DownloadError,), names=server.url)
                if served[name] != seed and (kind != "own" or os.listdir(folder)):
                    defects.append(f"#{name} {bodies[name][0]} Content-Length {announced!r}: {kind} {detail}; "
                                   f"left {os.listdir(folder)}")
    assert not defects, "\n".join(defects)
