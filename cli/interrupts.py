"""Ctrl-C during training: finish the current step, then stop where model and optimizer agree."""
import functools
import signal
import sys
import threading

import click


class StopAtStepBoundary:
    """A context manager and a callable: inside `with`, the first SIGINT (Ctrl-C) only makes the object
    answer True, so training can stop after its current step and save a consistent checkpoint; a second
    SIGINT raises KeyboardInterrupt at once, as usual. Outside the main thread (where Python delivers
    signals), or where SIGINT is ignored, it changes nothing."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __call__(self):
        return self.requested

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # ignored (nohup, &): leave it so
            previous = signal.signal(signal.SIGINT, self._handle)
            self._previous = previous if previous is not None else signal.default_int_handler
        return self

    def __exit__(self, *exc_info):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False


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
