"""The lecture's properties of convolution and pooling, checked on the CPU kernels."""
import numpy as np

import nbconv.functional as F


def test_convolution_is_translation_equivariant(rng):
    x = np.zeros((1, 2, 20, 20))
    x[:, :, 4:10, 5:11] = rng.standard_normal((1, 2, 6, 6))
    w = rng.standard_normal((3, 2, 3, 3))
    shifted = np.roll(x, (3, 4), axis=(2, 3))  # the pattern stays away from the borders
    y = F.conv2d(x, w, padding=1)
    y_shifted = F.conv2d(shifted, w, padding=1)
    np.testing.assert_allclose(y_shifted, np.roll(y, (3, 4), axis=(2, 3)), atol=1e-12)


def test_average_pooling_is_a_uniform_convolution(rng):
    x = rng.standard_normal((2, 3, 9, 8))
    kernel, stride = (3, 2), 2
    uniform = np.full((3, 1) + kernel, 1.0 / (kernel[0] * kernel[1]))
    np.testing.assert_allclose(F.avg_pool2d(x, kernel, stride), F.conv2d(x, uniform, stride=stride, groups=3),
                               atol=1e-12)


def test_fully_connected_layer_is_a_convolution_covering_the_input(rng):
    x = rng.standard_normal((4, 3, 5, 6))
    weight = rng.standard_normal((7, 3 * 5 * 6))
    bias = rng.standard_normal(7)
    dense = x.reshape(4, -1) @ weight.T + bias
    conv = F.conv2d(x, weight.reshape(7, 3, 5, 6), bias)
    assert conv.shape == (4, 7, 1, 1)
    np.testing.assert_allclose(conv[:, :, 0, 0], dense, atol=1e-12)


def test_one_by_one_convolution_is_a_per_pixel_matrix_product(rng):
    x = rng.standard_normal((2, 5, 4, 3))
    w = rng.standard_normal((6, 5, 1, 1))
    expected = np.einsum("dc,nchw->ndhw", w[:, :, 0, 0], x)
    np.testing.assert_allclose(F.conv2d(x, w), expected, atol=1e-12)
