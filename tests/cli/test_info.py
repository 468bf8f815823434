import pytest
from click.testing import CliRunner

from nbconv import __version__
from nbconv_cli.main import app


def test_version_and_help():
    runner = CliRunner()
    assert __version__ in runner.invoke(app, ["--version"]).output
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "info" in result.output


@pytest.fixture
def fresh_cuda_status():
    """cuda_status recomputed inside the test and again after it, so no patched answer outlives the test."""
    from nbconv import backend
    backend.cuda_status.cache_clear()
    yield backend
    backend.cuda_status.cache_clear()


def test_info_reports_versions_threads_cuda_and_cache(monkeypatch, fresh_cuda_status):
    import numba

    backend = fresh_cuda_status
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "0")  # report as on a machine without the simulator
    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    for key in ("nbconv", "numba", "llvmlite", "numpy", "threading layer", "threads", "cuda", "jit cache"):
        assert f"{key}:" in result.output
    assert numba.__version__ in result.output
    cuda_line = next(line for line in result.output.splitlines() if line.strip().startswith("cuda:"))
    usable, reason = backend.cuda_status()
    assert ("usable" in cuda_line) and (reason in cuda_line)
    monkeypatch.undo()
    backend.cuda_status.cache_clear()
