"""One flat buffer each for a model's parameters, their gradients and the optimizer's state, so that one kernel
call updates every parameter (nbconv.optim), and data-parallel training reduces the gradients where the
layers wrote them (nbconv.distributed), without packing them into buffers of its own.

The parameters' `value` and the optimizer's state arrays become views of the flat buffers; each parameter's
`grad_buffer` is its view of the flat gradient buffer, which Conv2d and Linear write their gradients into.
Whatever replaces one of these views later (load_state_dict, model.to, an optimizer state loaded from a
checkpoint, a gradient computed elsewhere) is noticed by identity: a replaced value or state array makes
the optimizer build the buffers again around the new arrays, and a gradient that is not the parameter's
view is copied into it before the launch. Parameters: one backend ('cuda'), one dtype.
"""
import weakref

import numpy as np

from . import backend

_HOLDING_GRADS = weakref.WeakValueDictionary()  # id(FlatBuffers.grads) -> the FlatBuffers whose gradients it is


def buffers_holding_grads(array):
    """The FlatBuffers whose flat gradient buffer is `array` (by identity), or None."""
    flat = _HOLDING_GRADS.get(id(array))
    return flat if flat is not None and flat.grads is array else None


class FlatBuffers:
    """Flat parameter, gradient and state buffers over `parameters`, with `slot_count` state arrays each."""

    def __init__(self, parameters, states, slot_count, decays):
        """parameters: the Parameters; states: each parameter's current state arrays (flat, one per slot);
        decays: each parameter's weight decay. Copies values and state into the new buffers and points the
        parameters and the returned `states` at views of them."""
        self.parameters = list(parameters)
        self.where = where = backend.backend_of(self.parameters[0].value)
        dtype = np.dtype(self.parameters[0].value.dtype)
        sizes = [int(parameter.value.size) for parameter in self.parameters]
        ends = np.cumsum(sizes).astype(np.int64)
        total = int(ends[-1]) if len(ends) else 0
        self.dtype = dtype
        self.values = backend.empty((total,), dtype, where)
        self.grads = backend.empty((total,), dtype, where)
        self.slots = [backend.empty((total,), dtype, where) for _ in range(slot_count)]
        _HOLDING_GRADS[id(self.grads)] = self
        self.segment_ends = backend.transfer(ends, where)
        self.segment_decay = backend.transfer(np.asarray(decays, np.float64), where)
        self.decays = tuple(float(decay) for decay in decays)
        # runs of neighbouring parameters with the same decay, (start, stop, decay): on the CPU each run is one
        # call of the plain update kernel, which vectorises (the segmented one looks up every value's decay)
        self.runs = []
        for start, stop, decay in zip([0, *ends[:-1].tolist()], ends.tolist(), self.decays):
            if self.runs and self.runs[-1][2] == decay:
                self.runs[-1] = (self.runs[-1][0], stop, decay)
            else:
                self.runs.append((start, stop, decay))
        # each run's views (values, gradients, [slots], decay), made once: the buffers never move
        self.run_views = [(self.values[start:stop], self.grads[start:stop], [slot[start:stop] for slot in self.slots],
                           decay) for start, stop, decay in self.runs]
        self.decay_setting = None  # the optimizer's (weight_decay, decay_on) that `decays` came from, once it says
        self.value_views, self.grad_views, self.states = [], [], []
        start = 0
        for parameter, size, state in zip(self.parameters, sizes, states):
            shape = tuple(parameter.value.shape)
            value = self.values[start:start + size].reshape(shape)
            _copy(value, parameter.value)
            parameter.value = value
            grad = self.grads[start:start + size].reshape(shape)
            parameter.grad_buffer = grad
            slots = []
            for flat, array in zip(self.slots, state):
                view = flat[start:start + size]
                _copy(view, array)
                slots.append(view)
            self.value_views.append(value)
            self.grad_views.append(grad)
            self.states.append(slots)
            start += size

    def place_grads(self, array):
        """Move the flat gradient buffer into `array` (1-D, numpy, the buffer's size and dtype: e.g. this
        process's part of memory shared with other processes, nbconv.distributed): its current values are
        copied in, and the layers write there from now on (each parameter's grad_buffer and, where it was the
        old view, .grad become views of `array`)."""
        if type(self.grads) is not np.ndarray or type(array) is not np.ndarray or array.ndim != 1 or \
                array.shape != self.grads.shape or array.dtype != self.dtype or not array.flags.c_contiguous:
            raise ValueError(f"place_grads: expected a C-contiguous 1-D numpy array of {self.grads.shape[0]} "
                             f"{self.dtype}, got {type(array).__name__} {getattr(array, 'shape', '')}")
        array[...] = self.grads
        old_views, self.grads = self.grad_views, array
        _HOLDING_GRADS[id(array)] = self
        self.run_views = [(values, array[start:stop], slots, decay)
                          for (values, _, slots, decay), (start, stop, _) in zip(self.run_views, self.runs)]
        self.grad_views, start = [], 0
        for parameter, old in zip(self.parameters, old_views):
            view = array[start:start + old.size].reshape(old.shape)
            if parameter.grad_buffer is old:
                parameter.grad_buffer = view
            if parameter.grad is old:
                parameter.grad = view
            self.grad_views.append(view)
            start += old.size

    def holds(self, parameters, states, decays):
        """Whether these buffers still are the parameters' values and state, with the same decays."""
        if len(parameters) != len(self.parameters) or tuple(decays) != self.decays:
            return False
        for parameter, mine, value, slots, state in zip(parameters, self.parameters, self.value_views, self.states,
                                                        states):
            if parameter is not mine or parameter.value is not value or state is None or \
                    len(state) != len(slots) or any(a is not b for a, b in zip(state, slots)):
                return False
        return True

    def gather_grads(self):
        """Make the flat gradient buffer hold every parameter's .grad (copying those written elsewhere)."""
        for parameter, view in zip(self.parameters, self.grad_views):
            if parameter.grad is not view:
                _copy(view, parameter.grad)

    def detach(self):
        """Stop the layers writing into the gradient buffer (the buffers are given up)."""
        for parameter, view in zip(self.parameters, self.grad_views):
            if parameter.grad_buffer is view:
                parameter.grad_buffer = None


def _copy(target, source):
    """Copy `source` (same size, on target's backend) into `target`, whatever their shapes."""
    if isinstance(target, np.ndarray):
        target[...] = np.asarray(source).reshape(target.shape)
    else:
        target.copy_to_device(backend.contiguous(source).reshape(target.shape))
