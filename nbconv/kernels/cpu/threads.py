"""The CPU kernels' parallelism: serial compiled span kernels, run on slices of their outer loop by kernel threads.

A parallel kernel is two parts: a serial `@njit(nogil=True)` kernel `NAME_span(part, parts, ...)` that runs
the part-th of `parts` near-equal contiguous slices of its outer loop (shared.chunk_bounds: the static
schedule a `prange` had), and a Python function `NAME(...)`, with the kernel's public name and parameters,
that calls `parallel_parts(NAME_span, thread_count(work), ...)`. parallel_parts runs part 0 on the calling
thread and the others on persistent worker threads, waits for all of them, and re-raises the first exception
any part raised. The span kernels release the GIL, so the parts run at once on different cores. The thread
count is `numba.get_num_threads()`, which `--threads` and NUMBA_NUM_THREADS set; 1 is a direct call.

Why not `@njit(parallel=True)`: Numba lowers every `prange` loop into four LLVM modules, each optimised and
compiled on its own, about 1-1.5 s of compiling per parallel kernel whatever its loop holds, against
0.1-0.3 s for the same loop serial, and loading one from the cache costs more too (benchmarks/NOTES.md,
"Serial span kernels on Python threads instead of prange"). The span kernels compile with
error_model="numpy", as Numba compiles a prange loop's body.

The hand-off: a network step makes tens to hundreds of parallel calls of 0.1-1 ms (ResNet-50 inference 55
an image, a resnet20 training step 210), so what a call costs beyond its work matters. The caller writes the
call's job (kernel, parts, arguments) and raises each worker's `posted` count, in a row of `counters` that
the worker owns; the worker, which after each part spins for up to SPIN_NS with the GIL released
(nbconv.kernels.cpu.spin) watching that count, runs its part and raises `done` (from its next wait, once it has
let go of the GIL: a caller that saw `done` while the worker still held the GIL would ask for it and sleep); the
caller, after its own part, spins the same way until every worker's `done` reaches the call's number. No
future, queue or lock per call, and neither side sleeps while the other is busy: a hand-off costs about 9 us on
the 2-core test machine, against 6-12 us for a Numba prange launch (a Python worker asleep on a queue took
30-100 us). A thread that spins SPIN_NS without news blocks on a threading.Condition: an idle process uses no
CPU. Each side notes in the row the CPU it runs on (the caller as it posts, the worker in its waits), so that
a waiting thread yields only beside its partner, and a worker found beside the caller moves to another CPU
(spin.reached), also when the call it spins for arrives. A worker that sees a call posted spins
SETTLE_NS more before it returns to Python for the call: the caller still holds the GIL for a few microseconds
after posting, and a thread that asks for a held GIL sleeps until tens of microseconds after its release.

A worker that has not started a call by the time the caller has finished its own part is late (asleep, or its
core taken by another process: on a 2-vCPU machine, a millisecond or more): the caller then takes that worker's
parts and runs them itself instead of waiting for it. Each call is taken once, by the worker or by the caller,
under a lock (`taken`: the last call each worker row was taken for); a worker that finds its call taken skips it.
Parts are independent (each in its own buffers), so which thread runs one does not change its result.

Calls from several Python threads at once are safe: one call at a time owns the workers, and a call that
finds them busy runs all of its parts on its own thread, in order (same results, no waiting, no deadlock).
(The public kernels still run one at a time, under nbconv.kernels.serial.LAUNCH_LOCK, because the
convolutions share scratch buffers.)
"""
import os
import threading
import time

import numba
import numba.np.ufunc.parallel
import numpy as np

from . import spin

# Below this much work (the caller's measure: elements for element-wise and per-plane kernels) a call runs on
# the calling thread alone: a ReLU over 128 K float32 values takes about 20 us on one core, so two threads
# save about 10 us, just more than a hand-off costs (benchmarks/handoff.py; benchmarks/NOTES.md, "Kernel
# threads that spin").
MIN_PARALLEL_WORK = 1 << 17

# How long a waiting thread spins before it blocks: longer than the Python between two kernel calls of a
# network step (validation, allocation: 10-200 us), short enough that an idle process is idle at once.
SPIN_NS = 300_000 if spin.SPIN_SUPPORTED else 0

