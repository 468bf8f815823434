"""glibc's malloc tuning for the CLI's long-running commands (train, bench): process-wide, so the library
itself never applies it."""
import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_freed_host_memory(mmap_threshold=32 << 20, trim_threshold=256 << 20):
    """Ask glibc's malloc to keep freed blocks for reuse instead of returning them to the system.

    A training step frees and reallocates the same few-megabyte activations every step; by default glibc
    hands blocks that large back with munmap and the next step page-faults them in again (measured on
    LeNet-5: ~680 page faults and 15% of a step). The CLI's long-running commands call this; it is
    process-wide, so the library itself never does. Returns whether the setting took (False off glibc).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
