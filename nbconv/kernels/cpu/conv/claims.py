"""Tasks claimed one at a time from a shared counter, so that the threads of a call finish together.

A span kernel's static slice (threads.py) gives each thread the same number of tasks; when one thread runs
slower (a core shared with another process, a worker that started late) the call waits for it. Here every
thread takes the next unclaimed task, by an atomic add on one int64 in a per-call array, until none are left:
the faster thread takes more. Only for tasks whose results do not depend on which thread runs them (the
kernels' buffers belong to a thread's part or to the task, never to the order of claiming).
"""
import numpy as np
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def _fetch_add(typingctx, counter, amount):
    """counter[0] += amount atomically (sequentially consistent); returns the value before (counter: int64)."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        step = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.atomic_rmw("add", data, step, "seq_cst")

    return types.int64(counter, amount), codegen


@njit(cache=True, inline="always")
def claim(counter):
    """The next unclaimed task's number (counter: a call's claims array; numbers from 0 up, past the last
    task once all are claimed)."""
    return _fetch_add(counter, 1)


def claims():
    """A new call's counter: an int64 array whose first value is the next task, padded to a cache line of its
    own."""
    return np.zeros(16, np.int64)