# How long the caller spins for a worker that took the call (it is running its part, so the wait ends when that
# part does) before it blocks: a caller that blocks is woken tens of microseconds after the worker's notify, and
# parts claimed in few large chunks (a stride-2 layer of ResNet-50 at batch 1) often leave the caller waiting
# longer than SPIN_NS.
WORKING_SPIN_NS = 2_000_000 if spin.SPIN_SUPPORTED else 0

# How long a worker that saw a call posted keeps spinning before it returns to Python to take it: more than the
# caller's Python between posting and entering its own part, which releases the GIL (a few us, more when the
# caller is preempted there: 5 us left half the workers waiting for the GIL, benchmarks/NOTES.md section 87).
# A worker that asks for the GIL while the caller holds it sleeps, and wakes tens of microseconds later.
SETTLE_NS = 15_000 if spin.SPIN_SUPPORTED else 0

# How long a caller asleep on a worker's call waits before it looks at the worker's `done` again by itself.
LATE_MARK_S = 0.002

# Columns of Workers.counters (one row of 16 int64 per worker: 128 bytes, no two workers on one cache line):
# the calls posted to and done by the row's worker, and the CPUs the caller and that worker were last seen on.
_POSTED, _DONE, _CALLER_CPU, _WORKER_CPU = 0, 1, 2, 3
_ROW = 16


