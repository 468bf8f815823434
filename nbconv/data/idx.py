"""The IDX file format (MNIST, Fashion-MNIST), plain or gzip-compressed, read with full validation."""
import gzip
import os
import struct
import zlib

import numpy as np

# IDX type codes -> big-endian numpy dtypes
_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {dtype.newbyteorder("=").str: code for code, dtype in _TYPES.items()}


class IDXError(ValueError):
    """A file that is not a valid IDX file (bad magic number, dimensions or size)."""


def _read_bytes(path):
    """The file's bytes, decompressed when it is gzip-compressed. One gzip.decompress call, not a stream
    read: it holds the GIL far less, so loading overlaps with other work (nbconv train builds the model
    meanwhile)."""
    with open(path, "rb") as handle:
        data = handle.read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def read_idx(path):
    """The array stored in an IDX file (optionally .gz), in native byte order.

    Raises IDXError naming the file when the magic number, the dimensions or the size are wrong.
    """
    path = os.fspath(path)
    try:
        data = _read_bytes(path)
    except (OSError, EOFError, zlib.error) as error:  # truncated or corrupt gzip stream
        raise IDXError(f"{path}: cannot be read as an IDX file ({error})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise IDXError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'none'})")
    dtype, ndim = _TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise IDXError(f"{path}: IDX header announces {ndim} dimensions but the file ends after {len(data)} bytes")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise IDXError(f"{path}: IDX shape {shape} needs {expected} bytes, the file holds {len(data)} "
                       f"({'truncated' if len(data) < expected else 'trailing data'})")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path, array):
    """Write `array` as an IDX file (gzip-compressed when the path ends in .gz), atomically."""
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("=").str if array.dtype.byteorder not in "=|" else array.dtype.str)
    if code is None:
        raise TypeError(f"array dtype {array.dtype} has no IDX type; use uint8, int8, int16, int32, float32 or float64")
    payload = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + \
        np.ascontiguousarray(array, _TYPES[code]).tobytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    atomic_write_bytes(path, payload)


def atomic_write_bytes(path, payload):
    """Write bytes to `path` atomically (nbconv.files.atomic_write_bytes, importable from here too)."""
    from ..files import atomic_write_bytes as write
    write(path, payload)
