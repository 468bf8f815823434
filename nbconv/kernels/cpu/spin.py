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
"""
import platform
import sys
import time

import llvmlite.binding
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# Spinning needs a monotonic clock readable from compiled code: POSIX clock_gettime. Elsewhere (Windows) the
# waits give up at once and the callers block.
SPIN_SUPPORTED = sys.platform != "win32" and hasattr(time, "CLOCK_MONOTONIC")
CLOCK_ID = time.CLOCK_MONOTONIC if SPIN_SUPPORTED else 0

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


@njit(nogil=True, cache=True, no_cfunc_wrapper=True)
def reached(counters, first_row, last_row, column, target, spin_ns, timespec):
    """Whether counters[row, column] >= target for every row in [first_row, last_row), spinning for up to
    spin_ns nanoseconds until it is so (the GIL released). timespec: the clock's int64 scratch, 2 values."""
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
                return True
        if _now_ns(timespec) - start >= spin_ns:
            return False
        _yield_core()


if not SPIN_SUPPORTED:  # no clock_gettime or sched_yield to link against: look once, never spin
    def reached(counters, first_row, last_row, column, target, spin_ns, timespec):  # noqa: F811
        return bool((counters[first_row:last_row, column] >= target).all())
