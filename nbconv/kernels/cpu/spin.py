"""Bounded spin-waits in compiled code with the GIL released: how kernel threads wait for each other briefly.

A thread that waits here polls a counter in a shared int64 array without holding the GIL, so the thread that
will change the counter runs Python freely meanwhile, and the waiter notices the change within a microsecond
instead of the tens of microseconds a sleeping thread can take to wake (futex, scheduler, and on a virtual
machine an interrupt to a halted core). Every wait ends after `spin_ns` nanoseconds whatever
happens; the callers then block on a threading.Condition, so an idle process burns no CPU.

The loop polls with the CPU's spin-wait hint between looks (x86 `pause`, Arm `yield`: cheap, no system call,
and it tells a core shared by two hardware threads to favour the other), and every YIELD_EVERY looks it reads
the clock (clock_gettime: the vDSO, no system call) and calls the C library's sched_yield, which lets a
thread that waits for this core run at once (on a loaded machine the thread being waited for may be that
thread). Both calls are by symbol, so the compiled code caches like any other; the hint is an inline-assembly
statement that may touch memory, so LLVM reloads the counter on every pass. (A sched_yield on every pass
would keep a spinning thread inside the kernel for most of its spin: system time, and a system call's delay
before it sees the counter change.)

Where the two threads of a hand-off run decides whether a spin helps. Each waiting thread writes the CPU it is
on (sched_getcpu: the vDSO, no system call) into a column of its row at every clock read, and compares it with
the CPU its partner last wrote. On different CPUs it never yields: the partner has a CPU of its own, and under
Linux's EEVDF scheduler a yield beside any other runnable task gives that task the rest of this thread's slice
(milliseconds), so the thread is then spinning in name only when the call it waits for arrives. On the
partner's CPU it cannot be of use there: the caller yields (the worker it waits for needs the CPU), and a
worker moves itself to another CPU the process may use (sched_setaffinity without this CPU, then with it
again: the kernel moves a running thread at once, and the mask it had is restored), where it is ready for the
next call instead of queued behind the caller. A woken thread is placed by the kernel beside its waker more
often than not, so without this a worker that slept between calls could spend milliseconds on the caller's
CPU while the other one idles.
"""
import os
import platform
import sys
import time

import llvmlite.binding
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# Spinning needs a monotonic clock readable from compiled code: POSIX clock_gettime. Elsewhere (Windows) the
# waits give up at once and the callers block.
SPIN_SUPPORTED = sys.platform != "win32" and hasattr(time, "CLOCK_MONOTONIC")
CLOCK_ID = time.CLOCK_MONOTONIC if SPIN_SUPPORTED else 0
# Knowing and choosing a thread's CPU needs Linux's sched_getcpu and sched_setaffinity; elsewhere a waiting
# thread does not know its CPU and yields as with NO_PLACEMENT.
PLACEMENT_SUPPORTED = SPIN_SUPPORTED and sys.platform.startswith("linux")

# The spin-wait hint of this CPU, or none (then the loop is a plain poll).
_HINT = {"x86_64": "pause", "amd64": "pause", "i386": "pause", "i686": "pause", "aarch64": "yield",
         "arm64": "yield"}.get(platform.machine().lower(), "")
if _HINT:
    llvmlite.binding.initialize_native_asmparser()  # Numba's JIT emits inline assembly only with it

# Looks at the counter between two clock reads and sched_yield calls. Fewer yields mean less system time on an
# idle core, but on a machine with more runnable threads than cores the thread being waited for may need this
# core: 64 (a few microseconds between yields) made the hand-off 15 -> 20 us at load 3 on 2 cores
# (benchmarks/handoff.py); 8 kept it at 9-10 us.
YIELD_EVERY = 8


@intrinsic
def _yield_core(typingctx):
    """sched_yield(): if another runnable thread waits for this core (a loaded machine, or more threads than
    cores), it runs now instead of after this thread's time slice; otherwise returns at once."""
    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                                  "sched_yield")
        builder.call(function, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _current_cpu(typingctx):
    """sched_getcpu(): the CPU this thread runs on now, or -1 if the C library cannot tell."""
    def codegen(context, builder, signature, args):
        if not PLACEMENT_SUPPORTED:
            return ir.Constant(ir.IntType(64), -1)
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []),
                                                  "sched_getcpu")
        return builder.sext(builder.call(function, []), ir.IntType(64))
    return types.int64(), codegen


