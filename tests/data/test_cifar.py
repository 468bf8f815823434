"""CIFAR-10/100 binary files: reading (files the test writes), safe extraction of the archive, download
against a local server, and clear errors for files that do not belong to the dataset."""
import dataclasses
import hashlib
import io
import os
import tarfile

import numpy as np
import pytest

from nbconv.data import DataFileError, cifar, datasets
from tests.data.test_datasets import _quiet, _Server

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _images(rng, labels):
    """Images whose red channel encodes the label, so a test can tell records apart."""
    images = rng.integers(0, 256, (len(labels), 3, 32, 32)).astype(np.uint8)
    images[:, 0, 0, 0] = labels
    return images


def make_tiny_cifar(directory, dataset="cifar10", per_file=12, seed=0):
    """Small CIFAR files in the binary format, in `directory`; returns {file name: (images, labels)}."""
    info = datasets.DATASETS[dataset]
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    written = {}
    for name in info.train_files + info.test_files:
        labels = rng.integers(0, info.num_classes, per_file)
        images = _images(rng, labels)
        coarse = labels // 5 if dataset == "cifar100" else None
        cifar.write_records(os.path.join(directory, name), images, labels, coarse)
        written[name] = (images, labels)
    names = CIFAR10_NAMES if dataset == "cifar10" else [f"fine{k}" for k in range(100)]
    with open(os.path.join(directory, info.names_file), "w") as handle:
        handle.write("\n".join(names) + "\n\n")
    return written


