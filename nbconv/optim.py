"""Optimizers (SGD with momentum/Nesterov/weight decay, Adam) and learning-rate schedules (step, cosine).

Updates run as kernels on the parameters' backend; optimizer state lives beside the parameters.
"""
import math

import numpy as np

from . import backend, checks


class Optimizer:
    slots = ()

    def __init__(self, parameters, lr):
        self.parameters = list(parameters)
        self.lr = checks.finite("lr", lr, above=True)
        self.step_count = 0
        self.state = [None] * len(self.parameters)

    def _slots_for(self, index):
        """This parameter's state arrays (zeros on first use, on the parameter's backend)."""
        if self.state[index] is None or backend.backend_of(self.state[index][0]) != \
                backend.backend_of(self.parameters[index].value):
            value = self.parameters[index].value
            where = backend.backend_of(value)
            self.state[index] = [backend.zeros((value.size,), value.dtype, where) for _ in self.slots]
        return self.state[index]

    # weight_decay applies to every parameter (PyTorch's default), or with decay_on="weights" only to those
    # of two or more dimensions (convolution and fully connected weights), not to biases and batch-norm scales
    # and shifts, which have one.
    decay_on = "all"

    def _decay_for(self, parameter):
        return self.weight_decay if self.decay_on == "all" or len(parameter.shape) > 1 else 0.0

    flat = None  # nbconv.flat_parameters.FlatBuffers

    def step(self):
        """Apply one update from each parameter's .grad: over flat buffers (see nbconv.flat_parameters) when
        every parameter has a gradient, on one backend and of one dtype: one kernel call on the CUDA backend,
        one for each run of neighbouring parameters with the same weight decay on the CPU (one in all with
        decay_on="all"); else one call a parameter."""
        self.step_count += 1
        if self._unchanged_flat_step():
            return
        for parameter in self.parameters:  # updated in place below: say so to caches of derived values
            if parameter.grad is not None:
                parameter.mark_changed()
        if self._flat_step():
            return
        for index, parameter in enumerate(self.parameters):
            if parameter.grad is None:
                continue
            value = parameter.value
            if isinstance(value, np.ndarray) and not (value.flags.c_contiguous and value.flags.writeable):
                parameter.value = value = np.array(value, order="C")  # updated in place below: a flat view of it
            kernels = backend.kernels(backend.backend_of(value))
            self._update(kernels, backend.flat(value), backend.flat(backend.contiguous(parameter.grad)),
                         self._slots_for(index), self._decay_for(parameter))

    def _unchanged_flat_step(self):
        """The flat update of _flat_step when nothing changed since the buffers were last built or checked:
        the same parameters, each value and gradient still the buffers' views (the layers wrote the gradients
        there), each parameter's state list the one the buffers made (this class replaces a list, never edits
        one: _slots_for, load_state_dict), the same decay settings. One pass over the parameters instead
        of _flat_step's checks, gathering and slicing (~40 us less a LeNet-5 step); False, with nothing done,
        when anything differs (then step() takes the general path, which rebuilds what it must)."""
        flat = self.flat
        if flat is None or flat.decay_setting != (self.weight_decay, self.decay_on) or \
                len(self.parameters) != len(flat.parameters):
            return False
        for parameter, mine, value, grad, state, slots in zip(self.parameters, flat.parameters, flat.value_views,
                                                              flat.grad_views, self.state, flat.states):
            if parameter is not mine or parameter.value is not value or parameter.grad is not grad or \
                    state is not slots:
                return False
        for parameter in flat.parameters:  # updated in place below: say so to caches of derived values
            parameter.mark_changed()
        self._update_runs(flat)
        return True

    def _update_runs(self, flat):
        """The update over the flat buffers: one kernel call on the CUDA backend; on the CPU, one call of the
        plain kernel per run of one decay: the segmented kernel's lookup of each value's decay keeps it from
        vectorising (LeNet-5, decay on weights only: 0.82 ms against 0.14 ms)."""
        if flat.where == "cuda":
            self._update_flat(backend.kernels("cuda"), flat)
            return
        kernels = backend.kernels("cpu")
        for values, grads, slots, decay in flat.run_views:
            self._update(kernels, values, grads, slots, decay)

    def _flat_step(self):
        """Update every parameter over the flat buffers when they are all of one kind of array (numpy, or one
        kind of device array) and one dtype, with a gradient each; False (nothing done) otherwise."""
        parameters = self.parameters
        if not parameters or any(parameter.grad is None for parameter in parameters):
            return False
        first = parameters[0].value
        kind, dtype = type(first), first.dtype
        if (kind is not np.ndarray and not backend.is_device_array(first)) or any(  # one kind throughout, by type
                type(parameter.value) is not kind or type(parameter.grad) is not kind or parameter.value.dtype != dtype
                for parameter in parameters):
            return False
        decays = [self._decay_for(parameter) for parameter in parameters]
        if self.flat is None or not self.flat.holds(parameters, self.state, decays):
            from .flat_parameters import FlatBuffers
            if self.flat is not None:
                self.flat.detach()
            states = [self._slots_for(index) for index in range(len(parameters))]
            self.flat = FlatBuffers(parameters, states, len(self.slots), decays)
            self.state = list(self.flat.states)
        flat = self.flat
        flat.decay_setting = (self.weight_decay, self.decay_on)  # what the decays were worked out from
        flat.gather_grads()
        self._update_runs(flat)
        return True

    def state_dict(self):
        state = {"type": type(self).__name__, "lr": self.lr, "step_count": self.step_count}
        for index, slots in enumerate(self.state):
            if slots is not None:
                for name, array in zip(self.slots, slots):
                    state[f"{index}.{name}"] = np.array(backend.to_host(array))
        return state

    def load_state_dict(self, state):
        if state.get("type") != type(self).__name__:
            raise ValueError(f"optimizer state is for {state.get('type')}, not {type(self).__name__}")
        self.lr = float(state["lr"])
        self.step_count = int(state["step_count"])
        for index, parameter in enumerate(self.parameters):
            keys = [f"{index}.{name}" for name in self.slots]
            if all(key in state for key in keys):
                for key in keys:  # the update kernels index these by the parameter's elements
                    if np.shape(state[key]) != (parameter.value.size,):
                        raise ValueError(f"optimizer state {key!r} must have shape ({parameter.value.size},) like "
                                         f"parameter {index}, got {np.shape(state[key])}")
                where = backend.backend_of(parameter.value)
                self.state[index] = [backend.transfer(np.ascontiguousarray(state[key], parameter.value.dtype), where)
                                     for key in keys]


