"""Fewer launches and allocations a training step on the CUDA backend: the fused kernels (weight and bias
gradients in one call, one optimizer launch over flat buffers) against float64 references on both backends,
the optimizer's flat buffers through checkpoints and moves, and the device pool's reuse of dead arrays.
CUDA under Numba's simulator here (tests/conftest.py), on the device in `python benchmarks/gpu.py`."""
import gc
import threading

import numpy as np
import pytest

import nbconv.functional as F
from nbconv import backend, device_pool, models, optim
from nbconv.kernels import cpu as cpu_kernels
from nbconv.nn import Parameter

from . import reference

BACKENDS = ("cpu", "cuda")


def _kernels(where):
    return backend.kernels(where)


def _on(where, array):
    return backend.transfer(np.array(array), where)  # a copy: the kernels write in place


# ----------------------------------------------------------------------------- fused gradients

@pytest.mark.parametrize("where", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [
    dict(x=(3, 4, 7, 5), w=(6, 2, 3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2),
    dict(x=(5, 3, 9, 7), w=(5, 3, 3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(x=(0, 3, 5, 5), w=(4, 3, 3, 3), stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),  # empty batch
])
def test_conv2d_backward_weight_bias_matches_the_float64_reference(where, dtype, case, monkeypatch, rng):
    from nbconv.kernels.cuda import conv as cuda_conv
    monkeypatch.setattr(cuda_conv, "SPLIT_COLUMNS", 8)  # several partial sums on the CUDA side
    x = rng.standard_normal(case["x"]).astype(dtype)
    D, Cg, KH, KW = case["w"]
    OH = (x.shape[2] + 2 * case["padding"][0] - case["dilation"][0] * (KH - 1) - 1) // case["stride"][0] + 1
    OW = (x.shape[3] + 2 * case["padding"][1] - case["dilation"][1] * (KW - 1) - 1) // case["stride"][1] + 1
    grad_y = rng.standard_normal((x.shape[0], D, OH, OW)).astype(dtype)
    grad_weight = _on(where, np.full(case["w"], np.nan, dtype))  # every element must be written
    grad_bias = _on(where, np.full(D, np.nan, dtype))
    args = (*case["stride"], *case["padding"], *case["dilation"], case["groups"])
    _kernels(where).conv2d_backward_weight_bias(_on(where, grad_y), _on(where, x), grad_weight, grad_bias, *args)
    padding = tuple((p, p) for p in case["padding"])
    expected_weight = reference.conv2d_backward_weight(grad_y, x, case["w"], case["stride"], padding,
                                                       case["dilation"], case["groups"])
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(backend.to_host(grad_weight), expected_weight, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(backend.to_host(grad_bias), grad_y.astype(np.float64).sum(axis=(0, 2, 3)),
                               rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("where", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_backward_weight_bias_matches_the_float64_reference(where, dtype, rng):
    grad_y = rng.standard_normal((7, 5)).astype(dtype)
    x = rng.standard_normal((7, 3)).astype(dtype)
    grad_weight, grad_bias = _on(where, np.full((5, 3), np.nan, dtype)), _on(where, np.full(5, np.nan, dtype))
    _kernels(where).linear_backward_weight_bias(_on(where, grad_y), _on(where, x), grad_weight, grad_bias)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(backend.to_host(grad_weight), grad_y.astype(np.float64).T @ x, rtol=tolerance,
                               atol=tolerance)
    np.testing.assert_allclose(backend.to_host(grad_bias), grad_y.astype(np.float64).sum(axis=0), rtol=tolerance,
                               atol=tolerance)


@pytest.mark.parametrize("where", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_relu_kernels_match_the_float64_reference(where, dtype, with_bias, rng):
    x = rng.standard_normal((6, 5)).astype(dtype)
    w = rng.standard_normal((4, 5)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype) if with_bias else np.zeros(0, dtype)
    kernels = _kernels(where)
    output = _on(where, np.full((6, 4), np.nan, dtype))
    kernels.linear_relu_forward(_on(where, x), _on(where, w), _on(where, b), output)
    pre = x.astype(np.float64) @ w.T.astype(np.float64) + (b if with_bias else 0)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(backend.to_host(output), np.maximum(pre, 0), rtol=tolerance, atol=tolerance)
    grad_y = rng.standard_normal((6, 4)).astype(dtype)
    masked = np.where(pre > 0, grad_y.astype(np.float64), 0.0)
    grad_x = _on(where, np.full(x.shape, np.nan, dtype))
    grad_w, grad_b = _on(where, np.full(w.shape, np.nan, dtype)), _on(where, np.full(4, np.nan, dtype))
    kernels.linear_relu_backward_input(_on(where, grad_y), output, _on(where, w), grad_x)
    kernels.linear_relu_backward_weight_bias(_on(where, grad_y), output, _on(where, x), grad_w, grad_b)
    np.testing.assert_allclose(backend.to_host(grad_x), masked @ w.astype(np.float64), rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(backend.to_host(grad_w), masked.T @ x.astype(np.float64), rtol=tolerance,
                               atol=tolerance)
    np.testing.assert_allclose(backend.to_host(grad_b), masked.sum(axis=0), rtol=tolerance, atol=tolerance)


def test_sequential_fuses_linear_and_relu_on_both_backends_where_both_run(rng):
    """fc then relu run as one layer on each backend (tests/nn/test_relu_fusions.py holds the CPU's fused layer
    to its separate layers): the CUDA backend's outputs and gradients equal the CPU's, also for
    forward(until=the ReLU), and backward(start=the Linear) after a fused forward (the gradient is then the
    Linear's own output's, so the ReLU's mask must not apply)."""
    spec = "flatten,fc6,relu,fc3"
    x = rng.standard_normal((3, 2, 2, 2)).astype(np.float32)
    grad = rng.standard_normal((3, 3)).astype(np.float32)
    results = {}
    for where in BACKENDS:
        model = models.build(spec, input_shape=(2, 2, 2), seed=2).to(where)
        y = model.forward(backend.transfer(x, where))
        grad_x = model.backward(backend.transfer(grad, where))
        assert model._fused == {1}
        hidden = model.forward(backend.transfer(x, where), until=model.layer_names()[2])
        grad_hidden = rng.standard_normal(hidden.shape).astype(np.float32) if where == "cpu" else results["cpu"][4]
        model.forward(backend.transfer(x, where))
        before_relu = model.backward(backend.transfer(grad_hidden, where), start=model.layer_names()[1])
        results[where] = (backend.to_host(y), backend.to_host(grad_x), model.state_dict(),
                          {k: backend.to_host(p.grad) for k, p in model.named_parameters().items()}, grad_hidden,
                          backend.to_host(hidden), backend.to_host(before_relu))
    cpu, cuda = results["cpu"], results["cuda"]
    for index in (0, 1, 5, 6):
        np.testing.assert_allclose(cuda[index], cpu[index], rtol=1e-5, atol=1e-6)
    for key in cpu[3]:
        np.testing.assert_allclose(cuda[3][key], cpu[3][key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_fused_bias_gradient_agrees_with_finite_differences(rng):
    """d/d bias of sum(conv2d(x, w, b) * grad_y), by central differences in float64, on the CUDA backend."""
    x, w, b = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    grad_y = rng.standard_normal((2, 4, 3, 2))
    numerical_bias = reference.numerical_gradient(lambda: reference.conv2d(x, w, b), b, grad_y)
    numerical_weight = reference.numerical_gradient(lambda: reference.conv2d(x, w, b), w, grad_y)
    _, grad_weight, grad_bias = F.conv2d_backward(*(backend.to_device(a) for a in (grad_y, x, w)))
    np.testing.assert_allclose(backend.to_host(grad_bias), numerical_bias, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(backend.to_host(grad_weight), numerical_weight, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- one optimizer launch

def _segments(sizes):
    return np.cumsum(sizes).astype(np.int64)


def _sgd_reference(param, grad, velocity, decays, sizes, lr, momentum, nesterov):
    decay = np.repeat(decays, sizes)
    g = grad + decay * param
    velocity = momentum * velocity + g
    return param - lr * (g + momentum * velocity if nesterov else velocity), velocity


def _adam_reference(param, grad, m, v, decays, sizes, lr, beta1, beta2, eps, step):
    g = grad + np.repeat(decays, sizes) * param
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return param - lr * (m / (1 - beta1 ** step)) / (np.sqrt(v / (1 - beta2 ** step)) + eps), m, v


@pytest.mark.parametrize("where", BACKENDS)
@pytest.mark.parametrize("nesterov", [0, 1])
def test_sgd_update_flat_matches_the_float64_reference(where, nesterov, rng):
    sizes, decays = [5, 1, 12, 3], np.array([0.1, 0.0, 0.01, 0.0])
    param, grad, velocity = (rng.standard_normal(sum(sizes)) for _ in range(3))
    arrays = [_on(where, a) for a in (param, grad, velocity)]
    _kernels(where).sgd_update_flat(*arrays, _on(where, _segments(sizes)), _on(where, decays), 0.1, 0.9, nesterov)
    expected_param, expected_velocity = _sgd_reference(param, grad, velocity, decays, sizes, 0.1, 0.9, nesterov)
    np.testing.assert_allclose(backend.to_host(arrays[0]), expected_param, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(backend.to_host(arrays[2]), expected_velocity, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("where", BACKENDS)
def test_adam_update_flat_matches_the_float64_reference(where, rng):
    sizes, decays = [4, 7, 1], np.array([0.0, 0.05, 0.2])
    param, grad, m = (rng.standard_normal(sum(sizes)) for _ in range(3))
    v = rng.random(sum(sizes))
    arrays = [_on(where, a) for a in (param, grad, m, v)]
    _kernels(where).adam_update_flat(*arrays, _on(where, _segments(sizes)), _on(where, decays), 0.01, 0.9, 0.999,
                                     1e-8, 3)
    expected = _adam_reference(param, grad, m, v, decays, sizes, 0.01, 0.9, 0.999, 1e-8, 3)
    for got, want in zip((arrays[0], arrays[2], arrays[3]), expected):
        np.testing.assert_allclose(backend.to_host(got), want, rtol=1e-12, atol=1e-12)


def test_segment_of_finds_every_index():
    ends = np.array([3, 4, 9, 10], np.int64)
    found = [cpu_kernels.fused.segment_of(k, ends) for k in range(10)]
    assert found == [0, 0, 0, 1, 2, 2, 2, 2, 2, 3]


def _train(where, optimizer_name, steps, rng_seed=0, batches=(2, 1), reload_at=None, **options):
    """A few steps of a small network; returns the parameters, the optimizer's state and the losses."""
    rng = np.random.default_rng(rng_seed)
    model = models.build("conv2k3,relu,maxpool2,flatten,fc4,relu,fc3", input_shape=(2, 6, 6), seed=3).to(where)
    make = optim.SGD if optimizer_name == "sgd" else optim.Adam
    optimizer = make(model.parameters(), lr=0.05, **options)
    losses = []
    for step in range(steps):
        batch = batches[step % len(batches)]
        x = rng.standard_normal((batch, 2, 6, 6)).astype(np.float32)
        labels = rng.integers(0, 3, batch)
        loss, grad = F.softmax_cross_entropy(model.forward(backend.transfer(x, where)), backend.transfer(labels, where))
        model.backward(grad, need_input_grad=False)
        optimizer.step()
        losses.append(loss)
        if reload_at == step:  # as a resumed run does: new arrays for the weights and the optimizer's state
            weights, state = model.state_dict(), optimizer.state_dict()
            model.load_state_dict(weights)
            optimizer.load_state_dict(state)
    return model.state_dict(), optimizer.state_dict(), losses, optimizer


@pytest.mark.parametrize("optimizer_name,options", [
    ("sgd", dict(momentum=0.9, nesterov=True, weight_decay=1e-3, decay_on="weights")),
    ("sgd", dict()),
    ("adam", dict(weight_decay=1e-3)),
])
def test_training_on_cuda_with_one_optimizer_launch_matches_the_cpu(optimizer_name, options):
    """Steps with a smaller batch in between (shapes change), and a reload of weights and optimizer state
    midway: the CUDA run (flat buffers, pooled arrays) follows the CPU run (one update a parameter)."""
    on_cpu = _train("cpu", optimizer_name, 4, reload_at=1, **options)
    on_cuda = _train("cuda", optimizer_name, 4, reload_at=1, **options)
    assert on_cuda[3].flat is not None  # the one-launch path ran
    np.testing.assert_allclose(on_cuda[2], on_cpu[2], rtol=1e-4)
    for key in on_cpu[0]:
        np.testing.assert_allclose(on_cuda[0][key], on_cpu[0][key], rtol=1e-4, atol=1e-5, err_msg=key)
    for key, value in on_cpu[1].items():
        if isinstance(value, np.ndarray):
            np.testing.assert_allclose(on_cuda[1][key], value, rtol=1e-4, atol=1e-5, err_msg=key)


def test_flat_step_counts_one_launch_and_copies_foreign_gradients(rng):
    """All parameters in one launch; a gradient set from elsewhere (not the layer's buffer) is copied in; a
    parameter without a gradient falls back to one launch a parameter and leaves that parameter alone."""
    values = [rng.standard_normal(shape) for shape in ((3, 2), (3,), (4,))]
    grads = [rng.standard_normal(v.shape) for v in values]
    parameters = [Parameter(backend.to_device(v)) for v in values]
    optimizer = optim.SGD(parameters, lr=0.1, momentum=0.5)
    for parameter, grad in zip(parameters, grads):
        parameter.grad = backend.to_device(grad)  # not the flat buffer's views: copied in
    calls = _count_launchers(lambda: optimizer.step())
    assert calls == {"sgd_update_flat": 1}
    for parameter, value, grad in zip(parameters, values, grads):
        np.testing.assert_allclose(backend.to_host(parameter.value), value - 0.1 * grad, rtol=1e-12)
        assert parameter.grad_buffer is not None and parameter.grad_buffer.shape == value.shape
    parameters[2].grad = None
    before = backend.to_host(parameters[2].value).copy()
    calls = _count_launchers(lambda: optimizer.step())
    assert calls == {"sgd_update": 2}
    np.testing.assert_array_equal(backend.to_host(parameters[2].value), before)
    expected = values[0] - 0.1 * grads[0] - 0.1 * (0.5 * grads[0] + grads[0])
    np.testing.assert_allclose(backend.to_host(parameters[0].value), expected, rtol=1e-12)


def _count_launchers(function):
    """{launcher name: calls} of the CUDA kernel module while `function` runs."""
    kernels = backend.kernels("cuda")
    calls = {}
    originals = {}
    for name in kernels.module.__all__:
        originals[name] = getattr(kernels, name)

        def counted(*args, _name=name, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return originals[_name](*args, **kwargs)
        setattr(kernels, name, counted)
    try:
        function()
    finally:
        for name, original in originals.items():
            setattr(kernels, name, original)
    return calls


@pytest.mark.skipif(not backend.simulated(), reason="counts launches by skipping them under the simulator")
def test_lenet5_step_launch_count_and_no_allocations_once_warm(monkeypatch):
    """A LeNet-5 step on the CUDA backend: one optimizer launch, the bias gradients inside the weight
    gradients' launches, and once the pool is warm not one new device array. (The kernels are skipped,
    as benchmarks/launch_overhead.py does: the counts do not depend on the values.)"""
    from numba.cuda.simulator import kernel as simulator_kernel
    from numba.cuda.simulator.kernel import FakeCUDAKernel
    original_call = FakeCUDAKernel.__call__
    kernel_launches = []

    def launch(kernel, *args):
        if kernel._device or simulator_kernel._kernel_context:
            return original_call(kernel, *args)
        kernel_launches.append(kernel.fn.__name__)
    monkeypatch.setattr(FakeCUDAKernel, "__call__", launch)
    rng = np.random.default_rng(0)
    model = models.build("lenet5", seed=0).to("cuda")
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = backend.to_device(rng.standard_normal((4, 1, 28, 28)).astype(np.float32))
    labels = backend.to_device(rng.integers(0, 10, 4))

    def step():
        _, grad = F.softmax_cross_entropy(model.forward(images), labels)
        model.backward(grad, need_input_grad=False)
        optimizer.step()

    step()
    step()
    pool = device_pool.pool()
    before = pool.allocations
    kernel_launches.clear()
    calls = _count_launchers(step)
    assert pool.allocations == before
    assert len(kernel_launches) == 26  # 44 before the fusions: 9 forward, 1 loss, 15 backward, 1 update
    assert calls["sgd_update_flat"] == 1 and "sgd_update" not in calls
    assert "conv2d_backward_bias" not in calls and "linear_backward_bias" not in calls
    assert calls["conv2d_backward_weight_bias"] == 2 and calls["linear_backward_weight_bias"] == 1
    assert calls["linear_relu_forward"] == 2 and calls["linear_relu_backward_weight_bias"] == 2
    assert "linear_forward" in calls and calls["relu_forward"] == 2  # fc10; the ReLUs after the poolings


# ----------------------------------------------------------------------------- the device pool

def test_pool_hands_out_a_block_again_only_when_no_view_of_it_lives():
    pool = device_pool.DevicePool()
    first = pool.empty((4, 5), np.float32)
    address = _address(first)
    flat = first.reshape(20)
    piece = flat[3:7]
    del first, flat
    second = pool.empty((2, 10), np.float32)
    assert _address(second) != address  # a slice of it still lives
    del piece
    gc.collect()
    third = pool.empty((20,), np.float32)
    assert _address(third) == address and pool.allocations == 2 and pool.reuses == 1
    other_dtype = pool.empty((20,), np.float64)
    assert _address(other_dtype) not in (address, _address(second))
    assert pool.empty((0,), np.float32).shape == (0,)


def test_pool_arrays_do_not_alias_while_alive(rng):
    pool = device_pool.DevicePool()
    arrays = [pool.empty((3, 3), np.float64) for _ in range(5)]
    assert len({_address(a) for a in arrays}) == 5
    for index, array in enumerate(arrays):
        array.copy_to_device(np.full((3, 3), float(index)))
    for index, array in enumerate(arrays):
        np.testing.assert_array_equal(array.copy_to_host(), np.full((3, 3), float(index)))
    del arrays[2]
    again = pool.empty((9,), np.float64)
    again.copy_to_device(np.full(9, -1.0))
    for index, array in zip((0, 1, 3, 4), arrays):
        np.testing.assert_array_equal(array.copy_to_host(), np.full((3, 3), float(index)))


def test_pool_from_many_threads_gives_distinct_live_arrays():
    pool = device_pool.DevicePool()
    held, errors = [], []

    def work(seed):
        try:
            mine = []
            for round_ in range(30):
                array = pool.empty((16,), np.float32)
                array.copy_to_device(np.full(16, seed * 1000 + round_, np.float32))
                mine.append((seed * 1000 + round_, array))
                if len(mine) > 3:
                    value, old = mine.pop(0)
                    assert (old.copy_to_host() == value).all()
            held.extend(mine)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for value, array in held:
        assert (array.copy_to_host() == value).all()
    assert len({_address(array) for _, array in held}) == len(held)


def test_pool_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(device_pool.ENV_VARIABLE, "0")
    before = device_pool.pool().allocations
    array = backend.empty((3,), np.float32, "cuda")
    assert array.shape == (3,) and device_pool.pool().allocations == before


def _address(array):
    if backend.simulated():
        return array._ary.__array_interface__["data"][0]
    return array.__cuda_array_interface__["data"][0]
