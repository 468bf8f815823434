"""Flat thread indices split into array coordinates, shared by the CUDA kernels (inlined device functions)."""
from numba import cuda


@cuda.jit(device=True, inline=True)
def unravel3(index, middle, inner):
    """(a, b, c) of index = (a * middle + b) * inner + c, with 0 <= b < middle and 0 <= c < inner."""
    a = index // (middle * inner)
    rest = index - a * (middle * inner)
    b = rest // inner
    return a, b, rest - b * inner


@cuda.jit(device=True, inline=True)
def unravel4(index, second, third, fourth):
    """(a, b, c, d) of index = ((a * second + b) * third + c) * fourth + d, e.g. (n, c, h, w) of an NCHW array."""
    head, c, d = unravel3(index, third, fourth)
    a = head // second
    return a, head - a * second, c, d
