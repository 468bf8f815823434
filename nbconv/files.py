"""Writing files safely: atomic replacement through a temporary file, modes from the umask, and the
cleaning of temporary files that a killed process left behind.

A temporary file is named `.tmp-<pid>-<random>-<target name>` beside its target, so a later save can tell
which ones are stale (their process is gone) without touching another live process's.
"""
import errno
import os
import re
import secrets
import time

from .peer_watch import process_gone

TEMPORARY_PREFIX = ".tmp-"
# Temporary files from before names carried the writer's process id: removed once clearly abandoned.
LEGACY_STALE_SECONDS = 3600


def _temporary_pattern(target_name):
    return re.compile(rf"^{re.escape(TEMPORARY_PREFIX)}(\d+)-[0-9a-f]{{16}}-{re.escape(target_name)}$")


def _legacy_pattern(target_name):
    return re.compile(rf"^{re.escape(TEMPORARY_PREFIX)}[a-z0-9_]{{8}}{re.escape(target_name)}$")


def process_alive(pid):
    """Whether `pid` is a live process (this one included: another of its threads may be writing), so that a
    file it names is still being written. A number past what a pid holds names no process."""
    if pid == os.getpid():
        return True
    try:
        return not process_gone(pid)
    except OverflowError:
        return False


def remove_stale_temporaries(path):
    """Delete the temporary files that interrupted writes of `path` left beside it: those whose writing
    process is gone (and, from older versions, those untouched for an hour). Returns the names removed."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    target = os.path.basename(path)
    ours, legacy = _temporary_pattern(target), _legacy_pattern(target)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(TEMPORARY_PREFIX):
            continue
        full = os.path.join(directory, name)
        match = ours.match(name)
        try:
            if match:
                stale = not process_alive(int(match.group(1)))
            else:
                stale = bool(legacy.match(name)) and time.time() - os.lstat(full).st_mtime > LEGACY_STALE_SECONDS
            if stale and os.path.isfile(full) and not os.path.islink(full):
                os.unlink(full)
                removed.append(name)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


def create_temporary(directory, target):
    """Open a new temporary file for `target` in `directory`; its mode is 0666 less the umask, as for any
    file the user creates."""
    while True:
        name = f"{TEMPORARY_PREFIX}{os.getpid()}-{secrets.token_hex(8)}-{target}"
        full = os.path.join(directory, name)
        try:
            return os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), full
        except FileExistsError:
            continue


def atomic_write_bytes(path, payload):
    """Write bytes to `path` through a temporary file in the same directory, flushed to disk, then renamed
    over it: a reader sees the old file or the new one, never a part. Stale temporary files of `path` from
    killed writers are removed first."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(path)
    handle, temporary = create_temporary(directory, os.path.basename(path))
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _sync_directory(directory)


def _sync_directory(directory):
    """Make the rename itself durable (where the platform allows opening a directory)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def check_not_read(path, reads, what="--out"):
    """Raise a ValueError naming `what` when writing `path` (atomically: a new file renamed over that name) would
    replace one of the files a command reads (`reads`: (description, path or None) pairs): the same name in the
    same directory, however spelt (relative, through a linked directory)."""
    for description, source in reads:
        if source is not None and _entry(path) == _entry(source):
            raise ValueError(f"{what}: {path} is the {description} this command reads, and writing it would "
                             "replace it; give another file name")


def _entry(path):
    """The directory entry a rename onto `path` replaces: its folder's real path and its own name."""
    path = os.path.abspath(os.fspath(path))
    return os.path.realpath(os.path.dirname(path)), os.path.basename(path)


def check_writable(path, what="--out"):
    """Raise a ValueError naming `what` unless atomic_write_bytes can write `path`: `path` is not a directory
    and its directory exists (or can be made) and accepts new files. Leaves nothing behind but the
    directory."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{what}: {path} is a directory; give a file name")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        handle, temporary = create_temporary(directory, os.path.basename(path))
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason = "permission denied" if error.errno != errno.EROFS else "read-only file system"
        raise ValueError(f"{what}: cannot write {path} ({reason})") from None
    os.close(handle)
    os.unlink(temporary)
