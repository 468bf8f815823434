"""kernels/cpu/vectors.py: prefetch, a hint that changes no result, safe at any index (the 1x1 kernel prefetches
the next panel's weights, past the array's end on its last panel); the count of vector registers the kernels'
register blocks are sized for."""
import numba
import numpy as np
from numba import njit

from nbconv.kernels.cpu import vectors
from nbconv.kernels.cpu.vectors import prefetch


@njit(cache=False)
def _summed_with_prefetches(values, ahead):
    total = 0.0
    for i in range(values.shape[0]):
        prefetch(values, i + ahead)
        total += values[i]
    return total


def test_prefetch_past_the_end_changes_nothing_and_compiles_to_a_prefetch():
    values = np.arange(100, dtype=np.float32)
    for ahead in (0, 1, 64, 1 << 20, 1 << 40, -(1 << 20)):
        assert _summed_with_prefetches(values, ahead) == 4950.0
    assembly = next(iter(_summed_with_prefetches.inspect_asm().values()))
    assert "prefetch" in assembly


def test_vector_registers_follow_the_cpu_the_kernels_compile_for(monkeypatch):
    monkeypatch.setattr(numba.config, "CPU_NAME", None)
    monkeypatch.setattr(numba.config, "CPU_FEATURES", None)
    host = vectors.vector_registers()
    assert host in (16, 32) and host == vectors.REGISTERS
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+avx2,+fma,+avx512f,+avx512vl")
    assert vectors.vector_registers() == 32
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+avx2,+fma,-avx512vl")
    assert vectors.vector_registers() == 16
    monkeypatch.setattr(numba.config, "CPU_FEATURES", None)
    monkeypatch.setattr(numba.config, "CPU_NAME", "haswell")
    assert vectors.vector_registers() == 16
