"""nbconv.kernels.cpu imports the kernels of layers that not every network has only when they are asked for,
and every public kernel is still there, also through the serialized view the layers call."""
import subprocess
import sys

import nbconv.kernels.cpu as cpu_kernels
from nbconv.kernels.serial import Serialized


def test_every_public_kernel_is_reachable():
    kernels = Serialized(cpu_kernels)
    for name in cpu_kernels.__all__:
        assert callable(getattr(cpu_kernels, name)), name
        assert callable(getattr(kernels, name)), name
        assert name in dir(cpu_kernels)


def test_unknown_names_still_raise_attribute_error():
    try:
        cpu_kernels.no_such_kernel
    except AttributeError as error:
        assert "no_such_kernel" in str(error)
    else:
        raise AssertionError("no AttributeError")


def test_import_leaves_the_optional_kernels_out_until_used():
    code = ("import sys, nbconv.kernels.cpu as k\n"
            "optional = set(k._ON_FIRST_USE.values()) - {'scale_shift'}\n"  # the convolutions' epilogues import it
            "loaded = lambda: {m for m in optional if 'nbconv.kernels.cpu.' + m in sys.modules}\n"
            "assert not loaded(), loaded()\n"
            "assert k.dropout_forward is k.dropout_forward\n"
            "assert loaded() == {'dropout'}, loaded()\n")
    subprocess.run([sys.executable, "-c", code], check=True)
