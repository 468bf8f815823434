"""Moves of one fixed block of 8 array values, each a single 256-bit vector load and store (vectors.py).

A copy loop of 8 values through Numba slices or indices is not vectorised (each index may be negative,
and each slice normalises its bounds): measured 8x slower than these on LeNet-5's unrolling. Callers
guarantee that both blocks lie inside their (flat, C-contiguous) arrays; nothing is checked here.
"""
from numba import njit

from .vectors import LANES, add, from_lane, load, store

BLOCK = LANES  # values a block move covers


@njit(cache=True, no_cfunc_wrapper=True)
def copy_block(target, target_start, source, source_start):
    """target[target_start:target_start + 8] = source[source_start:source_start + 8] (flat arrays)."""
    store(target, target_start, load(source, source_start))


@njit(cache=True, no_cfunc_wrapper=True)
def add_block(target, target_start, source, source_start):
    """target[target_start:target_start + 8] += source[source_start:source_start + 8] (flat arrays)."""
    store(target, target_start, add(load(target, target_start), load(source, source_start)))


@njit(cache=True, no_cfunc_wrapper=True)
def add_block_from(target, target_start, source, source_start, skip):
    """target[target_start + k] += source[source_start + k] for skip <= k < 8 (flat arrays; all 8 values of
    both blocks are read, the first `skip` target values are written back unchanged)."""
    store(target, target_start, add(load(target, target_start), from_lane(load(source, source_start), skip)))
