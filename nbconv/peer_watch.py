"""Whether the other processes of a job on this host still exist, watched from a sleeping thread.

A process killed by a signal says nothing; under MPI its peers may then fail inside a collective with an
error about shared memory (MPICH: `process_vm_readv failed (errno 3)`), or wait in it, and the launcher
does not always say which process died. A process's identity here is (pid, start time): the start time
(from /proc, where there is one) tells a pid reused by a new process from the old one. A process that has
exited but is not yet reaped by its parent (a zombie) counts as gone.
"""
import os
import threading

WATCH_SECONDS = 0.5  # between two looks at the peers: a dead peer is named within about this long


def process_start_time(pid):
    """The process's start time, as the text of field 22 of /proc/PID/stat (clock ticks since boot), or None
    where there is no /proc or no such process."""
    stat = _stat_fields(pid)
    return None if stat is None else stat[19]


def _stat_fields(pid):
    """/proc/PID/stat's fields after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_gone(pid, start_time=None):
    """Whether the process (pid, start_time) has ended: no such pid, a zombie, or a pid that now belongs to a
    process started at another time. A process of another user counts as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    stat = _stat_fields(pid)
    if stat is None:
        return False  # no /proc: the signal test is all there is
    return stat[0] in ("Z", "X") or (start_time is not None and stat[19] != start_time)


class PeerWatch:
    """A daemon thread that every `interval` seconds, while armed, looks whether any of `peers`,
    {rank: (pid, start_time)} of processes on this host, has ended, and then calls on_gone(rank) once and
    stops. Armed: inside `with watch.armed():`, around the waits in which every peer must take part (a
    collective), so that a peer that has finished its work and exited is not taken for a dead one. It sleeps
    between looks (an Event wait), so an idle job spends no CPU on it; stop() ends it within the wait."""

    def __init__(self, peers, on_gone, interval=WATCH_SECONDS):
        self.peers, self.on_gone, self.interval = dict(peers), on_gone, float(interval)
        self._stopped = threading.Event()
        self._thread = None
        self._armed = 0  # nesting depth of armed(), changed by the watched thread only

    def armed(self):
        """A context in which the watch looks (nestable)."""
        return _Armed(self)

    def start(self):
        if self.peers and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="nbconv-peer-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self):
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def gone(self):
        """The lowest rank among the peers whose process has ended, or None."""
        for rank in sorted(self.peers):
            if process_gone(*self.peers[rank]):
                return rank
        return None

    def _watch(self):
        while not self._stopped.wait(self.interval):
            rank = self.gone() if self._armed else None
            if rank is not None:
                self.on_gone(rank)
                return

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


class _Armed:
    def __init__(self, watch):
        self.watch = watch

    def __enter__(self):
        self.watch._armed += 1

    def __exit__(self, *exc_info):
        self.watch._armed -= 1