def _tar_gz(members):
    """A .tar.gz (bytes) of {name: bytes or tarfile.TarInfo}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            if isinstance(payload, tarfile.TarInfo):
                tar.addfile(payload)
                continue
            entry = tarfile.TarInfo(name)
            entry.size = len(payload)
            tar.addfile(entry, io.BytesIO(payload))
    return buffer.getvalue()


def _archive_of(directory, dataset="cifar10"):
    info = datasets.DATASETS[dataset]
    names = info.train_files + info.test_files + (info.names_file,)
    return _tar_gz({f"{info.folder}/{name}": open(os.path.join(directory, name), "rb").read() for name in names})


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.delenv(datasets.ENV_DATA_DIR, raising=False)
    monkeypatch.delenv(datasets.ENV_MIRRORS, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_cifar10_records_channels_first_with_names(isolated):
    written = make_tiny_cifar(str(isolated / "data" / "cifar-10-batches-bin"))
    splits = datasets.load("cifar10", data_dir=str(isolated / "data"), download_missing=False)
    assert splits.train_images.shape == (60, 3, 32, 32) and splits.train_images.dtype == np.uint8
    assert splits.test_images.shape == (12, 3, 32, 32) and splits.test_labels.dtype == np.int64
    first_images, first_labels = written["data_batch_1.bin"]
    np.testing.assert_array_equal(splits.train_images[:12], first_images)
    np.testing.assert_array_equal(splits.train_labels[:12], first_labels)
    np.testing.assert_array_equal(splits.train_labels[48:], written["data_batch_5.bin"][1])
    assert list(splits.class_names) == CIFAR10_NAMES


def test_record_layout_is_label_then_red_green_blue_planes(tmp_path):
    path = str(tmp_path / "one.bin")
    image = np.zeros((1, 3, 32, 32), np.uint8)
    image[0, 0, 0, 1], image[0, 1, 2, 3], image[0, 2, 31, 31] = 7, 8, 9  # red (0, 1), green (2, 3), blue (31, 31)
    cifar.write_records(path, image, [4])
    raw = open(path, "rb").read()
    assert len(raw) == 3073 and raw[0] == 4
    assert raw[1 + 1] == 7 and raw[1 + 1024 + 2 * 32 + 3] == 8 and raw[1 + 2048 + 31 * 32 + 31] == 9


def test_cifar100_uses_the_fine_labels(isolated):
    written = make_tiny_cifar(str(isolated / "cifar100"), "cifar100")
    splits = datasets.load("cifar100", data_dir=str(isolated), download_missing=False)
    np.testing.assert_array_equal(splits.train_labels, written["train.bin"][1])
    assert splits.train_labels.max() > 19 and len(splits.class_names) == 100 and splits.class_names[3] == "fine3"


def test_archive_on_disk_is_extracted_beside_it(isolated):
    make_tiny_cifar(str(isolated / "source"))
    (isolated / "data").mkdir()
    (isolated / "data" / "cifar-10-binary.tar.gz").write_bytes(_archive_of(str(isolated / "source")))
    splits = datasets.load("cifar10", data_dir=str(isolated / "data"), download_missing=False)
    assert splits.train_images.shape == (60, 3, 32, 32)
    assert sorted(os.listdir(isolated / "data" / "cifar-10-batches-bin")) == sorted(
        os.listdir(isolated / "source"))


def test_extracted_files_have_the_umask_mode(isolated):
    """Extracted record files were 0600 (tempfile.mkstemp's mode): unreadable to others in a shared folder."""
    make_tiny_cifar(str(isolated / "source"))
    (isolated / "data").mkdir()
    (isolated / "data" / "cifar-10-binary.tar.gz").write_bytes(_archive_of(str(isolated / "source")))
    umask = os.umask(0o022)
    try:
        datasets.load("cifar10", data_dir=str(isolated / "data"), download_missing=False)
    finally:
        os.umask(umask)
    folder = isolated / "data" / "cifar-10-batches-bin"
    assert {os.stat(folder / name).st_mode & 0o777 for name in os.listdir(folder)} == {0o644}


def test_download_verifies_md5_then_extracts_and_caches(isolated, monkeypatch):
    make_tiny_cifar(str(isolated / "source"))
    payload = _archive_of(str(isolated / "source"))
    info = dataclasses.replace(datasets.DATASETS["cifar10"], md5=hashlib.md5(payload).hexdigest())
    monkeypatch.setitem(datasets.DATASETS, "cifar10", info)
    with _Server({"cifar-10-binary.tar.gz": payload}) as server:
        splits = datasets.load("cifar10", mirrors=(server.url,), echo=_quiet)
        assert splits.train_images.shape == (60, 3, 32, 32) and server.requests == ["cifar-10-binary.tar.gz"]
        again = datasets.load("cifar10", mirrors=(server.url,), echo=_quiet)  # from the cache, no request
        assert len(server.requests) == 1 and again.source == splits.source
    cache = isolated / "cache" / "nbconv" / "cifar10"
    assert sorted(os.listdir(cache)) == ["cifar-10-batches-bin", "cifar-10-binary.tar.gz"]

    monkeypatch.setitem(datasets.DATASETS, "cifar10", dataclasses.replace(info, md5="0" * 32))
    monkeypatch.setenv("XDG_CACHE_HOME", str(isolated / "fresh"))
    with _Server({"cifar-10-binary.tar.gz": payload}) as server:
        with pytest.raises(datasets.DataUnavailableError, match="md5 .* does not match"):
            datasets.load("cifar10", mirrors=(server.url,), echo=_quiet)
    assert os.listdir(isolated / "fresh" / "nbconv" / "cifar10") == []


@pytest.mark.parametrize("kind", ["traversal", "symlink", "oversized", "missing"])
def test_hostile_archives_are_refused_and_write_nothing_outside(tmp_path, kind):
    make_tiny_cifar(str(tmp_path / "source"))
    info = datasets.DATASETS["cifar10"]
    members = {f"{info.folder}/{name}": open(tmp_path / "source" / name, "rb").read()
               for name in info.train_files + info.test_files + (info.names_file,)}
    wanted = f"{info.folder}/test_batch.bin"
    if kind == "traversal":
        members["../../escaped.bin"] = b"x" * 10
    elif kind == "symlink":
        link = tarfile.TarInfo(wanted)
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        members[wanted] = link
    elif kind == "oversized":
        members[wanted] = bytes(10001 * 3073)
    else:
        del members[wanted]
    archive = tmp_path / "a" / "b" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(_tar_gz(members))
    target = tmp_path / "a" / "b" / "out"
    target.mkdir()
    if kind == "traversal":  # not a member nbconv wants: skipped, and the rest extracts
        cifar.extract(str(archive), str(target), info.member_sizes(), 1 << 30)
    else:
        message = {"symlink": "not a regular file", "oversized": "more than", "missing": "lacks"}[kind]
        with pytest.raises(DataFileError, match=message):
            cifar.extract(str(archive), str(target), info.member_sizes(), 1 << 30)
    assert sorted(os.listdir(tmp_path)) == ["a", "source"] and sorted(os.listdir(tmp_path / "a")) == ["b"]
    assert all(not os.path.islink(target / name) for name in os.listdir(target))


def test_decompression_is_bounded(tmp_path):
    info = datasets.DATASETS["cifar10"]
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(_tar_gz({"padding.bin": bytes(8 << 20)}))  # 8 MiB of zeros, a few kB on disk
    assert archive.stat().st_size < 100_000
    with pytest.raises(DataFileError, match="decompresses to more than"):
        cifar.extract(str(archive), str(tmp_path), info.member_sizes(), 1 << 20)


def test_labels_out_of_range_truncated_files_and_bad_names_are_clear_errors(isolated):
    folder = isolated / "data"
    make_tiny_cifar(str(folder))
    images = np.zeros((3, 3, 32, 32), np.uint8)
    cifar.write_records(str(folder / "test_batch.bin"), images, [1, 10, 2])
    with pytest.raises(DataFileError, match=r"test_batch.bin: labels must be 0..9, found 10 at record 1"):
        datasets.load("cifar10", data_dir=str(folder), download_missing=False)
    cifar.write_records(str(folder / "test_batch.bin"), images, [1, 2, 3])
    with open(folder / "data_batch_3.bin", "r+b") as handle:
        handle.truncate(3073 * 5 - 7)
    with pytest.raises(DataFileError, match=r"data_batch_3.bin: .* not a whole number of 3073-byte CIFAR records"):
        datasets.load("cifar10", data_dir=str(folder), download_missing=False)
    make_tiny_cifar(str(folder))
    (folder / "batches.meta.txt").write_text("cat\ndog\n")
    with pytest.raises(DataFileError, match="expected 10 class names"):
        datasets.load("cifar10", data_dir=str(folder), download_missing=False)


def test_an_unreadable_record_or_names_file_is_a_clear_error(isolated, monkeypatch):
    """A record or class-name file that cannot be opened (no read permission) was a PermissionError traceback."""
    folder = isolated / "data"
    make_tiny_cifar(str(folder))
    for refused in ("batches.meta.txt", "test_batch.bin"):
        def guarded_open(path, *args, **kwargs):
            if os.path.basename(path) == refused:
                raise PermissionError(13, "Permission denied", path)
            return open(path, *args, **kwargs)
        monkeypatch.setattr(cifar, "open", guarded_open, raising=False)
        with pytest.raises(DataFileError, match=rf"{refused}: cannot be read \(Permission denied\)"):
            datasets.load("cifar10", data_dir=str(folder), download_missing=False)


def test_an_archive_whose_folder_name_is_taken_by_a_file_is_a_clear_error(isolated):
    """Extraction into cifar-10-batches-bin where a file of that name stood was a FileExistsError traceback."""
    make_tiny_cifar(str(isolated / "source"))
    (isolated / "data").mkdir()
    (isolated / "data" / "cifar-10-binary.tar.gz").write_bytes(_archive_of(str(isolated / "source")))
    (isolated / "data" / "cifar-10-batches-bin").write_bytes(b"")
    with pytest.raises(datasets.DataUnavailableError, match="cannot create .*cifar-10-batches-bin to extract"):
        datasets.load("cifar10", data_dir=str(isolated / "data"), download_missing=False)


def test_cifar100_file_read_as_cifar10_is_refused(isolated):
    """CIFAR-100 records are 3074 bytes: read as CIFAR-10 files, the sizes do not divide (most counts)."""
    make_tiny_cifar(str(isolated / "c100"), "cifar100", per_file=7)
    with pytest.raises(DataFileError, match="3073-byte"):
        cifar.read_records(str(isolated / "c100" / "train.bin"), 1, 10)
