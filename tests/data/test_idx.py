"""IDX reading and writing: round trips, and clear errors for corrupt files."""
import gzip
import os

import numpy as np
import pytest

from nbconv.data import IDXError, read_idx, write_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_round_trip(tmp_path, suffix, dtype, rng):
    array = (rng.random((5, 4, 3)) * 100).astype(dtype)
    path = tmp_path / f"data-idx3{suffix}"
    write_idx(path, array)
    loaded = read_idx(path)
    assert loaded.dtype == dtype
    np.testing.assert_array_equal(loaded, array)


def test_known_header_bytes(tmp_path):
    write_idx(tmp_path / "labels", np.array([3, 1, 4], np.uint8))
    assert (tmp_path / "labels").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])


@pytest.mark.parametrize("payload,message", [
    (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "truncated"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "trailing data"),
    (b"\x12\x34\x08\x01\x00\x00\x00\x01\x01", "bad magic number"),
    (b"\x00\x00\x08\x03\x00\x00", "dimensions"),
    (b"", "bad magic number"),
    # dimensions whose product overflows an int64: 2**64 wrapped to 0 and reached numpy's reshape unnamed
    (b"\x00\x00\x08\x04" + b"\x00\x01\x00\x00" * 4, "needs 18446744073709551636 bytes"),
    (b"\x00\x00\x0d\x03" + b"\xff\xff\xff\xff" * 3, "truncated"),
])
def test_corrupt_files_name_the_file(tmp_path, payload, message):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(payload)
    with pytest.raises(IDXError, match=message) as raised:
        read_idx(path)
    assert str(path) in str(raised.value)


def test_overflowing_dimensions_in_a_gzip_file_are_refused_by_their_size(tmp_path):
    path = tmp_path / "huge.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x04" + b"\x00\x01\x00\x00" * 4))
    with pytest.raises(IDXError, match="huge.gz: IDX header announces shape .* more than nbconv reads"):
        read_idx(path)


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(200))[:-12])
    with pytest.raises(IDXError, match="images.gz"):
        read_idx(path)


def test_gzip_bomb_stops_at_the_size_its_header_declares(tmp_path):
    """A header announcing one 28x28 image followed by 200 MiB of zeros (200 kB compressed) fails on the
    bytes past the declared size; nothing near 200 MiB is decompressed."""
    import tracemalloc
    path = tmp_path / "bomb-idx3-ubyte.gz"
    import zlib
    compressor = zlib.compressobj(9, wbits=31)
    parts = [compressor.compress(bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28]))]
    block = bytes(1 << 20)
    parts += [compressor.compress(block) for _ in range(200)]
    path.write_bytes(b"".join(parts) + compressor.flush())
    assert path.stat().st_size < 1_000_000
    tracemalloc.start()
    with pytest.raises(IDXError, match="trailing data"):
        read_idx(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 << 20


def test_header_announcing_more_than_the_file_can_hold_is_refused_at_once(tmp_path):
    path = tmp_path / "huge-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 3, 232, 0, 0, 3, 232]) + bytes(100)))
    with pytest.raises(IDXError, match="more than a file of this size can hold"):
        read_idx(path)
    with pytest.raises(IDXError, match="more than nbconv reads"):
        read_idx(path, max_bytes=1000)


def test_uncompressed_files_are_read_only_up_to_the_bound(tmp_path):
    path = tmp_path / "large-idx3-ubyte"
    write_idx(path, np.zeros((10, 10, 10), np.uint8))  # 1,016 bytes, valid
    assert read_idx(path, max_bytes=2000).shape == (10, 10, 10)
    with pytest.raises(IDXError, match="large-idx3-ubyte: larger than the 1,000 bytes nbconv reads"):
        read_idx(path, max_bytes=1000)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_that_never_ends_is_refused_after_the_bound():
    with pytest.raises(IDXError, match="larger than"):
        read_idx("/dev/zero", max_bytes=1 << 20)
