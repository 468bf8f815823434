"""The CPU kernels' thread runtime (nbconv.kernels.cpu.threads, nbconv.kernels.cpu.spin): every part runs
exactly once, errors reach the caller, one thread is a direct call, several Python threads may call at once,
waits that spin end in bounded time, and an idle process uses no CPU."""
import os
import threading
import time

import numba
import numpy as np
import pytest
from numba import njit

from nbconv.kernels.cpu import relu_forward
from nbconv.kernels.cpu import spin, threads
from nbconv.kernels.cpu.shared import chunk_bounds


@njit(nogil=True, cache=True)
def _count_span(span_part, span_parts, counts):
    """counts[i] += 1 for every i of this part's slice."""
    first, last = chunk_bounds(span_part, span_parts, counts.shape[0])
    for i in range(first, last):
        counts[i] += 1


@njit(nogil=True, cache=True)
def _fail_span(span_part, span_parts, failing_part, done):
    done[span_part] = 1
    if span_part == failing_part:
        raise ValueError("part failed")


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 16])
@pytest.mark.parametrize("size", [0, 1, 5, 1000])
def test_the_parts_cover_the_range_exactly_once(parts, size):
    counts = np.zeros(size, np.int64)
    threads.parallel_parts(_count_span, parts, counts)
    assert np.array_equal(counts, np.ones(size, np.int64))


def test_one_part_is_a_direct_call_on_the_calling_thread():
    seen = []

    def kernel(span_part, span_parts):
        seen.append((span_part, span_parts, threading.current_thread()))
    threads.parallel_parts(kernel, 1)
    assert seen == [(0, 1, threading.current_thread())]


def test_work_below_the_threshold_runs_on_one_thread():
    assert threads.thread_count(threads.MIN_PARALLEL_WORK - 1) == 1
    assert threads.thread_count(threads.MIN_PARALLEL_WORK) == numba.get_num_threads()


@pytest.mark.parametrize("failing_part", [0, 1, 2])
def test_an_exception_in_any_part_reaches_the_caller_after_every_part_ran(failing_part):
    done = np.zeros(3, np.int64)
    with pytest.raises(ValueError, match="part failed"):
        threads.parallel_parts(_fail_span, 3, failing_part, done)
    assert done.tolist() == [1, 1, 1]


def test_parts_run_on_other_threads_at_once():
    """With 2 parts, part 1 runs on a worker while the caller runs part 0: each waits for the other."""
    both = threading.Barrier(2, timeout=30)
    names = [None, None]

    def kernel(span_part, span_parts):
        names[span_part] = threading.current_thread().name
        both.wait()
    threads.parallel_parts(kernel, 2)
    assert names[0] == threading.current_thread().name and names[1] != names[0]


def test_concurrent_callers_from_python_threads_get_their_own_results(rng):
    """Element-wise kernels above the threshold, called from several Python threads at once, outside any lock."""
    size = 3 * threads.MIN_PARALLEL_WORK + 5
    inputs = [rng.standard_normal(size).astype(np.float32) for _ in range(6)]
    expected = [np.maximum(x, 0) for x in inputs]
    failures = []
    start = threading.Barrier(len(inputs))

    def worker(index):
        output = np.empty_like(inputs[index])
        start.wait()
        for _ in range(20):
            output[:] = np.nan
            relu_forward(inputs[index], output)
            if not np.array_equal(output, expected[index]):
                failures.append(index)
    workers = [threading.Thread(target=worker, args=(index,)) for index in range(len(inputs))]
    for worker_thread in workers:
        worker_thread.start()
    for worker_thread in workers:
        worker_thread.join()
    assert not failures


