"""benchmarks/gpu_distributed.py, on its CPU path: one round under mpiexec gives a row per configuration."""
import os
import re
import subprocess
import sys

from tests.test_distributed import ROOT, environment, needs_mpi


@needs_mpi
def test_one_round_on_two_cpu_processes_times_every_configuration(tmp_path):
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "gpu_distributed.py"), "--device", "cpu",
               "--processes", "2", "--models", "lenet5", "--rounds", "1", "--blocks", "1", "--steps", "1",
               "--out", str(tmp_path)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment())
    assert completed.returncode == 0, completed.stdout + completed.stderr
    table = (tmp_path / "table-cpu-2.md").read_text()
    rows = re.findall(r"^\| lenet5 \| (.+?) \| ([\d,]+) \|", table, re.MULTILINE)
    assert [label for label, _ in rows] == ["1 process", "2 processes, blocking", "2 processes, overlapped",
                                            "2 processes, no reduction"]
    assert all(int(rate.replace(",", "")) > 0 for _, rate in rows)