class Workers:
    """The process's kernel worker threads (daemons), started on first use; `count` of them."""

    def __init__(self, count):
        self.count = count
        self.counters = np.zeros((count, _ROW), np.int64)  # read by the spinning threads without the GIL
        self.counters[:, _CALLER_CPU:_WORKER_CPU + 1] = -1
        # The waits' placement (spin.reached's last three arguments; the caller never moves itself): where the
        # threads outnumber the CPUs this process may use, they share CPUs whatever their places, and every
        # wait yields as with no placement.
        placed = count + 1 <= _usable_cpus()
        self.caller_placement = (_CALLER_CPU, _WORKER_CPU, np.zeros(0, np.uint64)) if placed else spin.NO_PLACEMENT
        self.caller_noted = placed  # the caller notes its CPU at every post (spin.note_cpu)
        self.worker_columns = (_WORKER_CPU, _CALLER_CPU) if placed else (-1, -1)
        self.job = None                  # (span_kernel, parts, args) of the current call
        self.errors = [None] * count     # the exception each worker's parts of the current call raised
        self.calls = 0                   # the number of the current call: what `posted` and `done` count to
        self.asleep = [False] * count    # which workers stopped spinning and wait on self.wake
        self.taken = [0] * count         # per worker row, the last call taken (by the worker or the caller)
        self.taking = threading.Lock()   # held while a call is taken
        self.taken_over = 0              # calls whose parts of a worker the caller ran itself (for benchmarks)
        self.caller_asleep = False       # whether the caller stopped spinning and waits on self.wake
        self.busy = threading.Lock()     # held by the call that owns the workers
        self.wake = threading.Condition()
        self.timespec = np.zeros(2, np.int64)  # the calling side's clock scratch (used under self.busy)
        self.threads = [threading.Thread(target=self._work, args=(row,), name=f"nbconv-kernel-{row + 1}",
                                         daemon=True) for row in range(count)]
        for started, thread in enumerate(self.threads):
            try:
                thread.start()
            except RuntimeError as error:  # "can't start new thread": past what the OS lets this process start
                if started == 0:
                    raise RuntimeError(f"cannot start a kernel worker thread ({error}); run with "
                                       "NUMBA_NUM_THREADS=1 (or nbconv's --threads 1)") from None
                # the workers that started take the calls (no call was posted yet: `count` is read per call)
                self.count, self.threads = started, self.threads[:started]
                break

    def _work(self, row):
        counters, reached, asleep, wake = self.counters, spin.reached, self.asleep, self.wake
        timespec = np.zeros(2, np.int64)
        own_column, partner_column = self.worker_columns
        affinity = spin.allowed_mask() if own_column >= 0 else np.zeros(0, np.uint64)
        seen = 0
        done = -1  # _DONE's column while this row's last call is done but not yet marked so, else -1
        while True:
            posted = reached(counters, row, row + 1, _POSTED, seen + 1, SPIN_NS, SETTLE_NS, timespec, own_column,
                             partner_column, affinity, done, seen)
            done = -1  # the wait has marked it
            if not posted:
                with wake:
                    asleep[row] = True
                    while counters[row, _POSTED] <= seen:
                        wake.wait()
                    asleep[row] = False
                continue  # to note the CPU it woke on (reached returns at once)
            seen = int(counters[row, _POSTED])
            with self.taking:
                mine = self.taken[row] < seen
                if mine:
                    self.taken[row] = seen
                    job = self.job
            if not mine:  # the caller ran this row's parts itself; it waits for no `done` from this row
                continue
            span_kernel, parts, args = job
            job = None
            threads = min(parts, self.count + 1)
            if parts == threads:  # one part each: the usual case
                try:
                    span_kernel(row + 1, parts, *args)
                except BaseException as error:  # noqa: B902 - handed to the caller, which raises it
                    self.errors[row] = error
            else:
                self.errors[row] = _run_parts(span_kernel, range(row + 1, parts, threads), parts, args)
            if self.caller_asleep:  # the caller stopped spinning: mark the call done here and wake it
                counters[row, _DONE] = seen
                with wake:
                    wake.notify_all()
            else:  # the next wait marks it, once the GIL is let go (see spin.reached)
                done = _DONE

    def run(self, span_kernel, parts, args):
        """span_kernel(part, parts, *args) for part in range(parts): with T = min(parts, count + 1) threads,
        part p on thread p % T, thread 0 being the caller (which holds self.busy)."""
        counters = self.counters
        threads = min(parts, self.count + 1)
        workers = threads - 1
        self.calls += 1
        call = self.calls
        self.job = (span_kernel, parts, args)
        for row in range(workers):
            counters[row, _POSTED] = call
        if True in self.asleep:
            with self.wake:
                self.wake.notify_all()
        if self.caller_noted:  # after posting, off the path to the workers' start (they look after settling)
            spin.note_cpu(counters, 0, workers, _CALLER_CPU)
        if parts == threads:
            first_error = None
            try:
                span_kernel(0, parts, *args)
            except BaseException as error:  # noqa: B902 - raised below, once every part has finished
                first_error = error
        else:
            first_error = _run_parts(span_kernel, range(0, parts, threads), parts, args)
        waited = self._take_late_rows(span_kernel, parts, args, threads, workers, call)
        for row in waited:
            try:  # from the spin on: a Ctrl-C that arrives while this thread spins is raised as the spin returns
                if spin.reached(counters, row, row + 1, _DONE, call, WORKING_SPIN_NS, 0, self.timespec,
                                *self.caller_placement, *spin.NO_NOTE):
                    continue
                with self.wake:
                    self.caller_asleep = True
                    while not spin.reached(counters, row, row + 1, _DONE, call, 0, 0, self.timespec,
                                           *self.caller_placement, *spin.NO_NOTE):
                        # a worker that found the caller spinning marks its call done from its next wait, without
                        # waking anyone: when that came just after this thread stopped spinning, the timeout
                        # sees it
                        self.wake.wait(LATE_MARK_S)
            except BaseException:  # noqa: B902 - Ctrl-C while waiting: the workers' parts still run
                for late in waited:
                    while not spin.reached(counters, late, late + 1, _DONE, call, SPIN_NS, 0, self.timespec,
                                           *self.caller_placement, *spin.NO_NOTE):
                        time.sleep(0.001)  # the next call may not own the workers before they are done
                self.errors[:workers] = [None] * workers
                raise
            finally:
                self.caller_asleep = False
        self.job = None  # let go of the call's arrays
        errors = self.errors
        if first_error is None and errors.count(None) == len(errors):
            return
        worker_errors = errors[:workers]
        errors[:workers] = [None] * workers
        for error in [first_error] + worker_errors:
            if error is not None:
                raise error


    def _take_late_rows(self, span_kernel, parts, args, threads, workers, call):
        """After the caller's own parts: runs here the parts of every worker row that has not started the call
        yet (into self.errors[row], as the worker would); returns the rows a worker took, to wait for."""
        counters, waited = self.counters, []
        for row in range(workers):
            if counters[row, _DONE] >= call:
                continue
            # a worker in the middle of taking holds the lock for a moment: leave the row to it
            if not self.taking.acquire(blocking=False):
                waited.append(row)
                continue
            try:
                late = self.taken[row] < call
                if late:
                    self.taken[row] = call
            finally:
                self.taking.release()
            if not late:
                waited.append(row)
                continue
            self.taken_over += 1
            self.errors[row] = _run_parts(span_kernel, range(row + 1, parts, threads), parts, args)
        return waited


