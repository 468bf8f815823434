"""CPU kernels. Same public names and parameters as nbconv.kernels.cuda: inputs, then preallocated outputs
(overwritten), then scalar hyper-parameters.

Each is checked before it runs (nbconv.kernels.contracts, one table with the CUDA launchers): arrays of the
shapes, dtypes and hyper-parameters the compiled loops assume, else a ValueError naming the argument, with
nothing written. nbconv.kernels.cpu.unchecked holds the same kernels without the checks, for callers that build
their arrays themselves."""
from . import unchecked
from ..contracts import checked
from .unchecked import _ON_FIRST_USE, __all__  # noqa: F401

for _name in __all__:
    if _name not in _ON_FIRST_USE:
        globals()[_name] = checked(_name, getattr(unchecked, _name))
del _name


def __getattr__(name):
    if name in _ON_FIRST_USE:  # imported on first use, as in unchecked
        value = checked(name, getattr(unchecked, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_ON_FIRST_USE))
