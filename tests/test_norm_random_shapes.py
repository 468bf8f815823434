"""Batch norm, local response norm, adaptive pooling and concatenation on random shapes (odd sizes, single
samples, single channels) against the float64 references, gradients by finite differences."""
import numpy as np
from hypothesis import given, settings, strategies as st

import nbconv.functional as F
from tests import reference

SETTINGS = settings(max_examples=10, deadline=None)
sizes = st.integers(1, 6)


@SETTINGS
@given(n=sizes, c=sizes, spatial=st.lists(sizes, max_size=2), training=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_batch_norm_on_random_shapes(n, c, spatial, training, seed):
    shape = (n, c) + tuple(spatial)
    training = training and n * int(np.prod(spatial)) > 1
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2 + 1
    running_mean, running_var = rng.standard_normal(c), rng.random(c) + 0.5
    weight, bias = rng.standard_normal(c), rng.standard_normal(c)
    expected = reference.batch_norm(x, running_mean, running_var, weight, bias, training, 0.1, 1e-2)
    frozen = running_mean.copy(), running_var.copy()
    output = F.batch_norm(x, running_mean, running_var, weight, bias, training=training, eps=1e-2)
    np.testing.assert_allclose(output, expected[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(running_mean, expected[1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(running_var, expected[2], rtol=1e-12)
    grad_y = rng.standard_normal(shape)
    grad_x, grad_weight, grad_bias = F.batch_norm_backward(grad_y, x, *frozen, weight, bias, training=training,
                                                           eps=1e-2)
    forward = lambda: F.batch_norm(x, *frozen, weight, bias, training=training, momentum=0.0, eps=1e-2)  # noqa: E731
    np.testing.assert_allclose(grad_x, reference.numerical_gradient(forward, x, grad_y), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad_weight, reference.numerical_gradient(forward, weight, grad_y), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(grad_bias, grad_y.sum(axis=tuple(k for k in range(len(shape)) if k != 1)),
                               rtol=1e-10, atol=1e-12)


@SETTINGS
@given(n=sizes, c=st.integers(1, 9), spatial=st.lists(sizes, min_size=1, max_size=2), size=st.integers(1, 7),
       seed=st.integers(0, 2 ** 16))
def test_local_response_norm_on_random_shapes(n, c, spatial, size, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c) + tuple(spatial))
    hyper = dict(alpha=0.5, beta=0.75, k=1.5)
    np.testing.assert_allclose(F.local_response_norm(x, size, **hyper), reference.local_response_norm(x, size, **hyper),
                               rtol=1e-12)
    grad_y = rng.standard_normal(x.shape)
    numeric = reference.numerical_gradient(lambda: F.local_response_norm(x, size, **hyper), x, grad_y)
    np.testing.assert_allclose(F.local_response_norm_backward(grad_y, x, size, **hyper), numeric, rtol=1e-5,
                               atol=1e-7)


@SETTINGS
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       oh=st.integers(1, 9), ow=st.integers(1, 9), seed=st.integers(0, 2 ** 16))
def test_adaptive_pools_on_random_shapes(n, c, h, w, oh, ow, seed):
    rng = np.random.default_rng(seed)
    x = rng.permutation(n * c * h * w).reshape(n, c, h, w) * 0.1
    for mode in ("avg", "max"):
        expected, expected_indices = reference.adaptive_pool2d(x, (oh, ow), mode)
        if mode == "avg":
            np.testing.assert_allclose(F.adaptive_avg_pool2d(x, (oh, ow)), expected, rtol=1e-12)
        else:
            output, indices = F.adaptive_max_pool2d(x, (oh, ow), return_indices=True)
            np.testing.assert_array_equal(output, expected)
            np.testing.assert_array_equal(indices, expected_indices)
    grad_y = rng.standard_normal((n, c, oh, ow))
    for forward, backward in ((F.adaptive_avg_pool2d, F.adaptive_avg_pool2d_backward),
                              (F.adaptive_max_pool2d, F.adaptive_max_pool2d_backward)):
        numeric = reference.numerical_gradient(lambda: forward(x, (oh, ow)), x, grad_y)
        np.testing.assert_allclose(backward(grad_y, x, (oh, ow)), numeric, rtol=1e-6, atol=1e-7)


@SETTINGS
@given(shapes=st.lists(st.integers(0, 4), min_size=1, max_size=4), outer=st.lists(sizes, max_size=2),
       inner=st.lists(sizes, max_size=2), seed=st.integers(0, 2 ** 16))
def test_cat_on_random_shapes(shapes, outer, inner, seed):
    rng = np.random.default_rng(seed)
    dim = len(outer)
    inputs = [rng.standard_normal(tuple(outer) + (extent,) + tuple(inner)) for extent in shapes]
    output = F.cat(inputs, dim=dim)
    np.testing.assert_array_equal(output, np.concatenate(inputs, axis=dim))
    for grad, x in zip(F.cat_backward(output, shapes, dim=dim), inputs):
        np.testing.assert_array_equal(grad, x)
