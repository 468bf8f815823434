"""Optimizer updates against numpy transcriptions of PyTorch's rules; learning-rate schedules."""
import numpy as np
import pytest

from nbconv.nn import Parameter
from nbconv.optim import SGD, Adam, CosineLR, StepLR


def _run(optimizer_class, steps, rng, **options):
    parameter = Parameter(rng.standard_normal(6))
    start = parameter.value.copy()
    grads = [rng.standard_normal(6) for _ in range(steps)]
    optimizer = optimizer_class([parameter], **options)
    for grad in grads:
        parameter.grad = grad
        optimizer.step()
    return start, grads, parameter.value


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_nesterov_weight_decay(nesterov, rng):
    lr, momentum, decay = 0.1, 0.9, 0.01
    start, grads, result = _run(SGD, 4, rng, lr=lr, momentum=momentum, weight_decay=decay, nesterov=nesterov)
    param, velocity = start.copy(), np.zeros(6)
    for grad in grads:
        g = grad + decay * param
        velocity = momentum * velocity + g
        param -= lr * (g + momentum * velocity if nesterov else velocity)
    np.testing.assert_allclose(result, param, rtol=1e-12)


def test_adam(rng):
    lr, b1, b2, eps, decay = 0.01, 0.9, 0.999, 1e-8, 0.001
    start, grads, result = _run(Adam, 5, rng, lr=lr, betas=(b1, b2), eps=eps, weight_decay=decay)
    param, m, v = start.copy(), np.zeros(6), np.zeros(6)
    for t, grad in enumerate(grads, 1):
        g = grad + decay * param
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        param -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    np.testing.assert_allclose(result, param, rtol=1e-12)


def test_optimizer_state_round_trip(rng):
    parameter = Parameter(rng.standard_normal(4))
    first = Adam([parameter], lr=0.1)
    parameter.grad = rng.standard_normal(4)
    first.step()
    second = Adam([Parameter(parameter.value.copy())], lr=0.5)
    second.load_state_dict(first.state_dict())
    assert second.lr == 0.1 and second.step_count == 1
    np.testing.assert_array_equal(second.state[0][1], first.state[0][1])


