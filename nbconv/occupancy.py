"""Theoretical occupancy of a CUDA kernel on one streaming multiprocessor (SM), as NVIDIA's occupancy
calculator computes it: how many blocks of a kernel fit on one SM at once, given its threads per block,
registers per thread and shared memory per block, and what fraction of the SM's warp slots they fill.

Limits per GPU are those of NVIDIA's CUDA C++ Programming Guide (compute capabilities table) and the
occupancy calculator; shared memory per SM is the largest carveout (the driver raises the carveout to
what the kernel needs).
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class GPULimits:
    name: str
    max_threads_per_sm: int
    max_warps_per_sm: int
    max_blocks_per_sm: int
    registers_per_sm: int
    register_allocation_unit: int  # registers, allocated per warp in units of this many
    max_registers_per_thread: int
    shared_bytes_per_sm: int
    shared_allocation_unit: int
    reserved_shared_bytes_per_block: int  # the system's own, on every block (compute capability >= 8.0)
    reservation_in_cubin: bool  # whether ptxas counts that reservation in a kernel's shared memory (sm_90 does)
    warp_size: int = 32

    def kernel_shared_bytes(self, cubin_shared_bytes):
        """The shared memory a kernel declares, from the size its cubin gives (which on sm_90 starts with
        the system's reservation whenever the kernel uses shared memory at all)."""
        if self.reservation_in_cubin and cubin_shared_bytes >= self.reserved_shared_bytes_per_block:
            return cubin_shared_bytes - self.reserved_shared_bytes_per_block
        return cubin_shared_bytes


H100 = GPULimits("H100 (sm_90)", 2048, 64, 32, 65536, 256, 255, 228 * 1024, 128, 1024, True)
A100 = GPULimits("A100 (sm_80)", 2048, 64, 32, 65536, 256, 255, 164 * 1024, 128, 1024, False)
GPUS = {(9, 0): H100, (8, 0): A100}


@dataclass(frozen=True)
class Occupancy:
    blocks: int          # resident blocks per SM
    warps: int           # resident warps per SM
    occupancy: float     # warps / max warps per SM
    limited_by: str      # "threads", "blocks", "registers" or "shared memory" (the tightest limit)


def _round_up(value, unit):
    return -(-value // unit) * unit


def theoretical_occupancy(threads_per_block, registers_per_thread, shared_bytes_per_block, gpu=H100):
    """Occupancy of a kernel launched with `threads_per_block` threads, using `registers_per_thread`
    registers and `shared_bytes_per_block` bytes of its own shared memory (static plus dynamic) per block;
    the system's reservation per block is added here."""
    if not 1 <= threads_per_block <= 1024:
        raise ValueError(f"threads_per_block must lie in [1, 1024], got {threads_per_block}")
    if registers_per_thread > gpu.max_registers_per_thread:
        raise ValueError(f"registers_per_thread must be at most {gpu.max_registers_per_thread}, "
                         f"got {registers_per_thread}")
    warps_per_block = -(-threads_per_block // gpu.warp_size)
    limits = {
        "threads": gpu.max_warps_per_sm // warps_per_block,
        "blocks": gpu.max_blocks_per_sm,
    }
    if registers_per_thread > 0:
        registers_per_warp = _round_up(registers_per_thread * gpu.warp_size, gpu.register_allocation_unit)
        limits["registers"] = (gpu.registers_per_sm // registers_per_warp) // warps_per_block
    shared = _round_up(shared_bytes_per_block + gpu.reserved_shared_bytes_per_block, gpu.shared_allocation_unit)
    limits["shared memory"] = gpu.shared_bytes_per_sm // shared
    limited_by = min(limits, key=lambda name: limits[name])
    blocks = limits[limited_by]
    warps = blocks * warps_per_block
    return Occupancy(blocks, warps, warps / gpu.max_warps_per_sm, limited_by)
