"""What a layer worked out for its last call, so that a training step, which calls every layer with the same
shapes again and again, pays for validation once per shape instead of once per call.

A layer's forward (or backward) builds a key from what its validated path depends on: the input's kind,
shape and dtype, the parameter arrays (by identity: a new array assigned to a Parameter is a new key), the
gradient buffers, the hyper-parameters and the mode. When the key is the one of its last call it calls the
kernel directly with the arguments it worked out then; otherwise it takes the validated path through
nbconv.functional (same errors for bad input) and, when that succeeds on a CPU array, remembers the key
and the arguments for next time. Only C-contiguous numpy arrays take the direct call: device arrays and
anything that needs a conversion or a copy take the validated path every time.

Outputs are new arrays on both paths, as before: a caller that keeps a layer's output (or an input gradient)
from one step never sees it overwritten by the next. Only what a layer alone holds is reused: zero-size
placeholder arguments, and the parameters' gradient buffers (Parameter.grad_buffer), which were written in
place before too. The results are the same kernels' on the same arguments, bit for bit.

A layer's hyper-parameters are part of the key by value: changing `layer.hyper` after construction is
noticed, although a value replaced by an equal one of another type (2.0 for 2) is not re-validated.
"""
import numpy as np


def host_key(array):
    """(shape, dtype) of a C-contiguous numpy array; None for anything else (which never takes a direct
    call)."""
    if type(array) is np.ndarray and array.flags.c_contiguous:
        return array.shape, array.dtype
    return None


def identity(array):
    """A key part for a parameter or buffer array: its id and shape (an in-place shape change is a new key).
    The remembered call holds the array itself, so that its id cannot be reused while it is remembered."""
    return None if array is None else (id(array), array.shape)


class LastCall:
    """One remembered call: the key it was made for, the arrays the key names by identity (kept alive), and
    what the direct call needs (`plan`, a tuple the layer defines)."""

    __slots__ = ("key", "kept", "plan")

    def __init__(self, key, kept, plan):
        self.key, self.kept, self.plan = key, kept, plan


def plan_for(remembered, key):
    """The plan of `remembered` (a LastCall or None) when it was made for `key`, else None."""
    if remembered is not None and key is not None and remembered.key == key:
        return remembered.plan
    return None
