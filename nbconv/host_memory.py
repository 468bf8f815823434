"""glibc's malloc tuning for long-running training and benchmark loops: `nbconv train` and `nbconv bench` apply
it; a script of one's own may call it too. It is process-wide, so importing nbconv never applies it."""
import ctypes
import ctypes.util

from . import checks

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_MOST = 2**31 - 1  # mallopt takes a C int: a larger value would be cut, not refused


def keep_freed_host_memory(mmap_threshold=32 << 20, trim_threshold=256 << 20):
    """Ask glibc's malloc to keep freed blocks for reuse instead of returning them to the system.

    A training step frees and reallocates the same megabyte-sized activations every step; by default glibc
    hands blocks that large back (munmap, or a trimmed heap) and the next step page-faults them in again
    (LeNet-5 at batch 64 on two threads: ~285 page faults a step, 3.0-3.6 ms a step against 2.1-2.4 ms with
    this; benchmarks/NOTES.md, section 95). The cost: up to trim_threshold bytes of freed memory stay with the
    process, and arrays below mmap_threshold bytes come from the heap. Process-wide: the CLI's long-running
    commands call it, the library never does by itself. Thresholds are byte counts from 0 to 2**31 - 1 (mallopt
    takes a C int); returns whether the setting took (False off glibc, or where glibc refuses a value).
    """
    mmap_threshold = checks.integer("mmap_threshold", mmap_threshold, 0, _MOST)
    trim_threshold = checks.integer("trim_threshold", trim_threshold, 0, _MOST)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
