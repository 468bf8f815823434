"""Calls that once corrupted memory: run in a subprocess, so a crash fails the test instead of the run."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nbconv.functional as F
from nbconv.kernels.cpu import pool


def _run(code):
    """Run `code` in a fresh interpreter; return its stdout (the test fails on any crash or error)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_pooling_an_empty_plane_with_padding_is_a_clean_error_in_a_subprocess():
    out = _run("""
        import numpy as np, nbconv.functional as F
        from nbconv.nn import MaxPool2d
        x = np.zeros((1, 1, 0, 4), np.float32)
        for call in (lambda: F.max_pool2d(x, 2, padding=1, return_indices=True),
                     lambda: F.max_pool2d_backward(np.ones((1, 1, 1, 3), np.float32), x, 2, padding=1),
                     lambda: MaxPool2d(2, padding=1).forward(x)):
            try:
                call()
            except ValueError as error:
                print("ValueError", error)
        """)
    assert out.count("ValueError input must have non-empty spatial dimensions") == 3


@pytest.mark.parametrize("shape", [(1, 1, 0, 4), (1, 1, 4, 0), (2, 3, 0, 0)])
def test_every_window_function_refuses_empty_planes(shape):
    x = np.zeros(shape, np.float32)
    calls = [lambda: F.max_pool2d(x, 1), lambda: F.avg_pool2d(x, 2, padding=1), lambda: F.global_avg_pool2d(x),
             lambda: F.conv2d(x, np.ones((1, shape[1], 1, 1), np.float32), padding=1),
             lambda: F.local_conv2d(x, np.ones((1, 1, 1, shape[1], 1, 1), np.float32))]
    for call in calls:
        with pytest.raises(ValueError, match="input must have non-empty spatial dimensions"):
            call()


def test_empty_batches_give_empty_outputs():
    x = np.zeros((0, 3, 5, 5), np.float32)
    assert F.max_pool2d(x, 2).shape == (0, 3, 2, 2)
    assert F.conv2d(x, np.ones((4, 3, 3, 3), np.float32), padding=1).shape == (0, 4, 5, 5)
    grad_input, grad_weight, _ = F.conv2d_backward(np.zeros((0, 4, 5, 5), np.float32), x,
                                                   np.ones((4, 3, 3, 3), np.float32), padding=1)
    assert grad_input.shape == x.shape and not grad_weight.any()


def test_max_pool_backward_kernel_skips_positions_outside_the_plane():
    """The kernel itself, given indices no forward pass makes, writes only inside grad_input."""
    grad_output = np.ones((1, 1, 2, 2), np.float32)
    indices = np.array([[[[-1, 4], [10 ** 12, 3]]]], np.int64)
    guard = np.full((3, 1, 1, 2, 2), 7.0, np.float32)  # grad_input is guard[1]; its neighbours must stay 7
    pool.max_pool2d_backward(grad_output, indices, guard[1], 2, 2, 2, 2, 0, 0)
    np.testing.assert_array_equal(guard[1].ravel(), [0, 0, 0, 1])
    assert (guard[0] == 7).all() and (guard[2] == 7).all()


def test_max_pool_backward_kernel_with_mismatched_batches_writes_only_its_output():
    out = _run("""
        import numpy as np
        from nbconv.kernels.cpu import pool
        grad_input = np.full((4, 2, 4, 4), 7.0, np.float32)
        pool.max_pool2d_backward(np.ones((1, 1, 2, 2), np.float32), np.zeros((1, 1, 2, 2), np.int64),
                                 grad_input, 2, 2, 2, 2, 0, 0)
        print(float(grad_input.sum()))
        """)
    assert float(out) == 0.0
