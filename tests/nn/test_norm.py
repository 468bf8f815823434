"""Normalization layers: gradients by finite differences, running statistics and buffers, modes, devices,
spec tokens."""
import numpy as np
import pytest

import nbconv.functional as F
from nbconv import backend, nn
from tests import reference
from tests.nn.test_layers import _check_layer


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("make,shape", [
    (lambda: nn.BatchNorm2d(3, dtype=np.float64), (2, 3, 4, 5)),
    (lambda: nn.BatchNorm2d(3, affine=False, dtype=np.float64), (3, 3, 3, 1)),
    (lambda: nn.BatchNorm1d(4, eps=1e-3, dtype=np.float64), (5, 4)),
    (lambda: nn.BatchNorm1d(2, momentum=None, dtype=np.float64), (3, 2, 7)),
])
def test_batch_norm_layer_gradients(make, shape, training, rng):
    layer = make()
    if layer.affine:  # away from the identity initialisation, so that weight and bias matter
        layer.weight.value[:] = rng.standard_normal(layer.num_features)
        layer.bias.value[:] = rng.standard_normal(layer.num_features)
    layer.running_mean[:] = rng.standard_normal(layer.num_features)
    layer.running_var[:] = rng.random(layer.num_features) + 0.5
    layer.train(training)
    _check_layer(layer, rng.standard_normal(shape) * 2 + 1, rng)


def test_batch_norm_layer_running_statistics_and_buffers(rng):
    layer = nn.BatchNorm2d(3)
    assert set(layer.named_parameters()) == {"weight", "bias"}
    np.testing.assert_array_equal(layer.weight.value, 1)
    np.testing.assert_array_equal(layer.bias.value, 0)
    buffers = layer.named_buffers()
    assert list(buffers) == ["running_mean", "running_var", "num_batches_tracked"]
    assert buffers["num_batches_tracked"].dtype == np.int64 and buffers["num_batches_tracked"].shape == ()
    running_mean, running_var = np.zeros(3), np.ones(3)
    for step in range(3):
        x = (rng.standard_normal((4, 3, 5, 5)) * (step + 1) + step).astype(np.float32)
        _, running_mean, running_var = reference.batch_norm(x, running_mean, running_var, None, None, True, 0.1, 1e-5)
        layer.forward(x)
    np.testing.assert_allclose(layer.running_mean, running_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.running_var, running_var, rtol=1e-5)
    assert int(layer.named_buffers()["num_batches_tracked"]) == 3
    layer.eval()
    x = rng.standard_normal((1, 3, 2, 2)).astype(np.float32)  # one image is fine in eval mode
    expected = reference.batch_norm(x, running_mean, running_var, None, None, False, 0.1, 1e-5)[0]
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-5, atol=1e-5)
    grad_x = layer.backward(np.ones_like(x))
    np.testing.assert_allclose(grad_x, np.ones_like(x) / np.sqrt(running_var + 1e-5)[None, :, None, None], rtol=1e-5)
    assert int(layer.num_batches_tracked) == 3  # eval forwards are not counted
    np.testing.assert_allclose(layer.running_mean, running_mean, rtol=1e-5, atol=1e-6)


def test_momentum_none_is_a_cumulative_average(rng):
    layer = nn.BatchNorm1d(2, momentum=None, dtype=np.float64)
    batches = [rng.standard_normal((6, 2)) + k for k in range(3)]
    for x in batches:
        layer.forward(x)
    np.testing.assert_allclose(layer.running_mean, np.mean([x.mean(axis=0) for x in batches], axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, np.mean([x.var(axis=0, ddof=1) for x in batches], axis=0),
                               rtol=1e-12)


def test_batch_norm_layer_on_cuda_matches_cpu(rng):
    x = rng.standard_normal((3, 2, 4, 3)).astype(np.float32)
    grad_y = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for device in ("cpu", "cuda"):
        layer = nn.BatchNorm2d(2).to(device)
        assert all(backend.backend_of(layer.named_buffers()[name]) == device
                   for name in ("running_mean", "running_var"))
        output = layer.forward(backend.transfer(x, device))
        grad_x = layer.backward(backend.transfer(grad_y, device))
        assert backend.backend_of(output) == device and backend.backend_of(grad_x) == device
        results.append([backend.to_host(a) for a in (output, grad_x, layer.weight.grad, layer.bias.grad,
                                                     layer.running_mean, layer.running_var)])
        layer.to("cpu")
        assert isinstance(layer.running_mean, np.ndarray) and isinstance(layer.weight.value, np.ndarray)
    for on_cpu, on_gpu in zip(*results):
        np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-4, atol=1e-5)


