"""Batch norm layers that run the ReLU after them (and a residual block's sum) in one pass: a model computes
what its layers one by one compute, in training and evaluation, and its gradients pass finite differences."""
import numpy as np
import pytest

from nbconv import models, nn
from nbconv.nn.graph import Residual
from nbconv.nn.norm import _BatchNorm
from tests import reference

SPEC = ("conv4k3p1nobias,bn,relu,[res[conv4k3p1nobias,bn,relu,conv4k3p1nobias,bn],relu]*2,"
        "res[conv6k3s2p1nobias,bn,relu,conv6k3p1nobias,bn|conv6k1s2nobias,bn],relu,gap,fc3")


@pytest.fixture
def unfused(monkeypatch):
    """Turns the fusions off: every layer runs its own forward and backward."""
    def turn_off():
        monkeypatch.setattr(_BatchNorm, "fuses_with", lambda self, following, input: False)
        monkeypatch.setattr(Residual, "_fused_tail", lambda self: None)
    return turn_off


def _step(model, x, grad_logits):
    logits = model.forward(x)
    grad_x = model.backward(grad_logits)
    grads = {name: parameter.grad.copy() for name, parameter in model.named_parameters().items()}
    return logits, grad_x, grads, {name: np.array(buffer) for name, buffer in model.named_buffers().items()}


@pytest.mark.parametrize("spec", [SPEC, "resnet20:classes=3"])  # the ReLU after the block, or the block's own
@pytest.mark.parametrize("training", [True, False])
def test_fused_model_computes_what_its_layers_compute(training, spec, unfused, rng):
    x = rng.standard_normal((6, 3, 8, 8)).astype(np.float32)
    grad_logits = rng.standard_normal((6, 3)).astype(np.float32)
    fused_model = models.build(spec, input_shape=(3, 8, 8), seed=3)
    fused_model.train(training)
    fused = [_step(fused_model, x, grad_logits) for _ in range(2)]  # twice: running statistics move
    block = fused_model["res1" if spec == SPEC else "layer1.0"]
    assert isinstance(block, Residual) and block._fused_sum
    assert fused_model._fused  # bn, relu ran as one layer
    unfused()
    plain_model = models.build(spec, input_shape=(3, 8, 8), seed=3)
    plain_model.train(training)
    plain = [_step(plain_model, x, grad_logits) for _ in range(2)]
    assert not plain_model._fused and not plain_model["res1" if spec == SPEC else "layer1.0"]._fused_sum
    for (logits, grad_x, grads, buffers), (logits_, grad_x_, grads_, buffers_) in zip(fused, plain):
        np.testing.assert_array_equal(logits, logits_)  # the forward is the same bit for bit
        for name in buffers:
            np.testing.assert_array_equal(buffers[name], buffers_[name], err_msg=name)
        np.testing.assert_allclose(grad_x, grad_x_, rtol=1e-4, atol=1e-6)
        for name in grads:
            np.testing.assert_allclose(grads[name], grads_[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_fused_model_gradients_match_finite_differences(rng):
    model = models.build(SPEC, input_shape=(3, 5, 5), seed=1, dtype=np.float64)
    model.train()
    for layer in (layer for _, layer in model.named_layers() if isinstance(layer, _BatchNorm)):
        layer.momentum = 0.0  # the forwards of the differences must not move the running statistics
    x = rng.standard_normal((3, 3, 5, 5))
    grad_logits = rng.standard_normal((3, 3))
    model.forward(x)
    grad_x = model.backward(grad_logits)
    assert model["res1"]._fused_sum
    np.testing.assert_allclose(grad_x, reference.numerical_gradient(lambda: model.forward(x), x, grad_logits),
                               rtol=1e-5, atol=1e-7)
    model.forward(x)
    model.backward(grad_logits)
    weight = model["res1"].body.layers[1].weight  # bn1 of the first block, fused with its ReLU
    expected = reference.numerical_gradient(lambda: model.forward(x), weight.value, grad_logits)
    np.testing.assert_allclose(weight.grad, expected, rtol=1e-5, atol=1e-7)


def test_a_residual_body_of_one_batch_norm(rng):
    norm = nn.BatchNorm2d(3)
    norm.name = "bn"
    block = Residual([norm], activation=nn.ReLU())
    x = rng.standard_normal((4, 3, 2, 2))
    x = x.astype(np.float32)
    output = block.forward(x)
    centred = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(output, np.maximum(centred + x, 0), rtol=1e-5, atol=1e-5)
    grad = block.backward(np.ones_like(x))
    assert grad.shape == x.shape and np.isfinite(grad).all()
