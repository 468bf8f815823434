"""Activations on the CPU: against numpy formulas and by finite differences."""
import numpy as np
import pytest

import nbconv.functional as F
from tests import reference

FORMULAS = {
    "relu": (lambda x: np.maximum(x, 0), {}),
    "relu6": (lambda x: np.clip(x, 0, 6), {}),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.2 * x), {"negative_slope": 0.2}),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), {}),
    "tanh": (np.tanh, {}),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_forward_and_backward(name, dtype, rng):
    formula, kwargs = FORMULAS[name]
    x = 4 * rng.standard_normal((2, 3, 5, 7)).astype(dtype)
    x[(np.abs(x) < 1e-3) | (np.abs(x - 6) < 1e-3)] = 0.5  # keep finite differences away from the kinks
    forward = getattr(F, name)
    backward = getattr(F, name + "_backward")
    y = forward(x, **kwargs)
    assert y.shape == x.shape and y.dtype == dtype
    np.testing.assert_allclose(y, formula(x.astype(np.float64)), rtol=1e-6, atol=1e-6)
    if dtype == np.float64:
        grad_y = rng.standard_normal(x.shape)
        grad_x = backward(grad_y, x, **kwargs)
        np.testing.assert_allclose(grad_x, reference.numerical_gradient(lambda: forward(x, **kwargs), x, grad_y),
                                   rtol=1e-6, atol=1e-8)


def test_sigmoid_does_not_overflow():
    y = F.sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("name", sorted(FORMULAS))
@pytest.mark.parametrize("make", [np.float32, lambda value: np.array(value, np.float32)], ids=["scalar", "0-d"])
def test_activations_keep_a_zero_dimensional_shape(name, make):
    """A numpy scalar or 0-d array gives a 0-d result, as numpy and PyTorch do, not shape (1,)."""
    formula, kwargs = FORMULAS[name]
    y = getattr(F, name)(make(-1.5), **kwargs)
    assert y.shape == () and y.dtype == np.float32
    np.testing.assert_allclose(y, formula(np.float64(-1.5)), rtol=1e-6)
    grad = getattr(F, name + "_backward")(make(1.0), make(-1.5), **kwargs)
    assert grad.shape == ()