def test_batch_norm_layer_specs_and_bad_input():
    assert nn.BatchNorm2d(8).spec() == "bn"
    assert nn.BatchNorm1d(8).spec() == "bn1d"
    assert nn.BatchNorm2d(8, eps=1e-3, momentum=0.01, affine=False).spec() == "bneps0.001momentum0.01noaffine"
    assert nn.BatchNorm1d(8, momentum=None).spec() == "bn1dmomentumnone"
    assert nn.BatchNorm2d(4, affine=False).named_parameters() == {}
    with pytest.raises(ValueError, match=r"BatchNorm2d\(4\) input must have 4 channels"):
        nn.BatchNorm2d(4).forward(np.zeros((2, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d input must have layout \(N, C\) or \(N, C, L\)"):
        nn.BatchNorm1d(3).forward(np.zeros((2, 3, 5, 5), np.float32))
    layer = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        layer.forward(np.zeros((1, 3), np.float32))
    assert int(layer.num_batches_tracked) == 0
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm2d(3, momentum=2)
    with pytest.raises(ValueError, match="eps"):
        nn.BatchNorm2d(3, eps=0)
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm2d(0)


@pytest.mark.parametrize("make,shape", [
    (lambda: nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=2.0), (2, 5, 3, 2)),
    (lambda: nn.LocalResponseNorm(2, alpha=1.0, beta=0.5), (3, 4, 5)),
    (lambda: nn.AdaptiveAvgPool2d((3, 2)), (2, 2, 7, 5)),
    (lambda: nn.AdaptiveAvgPool2d(4), (1, 2, 3, 3)),
    (lambda: nn.AdaptiveAvgPool2d((None, 2)), (2, 2, 4, 5)),
    (lambda: nn.AdaptiveAvgPool2d([3, None]), (1, 2, 7, 3)),
])
def test_lrn_and_adaptive_layer_gradients(make, shape, rng):
    _check_layer(make(), rng.standard_normal(shape), rng)


@pytest.mark.parametrize("training", [True, False])
def test_adaptive_max_pool_layer(training, rng):
    layer = nn.AdaptiveMaxPool2d((2, 3)).train(training)
    x = rng.permutation(2 * 3 * 5 * 7).reshape(2, 3, 5, 7) * 0.01  # distinct values: one maximum per window
    _check_layer(layer, x, rng)
    assert (layer.indices is None) == (not training)


def test_lrn_and_adaptive_specs():
    assert nn.LocalResponseNorm(5).spec() == "lrn5"
    assert nn.LocalResponseNorm(5, k=2).spec() == "lrn5k2"
    assert nn.LocalResponseNorm(3, alpha=1e-3, beta=0.5).spec() == "lrn3a0.001b0.5"
    assert nn.AdaptiveAvgPool2d(1).spec() == "adaptiveavgpool1"
    assert nn.AdaptiveAvgPool2d((6, 6)).spec() == "adaptiveavgpool6"
    assert nn.AdaptiveMaxPool2d((7, 5)).spec() == "adaptivemaxpool7x5"
    with pytest.raises(ValueError, match="output_size"):
        nn.AdaptiveAvgPool2d(0)
    with pytest.raises(ValueError, match="size"):
        nn.LocalResponseNorm(0)


@pytest.mark.parametrize("size", [(None, 3), (4, None), [None, 2], (None, None)])
@pytest.mark.parametrize("kind", ["Avg", "Max"])
def test_adaptive_layers_take_none_in_the_size_as_the_functional_and_pytorch_do(kind, size, rng, tmp_path):
    """None keeps that axis's input size; the layer's spec says it ('none') and builds the same layer again."""
    torch = pytest.importorskip("torch")
    from nbconv import checkpoint, models
    x = rng.standard_normal((2, 3, 7, 5)).astype(np.float32)
    layer = getattr(nn, f"Adaptive{kind}Pool2d")(size)
    expected = getattr(torch.nn, f"Adaptive{kind}Pool2d")(tuple(size))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-5, atol=1e-6)  # float32 sums
    functional = getattr(F, f"adaptive_{kind.lower()}_pool2d")
    np.testing.assert_array_equal(layer.forward(x), functional(x, size))
    spec = f"conv3k1,{layer.spec()},flatten,fc2"
    assert "none" in layer.spec()
    model = models.build(spec, (3, 7, 5))
    assert model.spec() == spec
    checkpoint.save(tmp_path / "c.npz", model, (3, 7, 5), config={})
    assert checkpoint.load(tmp_path / "c.npz").model.spec() == spec


def test_adaptive_layers_refuse_what_the_functional_refuses():
    for bad, error in (((0, None), ValueError), ((None,), ValueError), ((None, None, None), ValueError),
                       (None, TypeError), ((1.5, None), TypeError)):
        with pytest.raises(error, match="output_size"):
            nn.AdaptiveAvgPool2d(bad)
        with pytest.raises(error, match="output_size"):
            F.adaptive_avg_pool2d(np.zeros((1, 1, 4, 4), np.float32), bad)
    for token in ("adaptiveavgpoolnonex0", "adaptivemaxpool0xnone", "adaptiveavgpoolxnone"):
        with pytest.raises(ValueError, match=token):
            models_build(token)


def models_build(spec):
    from nbconv import models
    return models.build(spec, (1, 4, 4))
