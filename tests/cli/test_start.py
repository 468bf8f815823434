"""What `nbconv` loads at start: each sub-command's module on its own, no CUDA, ONNX, imaging or PyTorch code
for a CPU training run, Numba without PyYAML/colorama/cffi, and the garbage collector off only while nothing
compiles."""
import ast
import os
import subprocess
import sys

import click
import click.testing
import pytest

from nbconv_cli.main import COMMANDS, app

# Modules a CPU `nbconv train` on data already on disk has no use for (the last two: other sub-commands').
NOT_FOR_TRAINING = ("numba.cuda", "numba_cuda", "onnx", "onnxruntime", "PIL", "torch", "scipy.linalg",
                    "urllib.request", "http.client", "yaml", "colorama", "cffi", "mpi4py", "nbconv.bench", "nbconv.onnx",
                    "nbconv.visualize", "nbconv_cli.bench", "nbconv_cli.visualize")

# Runs `python -m nbconv ARGS` in a fresh interpreter; at exit prints the loaded modules of NOT_FOR_TRAINING
# and whether the garbage collector is on.
PROBE = """
import atexit, gc, runpy, sys
watched = sys.argv[1].split(",")
atexit.register(lambda: print("LOADED", [name for name in watched if name in sys.modules], "GC", gc.isenabled()))
sys.argv = ["nbconv"] + sys.argv[2:]
runpy.run_module("nbconv", run_name="__main__", alter_sys=True)
"""


