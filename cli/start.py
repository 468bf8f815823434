"""The `nbconv` console script's entry point: loads the command-line app, so that a Ctrl-C while the
libraries load (numpy, Numba, the kernels) prints one line instead of a traceback."""
import sys

INTERRUPTED_WHILE_STARTING = "\ninterrupted while starting; nothing done\n"


def main():
    try:
        from nbconv.startup import pause_garbage_collector
        pause_garbage_collector()  # on again once the command has started (nbconv_cli.main.load_command)
        from nbconv_cli.main import main as run
    except KeyboardInterrupt:
        sys.stderr.write(INTERRUPTED_WHILE_STARTING)
        sys.exit(130)
    run()
