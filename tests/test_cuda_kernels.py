"""The CUDA kernels: one contract with the CPU kernels, and the same results (under the simulator in CI)."""
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

import nbconv.functional as F
from nbconv import backend
from nbconv.kernels import cpu, cuda as cuda_kernels


def _parameters(function):
    return list(inspect.signature(getattr(function, "py_func", function)).parameters)


def test_cpu_and_cuda_modules_share_one_contract():
    assert sorted(cpu.__all__) == sorted(cuda_kernels.__all__)
    for name in cpu.__all__:
        assert _parameters(getattr(cpu, name)) == _parameters(getattr(cuda_kernels, name)), name


def _on_both(function, *arrays, **kwargs):
    """function's result on the CPU and on the CUDA backend (copied back), for the same inputs."""
    on_cpu = function(*arrays, **kwargs)
    on_gpu = function(*(backend.to_device(a) for a in arrays), **kwargs)
    if isinstance(on_cpu, tuple):
        assert all(backend.is_device_array(part) for part in on_gpu)
        return on_cpu, tuple(backend.to_host(part) for part in on_gpu)
    assert backend.is_device_array(on_gpu)
    return (on_cpu,), (backend.to_host(on_gpu),)


def _assert_same(function, *arrays, **kwargs):
    expected, got = _on_both(function, *arrays, **kwargs)
    for e, g in zip(expected, got):
        assert e.shape == g.shape and e.dtype == g.dtype
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hyper,kernel", [(dict(stride=2, padding=1), (3, 2)),
                                          (dict(stride=(1, 2), padding=(2, 0), dilation=2, groups=2), (3, 2)),
                                          (dict(padding=(1, 0), groups=4), (3, 3))])  # the CPU's depthwise 3x3 path
def test_conv2d_cuda_matches_cpu(hyper, kernel, rng):
    x = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 4 // hyper.get("groups", 1)) + kernel).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    _assert_same(F.conv2d, x, w, b, **hyper)
    y = F.conv2d(x, w, b, **hyper)
    _assert_same(F.conv2d_backward, rng.standard_normal(y.shape).astype(np.float32), x, w, **hyper)


@pytest.mark.parametrize("dtype,input_shape,weight_shape,hyper", [
    (np.float32, (2, 6, 5, 4), (10, 3, 3, 2), dict(padding=1, groups=2)),      # narrow tiles
    (np.float64, (2, 6, 5, 4), (10, 3, 3, 2), dict(padding=1, groups=2)),
    (np.float32, (2, 7, 9, 8), (13, 7, 3, 3), dict(stride=2, padding=1)),      # tall tiles, several of them
    (np.float64, (3, 14, 6, 7), (14, 2, 2, 3), dict(padding=(1, 0), dilation=(2, 1), groups=7)),
    (np.float32, (2, 5, 9, 7), (5, 1, 3, 3), dict(stride=2, padding=2, dilation=2, groups=5)),  # depthwise
    (np.float32, (2, 7, 11, 9), (9, 7, 2, 4), dict(stride=(3, 2), padding=(2, 1))),  # phases without taps
    (np.float64, (1, 3, 10, 11), (4, 3, 3, 3), dict(stride=(2, 1), dilation=(2, 3), padding=(1, 2))),  # general
])
def test_conv2d_cuda_tiles_and_split_reduction(dtype, input_shape, weight_shape, hyper, monkeypatch, rng):
    """Shapes spanning several tiles on every axis (the simulator's tiles are 8 x 8 and 4 x 16, with 2 x 2
    results a thread), both tile shapes and the depthwise kernels, and a weight gradient whose reduction is
    split over the grid (partial sums added by a second kernel)."""
    from nbconv.kernels.cuda import conv as cuda_conv
    monkeypatch.setattr(cuda_conv, "SPLIT_COLUMNS", 8)
    x = rng.standard_normal(input_shape).astype(dtype)
    w = rng.standard_normal(weight_shape).astype(dtype)
    b = rng.standard_normal(weight_shape[0]).astype(dtype)
    y = F.conv2d(x, w, b, **hyper)
    _assert_same(F.conv2d, x, w, b, **hyper)
    _assert_same(F.conv2d_backward, rng.standard_normal(y.shape).astype(dtype), x, w, **hyper)


def test_conv1d_cuda_matches_cpu(rng):
    x = rng.standard_normal((1, 2, 9))
    w = rng.standard_normal((3, 2, 3))
    _assert_same(F.conv1d, x, w, stride=2, padding=1)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_cuda_matches_cpu(kind, rng):
    x = rng.permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6).astype(np.float64)
    hyper = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    forward = getattr(F, f"{kind}_pool2d")
    backward = getattr(F, f"{kind}_pool2d_backward")
    _assert_same(forward, x, **hyper)
    grad_y = rng.standard_normal(forward(x, **hyper).shape)
    _assert_same(backward, grad_y, x, **hyper)
    if kind == "avg":
        _assert_same(forward, x, count_include_pad=False, **hyper)