class SGD(Optimizer):
    """SGD with optional momentum, Nesterov momentum and L2 weight decay (PyTorch's update rule)."""
    slots = ("velocity",)

    def __init__(self, parameters, lr=0.01, momentum=0.0, weight_decay=0.0, nesterov=False, decay_on="all"):
        super().__init__(parameters, lr)
        momentum, weight_decay = checks.finite("momentum", momentum), checks.finite("weight_decay", weight_decay)
        if nesterov and momentum <= 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, bool(nesterov)
        self.decay_on = _check_decay_on(decay_on)

    def _update(self, kernels, param, grad, slots, weight_decay):
        kernels.sgd_update(param, grad, slots[0], self.lr, self.momentum, weight_decay, int(self.nesterov))

    def _update_flat(self, kernels, flat):
        kernels.sgd_update_flat(flat.values, flat.grads, flat.slots[0], flat.segment_ends, flat.segment_decay,
                                self.lr, self.momentum, int(self.nesterov))


class Adam(Optimizer):
    """Adam with bias correction and L2 weight decay folded into the gradient (PyTorch's Adam)."""
    slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decay_on="all"):
        super().__init__(parameters, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of numbers (beta1, beta2), got {betas!r}")
        self.beta1, self.beta2 = (checks.finite(f"betas[{k}]", beta, below=1.0) for k, beta in enumerate(betas))
        self.eps, self.weight_decay = checks.finite("eps", eps), checks.finite("weight_decay", weight_decay)
        self.decay_on = _check_decay_on(decay_on)

    def _update(self, kernels, param, grad, slots, weight_decay):
        kernels.adam_update(param, grad, slots[0], slots[1], self.lr, self.beta1, self.beta2, self.eps,
                            weight_decay, self.step_count)

    def _update_flat(self, kernels, flat):
        kernels.adam_update_flat(flat.values, flat.grads, flat.slots[0], flat.slots[1], flat.segment_ends,
                                 flat.segment_decay, self.lr, self.beta1, self.beta2, self.eps, self.step_count)


DECAY_ON = ("all", "weights")


def _check_decay_on(decay_on):
    if decay_on not in DECAY_ON:
        raise ValueError(f"decay_on must be one of {', '.join(DECAY_ON)}, got {decay_on!r}")
    return decay_on


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


class Schedule:
    """Sets optimizer.lr from the epoch number (0-based) at the start of each epoch."""

    def __init__(self, optimizer, base_lr=None):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr if base_lr is None else checks.finite("base_lr", base_lr, above=True)

    def lr_at(self, epoch):
        return self.base_lr

    def set_epoch(self, epoch):
        self.optimizer.lr = self.lr_at(epoch)
        return self.optimizer.lr


class StepLR(Schedule):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1, base_lr=None):
        super().__init__(optimizer, base_lr)
        self.step_size, self.gamma = checks.integer("step_size", step_size, 1), checks.finite("gamma", gamma)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineLR(Schedule):
    """lr follows half a cosine from base_lr at epoch 0 to min_lr after the last epoch."""

    def __init__(self, optimizer, total_epochs, min_lr=0.0, base_lr=None):
        super().__init__(optimizer, base_lr)
        self.total_epochs = max(1, checks.integer("total_epochs", total_epochs, 0))
        self.min_lr = checks.finite("min_lr", min_lr)

    def lr_at(self, epoch):
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * epoch / self.total_epochs))


SCHEDULES = ("constant", "step", "cosine")


def make_schedule(name, optimizer, epochs):
    if name == "constant":
        return Schedule(optimizer)
    if name == "step":
        return StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1)
    if name == "cosine":
        return CosineLR(optimizer, epochs)
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {name!r}")