def _affinity_call(name):
    """An intrinsic (mask, first_word, words) for sched_getaffinity/sched_setaffinity on the calling thread with
    the CPU set at words [first_word, first_word + words) of mask (a uint64 array, CPU i at bit i % 64 of word
    i // 64). Returns the call's int32 result (0 or more: done; -1: refused), and -1 without calling where
    placement is not supported."""
    @intrinsic
    def affinity_call(typingctx, mask, first_word, words):
        def codegen(context, builder, signature, args):
            if not PLACEMENT_SUPPORTED:
                return ir.Constant(ir.IntType(64), -1)
            size_type = context.get_value_type(types.intp)
            function = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.IntType(32), [ir.IntType(32), size_type, cgutils.voidptr_t]),
                name)
            array = context.make_array(signature.args[0])(context, builder, args[0])
            first = context.cast(builder, args[1], signature.args[1], types.intp)
            count = context.cast(builder, args[2], signature.args[2], types.intp)
            words_at = builder.gep(array.data, [first])
            result = builder.call(function, [ir.Constant(ir.IntType(32), 0), builder.mul(count, size_type(8)),
                                             builder.bitcast(words_at, cgutils.voidptr_t)])
            return builder.sext(result, ir.IntType(64))
        return types.int64(mask, first_word, words), codegen
    return affinity_call


_get_affinity = _affinity_call("sched_getaffinity")
_set_affinity = _affinity_call("sched_setaffinity")


@intrinsic
def _spin_hint(typingctx):
    """The CPU's spin-wait hint (_HINT): an instruction that only slows this thread down a little."""
    def codegen(context, builder, signature, args):
        if _HINT:
            hint = ir.InlineAsm(ir.FunctionType(ir.VoidType(), []), _HINT, "~{memory}", side_effect=True)
            builder.call(hint, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _clock_gettime(typingctx, clock_id, timespec):
    """clock_gettime(clock_id, timespec.ctypes.data): fills timespec (int64 seconds, int64 nanoseconds)."""
    def codegen(context, builder, signature, args):
        clock_type = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(clock_type, [clock_type, cgutils.voidptr_t]), "clock_gettime")
        array = context.make_array(signature.args[1])(context, builder, args[1])
        builder.call(function, [builder.trunc(args[0], clock_type),
                                builder.bitcast(array.data, cgutils.voidptr_t)])
        return context.get_dummy_value()
    return types.void(clock_id, timespec), codegen


@njit(cache=True, inline="always")
def _now_ns(timespec):
    _clock_gettime(CLOCK_ID, timespec)
    return timespec[0] * 1000000000 + timespec[1]


# Affinity masks are this many uint64 words: glibc's cpu_set_t, 1024 CPUs.
MASK_WORDS = 16


