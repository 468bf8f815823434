"""Gzip-compressed IDX files decompressed once: their decoded copies in nbconv's cache (nbconv.data.decoded)."""
import os

import numpy as np
import pytest

from nbconv.data import decoded, idx
from nbconv.data.decoded import copy_path, read_idx_decoded_once
from nbconv.data.idx import write_idx


def no_decompressing(path, compressed, max_bytes):
    raise AssertionError(f"{path} was decompressed again")


@pytest.fixture
def images(tmp_path):
    path = tmp_path / "data" / "images-idx3-ubyte.gz"
    array = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    write_idx(path, array)
    return path, array


def test_a_gzip_file_is_decompressed_once_then_read_from_its_copy(tmp_path, images, monkeypatch):
    path, array = images
    cache = tmp_path / "cache"
    first = read_idx_decoded_once(path, cache)
    assert np.array_equal(first, array) and first.dtype == np.uint8
    copy = copy_path(path, cache)
    assert sorted(os.listdir(cache)) == [os.path.basename(copy), os.path.basename(copy) + ".source"]
    assert np.array_equal(idx.read_idx(copy), array)  # a plain IDX file
    monkeypatch.setattr(idx, "_read_gzip_bounded", no_decompressing)
    second = read_idx_decoded_once(path, cache)
    assert np.array_equal(second, array) and second.flags.writeable


def test_a_changed_file_gets_a_new_copy_and_the_old_one_goes(tmp_path, images):
    path, array = images
    cache = tmp_path / "cache"
    read_idx_decoded_once(path, cache)
    old_copy = copy_path(path, cache)
    changed = array[::-1].copy()
    write_idx(path, changed)
    status = os.stat(path)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))  # a new time even on a coarse clock
    assert np.array_equal(read_idx_decoded_once(path, cache), changed)
    new_copy = os.path.basename(copy_path(path, cache))
    assert new_copy != os.path.basename(old_copy)
    assert sorted(os.listdir(cache)) == [new_copy, new_copy + ".source"]


def test_another_file_of_the_same_name_keeps_its_own_copy(tmp_path, images):
    path, array = images
    other = tmp_path / "elsewhere" / path.name
    write_idx(other, array + 1)
    cache = tmp_path / "cache"
    assert np.array_equal(read_idx_decoded_once(path, cache), array)
    assert np.array_equal(read_idx_decoded_once(other, cache), array + 1)
    assert np.array_equal(read_idx_decoded_once(path, cache), array)
    assert len(os.listdir(cache)) == 4  # two copies, each with its .source


@pytest.mark.parametrize("damage", ["truncated", "not idx", "empty"])
def test_a_damaged_copy_is_decompressed_again_and_replaced(tmp_path, images, damage):
    path, array = images
    cache = tmp_path / "cache"
    read_idx_decoded_once(path, cache)
    copy = copy_path(path, cache)
    payload = open(copy, "rb").read()
    open(copy, "wb").write({"truncated": payload[:-3], "not idx": b"\xff" * len(payload), "empty": b""}[damage])
    assert np.array_equal(read_idx_decoded_once(path, cache), array)
    assert np.array_equal(idx.read_idx(copy), array)


def test_a_cache_that_cannot_be_written_changes_nothing_but_the_time(tmp_path, images):
    path, array = images
    blocker = tmp_path / "a file"
    blocker.write_bytes(b"")
    assert np.array_equal(read_idx_decoded_once(path, blocker / "cache"), array)
    assert np.array_equal(read_idx_decoded_once(path, blocker / "cache"), array)


def test_uncompressed_and_missing_files_read_as_read_idx_reads_them(tmp_path):
    array = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    plain = tmp_path / "plain-idx3"
    write_idx(plain, array)
    cache = tmp_path / "cache"
    assert np.array_equal(read_idx_decoded_once(plain, cache), array)
    assert not cache.exists()
    with pytest.raises(idx.IDXError, match="missing.gz"):
        read_idx_decoded_once(tmp_path / "missing.gz", cache)


def test_a_bad_gzip_file_is_refused_as_before_and_leaves_no_copy(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    cache = tmp_path / "cache"
    with pytest.raises(idx.IDXError, match="images.gz"):
        read_idx_decoded_once(path, cache)
    assert not cache.exists() or os.listdir(cache) == []


def test_datasets_keep_their_copies_in_the_cache_s_decoded_folder(tmp_path, monkeypatch):
    from nbconv.data import load
    from nbconv.data.datasets import DATASETS
    folder = tmp_path / "mnist"
    rng = np.random.default_rng(1)
    parts = {"train_images": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
             "train_labels": rng.integers(0, 10, 20, dtype=np.uint8),
             "test_images": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
             "test_labels": rng.integers(0, 10, 10, dtype=np.uint8)}
    for part, name in DATASETS["mnist"].files.items():
        write_idx(folder / (name if name.endswith(".gz") else name + ".gz"), parts[part])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    first = load("mnist", str(folder), download_missing=False, allow_sample=False)
    assert len(os.listdir(tmp_path / "home-cache" / "nbconv" / "decoded")) == 8  # 4 copies, 4 .source
    monkeypatch.setattr(idx, "_read_gzip_bounded", no_decompressing)
    second = load("mnist", str(folder), download_missing=False, allow_sample=False)
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    assert np.array_equal(second.train_images[:, 0], parts["train_images"])
    assert decoded.read_idx is idx.read_idx  # the one reader, with its validation


def test_the_copies_of_files_that_are_gone_are_removed_when_a_copy_is_written(tmp_path, images):
    path, array = images
    cache = tmp_path / "cache"
    gone = tmp_path / "gone" / "labels-idx1-ubyte.gz"
    write_idx(gone, np.arange(9, dtype=np.uint8))
    read_idx_decoded_once(gone, cache)
    gone_copy = copy_path(gone, cache)
    assert sorted(os.listdir(cache)) == sorted([os.path.basename(gone_copy), os.path.basename(gone_copy) + ".source"])
    os.remove(gone)
    read_idx_decoded_once(path, cache)
    copy = os.path.basename(copy_path(path, cache))
    assert sorted(os.listdir(cache)) == [copy, copy + ".source"]
