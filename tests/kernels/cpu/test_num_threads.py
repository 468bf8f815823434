"""threads.num_threads: Numba's thread count of the calling Python thread, as numba.get_num_threads gives it."""
import threading

import numba

from nbconv.kernels.cpu import threads


def test_num_threads_follows_set_num_threads_per_python_thread():
    before = numba.get_num_threads()
    try:
        assert threads.num_threads() == before
        for count in range(1, numba.config.NUMBA_NUM_THREADS + 1):
            numba.set_num_threads(count)
            assert threads.num_threads() == count == numba.get_num_threads()
        numba.set_num_threads(1)
        seen = []
        worker = threading.Thread(target=lambda: seen.append((threads.num_threads(), numba.get_num_threads())))
        worker.start()
        worker.join()
        assert seen[0][0] == seen[0][1]  # the new thread's own setting, not this thread's 1
        assert threads.num_threads() == 1
        assert threads.thread_count(threads.MIN_PARALLEL_WORK) == 1
    finally:
        numba.set_num_threads(before)
