"""Device scratch buffers for the CUDA launchers (see nbconv.kernels.workspace)."""
from ..workspace import Scratch


def _device_array(size, dtype):
    from numba import cuda
    return cuda.device_array(size, dtype)


device_scratch = Scratch(_device_array)
release = device_scratch.release
