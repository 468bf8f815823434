"""kernels/cpu/vectors.py: prefetch, a hint that changes no result, safe at any index (the 1x1 kernel prefetches
the next panel's weights, past the array's end on its last panel); the count of vector registers the kernels'
register blocks are sized for; wide vectors, lane by lane as the narrow ones."""
import numba
import numpy as np
from numba import njit

from nbconv.kernels.cpu import vectors
from nbconv.kernels.cpu.vectors import (WIDE_LANES, add, add_product, add_products, lane_sum, multiply, prefetch, relu,
                                        relu6, store, wide_broadcast, wide_load, wide_zeros)


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


def test_wide_vectors_follow_the_registers():
    assert vectors.WIDE_LANES == (16 if vectors.REGISTERS >= 32 else vectors.LANES) == vectors.wide_vector_lanes()


@njit(cache=False)
def _wide_operations(values, scalars, out):
    """out[r*W:(r+1)*W] for each row r of results of the wide operations on values[0:W], values[W:2W]."""
    first, second = wide_load(values, 0), wide_load(values, WIDE_LANES)
    store(out, 0, add_products(wide_zeros(values), first, second))
    store(out, WIDE_LANES, add_product(first, second, scalars[0]))
    store(out, 2 * WIDE_LANES, add(multiply(first, wide_broadcast(scalars, 1)), second))
    store(out, 3 * WIDE_LANES, relu(first))
    store(out, 4 * WIDE_LANES, relu6(second))
    return lane_sum(first)


def test_wide_vectors_compute_lane_by_lane():
    rng = np.random.default_rng(5)
    values = (rng.standard_normal(2 * WIDE_LANES) * 5).astype(np.float32)
    scalars = np.array([0.5, -3.0], np.float32)
    out = np.full(5 * WIDE_LANES + 1, 99.0, np.float32)
    total = _wide_operations(values, scalars, out)
    first, second = values[:WIDE_LANES], values[WIDE_LANES:]
    np.testing.assert_allclose(out[:WIDE_LANES], first * second, rtol=1e-6)
    np.testing.assert_allclose(out[WIDE_LANES:2 * WIDE_LANES], first + second * np.float32(0.5), rtol=1e-6)
    np.testing.assert_allclose(out[2 * WIDE_LANES:3 * WIDE_LANES], first * np.float32(-3.0) + second, rtol=1e-6)
    np.testing.assert_array_equal(out[3 * WIDE_LANES:4 * WIDE_LANES], np.maximum(first, 0))
    np.testing.assert_array_equal(out[4 * WIDE_LANES:5 * WIDE_LANES], np.clip(second, 0, 6))
    assert out[-1] == 99.0  # nothing past the last store
    assert abs(total - first.astype(np.float64).sum()) < 1e-4