def run_nbconv(*args, cwd=None):
    """(loaded modules of NOT_FOR_TRAINING, collector on at exit, stdout) of `python -m nbconv ARGS`."""
    done = subprocess.run([sys.executable, "-c", PROBE, ",".join(NOT_FOR_TRAINING), *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("LOADED "), done.stdout
    loaded, collecting = last[len("LOADED "):].rsplit(" GC ", 1)
    return ast.literal_eval(loaded), collecting == "True", done.stdout


def test_every_sub_command_is_listed_and_loads_under_its_name():
    context = click.Context(app)
    assert app.list_commands(context) == sorted(COMMANDS)
    for name in COMMANDS:
        command = app.get_command(context, name)
        assert isinstance(command, click.Command) and command.name == name
    assert app.get_command(context, "no-such-command") is None


def test_the_help_still_lists_every_command():
    result = click.testing.CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(COMMANDS)


def test_the_train_command_loads_nothing_it_does_not_run():
    loaded, collecting, out = run_nbconv("train", "--help")
    assert "Usage:" in out and loaded == [] and collecting is False  # --help ends before training started


def test_a_cpu_training_run_loads_nothing_it_does_not_run_and_collects_garbage_while_training(tmp_path):
    loaded, collecting, out = run_nbconv("train", "flatten,fc10", "--dataset", "synthetic:1x4x4:10:16:8",
                                         "--epochs", "1", "--batch-size", "8", "--device", "cpu",
                                         "--out", str(tmp_path / "run.npz"), cwd=tmp_path)
    assert "test accuracy" in out and (tmp_path / "run.npz").exists()
    assert loaded == []
    assert collecting is True


def test_other_commands_have_the_garbage_collector_back_once_loaded():
    loaded, collecting, out = run_nbconv("summary", "lenet5")
    assert collecting is True and "nbconv.bench" not in loaded


PROGRAM_OPTIONAL = """
import sys
from nbconv.startup import skip_numba_optional_imports
print(",".join(skip_numba_optional_imports()) or "-")
import numba.core.config, numba.core.typing.cffi_utils
print(numba.core.config._HAVE_YAML, numba.core.typing.cffi_utils.SUPPORTED)
import numba.core.errors
assert type(numba.core.errors.termcolor()).__name__ == "NOPColorScheme"  # plain messages
print(",".join(skip_numba_optional_imports()) or "-")
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)  # still importable
print("ok")
"""


def optional_modules():
    found = []
    for name in ("yaml", "colorama", "cffi"):
        try:
            __import__(name)
            found.append(name)
        except ImportError:
            pass
    return found


def test_numba_starts_without_pyyaml_colorama_and_cffi_which_stay_importable(tmp_path):
    installed = optional_modules()
    out = subprocess.run([sys.executable, "-c", PROGRAM_OPTIONAL, *installed], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout.split()
    assert out == ["yaml,colorama,cffi", "False", "False", "-", "ok"]


def test_a_numba_config_file_in_the_working_directory_is_still_read(tmp_path):
    if "yaml" not in optional_modules():
        pytest.skip("PyYAML is not installed: Numba cannot read its config file anyway")
    (tmp_path / ".numba_config.yaml").write_text("debuginfo: 1\n")
    program = PROGRAM_OPTIONAL + "print(numba.core.config.DEBUGINFO_DEFAULT)\n"
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout.split()
    assert out[:3] == ["colorama,cffi", "True", "False"] and out[-1] == "1"


PROGRAM_GC = """
import gc
from nbconv.startup import collect_when_numba_compiles, pause_garbage_collector, resume_garbage_collector
pause_garbage_collector()
collect_when_numba_compiles()
collect_when_numba_compiles()  # once per process
from nbconv import startup
print(gc.isenabled(), len(startup._compile_listener))
import numba
numba.njit(lambda x: x + 1)(1)  # compiling switches the collector on
print(gc.isenabled())
pause_garbage_collector()
resume_garbage_collector()
print(gc.isenabled())
gc.disable()  # somebody else's choice: left as it is
pause_garbage_collector()
resume_garbage_collector()
numba.njit(lambda x: x + 2)(1)
print(gc.isenabled(), startup.garbage_collector_paused())
"""


def test_the_garbage_collector_comes_back_on_when_numba_compiles():
    out = subprocess.run([sys.executable, "-c", PROGRAM_GC], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "1", "True", "True", "False", "False"]


PROGRAM_EXTENSIONS = """
import numpy as np
from nbconv.startup import skip_numba_extensions
print(skip_numba_extensions(), skip_numba_extensions())
import importlib.metadata
calls = []
real = importlib.metadata.entry_points
importlib.metadata.entry_points = lambda *a, **k: calls.append(1) or real(*a, **k)
import nbconv.functional as F
print(F.relu(np.array([-1.0, 2.0], np.float32)).tolist(), len(calls))
"""


def test_numba_does_not_look_for_extensions_and_kernels_still_run():
    out = subprocess.run([sys.executable, "-c", PROGRAM_EXTENSIONS], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:2] == ["True False", "[0.0, 2.0] 0"]


def test_the_library_s_training_modules_load_no_gpu_onnx_imaging_torch_or_network_code():
    program = ("import sys\nimport nbconv.train, nbconv.functional, nbconv.models\n"
               f"print([name for name in {list(NOT_FOR_TRAINING[:9])!r} if name in sys.modules])")
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("value", ["0", "-1", "four", ""])
def test_a_thread_count_numba_cannot_start_with_is_one_line_not_a_traceback(value):
    from nbconv_cli.start import thread_count_error
    assert thread_count_error({"NUMBA_NUM_THREADS": value}).startswith(
        f"Error: NUMBA_NUM_THREADS must be a whole number of threads >= 1 (or unset: every core), got {value!r}")
    environment = {**os.environ, "NUMBA_NUM_THREADS": value}
    done = subprocess.run([sys.executable, "-m", "nbconv", "info"], capture_output=True, text=True, timeout=300,
                          env=environment)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "Warning" not in done.stderr
    assert done.stderr.startswith("Error: NUMBA_NUM_THREADS must be a whole number")


def test_a_valid_or_absent_thread_count_passes():
    from nbconv_cli.start import thread_count_error
    assert thread_count_error({}) is None and thread_count_error({"NUMBA_NUM_THREADS": "3"}) is None
