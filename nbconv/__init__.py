"""nbconv: convolutional networks without a framework, with kernels compiled by Numba."""
__version__ = "0.1.0"