def _usable_cpus():
    """How many CPUs this process may run on (its affinity mask), or os.cpu_count() where that is unknown."""
    return spin.usable_cpus() or os.cpu_count() or 1


def _run_parts(span_kernel, own_parts, parts, args):
    """span_kernel(part, parts, *args) for each part of own_parts, all of them whatever happens; returns the
    first exception raised, or None."""
    first_error = None
    for part in own_parts:
        try:
            span_kernel(part, parts, *args)
        except BaseException as error:  # noqa: B902 - the caller raises it, once every part has finished
            if first_error is None:
                first_error = error
    return first_error


_workers = None
_workers_lock = threading.Lock()


def _get_workers():
    global _workers
    if _workers is None:
        with _workers_lock:
            if _workers is None:
                _workers = Workers(worker_count(numba.config.NUMBA_NUM_THREADS))
    return _workers


def worker_count(threads):
    """The worker threads a process started with NUMBA_NUM_THREADS=threads runs, at least 1: one fewer than
    threads, and than the CPUs this process may use (_usable_cpus). More would only take turns on those CPUs,
    each spinning while it waits, and a count past what the OS allows (NUMBA_NUM_THREADS=100000) ended the
    first parallel call with "can't start new thread". Calls are still cut into num_threads() parts, as asked,
    some threads running several (Workers.run): the same parts, so the same results."""
    return max(1, min(threads, _usable_cpus()) - 1)


_parts_on_caller = False  # run_parts_on_caller()'s switch


def run_parts_on_caller():
    """From now on, in this process, parallel_parts runs every part of a call on the calling thread, in
    order, unless the worker threads already run: for a process that only compiles kernels (the JIT helper),
    which then starts no threads and compiles no spin-wait. The same kernels, arguments and results."""
    global _parts_on_caller
    _parts_on_caller = True


def _forget_workers():
    """In a forked child the workers are gone: start new ones on first use."""
    global _workers, _workers_lock
    _workers, _workers_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def compile_wait():
    """Compile (or load from the cache) the spin-wait and the CPU note every parallel call uses, starting no
    thread: the JIT warm-up helper does this (its last job), so that a process on an empty cache loads them
    instead of compiling them."""
    counters = np.zeros((1, _ROW), np.int64)
    spin.reached(counters, 0, 1, _DONE, 0, 0, 0, np.zeros(2, np.int64), _CALLER_CPU, _WORKER_CPU,
                 np.zeros(0, np.uint64), *spin.NO_NOTE)
    spin.note_cpu(counters, 0, 1, _CALLER_CPU)


_threading_layer_count = None  # Numba's own per-thread count, a C function, once its threading layer is up


def num_threads():
    """numba.get_num_threads(), the calling Python thread's setting (set_num_threads is per thread), in 0.25
    instead of 2.9 us: numba.get_num_threads takes a multiprocessing lock and a thread lock on every call to
    make sure its threading layer is launched; once it is, this asks the layer directly (a ctypes call)."""
    global _threading_layer_count
    if _threading_layer_count is None:
        count = numba.get_num_threads()  # launches the threading layer
        _threading_layer_count = getattr(numba.np.ufunc.parallel, "_get_num_threads", None) or \
            numba.get_num_threads
        return count
    count = _threading_layer_count()
    return count if count > 0 else numba.get_num_threads()  # which raises Numba's own error


def thread_count(work):
    """How many parts a call of `work` (see MIN_PARALLEL_WORK) is cut into: 1 below MIN_PARALLEL_WORK, else
    num_threads()."""
    return 1 if work < MIN_PARALLEL_WORK else num_threads()


def parallel_parts(span_kernel, parts, *args):
    """span_kernel(part, parts, *args) for every part in range(parts), at once: part 0 on the calling thread,
    the others on the worker threads. Returns when all are done; an exception from any part is raised here
    (the first part's before the workers'). If another call owns the workers, the parts run here in order."""
    if parts <= 1:
        span_kernel(0, 1, *args)
        return
    workers = _workers or (None if _parts_on_caller else _get_workers())
    if workers is None or not workers.busy.acquire(blocking=False):
        error = _run_parts(span_kernel, range(parts), parts, args)
        if error is not None:
            raise error
        return
    try:
        workers.run(span_kernel, parts, args)
    finally:
        workers.busy.release()
