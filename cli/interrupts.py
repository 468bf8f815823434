"""Ctrl-C (or SIGTERM, as batch schedulers send before a kill) during training: finish the current step, then
stop where model and optimizer agree."""
import functools
import signal
import sys
import threading

import click


class StopAtStepBoundary:
    """A context manager and a callable: inside `with`, the first SIGINT (Ctrl-C) or SIGTERM (Slurm, PBS and
    `kill` ask a job to end with it) only makes the object answer True, so training can stop after its current
    step and save a consistent checkpoint; `signal_number` says which one came. A second one acts at once, as
    usual: SIGINT raises KeyboardInterrupt, SIGTERM ends the process. Outside the main thread (where Python
    delivers signals) nothing changes, nor for a signal that is ignored (nohup, &) or already handled."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.signal_number = None
        self._previous = {}

    def __call__(self):
        return self.requested

    def _handle(self, signum, frame):
        self.requested = True
        self.signal_number = signum
        signal.signal(signum, self._previous[signum])

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.SIGNALS:
            current = signal.getsignal(signum)
            if signum == signal.SIGINT and current is signal.SIG_IGN:
                continue
            if signum == signal.SIGTERM and current is not signal.SIG_DFL:  # ignored, or somebody else's
                continue
            previous = signal.signal(signum, self._handle)
            if previous is None:  # a handler installed from C: put Python's defaults back afterwards
                previous = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            self._previous[signum] = previous
        return self

    def __exit__(self, *exc_info):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
        return False

    @property
    def exit_status(self):
        """The shell's status for a process ended by the signal that stopped training: 128 + its number."""
        return 128 + (self.signal_number or signal.SIGINT)


def one_line_on_interrupt(message):
    """Decorate a command so that a KeyboardInterrupt reaching it prints `message` on one line and exits
    with status 130, instead of a traceback or click's bare 'Aborted!'."""
    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except KeyboardInterrupt:
                click.echo(f"\n{message}", err=True)
                sys.exit(130)
        return wrapper
    return decorate
