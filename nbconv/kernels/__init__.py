"""Compiled kernels: `cpu` (@njit) and `cuda` (@cuda.jit), one contract for both."""
