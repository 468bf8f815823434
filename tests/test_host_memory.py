"""keep_freed_host_memory: glibc keeps freed blocks, so a loop that frees and reallocates a large array stops
page-faulting it in again, and the library alone never asks it; checked in fresh processes, since the setting
is process-wide."""
import platform
import subprocess
import sys

import pytest

from nbconv.host_memory import keep_freed_host_memory

# Faults of the second allocation of a 2 MB array (512 pages; below numpy's huge-page size), after the first
# was freed.
SECOND_ALLOCATION_FAULTS = """
import resource, sys
import numpy as np
import nbconv.functional as F
F.relu(np.ones(3, np.float32))  # the library loaded and its kernels run: malloc as glibc set it
if sys.argv[1] == "keep":
    from nbconv.host_memory import keep_freed_host_memory
    assert keep_freed_host_memory()
for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    array = np.ones(1 << 19, np.float32)
    del array
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(faults)
"""


def _second_allocation_faults(mode):
    result = subprocess.run([sys.executable, "-c", SECOND_ALLOCATION_FAULTS, mode], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_a_freed_array_is_reused_without_page_faults():
    # as imported and run, nbconv leaves glibc's defaults: a block that large is mapped anew, every page faults
    assert _second_allocation_faults("default") > 400
    assert _second_allocation_faults("keep") < 50


@pytest.mark.parametrize("arguments, error", [
    (("32M",), TypeError), ((2.5,), TypeError), ((True,), TypeError), ((-1,), ValueError), ((1 << 40,), ValueError),
    ((32 << 20, None), TypeError), ((32 << 20, -5), ValueError), ((32 << 20, 1 << 31), ValueError)])
def test_bad_thresholds_are_refused_before_malloc_is_touched(arguments, error):
    """A value mallopt's C int would cut (1 << 40 to 0: every allocation mapped anew) or one that is not a size
    is refused by name; nothing reaches glibc, so this process's malloc stays as it was."""
    name = "mmap_threshold" if len(arguments) == 1 else "trim_threshold"
    with pytest.raises(error, match=name):
        keep_freed_host_memory(*arguments)
