"""The `nbconv` console script's entry point: loads the command-line app, so that a Ctrl-C while the
libraries load (numpy, Numba, the kernels) prints one line instead of a traceback."""
import os
import sys

INTERRUPTED_WHILE_STARTING = "\ninterrupted while starting; nothing done\n"


def thread_count_error(environ=os.environ):
    """The line to print when NUMBA_NUM_THREADS is set to what Numba cannot start with, else None: Numba
    raises on 0 or a negative count deep inside its import (a traceback), and ignores text with a warning
    that holds one, so nbconv would run on another count than the one asked for."""
    value = environ.get("NUMBA_NUM_THREADS")
    if value is None:
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count >= 1:
        return None
    return (f"Error: NUMBA_NUM_THREADS must be a whole number of threads >= 1 (or unset: every core), got {value!r}; "
            "nbconv's --threads sets fewer\n")


def main():
    error = thread_count_error()
    if error:
        sys.stderr.write(error)
        sys.exit(2)
    try:
        from nbconv.startup import pause_garbage_collector
        pause_garbage_collector()  # on again once the command has started (nbconv_cli.main.load_command)
        from nbconv_cli.main import main as run
    except KeyboardInterrupt:
        sys.stderr.write(INTERRUPTED_WHILE_STARTING)
        sys.exit(130)
    run()