def test_schedules():
    optimizer = SGD([Parameter(np.zeros(1))], lr=1.0)
    step = StepLR(optimizer, step_size=2, gamma=0.5)
    assert [step.lr_at(e) for e in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    cosine = CosineLR(optimizer, total_epochs=4)
    assert cosine.lr_at(0) == 1.0 and cosine.lr_at(2) == pytest.approx(0.5) and cosine.lr_at(4) == pytest.approx(0)
    cosine.set_epoch(2)
    assert optimizer.lr == pytest.approx(0.5)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_sgd_matches_torch_optim_sgd(nesterov, device, rng):
    """nbconv's SGD (CPU kernel, and the CUDA kernel under the simulator where no GPU is present) against
    torch.optim.SGD itself, in float64, over several steps."""
    torch = pytest.importorskip("torch")
    from nbconv import backend
    lr, momentum, decay = 0.05, 0.9, 0.01
    start = rng.standard_normal(7)
    grads = [rng.standard_normal(7) for _ in range(5)]
    parameter = Parameter(backend.transfer(start.copy(), device))
    optimizer = SGD([parameter], lr=lr, momentum=momentum, weight_decay=decay, nesterov=nesterov)
    reference = torch.nn.Parameter(torch.tensor(start.copy(), dtype=torch.float64))
    torch_optimizer = torch.optim.SGD([reference], lr=lr, momentum=momentum, weight_decay=decay, nesterov=nesterov)
    for grad in grads:
        parameter.grad = backend.transfer(grad, device)
        optimizer.step()
        reference.grad = torch.tensor(grad, dtype=torch.float64)
        torch_optimizer.step()
        np.testing.assert_allclose(backend.to_host(parameter.value), reference.detach().numpy(), rtol=1e-12,
                                   atol=1e-14)


def test_nesterov_reaches_the_optimizer_from_the_config():
    from nbconv.train import TrainConfig, make_optimizer
    optimizer = make_optimizer(TrainConfig(nesterov=True), [Parameter(np.zeros(2))])
    assert optimizer.nesterov and optimizer.momentum == 0.9
    with pytest.raises(ValueError, match="nesterov"):
        make_optimizer(TrainConfig(nesterov=True, momentum=0.0), [Parameter(np.zeros(2))])


@pytest.mark.parametrize("optimizer_class", [SGD, Adam])
def test_decay_on_weights_spares_biases_as_torch_parameter_groups_do(optimizer_class, rng):
    """decay_on='weights': decay on parameters of 2+ dimensions only; against torch with the 1-D ones in a
    parameter group of weight_decay 0 (skipped without torch)."""
    torch = pytest.importorskip("torch")
    weight, bias = rng.standard_normal((3, 4)), rng.standard_normal(3)
    ours = [Parameter(weight.copy()), Parameter(bias.copy())]
    options = dict(lr=0.05, momentum=0.9, nesterov=True) if optimizer_class is SGD else dict(lr=0.05)
    optimizer = optimizer_class(ours, weight_decay=0.1, decay_on="weights", **options)
    theirs = [torch.nn.Parameter(torch.tensor(weight)), torch.nn.Parameter(torch.tensor(bias))]
    torch_class = torch.optim.SGD if optimizer_class is SGD else torch.optim.Adam
    reference = torch_class([{"params": [theirs[0]]}, {"params": [theirs[1]], "weight_decay": 0.0}], weight_decay=0.1,
                            **options)
    for _ in range(4):
        grads = [rng.standard_normal((3, 4)), rng.standard_normal(3)]
        for parameter, tensor, grad in zip(ours, theirs, grads):
            parameter.grad, tensor.grad = grad, torch.tensor(grad)
        optimizer.step()
        reference.step()
    for parameter, tensor in zip(ours, theirs):
        np.testing.assert_allclose(parameter.value, tensor.detach().numpy(), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="decay_on must be one of all, weights"):
        optimizer_class(ours, decay_on="biases")


@pytest.mark.parametrize("decay_on", ["all", "weights"])
def test_flat_steps_follow_every_change_between_steps(decay_on, rng):
    """Steps whose gradients the layers wrote into the flat buffer take the short path; whatever changes between
    steps (the decay, a gradient computed elsewhere, a new value, a loaded state) is still followed, and every
    step marks each parameter changed exactly once."""
    shapes = [(3, 4), (3,), (2, 2, 2), (5,)]
    parameters = [Parameter(rng.standard_normal(shape)) for shape in shapes]
    lr, momentum = 0.05, 0.9
    optimizer = SGD(parameters, lr=lr, momentum=momentum, weight_decay=0.01, decay_on=decay_on)
    reference = [parameter.value.copy() for parameter in parameters]
    velocities = [np.zeros(shape) for shape in shapes]
    general_steps = []  # the steps that took the general flat path
    flat_step = optimizer._flat_step
    optimizer._flat_step = lambda: general_steps.append(1) or flat_step()

    def step(decay, steady=True, elsewhere=()):
        versions = [parameter.version for parameter in parameters]
        general_before = len(general_steps)
        for index, parameter in enumerate(parameters):
            if index in elsewhere or parameter.grad_buffer is None:
                parameter.grad = rng.standard_normal(shapes[index])
            else:  # as Conv2d and Linear write their gradients
                parameter.grad_buffer[...] = rng.standard_normal(parameter.grad_buffer.shape)
                parameter.grad = parameter.grad_buffer
        optimizer.step()
        changes = [parameter.version - version for parameter, version in zip(parameters, versions)]
        assert changes == [1] * len(parameters) if steady else min(changes) >= 1  # a rebuild sets the values anew
        assert (len(general_steps) == general_before) == steady  # the short path alone, exactly when steady
        for index, parameter in enumerate(parameters):
            g = parameter.grad + (decay if decay_on == "all" or len(shapes[index]) > 1 else 0.0) * reference[index]
            velocities[index] = momentum * velocities[index] + g
            reference[index] = reference[index] - lr * velocities[index]
            np.testing.assert_allclose(parameter.value, reference[index], rtol=1e-12, atol=1e-15)

    step(0.01, steady=False)  # builds the flat buffers
    for _ in range(2):
        step(0.01)
    assert all(parameter.grad is parameter.grad_buffer for parameter in parameters)
    optimizer.weight_decay = 0.1  # a new decay: the buffers' runs are worked out again
    step(0.1, steady=False)
    step(0.1)
    step(0.1, steady=False, elsewhere=(1,))  # a gradient computed elsewhere
    step(0.1)
    parameters[2].value = rng.standard_normal(shapes[2])  # a new value
    reference[2] = parameters[2].value.copy()
    step(0.1, steady=False)
    state = optimizer.state_dict()  # a loaded state: velocities from elsewhere
    for index, shape in enumerate(shapes):
        state[f"{index}.velocity"] = rng.standard_normal(int(np.prod(shape)))
        velocities[index] = state[f"{index}.velocity"].reshape(shape)
    optimizer.load_state_dict(state)
    step(0.1, steady=False)
    step(0.1)


@pytest.mark.parametrize("make, error, words", [
    (lambda p: SGD(p, lr=float("nan")), ValueError, "lr must be a finite number > 0"),
    (lambda p: SGD(p, lr=0), ValueError, "lr must be a finite number > 0"),
    (lambda p: SGD(p, lr="0.1"), TypeError, "lr must be a real number"),
    (lambda p: SGD(p, lr=0.1, momentum=-0.5), ValueError, "momentum must be a finite number >= 0"),
    (lambda p: SGD(p, lr=0.1, momentum=float("inf")), ValueError, "momentum"),
    (lambda p: SGD(p, lr=0.1, weight_decay=float("nan")), ValueError, "weight_decay"),
    (lambda p: Adam(p, betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be a finite number >= 0 and < 1"),
    (lambda p: Adam(p, betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
    (lambda p: Adam(p, betas=0.9), TypeError, "betas must be a pair"),
    (lambda p: Adam(p, eps=-1e-8), ValueError, "eps must be a finite number >= 0"),
    (lambda p: Adam(p, weight_decay=-1.0), ValueError, "weight_decay"),
    (lambda p: StepLR(SGD(p, lr=0.1), step_size=0), ValueError, "step_size must be >= 1"),
    (lambda p: StepLR(SGD(p, lr=0.1), step_size=2, gamma=float("nan")), ValueError, "gamma"),
    (lambda p: CosineLR(SGD(p, lr=0.1), total_epochs=3, min_lr=float("inf")), ValueError, "min_lr"),
    (lambda p: CosineLR(SGD(p, lr=0.1), total_epochs=2.5), TypeError, "total_epochs must be an int"),
])
def test_bad_hyper_parameters_are_errors_naming_them(make, error, words, rng):
    with pytest.raises(error, match=words):
        make([Parameter(rng.standard_normal(3))])


@pytest.mark.parametrize("kind", ["Fortran order", "read-only"])
def test_parameters_updated_one_by_one_take_the_update_whatever_their_layout(kind, rng):
    value = np.asfortranarray(rng.standard_normal((3, 4)))
    if kind == "read-only":
        value = np.ascontiguousarray(value)
        value.flags.writeable = False
    start = value.copy()
    updated, frozen = Parameter(value), Parameter(rng.standard_normal(2))
    updated.grad, frozen.grad = np.ones((3, 4)), None  # a parameter without a gradient: one update a parameter
    SGD([updated, frozen], lr=0.5).step()
    np.testing.assert_array_equal(updated.value, start - 0.5)
    np.testing.assert_array_equal(value, start)
