"""Downloading one file: md5-verified, atomic, with a progress bar, a connection timeout and an overall
deadline, leaving nothing behind on failure."""
import glob
import hashlib
import os
import secrets
import time

import click

from ..files import process_alive

CONNECT_TIMEOUT = 30.0       # seconds to connect, and the longest wait for any single read
DEADLINE = 30 * 60.0         # seconds for a whole file (CIFAR's 170 MB at ~100 kB/s)
ENV_DEADLINE = "NBCONV_DOWNLOAD_DEADLINE"
MAX_DOWNLOAD_BYTES = 1 << 30  # per file; the largest nbconv fetches, CIFAR-100's archive, is 161 MiB


class DownloadError(IOError):
    """A download that failed: unreachable, too slow, cut short or not matching its checksum."""


def default_deadline():
    """The per-file deadline in seconds: $NBCONV_DOWNLOAD_DEADLINE, else 30 minutes."""
    value = os.environ.get(ENV_DEADLINE)
    if value:
        try:
            seconds = float(value)
            if seconds > 0:
                return seconds
        except ValueError:
            pass
        raise ValueError(f"{ENV_DEADLINE} must be a positive number of seconds, got {value!r}")
    return DEADLINE


def _socket_of(response):
    """The socket under a urllib response, to give each read only the time left before the deadline
    (None where urllib's internals differ: reads then wait at most the connection timeout each)."""
    try:
        return response.fp.raw._sock
    except AttributeError:
        return None


def remove_stale_parts(destination):
    """Remove partial downloads of `destination` left by a process that was killed mid-download: those whose
    writer (the pid in their name) is gone, not another live process's download of the same file."""
    directory, name = os.path.split(os.path.abspath(destination))
    for path in glob.glob(os.path.join(glob.escape(directory), f".{glob.escape(name)}.*.part")):
        writer = os.path.basename(path)[len(name) + 2:-len(".part")].partition("-")[0]
        if _writer_alive(writer):
            continue  # being written (by another thread of this process, or another process)
        try:
            os.unlink(path)
        except OSError:
            pass


def _writer_alive(writer):
    """Whether `writer`, the text before the first '-' in a part's name, is the pid of a live process (this one
    included). Any other text (a part of an older nbconv, a name no nbconv wrote) is no live writer."""
    if not (writer.isascii() and writer.isdigit()):  # '²' is a digit to isdigit(), not to int()
        return False
    return process_alive(int(writer))


def _create_part(directory, name):
    """(descriptor, path) of a new `.NAME.<pid>-<random>.part` file in `directory`, of mode 0666 less the umask (as
    any file the user creates: the dataset may sit in a folder others read too), opened for writing."""
    while True:
        path = os.path.join(directory, f".{name}.{os.getpid()}-{secrets.token_hex(8)}.part")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), path
        except FileExistsError:
            continue


def _md5s(path):
    """[md5 of the file, and of its decompressed contents when it is a small gzip file] (IDX files are
    published with either)."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        magic = handle.read(2)
        handle.seek(0)
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    sums = [digest.hexdigest()]
    if magic == b"\x1f\x8b" and os.path.getsize(path) < 64 << 20:
        import gzip
        import zlib
        try:
            with gzip.open(path, "rb") as handle:
                inner = hashlib.md5()
                for block in iter(lambda: handle.read(1 << 20), b""):
                    inner.update(block)
                    if handle.tell() > 1 << 30:  # a decompression bomb is simply not a match
                        break
                else:
                    sums.append(inner.hexdigest())
        except (OSError, EOFError, zlib.error):
            pass
    return sums


def _announced_length(response, url):
    """The byte count the reply's Content-Length announces, or None without one (or with 0); DownloadError
    when the header holds anything but digits (a server's text, so untrusted)."""
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 20:  # int() refuses more than 4300 digits
        raise DownloadError(f"{url}: announces an invalid Content-Length {value!r:.40} (not a byte count)")
    return int(value) or None


def download_file(url, destination, accepted_md5s, connect_timeout=CONNECT_TIMEOUT, deadline=None, label=None,
                  max_bytes=MAX_DOWNLOAD_BYTES):
    """Fetch `url` to `destination` with a progress bar; verify the md5 and rename into place.

    The directory of `destination` must exist. Connecting, and each read, wait at most `connect_timeout`
    seconds; the whole file must arrive within `deadline` seconds (default: default_deadline()) and hold at
    most `max_bytes` bytes (a server sending more is cut off, whatever it announced). On any failure
    (network, deadline, size, md5 mismatch, interruption) DownloadError is raised (KeyboardInterrupt
    passes through), nothing is left at `destination` and no partial file remains beside it.
    """
    import urllib.error  # here, not at the top: a run whose data is on disk never loads urllib and http
    import urllib.request
    deadline = default_deadline() if deadline is None else float(deadline)
    directory = os.path.dirname(os.path.abspath(destination))
    if not os.path.isdir(directory):
        raise DownloadError(f"cannot download {url}: directory {directory} does not exist")
    remove_stale_parts(destination)
    try:
        handle, temporary = _create_part(directory, os.path.basename(destination))
    except OSError as error:  # a read-only folder
        raise DownloadError(f"cannot download {url} into {directory}: {error.strerror or error}") from None
    ends_at = time.monotonic() + deadline

    def time_left():
        left = ends_at - time.monotonic()
        if left <= 0:
            raise DownloadError(f"{url}: not complete after the {deadline:g} s deadline "
                                f"(set {ENV_DEADLINE} to allow longer)")
        return left

    try:
        received = 0
        with os.fdopen(handle, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=min(connect_timeout, time_left()))
            except (urllib.error.URLError, OSError, ValueError) as error:
                raise DownloadError(f"{url}: {getattr(error, 'reason', error)}") from None
            with response:
                total = _announced_length(response, url)
                if total is not None and total > max_bytes:
                    raise DownloadError(f"{url}: announces {total:,} bytes, more than the {max_bytes:,} nbconv "
                                        "accepts for one file")
                sock = _socket_of(response)
                # without a Content-Length (a chunked reply) the bar counts the bytes without a total: an
                # iterable of unknown length (a generator; an empty iterator's length hint is 0, a full bar)
                with click.progressbar((chunk for chunk in ()) if total is None else None, length=total,
                                       label=label or os.path.basename(destination), show_pos=total is None,
                                       file=click.get_text_stream("stderr")) as bar:
                    while True:
                        if sock is not None:
                            sock.settimeout(min(connect_timeout, time_left()))
                        try:
                            chunk = response.read1(1 << 16)
                        except (OSError, ValueError) as error:
                            time_left()  # a read cut short by the deadline reports the deadline
                            raise DownloadError(f"{url}: {error}") from None
                        if not chunk:
                            break
                        received += len(chunk)
                        if received > max_bytes:
                            raise DownloadError(f"{url}: sends more than the {max_bytes:,} bytes nbconv accepts "
                                                "for one file")
                        out.write(chunk)
                        bar.update(len(chunk))
                        time_left()
        if total is not None and received != total:
            raise DownloadError(f"{url}: download ended after {received} of {total} bytes")
        found = _md5s(temporary)
        if not set(found) & set(accepted_md5s):
            raise DownloadError(f"{url}: md5 {found[0]} does not match the published checksum")
        os.replace(temporary, destination)
    except DownloadError:
        raise
    except OSError as error:  # writing the file: a full disk, a quota
        raise DownloadError(f"cannot write {url} to {destination}: {error.strerror or error}") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
