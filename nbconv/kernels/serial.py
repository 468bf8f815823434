"""One kernel call at a time across Python threads: the kernel modules as the public API sees them.

Every CPU kernel already spreads its work over all of the kernel threads (nbconv.kernels.cpu.threads) and
the convolutions share scratch buffers (nbconv.kernels.workspace), so two Python threads calling kernels at
once would gain no speed (they would only oversubscribe the cores) and would overwrite each other's
scratch. (The kernels' own thread runtime is safe under concurrent calls; the lock is for the scratch.)
A process-wide lock around each call costs a fraction of a microsecond (benchmarks/NOTES.md) and keeps one
set of scratch buffers however many threads there are. The CUDA kernels share their scratch too, and go
through the same lock, so each call's launches reach the stream as one group.
"""
import functools
import threading

LAUNCH_LOCK = threading.Lock()


def _serialized(kernel):
    # acquire/release bound once and a try block instead of a `with` statement: 0.2-0.4 us less per call
    # (28 kernel calls a LeNet-5 training step), the same exclusion
    acquire, release = LAUNCH_LOCK.acquire, LAUNCH_LOCK.release

    @functools.wraps(kernel)
    def call(*args, **kwargs):
        acquire()
        try:
            return kernel(*args, **kwargs)
        finally:
            release()
    return call


class Serialized:
    """The public kernels of `module` (its __all__), each run under LAUNCH_LOCK; other attributes pass through.
    Each kernel is looked up in `module` on first use, so a module that imports some kernels only when asked
    for them (nbconv.kernels.cpu) keeps doing so."""

    def __init__(self, module):
        self.module = module
        self._public = frozenset(module.__all__)

    def __getattr__(self, name):
        if name in self.__dict__.get("_public", ()):
            kernel = _serialized(getattr(self.module, name))
            setattr(self, name, kernel)  # found in the instance from now on: __getattr__ is not called again
            return kernel
        return getattr(self.module, name)
