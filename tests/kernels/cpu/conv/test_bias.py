"""The convolution's bias gradient (conv.dispatch.conv2d_backward_bias): the sum over images and positions per
channel, against float64, with the same bits at one and two threads, below and above the size at which it
runs on the calling thread alone."""
import numba
import numpy as np
import pytest

from nbconv.kernels.cpu import threads
from nbconv.kernels.cpu.conv.dispatch import conv2d_backward_bias


@pytest.mark.parametrize("shape", [(3, 5, 7, 3), (64, 16, 10, 10), (9, 7, 131, 17)])
def test_bias_gradient_against_float64_at_one_and_two_threads(shape, rng):
    grad_output = rng.standard_normal(shape).astype(np.float32)
    expected = grad_output.astype(np.float64).sum(axis=(0, 2, 3))
    results = []
    before = numba.get_num_threads()
    try:
        for count in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(count)
            grad_bias = np.full(shape[1] + 1, np.nan, np.float32)  # one value past the end, never written
            conv2d_backward_bias(grad_output, grad_bias[:-1])
            assert np.isnan(grad_bias[-1])
            results.append(grad_bias[:-1])
    finally:
        numba.set_num_threads(before)
    assert (np.prod(shape) >= threads.MIN_PARALLEL_WORK) == (shape == (9, 7, 131, 17))
    np.testing.assert_allclose(results[0], expected, rtol=1e-5, atol=1e-5 * np.sqrt(np.prod(shape)))
    assert np.array_equal(results[0], results[1])
