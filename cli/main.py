"""Entry point of the `nbconv` command: a click group that gathers the sub-commands.

Each sub-command's module is imported only when that command runs (or when the group's help lists them
all): `nbconv train` does not load the benchmark, ONNX, visualisation or plan code and their imports."""
import importlib
import sys

import click

from nbconv import __version__

from .start import INTERRUPTED_WHILE_STARTING

# Commands that switch Python's garbage collector back on themselves, once their start is over (the others have
# it back as soon as their module is loaded; nbconv.startup.pause_garbage_collector).
COLLECT_WHEN_STARTED = {"train"}
# Command name -> (module in this package, attribute), in the order `nbconv --help` lists them.
COMMANDS = {
    "bench": ("bench", "bench"),
    "eval": ("evaluate", "evaluate"),
    "export": ("onnx_io", "export"),
    "import": ("onnx_io", "import_"),
    "info": ("info", "info"),
    "plan": ("plan", "plan_command"),
    "predict": ("predict", "predict"),
    "summary": ("summary", "summary_command"),
    "train": ("train", "train"),
    "visualize": ("visualize", "visualize"),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use (COMMANDS)."""

    def list_commands(self, ctx):
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx, name):
        if name not in self.commands and name in COMMANDS:
            self.add_command(load_command(name), name)
        return self.commands.get(name)


def load_command(name):
    """Import the sub-command `name`. A Ctrl-C while its libraries load (numpy, Numba, the kernels) prints
    one line and exits with status 130, instead of a traceback or click's bare 'Aborted!'."""
    module_name, attribute = COMMANDS[name]
    from nbconv import startup
    try:
        startup.skip_numba_optional_imports()  # the app runs only nbconv's kernels: no PyYAML, no cffi
        startup.skip_numba_scipy_blas()  # nor SciPy's BLAS: 0.3 s less at start
        startup.skip_numba_extensions()  # nor look for Numba extensions in every installed package's metadata
        startup.skip_numba_refresh_on_cache_load()  # nor import all of Numba's implementations to load a kernel
        if startup.garbage_collector_paused():  # as `nbconv`, from cli/start.py
            startup.collect_when_numba_compiles()  # compiling leaves much cyclic garbage: the collector's job
        module = importlib.import_module(f"{__package__}.{module_name}")
    except KeyboardInterrupt:
        sys.stderr.write(INTERRUPTED_WHILE_STARTING)
        sys.exit(130)
    if name not in COLLECT_WHEN_STARTED:
        startup.resume_garbage_collector()
    return getattr(module, attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nbconv")
def app():
    """nbconv: convolutional networks with kernels compiled by Numba, for the CPU and NVIDIA GPUs."""


def main():
    app()
