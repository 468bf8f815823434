"""CUDA launchers over @cuda.jit kernels. Same public names and parameters as nbconv.kernels.cpu: inputs,
then preallocated outputs (overwritten), then scalar hyper-parameters.

Each is checked before it launches (nbconv.kernels.contracts, the CPU kernels' table): Numba device arrays (or
numpy arrays) of the shapes, dtypes and hyper-parameters the kernels assume, else a ValueError naming the
argument, with nothing launched. nbconv.kernels.cuda.unchecked holds the same launchers without the checks, for
callers that build their arrays themselves."""
from . import unchecked
from ..contracts import checked
from .unchecked import __all__  # noqa: F401

for _name in __all__:
    globals()[_name] = checked(_name, getattr(unchecked, _name), device=True)
del _name