def test_results_do_not_depend_on_the_thread_count(rng):
    """A weight gradient (fixed-order partial sums) with 1 and 2 threads: bit for bit the same."""
    import nbconv.functional as F
    x = rng.standard_normal((4, 16, 9, 9)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    grad_y = rng.standard_normal((4, 16, 9, 9)).astype(np.float32)
    before = numba.get_num_threads()
    results = []
    try:
        for count in (1, before):
            numba.set_num_threads(count)
            results.append(F.conv2d_backward(grad_y, x, w, padding=1))
    finally:
        numba.set_num_threads(before)
    for one, many in zip(*results):
        assert np.array_equal(one, many)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_runs_parallel_kernels_on_its_own_workers():
    """The parent's worker threads do not exist in a forked child: the child starts its own."""
    import os
    counts = np.zeros(100, np.int64)
    threads.parallel_parts(_count_span, 2, counts)  # the parent's workers are running
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only when every part ran once (killed by the alarm if it hangs)
        import signal
        signal.alarm(60)
        try:
            child_counts = np.zeros(100, np.int64)
            threads.parallel_parts(_count_span, 2, child_counts)
            os._exit(0 if np.array_equal(child_counts, np.ones(100, np.int64)) else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_reached_sees_a_counter_another_thread_raises_while_it_spins():
    counters, timespec = np.zeros((2, 16), np.int64), np.zeros(2, np.int64)
    free = (*spin.NO_PLACEMENT, *spin.NO_NOTE)
    assert spin.reached(counters, 0, 2, 1, 0, 0, 0, timespec, *free)  # already so: no spinning
    assert not spin.reached(counters, 0, 2, 1, 1, 0, 0, timespec, *free)  # not so and no time to wait
    assert spin.reached(counters, 0, 0, 1, 1, 0, 0, timespec, *free)  # no rows: trivially so
    start = time.perf_counter()
    assert not spin.reached(counters, 0, 2, 1, 1, 2_000_000, 0, timespec, *free)  # gives up after its 2 ms
    assert 0.002 <= time.perf_counter() - start < 5

    def raise_them():
        time.sleep(0.02)
        counters[1, 1] = 1
        time.sleep(0.02)
        counters[0, 1] = 3
    raiser = threading.Thread(target=raise_them)
    start = time.perf_counter()
    raiser.start()
    try:
        # returns when both rows get there, not at 30 s
        assert spin.reached(counters, 0, 2, 1, 1, 30_000_000_000, 0, timespec, *free)
    finally:
        raiser.join()
    assert time.perf_counter() - start < 20


def test_reached_writes_its_note_before_it_waits():
    """A worker marks its last call done from its next wait (note_column, note), in its own row only, whether
    the wait then finds its counter reached or gives up."""
    counters, timespec = np.zeros((2, 16), np.int64), np.zeros(2, np.int64)
    assert not spin.reached(counters, 1, 2, 0, 1, 0, 0, timespec, *spin.NO_PLACEMENT, 1, 7)
    assert counters[1, 1] == 7 and counters[0, 1] == 0
    counters[1, 0] = 1
    assert spin.reached(counters, 1, 2, 0, 1, 1_000_000, 0, timespec, *spin.NO_PLACEMENT, 1, 8)
    assert counters[1, 1] == 8 and counters[0, 1] == 0
    assert spin.reached(counters, 1, 2, 0, 1, 0, 0, timespec, *spin.NO_PLACEMENT, *spin.NO_NOTE)
    assert counters[1, 1] == 8


def test_parts_longer_than_the_spin_and_workers_woken_from_sleep():
    """A worker part that outlasts the caller's spin (the caller blocks, the worker wakes it), then a call after
    the workers stopped spinning and blocked (the caller wakes them)."""
    def kernel(span_part, span_parts, done):
        if span_part == 1:
            time.sleep(0.05)
        done[span_part] += 1
    done = np.zeros(2, np.int64)
    threads.parallel_parts(kernel, 2, done)
    time.sleep(20 * threads.SPIN_NS / 1e9 + 0.05)
    threads.parallel_parts(kernel, 2, done)
    assert done.tolist() == [2, 2]


def test_an_idle_process_uses_no_cpu_after_parallel_calls():
    counts = np.zeros(1000, np.int64)
    for _ in range(50):
        threads.parallel_parts(_count_span, 2, counts)
    time.sleep(10 * threads.SPIN_NS / 1e9 + 0.05)  # the workers' spinning ends within SPIN_NS
    cpu, wall = time.process_time(), time.perf_counter()
    time.sleep(0.5)
    busy = (time.process_time() - cpu) / (time.perf_counter() - wall)
    assert busy < 0.1, f"an idle process used {busy:.0%} of a core"


def test_a_call_while_another_owns_the_workers_runs_its_parts_on_its_own_thread():
    """While one call waits inside its worker's part, a second call from another thread completes alone."""
    inside, release = threading.Event(), threading.Event()
    seen = []

    def slow(span_part, span_parts):
        if span_part == 1:
            inside.set()
            assert release.wait(30)

    def quick(span_part, span_parts):
        seen.append((span_part, threading.current_thread().name))
    first = threading.Thread(target=threads.parallel_parts, args=(slow, 2))
    first.start()
    try:
        assert inside.wait(30)
        second = threading.Thread(target=threads.parallel_parts, args=(quick, 2), name="second caller")
        second.start()
        second.join(30)
        assert seen == [(0, "second caller"), (1, "second caller")]
    finally:
        release.set()
        first.join(30)


@pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer"), reason="needs setitimer")
def test_an_interrupted_call_lets_its_parts_finish_before_the_next_call():
    """A signal handler that raises (as Ctrl-C does) while the caller waits for a worker's long part: the
    exception reaches the caller once the part is done, and the next call gets the workers to itself."""
    import signal

    class Interrupted(Exception):
        pass

    def interrupt(signum, frame):
        raise Interrupted

    started = threading.Event()

    def slow(span_part, span_parts, done):
        if span_part == 1:
            started.set()
            time.sleep(0.3)
        else:  # keeps part 1 on its worker: a part the caller took over would be interrupted with the caller
            assert started.wait(30)
        done[span_part] += 1
    done = np.zeros(2, np.int64)
    threads.parallel_parts(_count_span, 2, np.zeros(10, np.int64))  # the workers started before the alarm is set
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(Interrupted):
            threads.parallel_parts(slow, 2, done)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert done.tolist() == [1, 1]
    counts = np.zeros(1000, np.int64)
    threads.parallel_parts(_count_span, 2, counts)
    assert np.array_equal(counts, np.ones(1000, np.int64))


def _asleep_workers(count):
    """threads.Workers(count) once every worker has blocked (so each has bound spin.reached as it is now)."""
    workers = threads.Workers(count)
    deadline = time.perf_counter() + 30
    while not all(workers.asleep):
        assert time.perf_counter() < deadline
        time.sleep(0.01)
    return workers


def test_an_interrupt_as_the_callers_spin_returns_lets_the_workers_finish(monkeypatch):
    """A Ctrl-C that arrives while the caller spins for a worker's `done` is raised as the spin returns (the
    first look at the call's end, before it blocks): the exception reaches the caller once the worker's part is
    done, not while that part still writes into arrays the next call may be handed."""
    class Interrupted(Exception):
        pass
    workers = _asleep_workers(1)
    real, raised = spin.reached, []

    def interrupted_spin(counters, first_row, last_row, column, target, spin_ns, *rest):
        result = real(counters, first_row, last_row, column, target, spin_ns, *rest)
        if column == threads._DONE and spin_ns > 0 and not raised:
            raised.append(result)
            raise Interrupted
        return result
    monkeypatch.setattr(spin, "reached", interrupted_spin)  # the caller's waits only: the worker bound its own
    started = threading.Event()

    def slow(span_part, span_parts, done):
        if span_part == 1:
            started.set()
            time.sleep(0.2)
        else:  # keeps part 1 on its worker
            assert started.wait(30)
        done[span_part] += 1
    done = np.zeros(2, np.int64)
    with workers.busy, pytest.raises(Interrupted):
        workers.run(slow, 2, (done,))
    assert raised == [False] and done.tolist() == [1, 1]


def test_a_caller_asleep_sees_a_done_marked_without_a_notify(monkeypatch):
    """A worker that found the caller spinning marks its call done from its next wait and wakes no one; when that
    wait starts late (here 50 ms), the caller has stopped spinning and blocked meanwhile, and must see the mark
    by itself (LATE_MARK_S) instead of sleeping until the next notify, which may never come."""
    real, notes = spin.reached, []

    def late_note(counters, first_row, last_row, column, target, spin_ns, settle_ns, timespec, own, partner,
                  affinity, note_column, note):
        if note_column >= 0:
            notes.append(note)
            time.sleep(0.05)
        return real(counters, first_row, last_row, column, target, spin_ns, settle_ns, timespec, own, partner,
                    affinity, note_column, note)
    monkeypatch.setattr(spin, "reached", late_note)  # before the worker starts: it binds this one
    workers = _asleep_workers(1)
    ended = threading.Event()

    def kernel(span_part, span_parts):
        if span_part == 1:
            ended.set()
        else:  # the worker's part ends first, while the caller has yet to spin
            assert ended.wait(30)

    def call():
        with workers.busy:
            workers.run(kernel, 2, ())
    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(10)
    returned = not caller.is_alive()
    with workers.wake:  # lets a caller still asleep end
        workers.wake.notify_all()
    caller.join(30)
    assert notes == [1], "the worker marked its call done at once (the caller was asleep already)"
    assert returned, "the caller slept on a worker's done that no notify announced"


def test_the_caller_runs_the_parts_of_a_worker_that_has_not_started():
    """A worker asleep that the call does not wake (as one whose core another process holds): the caller runs
    its part too and returns without it; the worker, woken later, skips that call and takes the next."""
    workers = threads.Workers(1)
    deadline = time.perf_counter() + 30
    while not workers.asleep[0]:  # the new worker blocks once it has spun SPIN_NS without a call
        assert time.perf_counter() < deadline
        time.sleep(0.01)
    workers.asleep[0] = False  # so the call does not wake it
    ran = []

    def kernel(span_part, span_parts, counts):
        ran.append((span_part, threading.current_thread().name))
        _count_span(span_part, span_parts, counts)
    counts = np.zeros(1000, np.int64)

    def call():
        with workers.busy:
            workers.run(kernel, 2, (counts,))
    caller = threading.Thread(target=call, name="caller", daemon=True)
    caller.start()
    caller.join(10)
    returned_alone = not caller.is_alive()
    with workers.wake:  # wakes the worker (which lets a call still waiting for it end)
        workers.wake.notify_all()
    caller.join(30)
    assert returned_alone, "the call waited for a worker that had not started"
    assert ran == [(0, "caller"), (1, "caller")]
    assert workers.taken_over == 1 and np.array_equal(counts, np.ones(1000, np.int64))
    started = threading.Event()
    ran.clear()

    def waits_for_the_worker(span_part, span_parts, counts):
        if span_part == 1:
            started.set()
        else:
            assert started.wait(30)
        kernel(span_part, span_parts, counts)
    with workers.busy:
        workers.run(waits_for_the_worker, 2, (counts,))
    assert sorted(ran)[1][1] == workers.threads[0].name and workers.taken_over == 1
    assert np.array_equal(counts, np.full(1000, 2, np.int64))


def test_compile_wait_starts_no_thread():
    before = threading.active_count()
    threads.compile_wait()
    assert threading.active_count() == before


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_process_told_to_run_parts_on_the_caller_starts_no_worker():
    """run_parts_on_caller (the JIT helper's): every part runs once, in order, on the calling thread, and no
    worker thread starts (in a forked child, whose switch does not reach this process)."""
    import os
    pid = os.fork()
    if pid == 0:
        import signal
        signal.alarm(60)
        try:
            threads.run_parts_on_caller()
            seen = []
            threads.parallel_parts(lambda part, parts: seen.append((part, parts, threading.get_ident())), 3)
            counts = np.zeros(100, np.int64)
            threads.parallel_parts(_count_span, 2, counts)
            ok = (seen == [(part, 3, threading.get_ident()) for part in range(3)] and threads._workers is None
                  and np.array_equal(counts, np.ones(100, np.int64)) and threading.active_count() == 1)
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _cpu_now():
    """The CPU the calling thread runs on now, as the waits see it."""
    counters = np.full((1, 16), -1, np.int64)
    spin._placed(counters, 0, 1, 2, 3, np.zeros(0, np.uint64))
    return int(counters[0, 2])


@pytest.mark.skipif(not spin.PLACEMENT_SUPPORTED, reason="needs sched_getcpu and sched_setaffinity (Linux)")
def test_a_waiting_thread_yields_only_beside_its_partner():
    counters = np.full((1, 16), -1, np.int64)
    cpu = _cpu_now()
    assert cpu >= 0
    counters[0, 3] = cpu + 1 if cpu + 1 < 1024 else cpu - 1  # the partner elsewhere: no yield
    assert not spin._placed(counters, 0, 1, 2, 3, np.zeros(0, np.uint64))
    assert counters[0, 2] == _cpu_now() or counters[0, 2] == cpu  # its CPU noted for the partner
    counters[0, 3] = counters[0, 2]                           # beside the partner, not allowed to move: yield
    assert spin._placed(counters, 0, 1, 2, 3, np.zeros(0, np.uint64))
    counters[0, 3] = -1                                        # partner unknown: no CPU matches, no yield
    assert not spin._placed(counters, 0, 1, 2, 3, np.zeros(0, np.uint64))
    assert spin._placed(counters, 0, 1, -1, 3, np.zeros(0, np.uint64))  # no placement: always a yield


@pytest.mark.skipif(not spin.PLACEMENT_SUPPORTED or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs to move between, and Linux")
def test_a_worker_beside_its_partner_moves_to_another_cpu_and_keeps_its_mask():
    result = {}

    def beside_then_placed():
        before = os.sched_getaffinity(0)
        affinity = spin.allowed_mask()
        counters = np.full((1, 16), -1, np.int64)
        moved = 0
        for _ in range(20):  # the kernel could move it back at once; it must leave the partner's CPU each time
            counters[0, 3] = _cpu_now()
            yields = spin._placed(counters, 0, 1, 2, 3, affinity)
            moved += (not yields) and _cpu_now() != counters[0, 3]
        result.update(moved=moved, before=before, after=os.sched_getaffinity(0))
    thread = threading.Thread(target=beside_then_placed)
    thread.start()
    thread.join()
    assert result["after"] == result["before"]  # the thread's own mask, as it was
    assert result["moved"] >= 15


@pytest.mark.skipif(not spin.PLACEMENT_SUPPORTED, reason="needs sched_getcpu (Linux)")
def test_note_cpu_writes_the_threads_cpu_into_its_rows_only():
    counters = np.full((3, 16), -1, np.int64)
    spin.note_cpu(counters, 1, 3, 2)
    assert counters[0, 2] == -1 and counters[1, 2] == counters[2, 2] >= 0
    assert (counters[:, [0, 1, 3]] == -1).all()


@pytest.mark.skipif(not spin.PLACEMENT_SUPPORTED or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs, and Linux")
def test_a_caller_notes_its_cpu_as_it_posts_even_when_it_never_waits():
    """A stale CPU in the caller's column (the caller moved since it last waited) is replaced at the next call,
    though the caller's part ends after the worker's is done, so that the caller does not wait for it."""
    result = {}
    workers = threads.Workers(1)
    assert workers.caller_noted
    worker_done = threading.Event()

    def kernel(span_part, span_parts):
        if span_part == 1:
            worker_done.set()
        else:  # the caller's part: ends once the worker has marked its part done
            assert worker_done.wait(30)
            while workers.counters[0, threads._DONE] < workers.calls:
                time.sleep(0.001)

    def call():
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # this thread stays on one CPU
        workers.counters[0, threads._CALLER_CPU] = 1 << 20
        workers.busy.acquire()
        try:
            workers.run(kernel, 2, ())
        finally:
            workers.busy.release()
        result.update(noted=int(workers.counters[0, threads._CALLER_CPU]), cpu=_cpu_now())
    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    assert result["noted"] == result["cpu"]


@pytest.mark.skipif(not spin.PLACEMENT_SUPPORTED or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs to move between, and Linux")
def test_a_waiter_whose_partner_arrives_on_its_cpu_moves_before_it_returns():
    """The partner raises the counter, then notes its CPU (this waiter's) while the waiter settles, as a caller
    notes its CPU right after it posts: the waiter, which had no partner beside it while it spun, leaves the
    partner's CPU before reached returns."""
    result = {"moved": 0}

    def waiter():
        affinity = spin.allowed_mask()
        before = os.sched_getaffinity(0)
        for trial in range(10):
            counters = np.full((1, 16), -1, np.int64)
            counters[0, 0] = 0

            def partner():
                while counters[0, 2] < 0:  # the waiter's CPU, once it has noted it
                    time.sleep(0.0001)
                time.sleep(0.002)
                counters[0, 0] = 1
                counters[0, 3] = counters[0, 2]
            other = threading.Thread(target=partner)
            other.start()
            assert spin.reached(counters, 0, 1, 0, 1, 5_000_000_000, 50_000_000, np.zeros(2, np.int64), 2, 3,
                                affinity, *spin.NO_NOTE)
            result["moved"] += _cpu_now() != counters[0, 3]
            other.join()
        result.update(before=before, after=os.sched_getaffinity(0))
    thread = threading.Thread(target=waiter)
    thread.start()
    thread.join()
    assert result["after"] == result["before"]
    assert result["moved"] >= 7


def test_allowed_mask_is_scratch_only_where_a_thread_can_move():
    mask = spin.allowed_mask()
    movable = spin.PLACEMENT_SUPPORTED and len(os.sched_getaffinity(0)) >= 2
    assert mask.size == (2 * spin.MASK_WORDS if movable else 0) and mask.dtype == np.uint64


@pytest.mark.skipif(not spin.PLACEMENT_SUPPORTED or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs, and Linux")
def test_a_worker_keeps_a_mask_narrowed_after_it_started():
    """A thread whose mask was narrowed to its own CPU (taskset, say) after its scratch was made stays there:
    beside its partner it yields, and its mask is not widened back."""
    result = {}

    def narrowed():
        affinity = spin.allowed_mask()  # made while every CPU is allowed
        cpu = _cpu_now()
        os.sched_setaffinity(0, {cpu})
        counters = np.full((1, 16), -1, np.int64)
        counters[0, 3] = cpu
        result.update(yields=spin._placed(counters, 0, 1, 2, 3, affinity), mask=os.sched_getaffinity(0),
                      cpu=cpu, now=_cpu_now())
    thread = threading.Thread(target=narrowed)
    thread.start()
    thread.join()
    assert result["yields"] and result["mask"] == {result["cpu"]} and result["now"] == result["cpu"]



def test_waits_use_placement_only_where_each_thread_can_have_a_cpu(monkeypatch):
    for cpus, placed in ((1, False), (2, True), (8, True)):
        monkeypatch.setattr(threads, "_usable_cpus", lambda: cpus)
        workers = threads.Workers(1)  # the caller and one worker
        assert (workers.caller_placement[0] >= 0) == placed and (workers.worker_columns[0] >= 0) == placed
        counts = np.zeros(100, np.int64)
        workers.busy.acquire()
        try:
            workers.run(_count_span, 2, (counts,))
        finally:
            workers.busy.release()
        assert np.array_equal(counts, np.ones(100, np.int64))


def test_the_workers_are_no_more_than_the_usable_cpus_allow():
    usable = threads._usable_cpus()
    assert threads.worker_count(1) == threads.worker_count(2) == 1
    assert threads.worker_count(100_000) == max(1, usable - 1)
    assert threads.worker_count(usable) == max(1, usable - 1)


def test_a_thread_count_past_what_the_os_starts_still_computes():
    """NUMBA_NUM_THREADS=100000: the first parallel call started 99,999 workers and died with "can't start new
    thread"; the workers are capped, the call still cut into that many parts."""
    import subprocess
    import sys
    code = ("import numpy as np, threading; from nbconv.kernels.cpu import relu_forward, threads; "
            "x = np.arange(-(1 << 17), 1 << 17, dtype=np.float32); y = np.empty_like(x); relu_forward(x, y); "
            "assert threads.num_threads() == 100000; assert np.array_equal(y, np.maximum(x, 0)); "
            "print(sum(t.name.startswith('nbconv-kernel-') for t in threading.enumerate()))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NUMBA_NUM_THREADS": "100000"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) == threads.worker_count(100_000)


def test_workers_that_cannot_all_start_run_the_calls_on_those_that_did(monkeypatch):
    real_start, started = threading.Thread.start, []

    def start(thread):
        if thread.name.startswith("nbconv-kernel-") and len(started) >= 2:
            raise RuntimeError("can't start new thread")
        started.append(thread)
        real_start(thread)
    monkeypatch.setattr(threading.Thread, "start", start)
    workers = threads.Workers(5)
    assert workers.count == 2 and workers.threads == started
    counts = np.zeros(1000, np.int64)
    with workers.busy:
        workers.run(_count_span, 7, (counts,))
    assert np.array_equal(counts, np.ones(1000, np.int64))
    started.clear()
    monkeypatch.setattr(threading.Thread, "start", lambda thread: (_ for _ in ()).throw(
        RuntimeError("can't start new thread")))
    with pytest.raises(RuntimeError, match="cannot start a kernel worker thread .*NUMBA_NUM_THREADS=1"):
        threads.Workers(3)


def test_the_caller_spins_while_a_worker_runs_its_part(monkeypatch):
    """A worker part that outlasts SPIN_NS: the caller keeps spinning for it (WORKING_SPIN_NS), since the part is
    running, instead of blocking and being woken late by the worker's notify."""
    monkeypatch.setattr(threads, "WORKING_SPIN_NS", 60_000_000_000)
    asleep_seen, started = [], threading.Event()
    workers = threads._get_workers()

    def kernel(span_part, span_parts):
        if span_part == 1:
            started.set()
            time.sleep(20 * threads.SPIN_NS / 1e9 + 0.01)
            asleep_seen.append(workers.caller_asleep)
        else:  # the worker has taken its part before the caller looks for late rows
            assert started.wait(30)
    threads.parallel_parts(kernel, 2)
    assert asleep_seen == [False]