def usable_cpus():
    """How many CPUs this process may run on (its affinity mask); None where that cannot be read."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def allowed_mask():
    """A moving thread's scratch for affinity masks (2 x MASK_WORDS uint64: the mask it may use, read anew at
    each move, and that mask less one CPU); empty (never move) where the process may use one CPU only, where
    its mask cannot be read, or where placement is not supported."""
    if not PLACEMENT_SUPPORTED or (usable_cpus() or 0) < 2:
        return np.zeros(0, np.uint64)
    return np.zeros(2 * MASK_WORDS, np.uint64)


# `placement` for a wait that keeps no record of CPUs and yields as it always did.
NO_PLACEMENT = (-1, -1, np.zeros(0, np.uint64))
NO_NOTE = (-1, 0)  # reached's last two arguments: nothing to write first


@njit(nogil=True, cache=True, no_cfunc_wrapper=True)
def _placed(counters, first_row, last_row, own_column, partner_column, affinity):
    """Notes this thread's CPU in own_column of the rows; returns whether to yield now. On a partner's CPU
    (partner_column of any row): a thread with affinity scratch moves off it to another CPU its mask allows
    (and does not yield); one without, or with no other CPU allowed, yields. On a CPU of its own: no yield.
    Without a CPU to compare: a yield, as with no placement. (Loops, not array expressions: those would make
    Numba compile helpers of its own in every process, which its cache does not keep.)"""
    if own_column < 0:
        return True
    cpu = _current_cpu()
    if cpu < 0:
        return True
    beside = False
    for row in range(first_row, last_row):
        if counters[row, own_column] != cpu:  # a store only on a move: the partner reads this cache line
            counters[row, own_column] = cpu
        if counters[row, partner_column] == cpu:
            beside = True
    if not beside:
        return False
    words = affinity.shape[0] // 2
    if words == 0 or cpu >= 64 * words:
        return True
    for word in range(words):
        affinity[word] = 0
    if _get_affinity(affinity, 0, words) < 0:  # the mask as it is now: whoever changed it since (taskset) keeps it
        return True
    others = False
    for word in range(words):
        value = affinity[word]
        if word == cpu // 64:
            value &= ~(np.uint64(1) << np.uint64(cpu % 64))
        affinity[words + word] = value
        others = others or value != 0
    if not others:
        return True
    _set_affinity(affinity, words, words)  # the kernel moves this thread off `cpu` now
    _set_affinity(affinity, 0, words)      # and may place it anywhere it could before, later
    return False


@njit(nogil=True, cache=True, no_cfunc_wrapper=True)
def note_cpu(counters, first_row, last_row, column):
    """Notes the calling thread's CPU in `column` of the rows (a store only where it changed). A caller notes
    its CPU right after it posts each call: it writes it in its own waits too, but a caller whose part ends
    after its workers' never waits, and a caller moved onto a worker's CPU (after a sleep, say) would otherwise
    leave the worker comparing its CPU with a stale one, both threads sharing one CPU call after call."""
    cpu = _current_cpu()
    for row in range(first_row, last_row):
        if counters[row, column] != cpu:
            counters[row, column] = cpu


@njit(nogil=True, cache=True, no_cfunc_wrapper=True)
def reached(counters, first_row, last_row, column, target, spin_ns, settle_ns, timespec, own_cpu_column,
            partner_cpu_column, affinity, note_column, note):
    """Whether counters[row, column] >= target for every row in [first_row, last_row), spinning for up to
    spin_ns nanoseconds until it is so (the GIL released). Once it became so while spinning, keeps spinning
    settle_ns more before it returns: the thread that raised the counter holds the GIL for a few microseconds
    after, and a thread that asks for the GIL meanwhile sleeps, and wakes tens of microseconds after it is
    released. timespec: the clock's int64 scratch, 2 values.
    own_cpu_column, partner_cpu_column, affinity: where this thread notes its CPU and reads its partner's in
    those rows, and its scratch for affinity masks (allowed_mask(), or empty: never move), as the module's
    docstring says;
    NO_PLACEMENT: none of it, a yield every YIELD_EVERY looks. A worker woken beside its caller, or finding
    itself beside it when the call it spins for arrives, moves off at once, before it returns to take the call.
    note_column, note: where note_column >= 0, first writes note into counters[first_row, note_column] (a
    worker's `done`): written here, with the GIL already released, the partner spinning for it does not then
    ask for a GIL this thread still holds."""
    if note_column >= 0:
        counters[first_row, note_column] = note
    _placed(counters, first_row, last_row, own_cpu_column, partner_cpu_column, affinity)
    row = first_row
    while row < last_row and counters[row, column] >= target:
        row += 1
    if row == last_row:
        return True
    if spin_ns <= 0:
        return False
    start = _now_ns(timespec)
    while True:
        for _ in range(YIELD_EVERY):
            _spin_hint()
            while row < last_row and counters[row, column] >= target:
                row += 1
            if row == last_row:
                if settle_ns > 0:
                    seen = _now_ns(timespec)
                    while _now_ns(timespec) - seen < settle_ns:
                        _spin_hint()
                # the partner has noted its CPU by now (a caller does right after it posts, well within a
                # worker's settle): a worker beside it moves off before it returns to run its part there
                _placed(counters, first_row, last_row, own_cpu_column, partner_cpu_column, affinity)
                return True
        if _now_ns(timespec) - start >= spin_ns:
            return False
        if _placed(counters, row, last_row, own_cpu_column, partner_cpu_column, affinity):
            _yield_core()


if not SPIN_SUPPORTED:  # no clock_gettime, sched_yield or sched_getcpu to link against: look once, never spin
    def reached(counters, first_row, last_row, column, target, spin_ns, settle_ns, timespec,  # noqa: F811
                own_cpu_column, partner_cpu_column, affinity, note_column, note):
        if note_column >= 0:
            counters[first_row, note_column] = note
        return bool((counters[first_row:last_row, column] >= target).all())

    def allowed_mask():  # noqa: F811
        return np.zeros(0, np.uint64)
