"""The `nbconv` console script's entry point: loads the command-line app, so that a Ctrl-C while the
libraries load (numpy, Numba, the kernels) prints one line instead of a traceback."""
import sys


def main():
    try:
        from nbconv_cli.main import main as run
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted while starting; nothing done\n")
        sys.exit(130)
    run()
