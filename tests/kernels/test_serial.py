"""nbconv.kernels.serial: the public kernels run one at a time across threads, and a kernel that raises
leaves the lock free."""
import threading
import time
import types

import pytest

from nbconv.kernels import serial


def fake_module(inside, most):
    def kernel(value, delay=0.002):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(delay)
        with guard:
            inside[0] -= 1
        if value < 0:
            raise ValueError("negative")
        return value * 2

    guard = threading.Lock()
    return types.SimpleNamespace(__all__=["kernel"], kernel=kernel, helper="not a kernel")


def test_kernels_run_one_at_a_time_across_threads():
    inside, most = [0], [0]
    kernels = serial.Serialized(fake_module(inside, most))
    results = []
    threads = [threading.Thread(target=lambda n=n: results.append(kernels.kernel(n, delay=0.001)))
               for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [2 * n for n in range(8)]
    assert most[0] == 1
    assert kernels.helper == "not a kernel" and kernels.kernel.__name__ == "kernel"


def test_a_kernel_that_raises_releases_the_lock():
    kernels = serial.Serialized(fake_module([0], [0]))
    with pytest.raises(ValueError, match="negative"):
        kernels.kernel(-1)
    assert not serial.LAUNCH_LOCK.locked()
    assert kernels.kernel(3) == 6
