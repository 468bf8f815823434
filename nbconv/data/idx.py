"""The IDX file format (MNIST, Fashion-MNIST), plain or gzip-compressed, read with full validation."""
import gzip
import math
import os
import stat
import struct
import zlib

import numpy as np

from ..files import atomic_write_bytes
from .errors import DataFileError

# IDX type codes -> big-endian numpy dtypes
_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {dtype.newbyteorder("=").str: code for code, dtype in _TYPES.items()}


# Deflate cannot compress better than about 1032:1, so a .gz file whose header announces more than this
# many times its own size is damaged or crafted; and no IDX file nbconv reads comes near this bound.
MAX_DEFLATE_RATIO = 1032
MAX_IDX_BYTES = 2 << 30
READ_CHUNK = 16 << 20


class IDXError(DataFileError):
    """A file that is not a valid IDX file (bad magic number, dimensions or size)."""


def _header_size(head):
    """The IDX header's length in bytes from its first four bytes (magic number checked by the caller)."""
    return 4 + 4 * head[3] if len(head) >= 4 else 4


def _check_magic(path, head):
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _TYPES:
        raise IDXError(f"{path}: not an IDX file (bad magic number {head[:4].hex() or 'none'})")


def _declared(path, header):
    """(dtype, shape, total bytes) an IDX header announces."""
    dtype, ndim = _TYPES[header[2]], header[3]
    if ndim == 0 or len(header) < 4 + 4 * ndim:
        raise IDXError(f"{path}: IDX header announces {ndim} dimensions but the file ends after {len(header)} bytes")
    shape = struct.unpack(f">{ndim}I", header[4:4 + 4 * ndim])
    # in Python ints: four dimensions of 2**16 wrapped an int64 product to 0
    return dtype, shape, 4 + 4 * ndim + math.prod(shape) * dtype.itemsize


def _read_gzip_bounded(path, compressed, max_bytes):
    """Decompress an IDX .gz payload, never producing more than its IDX header declares (plus one byte,
    to see trailing data): a gzip bomb fails after its header, not after filling memory."""
    inflater = zlib.decompressobj(wbits=31)
    head = inflater.decompress(compressed, 4)
    _check_magic(path, head)
    header_size = _header_size(head)
    head += inflater.decompress(inflater.unconsumed_tail, header_size - len(head))
    _, shape, expected = _declared(path, head)
    if expected > max_bytes or expected > MAX_DEFLATE_RATIO * max(len(compressed), 1) + header_size:
        raise IDXError(f"{path}: IDX header announces shape {shape} ({expected:,} bytes), more than "
                       f"{'nbconv reads from one file' if expected > max_bytes else 'a file of this size can hold'}")
    body = inflater.decompress(inflater.unconsumed_tail, expected - len(head) + 1)
    data = head + body
    if len(data) > expected:
        raise IDXError(f"{path}: IDX shape {shape} needs {expected} bytes, the file holds more (trailing data)")
    if not inflater.eof and len(data) == expected and inflater.decompress(inflater.unconsumed_tail, 1):
        raise IDXError(f"{path}: IDX shape {shape} needs {expected} bytes, the file holds more (trailing data)")
    if not inflater.eof and len(data) < expected:
        raise IDXError(f"{path}: IDX shape {shape} needs {expected} bytes, the file holds {len(data)} (truncated)")
    return data


def _read_bytes(path, max_bytes=MAX_IDX_BYTES):
    """The file's bytes, decompressed when it is gzip-compressed (bounded by the IDX header's size): for an
    uncompressed regular file a uint8 array (read once into place, so that the array over it needs no copy),
    else bytes."""
    with open(path, "rb") as handle:
        data = _read_in_place(handle, max_bytes)
        if data is None:  # a device, a pipe, a file past the bound or one that changed while read: in chunks
            chunks, size = [], 0
            while size <= max_bytes:  # the path may name a huge file or a device that never ends
                chunk = handle.read(min(READ_CHUNK, max_bytes + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > max_bytes:
                raise IDXError(f"{path}: larger than the {max_bytes:,} bytes nbconv reads from one file")
            data = b"".join(chunks)
    return _read_gzip_bounded(path, data, max_bytes) if bytes(data[:2]) == b"\x1f\x8b" else data


def _read_in_place(handle, max_bytes):
    """The whole of the open file as a uint8 array when it is a regular file of at most max_bytes that read
    as long as it was (from the start; the handle is left at the start otherwise), else None."""
    status = os.fstat(handle.fileno())
    if not stat.S_ISREG(status.st_mode) or status.st_size > max_bytes:
        return None
    data = np.empty(status.st_size, np.uint8)  # not a bytearray: that would write every page twice
    if handle.readinto(memoryview(data)) == status.st_size and not handle.read(1):
        return data
    handle.seek(0)
    return None


def read_idx(path, max_bytes=MAX_IDX_BYTES):
    """The array stored in an IDX file (optionally .gz), in native byte order.

    Raises IDXError naming the file when the magic number, the dimensions or the size are wrong, or when
    the file would decompress to more than its header declares or than `max_bytes`.
    """
    path = os.fspath(path)
    try:
        data = _read_bytes(path, max_bytes)
    except (OSError, EOFError, zlib.error) as error:  # truncated or corrupt gzip stream
        raise IDXError(f"{path}: cannot be read as an IDX file ({error})") from None
    header = data[:4 + 4 * 255].tobytes() if isinstance(data, np.ndarray) else data  # ints, not numpy's uint8
    _check_magic(path, header)
    dtype, shape, expected = _declared(path, header)
    if len(data) != expected:
        raise IDXError(f"{path}: IDX shape {shape} needs {expected} bytes, the file holds {len(data)} "
                       f"({'truncated' if len(data) < expected else 'trailing data'})")
    values = np.frombuffer(data, dtype, offset=_header_size(header)).reshape(shape)
    if isinstance(data, np.ndarray) and dtype.itemsize == 1:  # a writable buffer of this call's own: no copy
        return values.view(dtype.newbyteorder("="))
    return values.astype(dtype.newbyteorder("="))


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