def test_global_avg_pool_cuda_matches_cpu(rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    _assert_same(F.global_avg_pool2d, x)
    _assert_same(F.global_avg_pool2d_backward, rng.standard_normal((2, 3, 1, 1)).astype(np.float32), x)


@pytest.mark.parametrize("name", ["relu", "relu6", "leaky_relu", "sigmoid", "tanh"])
def test_activations_cuda_match_cpu(name, rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    _assert_same(getattr(F, name), x)
    _assert_same(getattr(F, name + "_backward"), rng.standard_normal(x.shape).astype(np.float32), x)


def test_linear_local_loss_dropout_cuda_match_cpu(rng):
    x = rng.standard_normal((3, 7)).astype(np.float32)
    w = rng.standard_normal((4, 7)).astype(np.float32)
    _assert_same(F.linear, x, w, rng.standard_normal(4).astype(np.float32))
    _assert_same(F.linear_backward, rng.standard_normal((3, 4)).astype(np.float32), x, w)
    image = rng.standard_normal((2, 2, 5, 4))
    local_weight = rng.standard_normal((3, 2, 3, 2, 3, 3))
    _assert_same(F.local_conv2d, image, local_weight, stride=(1, 2), padding=(0, 1))
    _assert_same(F.local_conv2d_backward, rng.standard_normal((2, 3, 3, 2)), image, local_weight, stride=(1, 2),
                 padding=(0, 1))
    logits = rng.standard_normal((5, 3)).astype(np.float32)
    labels = np.array([0, 2, 1, 1, 0], np.int64)
    loss, grad = F.softmax_cross_entropy(logits, labels)
    device_loss, device_grad = F.softmax_cross_entropy(backend.to_device(logits), backend.to_device(labels))
    assert device_loss == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(backend.to_host(device_grad), grad, rtol=1e-5, atol=1e-7)
    out, mask = F.dropout(x, 0.3, np.random.default_rng(5))
    device_out, device_mask = F.dropout(backend.to_device(x), 0.3, np.random.default_rng(5))
    np.testing.assert_allclose(backend.to_host(device_out), out, rtol=1e-6)
    _assert_same(F.dropout_backward, x, mask)


@pytest.mark.parametrize("optimizer,spec", [("sgd", "conv2k3,relu,maxpool2,fc2"), ("adam", "conv2k3,relu,maxpool2,fc2"),
                                            ("sgd", "conv2k3nobias,relu,conv2k3p1nobias,maxpool2,fc2")])
def test_one_training_step_on_cuda_matches_cpu(optimizer, spec, rng):
    from nbconv import models
    from nbconv.train import TrainConfig, make_optimizer
    config = TrainConfig(optimizer=optimizer)
    x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
    labels = np.array([1, 0], np.int64)
    results = []
    for device in ("cpu", "cuda"):
        model = models.build(spec, input_shape=(1, 6, 6), seed=4).to(device)
        opt = make_optimizer(config, model.parameters())
        logits = model.forward(backend.transfer(x, device))
        loss, grad = F.softmax_cross_entropy(logits, backend.transfer(labels, device))
        grad_x = model.backward(grad)
        opt.step()
        if device == "cuda":
            assert all(backend.is_device_array(p.value) for p in model.parameters())
            assert backend.is_device_array(grad_x)
        results.append((loss, backend.to_host(grad_x), model.state_dict()))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-5)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-4, atol=1e-6)
    for key in results[0][2]:
        np.testing.assert_allclose(results[1][2][key], results[0][2][key], rtol=1e-4, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
def test_scale_shift_cuda_matches_cpu(activation, rng):
    x = rng.standard_normal((2, 5, 3, 7)).astype(np.float32) * 4
    scale, shift = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    residual = rng.standard_normal(x.shape).astype(np.float32)
    _assert_same(F.scale_shift, x, scale, shift, residual, activation=activation)
    _assert_same(F.scale_shift, x, activation=activation)
    _assert_same(F.batch_norm_scale_shift, scale, np.abs(shift) + 0.5, x[0, :, 0, 0], scale)
    on_device = backend.to_device(x)
    F.scale_shift(on_device, scale=backend.to_device(scale), residual=backend.to_device(residual), out=on_device)
    np.testing.assert_allclose(backend.to_host(on_device), F.scale_shift(x, scale, None, residual), rtol=1e-6)


@pytest.mark.parametrize("tiles", ["bad", "0,16,4,4,8/8,32,2,4,8", "16,16,4,4,3/8,32,2,4,8", "64,32,1,1,8/8,32,2,4,8"])
def test_tile_shapes_from_the_environment_are_checked(tiles):
    """NBCONV_CUDA_TILES (benchmarks/gpu_tiles.py) names tile shapes; one the kernels cannot load whole is a
    clear error when the module is imported for a GPU, not a kernel that skips part of its operands."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0", NBCONV_CUDA_TILES=tiles)
    completed = subprocess.run([sys.executable, "-c", "import nbconv.kernels.cuda.conv"], env=env,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode != 0
    assert "NBCONV_CUDA_TILES must read 'ty,tx,tm,tn,bk/ty,tx,tm,tn,bk'" in completed.stderr
    assert repr(tiles) in completed.stderr
